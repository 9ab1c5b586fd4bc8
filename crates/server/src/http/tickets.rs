//! Tickets: `GET /v1/tickets/{id}` and its QR code `GET /v1/tickets/{id}/qr.svg` or
//! `qr.png` (owner or admin), the rotating payload of the ticket page
//! `GET /v1/tickets/{id}/live`, the caller's tickets `GET /v1/me/tickets`, transfers
//! `POST /v1/tickets/{id}/transfer` (owner only), the door scan `POST /v1/tickets/verify`
//! and the revocation list of offline scanners `GET /v1/events/{id}/revocations` (staff
//! or admin). A scan whose signature, ticket, event, seat and revision all check out
//! marks the ticket scanned, atomically, so a second scan says `already_scanned`. The
//! payload formats and their clock tolerance are in `docs/tickets.md`.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use boxoffice_core::{TicketId, UserId};
use boxoffice_store::{ScanOutcome, StoreError, Ticket, TicketStatus, TicketTransfer};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::auth::{Caller, Staff};
use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::http::dto::{ErrorBody, Page, TicketDetailDto, VerifyBody, VerifyDto, rfc3339};
use crate::tickets::{
    Checked, ROTATION_STEP_SECONDS, ROTATION_TOLERANCE_STEPS, SignedTicket, step_end_ms, time_step,
};

/// Revocations per page of `GET /v1/events/{id}/revocations` at most (and by default).
pub const MAX_REVOCATIONS_PER_PAGE: u32 = 1_000;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_ticket))
        .routes(routes!(ticket_qr))
        .routes(routes!(ticket_qr_png))
        .routes(routes!(live_payload))
        .routes(routes!(my_tickets))
        .routes(routes!(transfer_ticket))
        .routes(routes!(verify_ticket))
        .routes(routes!(revocations))
        .routes(routes!(scanner_key))
}

fn now_ms() -> u64 {
    boxoffice_engine::Clock::now_ms(&boxoffice_engine::SystemClock)
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

/// The rotating payload of the current time step (`GET /v1/tickets/{id}/live`).
#[derive(Serialize, ToSchema)]
pub struct LivePayloadDto {
    pub ticket_id: String,
    pub revision: u32,
    /// `r1.<certificate>.<certificate signature>.<step>.<step signature>`: show it as a QR
    /// code and fetch the next one at `next_step_at`.
    pub qr_payload: String,
    /// `unix_seconds / step_seconds`.
    pub step: u64,
    #[schema(example = 15)]
    pub step_seconds: u64,
    /// When the next step starts (RFC 3339, milliseconds).
    pub next_step_at: String,
    /// Whole seconds until then, rounded up.
    pub next_step_in_seconds: u64,
    /// Scanners accept this payload until then: the end of the next step (one step of
    /// clock tolerance either side).
    pub valid_until: String,
}

/// The ticket's rotating QR payload for the current 15-second step (owner or admin): a
/// screenshot of it stops admitting within 45 seconds. Only for a valid ticket.
#[utoipa::path(get, path = "/v1/tickets/{ticket_id}/live", tag = "tickets", params(("ticket_id" = String, Path)),
    security(("bearer" = [])),
    responses((status = 200, body = LivePayloadDto), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "TICKET_NOT_VALID: scanned, voided or transferred", body = ErrorBody)))]
