//! Webhook endpoints for integrators (admin): register (`POST /v1/webhooks`), list,
//! disable (`DELETE`), the delivery log (`GET /v1/webhooks/{id}/deliveries`) and a manual
//! redelivery. The sending is [`crate::webhooks`]; `docs/webhooks.md` is the
//! integrator's guide.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use boxoffice_store::{DeliveryStatus, NewWebhook, Webhook, WebhookDelivery};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::auth::Admin;
use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::http::dto::{ErrorBody, Page, rfc3339};
use crate::webhooks::{MAX_WEBHOOKS, secret_hint, validate_events, validate_secret, validate_url};
use crate::workers::now_ms;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_webhook, list_webhooks))
        .routes(routes!(disable_webhook))
        .routes(routes!(deliveries))
        .routes(routes!(redeliver))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewWebhookBody {
    /// `http` or `https`; loopback allowed unless the deployment forbids private addresses.
    pub url: String,
    /// Signs every delivery; 16 to 256 bytes. Never shown back.
    pub secret: String,
    /// Event types: `order.created`, `order.refunded`, `ticket.transferred`,
    /// `ticket.scanned`, `event.sold_out`, `waitlist.offered`.
    pub events: Vec<String>,
}

#[derive(Serialize, ToSchema)]
pub struct WebhookDto {
    pub webhook_id: String,
    pub url: String,
    pub events: Vec<String>,
    /// The secret's last 4 characters.
    pub secret_hint: String,
    pub enabled: bool,
    pub created_at: String,
}

impl From<Webhook> for WebhookDto {
    fn from(w: Webhook) -> Self {
        WebhookDto {
            webhook_id: webhook_id(w.id),
            url: w.url,
            events: w.events,
            secret_hint: secret_hint(&w.secret),
            enabled: w.enabled,
            created_at: rfc3339(w.created_at),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct DeliveryDto {
    pub delivery_id: String,
    pub webhook_id: String,
    /// The message's id, as in the body's `id` (the same on every attempt).
    pub event_id: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// `pending` | `delivered` | `failed`.
    pub status: &'static str,
    pub attempts: u32,
    /// When the next attempt is due (pending only).
    pub next_attempt_at: Option<String>,
    pub last_attempt_at: Option<String>,
    /// The endpoint's HTTP status at the last attempt, when it answered.
    pub last_status_code: Option<u16>,
    pub last_error: Option<String>,
    pub created_at: String,
    pub delivered_at: Option<String>,
}

impl From<WebhookDelivery> for DeliveryDto {
    fn from(d: WebhookDelivery) -> Self {
        let pending = d.status == DeliveryStatus::Pending;
        DeliveryDto {
            delivery_id: delivery_id(d.id),
            webhook_id: webhook_id(d.webhook_id),
            event_id: format!("evt_{}", d.outbox_seq),
            kind: d.kind,
            status: d.status.as_str(),
            attempts: d.attempts,
            next_attempt_at: pending.then(|| rfc3339(d.next_attempt_at)),
            last_attempt_at: d.last_attempt_at.map(rfc3339),
            last_status_code: d.last_status_code,
            last_error: d.last_error,
            created_at: rfc3339(d.created_at),
            delivered_at: d.delivered_at.map(rfc3339),
        }
    }
}

fn webhook_id(id: u64) -> String {
    format!("wh_{id}")
}

fn delivery_id(id: u64) -> String {
    format!("whd_{id}")
}

/// A numeric id behind its prefix; anything else names nothing (404).
fn parse_id(raw: &str, prefix: &str, what: &str) -> Result<u64, ApiError> {
    raw.strip_prefix(prefix)
        .filter(|digits| {
            !digits.is_empty() && digits.len() <= 19 && digits.bytes().all(|b| b.is_ascii_digit())
        })
        .and_then(|digits| digits.parse().ok())
        .ok_or_else(|| ApiError::not_found(what))
}

fn not_found(e: boxoffice_store::StoreError, what: &str) -> ApiError {
    match e {
        boxoffice_store::StoreError::NotFound => ApiError::not_found(what),
        other => other.into(),
    }
}

/// Registers an endpoint: every later outbox message of the chosen types is delivered to
/// it, signed with its secret.
#[utoipa::path(post, path = "/v1/webhooks", tag = "webhooks", request_body = NewWebhookBody,
    security(("bearer" = [])),
    responses((status = 201, body = WebhookDto), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 422, description = "WEBHOOK_LIMIT: as many endpoints as allowed are enabled", body = ErrorBody)))]
