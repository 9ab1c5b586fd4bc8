//! `POST /v1/payments/webhook`: Stripe's events about payments it decided after the
//! checkout had answered. A checkout whose authorization came back pending (the card's
//! holder must authenticate, or the payment is processing) keeps its pin, answers
//! `202 pending_payment` and hands the attempt over here ([`hand_over`]): a record in the
//! store's metadata (`payments.pending-checkout:{attempt}`, with the buyer's email) says
//! that the webhook may complete it. Only such attempts are completed here; every other
//! attempt belongs to its checkout's response path or to the reconciler, so two paths
//! never race on one payment.
//!
//! - `payment_intent.amount_capturable_updated` / `payment_intent.succeeded`: the attempt
//!   becomes `authorized` and the checkout completes through [`crate::checkout::commit_order`],
//!   the response path's own commit (order + tickets + outbox row before the pin's
//!   deadline, seats SOLD, capture);
//! - `payment_intent.payment_failed` / `payment_intent.canceled`: the attempt is declined
//!   (or voided) and the hold unpinned, as after a `402`;
//! - anything else is acknowledged and ignored.
//!
//! Deliveries are verified (`Stripe-Signature`, see [`crate::stripe::verify_signature`])
//! and de-duplicated by event id (`payments.stripe-event:{id}` in the metadata, written once
//! the event is handled, so a delivery that failed half-way is handled again when Stripe
//! retries it; every step is idempotent). Past the pin's deadline nothing commits: the
//! reconciler has voided the payment by then.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use boxoffice_core::HoldId;
use boxoffice_store::{AttemptState, PaymentAttempt, StoreError};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::checkout::{Sale, abandon, commit_order, set_state};
use crate::error::ApiError;
use crate::http::dto::ErrorBody;
use crate::payments::Authorization;
use crate::stripe::{PaymentIntent, SignatureError, WebhookEvent, verify_signature};

/// Metadata key prefix of a checkout handed over to the webhook.
pub const PENDING_CHECKOUT_PREFIX: &str = "payments.pending-checkout:";
/// Metadata key prefix of a handled Stripe event.
pub const HANDLED_EVENT_PREFIX: &str = "payments.stripe-event:";
/// Longest Stripe event id accepted (theirs are about 30 characters).
const MAX_EVENT_ID_BYTES: usize = 255;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(payments_webhook))
}

fn now_ms() -> u64 {
    boxoffice_engine::Clock::now_ms(&boxoffice_engine::SystemClock)
}

/// What a checkout handed over to the webhook leaves for it.
#[derive(Debug, Serialize, Deserialize)]
struct PendingCheckout {
    email: Option<String>,
    /// The gateway's id of the payment.
    payment: String,
}

/// Hands a checkout whose payment the gateway decides later over to the webhook and
/// answers `202 {"status":"pending_payment","attempt_id"}`. The pin stays: the webhook
/// completes the checkout before its deadline, or the reconciler voids the payment after.
pub(crate) async fn hand_over(
    state: &AppState,
    hold: HoldId,
    attempt: &str,
    payment: &str,
    email: Option<&str>,
) -> Result<(StatusCode, Vec<u8>), ApiError> {
    let record = PendingCheckout { email: email.map(str::to_owned), payment: payment.to_owned() };
    let record = serde_json::to_string(&record).expect("a pending checkout serializes");
    if let Err(e) = state.store.meta_set(&format!("{PENDING_CHECKOUT_PREFIX}{attempt}"), &record).await {
        tracing::warn!(%hold, %attempt, error = %e, "cannot hand a pending payment over to the webhook");
        set_state(state, attempt, &[AttemptState::Initiated], AttemptState::Unknown, None).await;
        let message = if abandon(state, hold, attempt).await {
            "the payment could not be recorded; nothing was charged"
        } else {
            "the payment could not be recorded; the seats stay reserved while it is settled"
        };
        return Err(ApiError::unavailable("PAYMENTS_UNAVAILABLE", message).retry_after(5));
    }
    // From here the webhook may act: if it already has, this changes nothing.
    set_state(state, attempt, &[AttemptState::Initiated], AttemptState::Unknown, Some(payment)).await;
    metrics::counter!("boxoffice_checkouts_total", "result" => "pending").increment(1);
    let body = json!({"status": "pending_payment", "attempt_id": attempt});
    Ok((StatusCode::ACCEPTED, serde_json::to_vec(&body).expect("JSON serializes")))
}