async fn live_payload(
    State(state): State<AppState>,
    caller: Arc<Caller>,
    Path(ticket_id): Path<String>,
) -> Result<Response, ApiError> {
    let ticket = owned_ticket(&state, &caller, &ticket_id).await?;
    if ticket.status != TicketStatus::Valid {
        return Err(ApiError::conflict(
            "TICKET_NOT_VALID",
            format!("the ticket is {}: it admits nobody", status_str(ticket.status)),
        )
        .with("status", status_str(ticket.status)));
    }
    let now = now_ms();
    let step = time_step(now);
    let signed = SignedTicket {
        ticket: ticket.id.clone(),
        event: ticket.event,
        seat_index: ticket.seat_index,
        revision: ticket.revision,
    };
    let next_step_ms = step_end_ms(step);
    let body = LivePayloadDto {
        ticket_id: ticket.id.to_string(),
        revision: ticket.revision,
        qr_payload: state.signer.rotating_payload(&signed, step),
        step,
        step_seconds: ROTATION_STEP_SECONDS,
        next_step_at: rfc3339(next_step_ms),
        next_step_in_seconds: (next_step_ms - now).div_ceil(1000),
        valid_until: rfc3339(step_end_ms(step + ROTATION_TOLERANCE_STEPS)),
    };
    Ok(([(header::CACHE_CONTROL, "private, no-store")], axum::Json(body)).into_response())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TicketPageQuery {
    /// 1-100, default 20.
    limit: Option<String>,
    cursor: Option<String>,
}

/// The caller's tickets, newest first, every status: bought ones, ones received by a
/// transfer (`valid`, a new id) and ones given away (`transferred`).
#[utoipa::path(get, path = "/v1/me/tickets", tag = "tickets", params(TicketPageQuery), security(("bearer" = [])),
    responses((status = 200, body = Page<TicketDetailDto>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn my_tickets(
    State(state): State<AppState>,
    caller: Arc<Caller>,
    query: Result<Query<TicketPageQuery>, QueryRejection>,
) -> Result<axum::Json<Page<TicketDetailDto>>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::invalid(e.body_text()))?;
    let limit = crate::http::page_limit(q.limit.as_deref())?;
    let page = state.store.tickets_of_user(&caller.user, limit, q.cursor.as_deref()).await?;
    Ok(axum::Json(Page {
        items: page.items.iter().map(TicketDetailDto::from).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// `POST /v1/tickets/{id}/transfer`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransferBody {
    /// The recipient's user id (the `sub` of their token): 1-128 characters, no control
    /// characters, not the caller.
    #[schema(example = "bob")]
    pub to_user: String,
}

/// The ticket a transfer issued. Its QR payload is shown to its new owner only.
#[derive(Serialize, ToSchema)]
pub struct TransferDto {
    /// The new ticket's id.
    pub ticket_id: String,
    /// The ticket given away, now `transferred`; its payloads no longer admit.
    pub previous_ticket_id: String,
    pub order_id: String,
    pub event_id: String,
    pub seat: String,
    pub seat_index: u32,
    #[schema(example = "valid")]
    pub status: String,
    /// The previous ticket's revision plus one.
    pub revision: u32,
    pub owner: String,
}

/// Gives a valid ticket to another user (owner only): it becomes `transferred` and a new
/// ticket of the next revision, with a new static payload, is issued to `to_user`, in one
/// transaction with its TICKET_TRANSFERRED audit record and the revocation of the old
/// revision. The recipient finds it in `GET /v1/me/tickets`.
#[utoipa::path(post, path = "/v1/tickets/{ticket_id}/transfer", tag = "tickets", request_body = TransferBody,
    params(("ticket_id" = String, Path)), security(("bearer" = [])),
    responses((status = 201, body = TransferDto),
        (status = 400, description = "to_user is not a user id", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 404, description = "no such ticket of the caller", body = ErrorBody),
        (status = 409, description = "TICKET_NOT_TRANSFERABLE: scanned, voided or transferred already; \
            EVENT_CANCELLED", body = ErrorBody),
        (status = 422, description = "TRANSFER_TO_SELF", body = ErrorBody)))]
async fn transfer_ticket(
    State(state): State<AppState>,
    caller: Arc<Caller>,
    Path(ticket_id): Path<String>,
    ApiJson(body): ApiJson<TransferBody>,
) -> Result<(StatusCode, axum::Json<TransferDto>), ApiError> {
    let id = TicketId::parse(&ticket_id).map_err(|_| ApiError::not_found("ticket"))?;
    let to = UserId::parse(&body.to_user).map_err(|_| {
        ApiError::invalid(format!(
            "to_user must be a user id of 1 to {} characters without control characters",
            UserId::MAX_LEN
        ))
    })?;
    let ticket = match state.store.ticket(&id).await {
        Err(StoreError::NotFound) => return Err(ApiError::not_found("ticket")),
        other => other?,
    };
    // Owner only: an admin may see a fan's ticket but not give it away.
    if ticket.user != caller.user {
        return Err(ApiError::not_found("ticket"));
    }
    if to == caller.user {
        return Err(ApiError::unprocessable(
            "TRANSFER_TO_SELF",
            "a ticket cannot be transferred to its owner",
        ));
    }
    if ticket.status != TicketStatus::Valid {
        return Err(not_transferable(ticket.status));
    }
    let new_ticket = TicketId::random();
    let new_revision = ticket.revision.checked_add(1).ok_or_else(|| {
        ApiError::conflict("TICKET_NOT_TRANSFERABLE", "the ticket has been reissued too often")
    })?;
    let transfer = TicketTransfer {
        ticket: ticket.id.clone(),
        from: caller.user.clone(),
        to,
        new_qr_payload: Some(state.signer.payload(
            &new_ticket,
            ticket.event,
            ticket.seat_index,
            new_revision,
        )),
        new_ticket,
        new_revision,
        now: now_ms(),
    };
    let issued = match state.store.transfer_ticket(transfer).await {
        Ok(issued) => issued,
        Err(StoreError::NotFound) => return Err(ApiError::not_found("ticket")),
        Err(StoreError::TicketNotTransferable { status, .. }) => return Err(not_transferable(status)),
        Err(StoreError::EventCancelled(_)) => {
            return Err(ApiError::conflict(
                "EVENT_CANCELLED",
                "the event is cancelled: its tickets are being refunded",
            ));
        }
        Err(other) => return Err(other.into()),
    };
    metrics::counter!("boxoffice_ticket_transfers_total").increment(1);
    state.outbox_wake.notify_one();
    tracing::info!(ticket = %ticket.id, new_ticket = %issued.id, revision = issued.revision, "ticket transferred");
    Ok((
        StatusCode::CREATED,
        axum::Json(TransferDto {
            ticket_id: issued.id.to_string(),
            previous_ticket_id: ticket.id.to_string(),
            order_id: issued.order_id.to_string(),
            event_id: issued.event.to_string(),
            seat: issued.seat_label.clone(),
            seat_index: issued.seat_index,
            status: status_str(issued.status).into(),
            revision: issued.revision,
            owner: issued.user.to_string(),
        }),
    ))
}

fn not_transferable(status: TicketStatus) -> ApiError {
    ApiError::conflict(
        "TICKET_NOT_TRANSFERABLE",
        format!("the ticket is {}: only a valid ticket can be transferred", status_str(status)),
    )
    .with("status", status_str(status))
}

fn status_str(status: TicketStatus) -> &'static str {
    match status {
        TicketStatus::Valid => "valid",
        TicketStatus::Scanned => "scanned",
        TicketStatus::Voided => "voided",
        TicketStatus::Transferred => "transferred",
    }
}

/// Checks a ticket at the door (role staff or admin): `valid` marks it scanned. A static
/// payload at an event that refuses them answers `static_not_allowed`; a genuine rotating
/// payload outside the clock tolerance `expired`.
#[utoipa::path(post, path = "/v1/tickets/verify", tag = "tickets", request_body = VerifyBody,
    security(("bearer" = [])),
    responses((status = 200, body = VerifyDto), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, description = "not staff or admin", body = ErrorBody)))]