async fn create_webhook(
    State(state): State<AppState>,
    Admin(_admin): Admin,
    ApiJson(body): ApiJson<NewWebhookBody>,
) -> Result<(StatusCode, axum::Json<WebhookDto>), ApiError> {
    let url = validate_url(body.url.trim(), state.config.webhooks.webhook_forbid_private)
        .map_err(|e| ApiError::bad_request("INVALID_URL", e))?;
    validate_secret(&body.secret).map_err(|e| ApiError::bad_request("INVALID_SECRET", e))?;
    let events = validate_events(&body.events).map_err(|e| ApiError::bad_request("UNKNOWN_EVENT_TYPE", e))?;
    let created = state
        .store
        .create_webhook(NewWebhook {
            url: url.to_string(),
            secret: body.secret,
            events,
            created_at: now_ms(),
            max_enabled: MAX_WEBHOOKS,
        })
        .await?;
    let Some(webhook) = created else {
        return Err(ApiError::unprocessable(
            "WEBHOOK_LIMIT",
            format!("{MAX_WEBHOOKS} endpoints are enabled; delete one first"),
        )
        .with("limit", MAX_WEBHOOKS));
    };
    Ok((StatusCode::CREATED, axum::Json(webhook.into())))
}

/// Every endpoint, enabled or not, oldest first (one page: there are at most a few).
#[utoipa::path(get, path = "/v1/webhooks", tag = "webhooks", security(("bearer" = [])),
    responses((status = 200, body = Page<WebhookDto>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn list_webhooks(
    State(state): State<AppState>,
    Admin(_admin): Admin,
) -> Result<axum::Json<Page<WebhookDto>>, ApiError> {
    let items = state.store.webhooks().await?.into_iter().map(WebhookDto::from).collect();
    Ok(axum::Json(Page { items, next_cursor: None }))
}

/// Disables an endpoint: nothing more is sent to it; its delivery log stays readable.
#[utoipa::path(delete, path = "/v1/webhooks/{webhook_id}", tag = "webhooks",
    params(("webhook_id" = String, Path)), security(("bearer" = [])),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
async fn disable_webhook(
    State(state): State<AppState>,
    Admin(_admin): Admin,
    Path(webhook): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = parse_id(&webhook, "wh_", "webhook")?;
    state.store.disable_webhook(id, now_ms()).await.map_err(|e| not_found(e, "webhook"))?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeliveryPageQuery {
    /// 1-100, default 20.
    limit: Option<String>,
    cursor: Option<String>,
}

/// The endpoint's delivery log, newest first: status, attempts, the last answer.
#[utoipa::path(get, path = "/v1/webhooks/{webhook_id}/deliveries", tag = "webhooks",
    params(("webhook_id" = String, Path), DeliveryPageQuery), security(("bearer" = [])),
    responses((status = 200, body = Page<DeliveryDto>), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn deliveries(
    State(state): State<AppState>,
    Admin(_admin): Admin,
    Path(webhook): Path<String>,
    query: Result<Query<DeliveryPageQuery>, QueryRejection>,
) -> Result<axum::Json<Page<DeliveryDto>>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::invalid(e.body_text()))?;
    let limit = crate::http::page_limit(q.limit.as_deref())?;
    let id = parse_id(&webhook, "wh_", "webhook")?;
    let page = state
        .store
        .webhook_deliveries(id, limit, q.cursor.as_deref())
        .await
        .map_err(|e| not_found(e, "webhook"))?;
    Ok(axum::Json(Page {
        items: page.items.into_iter().map(DeliveryDto::from).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// Queues a delivery again at once, with a new retry window (any status).
#[utoipa::path(post, path = "/v1/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver", tag = "webhooks",
    params(("webhook_id" = String, Path), ("delivery_id" = String, Path)), security(("bearer" = [])),
    responses((status = 202, body = DeliveryDto), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
async fn redeliver(
    State(state): State<AppState>,
    Admin(_admin): Admin,
    Path((webhook, delivery)): Path<(String, String)>,
) -> Result<(StatusCode, axum::Json<DeliveryDto>), ApiError> {
    let webhook = parse_id(&webhook, "wh_", "webhook")?;
    let delivery = parse_id(&delivery, "whd_", "delivery")?;
    let queued = state
        .store
        .webhook_redeliver(webhook, delivery, now_ms())
        .await
        .map_err(|e| not_found(e, "delivery"))?;
    Ok((StatusCode::ACCEPTED, axum::Json(queued.into())))
}