/// What a delivery did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Completed,
    Failed,
    /// The attempt was settled already (an order, a decline, a void).
    Settled,
    /// Not a checkout handed over to the webhook, or not ours.
    NotPending,
    /// The checkout could not complete (deadline passed, seats gone): the payment is given
    /// back, or left to the reconciler.
    NotCompleted,
    Ignored,
    Duplicate,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Completed => "completed",
            Outcome::Failed => "failed",
            Outcome::Settled => "settled",
            Outcome::NotPending => "not_pending",
            Outcome::NotCompleted => "not_completed",
            Outcome::Ignored => "ignored",
            Outcome::Duplicate => "duplicate",
        }
    }
}

/// Receives Stripe's payment events (signed with the endpoint's secret). Completes or
/// fails checkouts that answered `202 pending_payment`; other event types are acknowledged
/// and ignored; a repeated event id is acknowledged and changes nothing.
#[utoipa::path(post, path = "/v1/payments/webhook", tag = "payments",
    request_body(content = String, content_type = "application/json",
        description = "a Stripe event, byte for byte as Stripe signed it"),
    params(("Stripe-Signature" = String, Header, description = "t=<unix seconds>,v1=<hex HMAC-SHA256>")),
    responses((status = 200, description = "handled, a duplicate, or ignored: {\"received\":true,\"outcome\"}"),
        (status = 400, description = "INVALID_SIGNATURE, STALE_SIGNATURE or INVALID_REQUEST (not an event)",
            body = ErrorBody),
        (status = 404, description = "WEBHOOK_NOT_CONFIGURED: no webhook secret", body = ErrorBody),
        (status = 413, body = ErrorBody),
        (status = 503, description = "not settled yet; Stripe delivers again", body = ErrorBody)))]
async fn payments_webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let Some(secret) = state.config.stripe_webhook_secret.as_deref() else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "WEBHOOK_NOT_CONFIGURED",
            "this server has no webhook secret (--stripe-webhook-secret)",
        ));
    };
    let signature = headers.get("stripe-signature").and_then(|v| v.to_str().ok()).unwrap_or("");
    let now_s = (now_ms() / 1000) as i64;
    verify_signature(signature, &body, secret, state.config.stripe_webhook_tolerance, now_s).map_err(
        |e| {
            metrics::counter!("boxoffice_payment_webhooks_total", "outcome" => "bad_signature").increment(1);
            match e {
                SignatureError::Stale => ApiError::bad_request("STALE_SIGNATURE", e.to_string()),
                SignatureError::Malformed | SignatureError::Mismatch => {
                    ApiError::bad_request("INVALID_SIGNATURE", e.to_string())
                }
            }
        },
    )?;
    let event: WebhookEvent =
        serde_json::from_slice(&body).map_err(|e| ApiError::invalid(format!("not a Stripe event: {e}")))?;
    if event.id.is_empty() || event.id.len() > MAX_EVENT_ID_BYTES {
        return Err(ApiError::invalid("the event id is empty or too long"));
    }
    let handled_key = format!("{HANDLED_EVENT_PREFIX}{}", event.id);
    let outcome = if state.store.meta_get(&handled_key).await?.is_some() {
        Outcome::Duplicate
    } else {
        let outcome = match event.kind.as_str() {
            "payment_intent.amount_capturable_updated" | "payment_intent.succeeded" => {
                complete(&state, &event.data.object).await?
            }
            "payment_intent.payment_failed" => {
                fail(&state, &event.data.object, AttemptState::Declined).await?
            }
            "payment_intent.canceled" => fail(&state, &event.data.object, AttemptState::Voided).await?,
            _ => Outcome::Ignored,
        };
        state.store.meta_set_if_absent(&handled_key, &now_ms().to_string()).await?;
        outcome
    };
    tracing::info!(event = %event.id, kind = %event.kind, outcome = outcome.as_str(), "payment webhook");
    metrics::counter!("boxoffice_payment_webhooks_total", "outcome" => outcome.as_str()).increment(1);
    Ok(Json(json!({"received": true, "outcome": outcome.as_str()})))
}