async fn verify_ticket(
    State(state): State<AppState>,
    Staff(_staff): Staff,
    ApiJson(body): ApiJson<VerifyBody>,
) -> Result<axum::Json<VerifyDto>, ApiError> {
    let now = now_ms();
    let answer = |result: &str, ticket_id: Option<String>, seat: Option<String>| {
        metrics::counter!("boxoffice_ticket_scans_total", "result" => result.to_owned()).increment(1);
        Ok(axum::Json(VerifyDto { result: result.into(), ticket_id, seat }))
    };
    let (signed, is_static) = match state.signer.verifier().check(&body.qr_payload, now) {
        Checked::Invalid => return answer("invalid", None, None),
        Checked::Expired { ticket, .. } => return answer("expired", Some(ticket.ticket.to_string()), None),
        Checked::Static(ticket) => (ticket, true),
        Checked::Rotating { ticket, .. } => (ticket, false),
    };
    if is_static {
        let allowed = match state.catalog.event(state.store.as_ref(), signed.event).await {
            Ok(entry) => entry.event.static_tickets_allowed,
            Err(e) if e.status == StatusCode::NOT_FOUND => return answer("invalid", None, None),
            Err(e) => return Err(e),
        };
        if !allowed {
            return answer("static_not_allowed", Some(signed.ticket.to_string()), None);
        }
    }
    // A genuine signature over a ticket that no longer matches (reissued, or another
    // event's seat) admits nobody.
    let matches = match state.store.ticket(&signed.ticket).await {
        Ok(t) => {
            t.event == signed.event && t.seat_index == signed.seat_index && t.revision == signed.revision
        }
        Err(StoreError::NotFound) => false,
        Err(e) => return Err(e.into()),
    };
    let outcome = if matches {
        state.store.scan_ticket(&signed.ticket, signed.revision, now).await?
    } else {
        ScanOutcome::Unknown
    };
    let (result, ticket) = match outcome {
        ScanOutcome::Admitted(t) => ("valid", t),
        ScanOutcome::AlreadyScanned(t) => ("already_scanned", t),
        ScanOutcome::Revoked(t) => ("voided", t),
        ScanOutcome::Unknown => return answer("invalid", None, None),
    };
    answer(result, Some(ticket.id.to_string()), Some(ticket.seat_label))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RevocationQuery {
    /// Entries after this `seq` (the `next` of the previous page); 0 or absent: from the start.
    since: Option<String>,
    /// 1-1000, default 1000.
    limit: Option<String>,
}

/// One revoked ticket revision.
#[derive(Serialize, ToSchema)]
pub struct RevocationDto {
    pub seq: u64,
    pub ticket_id: String,
    pub revision: u32,
    /// `refunded` (voided by a refund or the event's cancellation) or `transferred`.
    #[schema(example = "transferred")]
    pub reason: String,
    pub revoked_at: String,
}

/// A page of the revocation list.
#[derive(Serialize, ToSchema)]
pub struct RevocationsDto {
    pub revoked: Vec<RevocationDto>,
    /// Ask again with `since=next` (the last `seq` here, or `since` when nothing is new).
    pub next: u64,
    /// More entries follow at once.
    pub more: bool,
}

/// The event's revoked ticket revisions, oldest first, for scanners that check payloads
/// offline (staff or admin). The list only grows; positions are per event.
#[utoipa::path(get, path = "/v1/events/{event_id}/revocations", tag = "tickets",
    params(("event_id" = String, Path), RevocationQuery), security(("bearer" = [])),
    responses((status = 200, body = RevocationsDto), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, description = "not staff or admin", body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn revocations(
    State(state): State<AppState>,
    Staff(_staff): Staff,
    Path(event_id): Path<String>,
    query: Result<Query<RevocationQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::invalid(e.body_text()))?;
    let event = crate::http::events::parse_event_id(&event_id)?;
    let since = match q.since.as_deref() {
        None => 0,
        Some(raw) => raw.parse::<u64>().map_err(|_| {
            ApiError::invalid("since must be a whole number (the `next` of the previous page)")
        })?,
    };
    let limit = match q.limit.as_deref() {
        None => MAX_REVOCATIONS_PER_PAGE,
        Some(raw) => match raw.parse::<u32>() {
            Ok(n) if (1..=MAX_REVOCATIONS_PER_PAGE).contains(&n) => n,
            _ => {
                return Err(ApiError::invalid(format!(
                    "limit must be a whole number from 1 to {MAX_REVOCATIONS_PER_PAGE}"
                )));
            }
        },
    };
    state.catalog.event(state.store.as_ref(), event).await?;
    let mut rows = state.store.revocations_after(event, since, limit + 1).await?;
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let body = RevocationsDto {
        next: rows.last().map_or(since, |r| r.seq),
        more,
        revoked: rows
            .into_iter()
            .map(|r| RevocationDto {
                seq: r.seq,
                ticket_id: r.ticket.to_string(),
                revision: r.revision,
                reason: r.reason.as_str().into(),
                revoked_at: rfc3339(r.revoked_at),
            })
            .collect(),
    };
    Ok(([(header::CACHE_CONTROL, "private, no-store")], axum::Json(body)).into_response())
}

/// What an offline scanner needs besides the revocation list.
#[derive(Serialize, ToSchema)]
pub struct ScannerKeyDto {
    #[schema(example = "Ed25519")]
    pub algorithm: String,
    /// The server's ticket public key, hex (32 bytes).
    pub public_key: String,
    /// Length of a rotating payload's time step.
    #[schema(example = 15)]
    pub step_seconds: u64,
    /// Steps either side of the scanner's own that verify.
    #[schema(example = 1)]
    pub tolerance_steps: u64,
}

/// The key and parameters that offline scanners verify payloads with (staff or admin).
#[utoipa::path(get, path = "/v1/tickets/public-key", tag = "tickets", security(("bearer" = [])),
    responses((status = 200, body = ScannerKeyDto), (status = 401, body = ErrorBody),
        (status = 403, description = "not staff or admin", body = ErrorBody)))]
async fn scanner_key(State(state): State<AppState>, Staff(_staff): Staff) -> axum::Json<ScannerKeyDto> {
    axum::Json(ScannerKeyDto {
        algorithm: "Ed25519".into(),
        public_key: state.signer.public_key_hex(),
        step_seconds: ROTATION_STEP_SECONDS,
        tolerance_steps: ROTATION_TOLERANCE_STEPS,
    })
}
