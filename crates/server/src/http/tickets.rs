//! Tickets: `GET /v1/tickets/{id}` and its QR code `GET /v1/tickets/{id}/qr.svg` or
//! `qr.png` (owner or admin), and the door scan `POST /v1/tickets/verify` (staff or admin): a payload whose
//! signature, ticket, event, seat and revision all check out marks the ticket scanned,
//! atomically, so a second scan of the same ticket says `already_scanned`.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use boxoffice_core::TicketId;
use boxoffice_store::{ScanOutcome, StoreError, Ticket};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::auth::{Caller, Staff};
use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::http::dto::{ErrorBody, TicketDetailDto, VerifyBody, VerifyDto};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_ticket))
        .routes(routes!(ticket_qr))
        .routes(routes!(ticket_qr_png))
        .routes(routes!(verify_ticket))
}

/// The ticket as its owner (or an admin) sees it; 404 to anyone else.
async fn owned_ticket(state: &AppState, caller: &Caller, ticket_id: &str) -> Result<Ticket, ApiError> {
    let id = TicketId::parse(ticket_id).map_err(|_| ApiError::not_found("ticket"))?;
    let ticket = match state.store.ticket(&id).await {
        Err(StoreError::NotFound) => return Err(ApiError::not_found("ticket")),
        other => other?,
    };
    if !caller.may_see(&ticket.user) {
        return Err(ApiError::not_found("ticket"));
    }
    Ok(ticket)
}

/// A ticket with its status and signed QR payload (owner or admin).
#[utoipa::path(get, path = "/v1/tickets/{ticket_id}", tag = "tickets", params(("ticket_id" = String, Path)),
    security(("bearer" = [])),
    responses((status = 200, body = TicketDetailDto), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_ticket(
    State(state): State<AppState>,
    caller: Arc<Caller>,
    Path(ticket_id): Path<String>,
) -> Result<axum::Json<TicketDetailDto>, ApiError> {
    let ticket = owned_ticket(&state, &caller, &ticket_id).await?;
    Ok(axum::Json(TicketDetailDto::from(&ticket)))
}

/// The ticket's QR code as SVG (owner or admin).
#[utoipa::path(get, path = "/v1/tickets/{ticket_id}/qr.svg", tag = "tickets", params(("ticket_id" = String, Path)),
    security(("bearer" = [])),
    responses((status = 200, description = "the QR code of the signed payload", content_type = "image/svg+xml"),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn ticket_qr(
    State(state): State<AppState>,
    caller: Arc<Caller>,
    Path(ticket_id): Path<String>,
) -> Result<Response, ApiError> {
    let svg = crate::tickets::qr_svg(&qr_payload(&state, &caller, &ticket_id).await?)
        .map_err(ApiError::internal)?;
    Ok(qr_response("image/svg+xml", svg))
}

/// The signed payload of a ticket the caller may see.
async fn qr_payload(state: &AppState, caller: &Arc<Caller>, ticket_id: &str) -> Result<String, ApiError> {
    let ticket = owned_ticket(state, caller, ticket_id).await?;
    ticket.qr_payload.ok_or_else(|| ApiError::not_found("QR code of this ticket"))
}

/// A rendered QR code: private to its owner, never cached on the way.
fn qr_response(content_type: &'static str, body: impl IntoResponse) -> Response {
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "private, no-store")], body)
        .into_response()
}

/// The ticket's QR code as PNG (owner or admin).
#[utoipa::path(get, path = "/v1/tickets/{ticket_id}/qr.png", tag = "tickets", params(("ticket_id" = String, Path)),
    security(("bearer" = [])),
    responses((status = 200, description = "the QR code of the signed payload", content_type = "image/png"),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn ticket_qr_png(
    State(state): State<AppState>,
    caller: Arc<Caller>,
    Path(ticket_id): Path<String>,
) -> Result<Response, ApiError> {
    let png = crate::tickets::qr_png(&qr_payload(&state, &caller, &ticket_id).await?)
        .map_err(ApiError::internal)?;
    Ok(qr_response("image/png", png))
}

/// Checks a ticket at the door (role staff or admin): `valid` marks it scanned.
#[utoipa::path(post, path = "/v1/tickets/verify", tag = "tickets", request_body = VerifyBody,
    security(("bearer" = [])),
    responses((status = 200, body = VerifyDto), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, description = "not staff or admin", body = ErrorBody)))]
async fn verify_ticket(
    State(state): State<AppState>,
    Staff(_staff): Staff,
    ApiJson(body): ApiJson<VerifyBody>,
) -> Result<axum::Json<VerifyDto>, ApiError> {
    let invalid = || VerifyDto { result: "invalid".into(), ticket_id: None, seat: None };
    let Some(signed) = state.signer.verify(body.qr_payload.trim()) else {
        metrics::counter!("boxoffice_ticket_scans_total", "result" => "invalid").increment(1);
        return Ok(axum::Json(invalid()));
    };
    // A genuine signature over a ticket that no longer matches (reissued, or another
    // event's seat) admits nobody.
    let matches = match state.store.ticket(&signed.ticket).await {
        Ok(t) => {
            t.event == signed.event && t.seat_index == signed.seat_index && t.revision == signed.revision
        }
        Err(StoreError::NotFound) => false,
        Err(e) => return Err(e.into()),
    };
    let now = boxoffice_engine::Clock::now_ms(&boxoffice_engine::SystemClock);
    let outcome = if matches {
        state.store.scan_ticket(&signed.ticket, signed.revision, now).await?
    } else {
        ScanOutcome::Unknown
    };
    let (result, ticket) = match outcome {
        ScanOutcome::Admitted(t) => ("valid", t),
        ScanOutcome::AlreadyScanned(t) => ("already_scanned", t),
        ScanOutcome::Revoked(t) => ("voided", t),
        ScanOutcome::Unknown => {
            metrics::counter!("boxoffice_ticket_scans_total", "result" => "invalid").increment(1);
            return Ok(axum::Json(invalid()));
        }
    };
    metrics::counter!("boxoffice_ticket_scans_total", "result" => result).increment(1);
    Ok(axum::Json(VerifyDto {
        result: result.into(),
        ticket_id: Some(ticket.id.to_string()),
        seat: Some(ticket.seat_label),
    }))
}