/// The attempt an event's payment intent belongs to, with what its checkout handed over;
/// `None` when it is not a checkout handed over to the webhook.
async fn pending_attempt(
    state: &AppState,
    object: &Value,
) -> Result<Option<(PaymentIntent, PaymentAttempt, PendingCheckout)>, ApiError> {
    let intent: PaymentIntent = serde_json::from_value(object.clone())
        .map_err(|e| ApiError::invalid(format!("the event's object is not a payment intent: {e}")))?;
    // The gateway key is the attempt's id.
    let Some(key) = intent.key().map(str::to_owned) else { return Ok(None) };
    let Some(record) = state.store.meta_get(&format!("{PENDING_CHECKOUT_PREFIX}{key}")).await? else {
        return Ok(None);
    };
    let pending: PendingCheckout = serde_json::from_str(&record)
        .map_err(|e| ApiError::internal(format!("unreadable pending checkout {key}: {e}")))?;
    match state.store.attempt(&key).await {
        Ok(attempt) => Ok(Some((intent, attempt, pending))),
        Err(StoreError::NotFound) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The payment is authorized (or captured): the checkout completes.
async fn complete(state: &AppState, object: &Value) -> Result<Outcome, ApiError> {
    let Some((intent, attempt, pending)) = pending_attempt(state, object).await? else {
        return Ok(Outcome::NotPending);
    };
    if attempt.order.is_some() {
        return Ok(Outcome::Settled);
    }
    let open = [AttemptState::Initiated, AttemptState::Unknown];
    if !set_state(state, &attempt.id, &open, AttemptState::Authorized, Some(&intent.id)).await {
        // A delivery cut short after recording the authorization goes on; anything else
        // was settled by another delivery or the reconciler.
        let now = state.store.attempt(&attempt.id).await?;
        if now.state != AttemptState::Authorized || now.order.is_some() {
            return Ok(Outcome::Settled);
        }
    }
    let entry = state.catalog.event(state.store.as_ref(), attempt.event).await?;
    let sale = Sale {
        hold: attempt.hold,
        event: attempt.event,
        user: attempt.user.clone(),
        seats: attempt.seats.clone(),
        total: attempt.amount,
        email: pending.email,
        attempt: attempt.id.clone(),
        deadline_ms: attempt.pin_deadline,
    };
    match commit_order(state, sale, &entry, &Authorization { id: intent.id.clone() }).await {
        Ok(order) => {
            tracing::info!(attempt = %attempt.id, order = %order.id, "pending checkout completed by the webhook");
            Ok(Outcome::Completed)
        }
        Err(e) => {
            let now = state.store.attempt(&attempt.id).await?;
            if now.state == AttemptState::Authorized && now.order.is_none() && now_ms() < now.pin_deadline {
                // Nothing was decided (the store or the gateway failed): Stripe delivers again.
                return Err(e);
            }
            tracing::warn!(attempt = %attempt.id, error = %e.message, "a pending checkout could not complete");
            Ok(Outcome::NotCompleted)
        }
    }
}

/// The payment failed or was cancelled: the attempt is closed and the hold goes back to
/// its buyer, who may pay again while it lasts.
async fn fail(state: &AppState, object: &Value, to: AttemptState) -> Result<Outcome, ApiError> {
    let Some((_, attempt, _)) = pending_attempt(state, object).await? else {
        return Ok(Outcome::NotPending);
    };
    if attempt.order.is_some() {
        return Ok(Outcome::Settled);
    }
    if !set_state(state, &attempt.id, &[AttemptState::Initiated, AttemptState::Unknown], to, None).await {
        return Ok(Outcome::Settled);
    }
    if let Err(e) = state.inventory.unpin(attempt.hold, &attempt.id).await {
        tracing::warn!(hold = %attempt.hold, error = %e, "unpin after a failed payment failed");
    }
    metrics::counter!("boxoffice_checkouts_total", "result" => "declined").increment(1);
    Ok(Outcome::Failed)
}
