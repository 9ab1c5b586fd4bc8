//! `GET /v1/events/{id}/audit` (admin): the event's audit history, in sequence order, and
//! `GET /v1/events/{id}/audit/verify` (admin): the history replayed against the current
//! seat states and orders (what `boxoffice audit verify` prints).

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use boxoffice_store::AuditRecord;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::audit::Verification;
use crate::auth::Admin;
use crate::error::ApiError;
use crate::http::dto::ErrorBody;
use crate::http::events::parse_event_id;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(event_audit)).routes(routes!(verify_audit))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Records with a sequence number above this (a `next_cursor`); default 0.
    after: Option<String>,
    /// 1-100, default 20.
    limit: Option<String>,
}

/// One audit record: one seat, one change.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditRecordDto {
    /// Gap-free per event, from 1.
    pub seq: u64,
    /// SEAT_HELD, SEAT_RELEASED, PAYMENT_INITIATED, PAYMENT_FAILED, SEAT_CONFIRMED,
    /// SEAT_REFUNDED or TICKET_TRANSFERRED.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// RFC 3339.
    pub at: String,
    /// Seat index in the event.
    pub seat: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hold_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_id: Option<String>,
    pub user: String,
    /// SEAT_RELEASED: user, expiry, refund, cancel, superseded (the hold lost to an order
    /// found at reconciliation) or recovery (the hold did not survive a restart).
    /// PAYMENT_FAILED: declined, voided or refunded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl From<&AuditRecord> for AuditRecordDto {
    fn from(r: &AuditRecord) -> Self {
        let at = chrono::DateTime::from_timestamp_millis(r.record.at as i64)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
            .unwrap_or_default();
        AuditRecordDto {
            seq: r.seq,
            kind: r.record.kind.as_str(),
            at,
            seat: r.record.seat,
            hold_id: r.record.hold.map(|h| h.to_string()),
            order_id: r.record.order.as_ref().map(|o| o.to_string()),
            user: r.record.user.as_str().to_owned(),
            reason: r.record.reason.clone(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditPage {
    pub items: Vec<AuditRecordDto>,
    /// Pass as `after` for the next page; `null` when this page reached the end.
    pub next_cursor: Option<String>,
}

/// The event's audit history after a sequence number, oldest first.
#[utoipa::path(get, path = "/v1/events/{event_id}/audit", tag = "admin",
    params(("event_id" = String, Path), AuditQuery), security(("bearer" = [])),
    responses((status = 200, body = AuditPage), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn event_audit(
    State(state): State<AppState>,
    Admin(_admin): Admin,
    Path(event_id): Path<String>,
    query: Result<Query<AuditQuery>, QueryRejection>,
) -> Result<axum::Json<AuditPage>, ApiError> {
    let event = parse_event_id(&event_id)?;
    let Query(q) = query.map_err(|e| ApiError::invalid(e.body_text()))?;
    let after = match q.after.as_deref() {
        None | Some("") => 0,
        Some(raw) => raw.parse::<u64>().map_err(|_| ApiError::invalid("after must be a sequence number"))?,
    };
    let limit = crate::http::page_limit(q.limit.as_deref())?;
    // 404 for an unknown event.
    state.catalog.event(state.store.as_ref(), event).await?;
    let records = state.store.audit_after(event, after, limit).await?;
    let next_cursor = match records.last() {
        Some(last) if records.len() == limit as usize => Some(last.seq.to_string()),
        _ => None,
    };
    Ok(axum::Json(AuditPage { items: records.iter().map(AuditRecordDto::from).collect(), next_cursor }))
}

/// Replays the event's audit history and compares the result with the inventory's seat
/// states and the valid tickets. Run it at a quiet moment: a change made during the check
/// can show as a mismatch.
#[utoipa::path(get, path = "/v1/events/{event_id}/audit/verify", tag = "admin",
    params(("event_id" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = Verification, description = "`mismatches` is empty when the history is true"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn verify_audit(
    State(state): State<AppState>,
    Admin(_admin): Admin,
    Path(event_id): Path<String>,
) -> Result<axum::Json<Verification>, ApiError> {
    let event = parse_event_id(&event_id)?;
    let entry = state.catalog.event(state.store.as_ref(), event).await?;
    if state.config.writes_audit() {
        state.audit.drain(event).await.map_err(|e| ApiError::internal(format!("audit history: {e}")))?;
    }
    let report = crate::audit::verify(state.store.as_ref(), state.inventory.as_ref(), event, entry.map.len())
        .await
        .map_err(|e| ApiError::internal(format!("audit verify: {e}")))?;
    Ok(axum::Json(report))
}
