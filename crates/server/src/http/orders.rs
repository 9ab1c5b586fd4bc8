//! Checkout and orders: `POST /v1/holds/{id}/checkout`, `GET /v1/orders/{id}`,
//! `GET /v1/me/orders`, `POST /v1/orders/{id}/refund`.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use boxoffice_core::{OrderId, TicketId};
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::JsonWithBytes;
use crate::http::dto::{CheckoutBody, ErrorBody, OrderDto, Page, RefundBody, RefundDto};
use crate::http::holds::parse_hold_id;
use crate::http::{idempotency, page_limit};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(checkout))
        .routes(routes!(get_order))
        .routes(routes!(my_orders))
        .routes(routes!(refund_order))
}

/// Pays for a hold; the hold becomes a confirmed order with one ticket per seat.
#[utoipa::path(post, path = "/v1/holds/{hold_id}/checkout", tag = "checkout", request_body = CheckoutBody,
    params(("hold_id" = String, Path), ("Idempotency-Key" = String, Header, description = "required")),
    security(("bearer" = [])),
    responses((status = 201, body = OrderDto),
        (status = 400, description = "IDEMPOTENCY_KEY_REQUIRED or invalid body", body = ErrorBody),
        (status = 402, description = "PAYMENT_DECLINED", body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "CHECKOUT_IN_PROGRESS, ALREADY_CONFIRMED, IN_PROGRESS", body = ErrorBody),
        (status = 410, description = "HOLD_EXPIRED", body = ErrorBody),
        (status = 422, description = "IDEMPOTENCY_MISMATCH", body = ErrorBody),
        (status = 503, description = "PAYMENTS_UNAVAILABLE", body = ErrorBody)))]
async fn checkout(
    State(state): State<AppState>,
    caller: Arc<Caller>,
    Path(hold_id): Path<String>,
    headers: HeaderMap,
    body: JsonWithBytes<CheckoutBody>,
) -> Response {
    let key = match idempotency::key_from(&headers) {
        Ok(Some(key)) => key,
        Ok(None) => {
            return ApiError::bad_request(
                "IDEMPOTENCY_KEY_REQUIRED",
                "checkout needs an Idempotency-Key header (any unique string per purchase attempt)",
            )
            .into_response();
        }
        Err(e) => return e.into_response(),
    };
    let hold = match parse_hold_id(&hold_id) {
        Ok(hold) => hold,
        Err(e) => return e.into_response(),
    };
    let route = format!("POST /v1/holds/{hold_id}/checkout");
    let task_state = state.clone();
    let task_caller = caller.clone();
    idempotency::run_keyed(&state, &caller.user, route, Some(key), &body.raw, async move {
        // Its own task: a disconnecting client must not cut a checkout in half.
        tokio::spawn(crate::checkout::checkout(task_state, task_caller, hold, body.value))
            .await
            .map_err(|e| ApiError::internal(format!("checkout task failed: {e}")))?
    })
    .await
}

/// An order (owner or admin).
#[utoipa::path(get, path = "/v1/orders/{order_id}", tag = "orders", params(("order_id" = String, Path)),
    security(("bearer" = [])),
    responses((status = 200, body = OrderDto), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_order(
    State(state): State<AppState>,
    caller: Arc<Caller>,
    Path(order_id): Path<String>,
) -> Result<axum::Json<OrderDto>, ApiError> {
    let id = OrderId::parse(&order_id).map_err(|_| ApiError::not_found("order"))?;
    let order = match state.store.order(&id).await {
        Err(boxoffice_store::StoreError::NotFound) => return Err(ApiError::not_found("order")),
        other => other?,
    };
    if !caller.may_see(&order.user) {
        return Err(ApiError::not_found("order"));
    }
    Ok(axum::Json(OrderDto::from(&order)))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// 1-100, default 20.
    limit: Option<String>,
    cursor: Option<String>,
}

/// The caller's orders, newest first.
#[utoipa::path(get, path = "/v1/me/orders", tag = "orders", params(PageQuery), security(("bearer" = [])),
    responses((status = 200, body = Page<OrderDto>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn my_orders(
    State(state): State<AppState>,
    caller: Arc<Caller>,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> Result<axum::Json<Page<OrderDto>>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::invalid(e.body_text()))?;
    let limit = page_limit(q.limit.as_deref())?;
    let page = state.store.orders_of_user(&caller.user, limit, q.cursor.as_deref()).await?;
    Ok(axum::Json(Page {
        items: page.items.iter().map(OrderDto::from).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// Refunds an order, whole or the chosen tickets (owner or admin). Tickets are voided and
/// the payment returned through the gateway (idempotent: refunded tickets are skipped).
/// The seats are back on sale at once (the live map shows them).
#[utoipa::path(post, path = "/v1/orders/{order_id}/refund", tag = "orders", request_body = RefundBody,
    params(("order_id" = String, Path), ("Idempotency-Key" = Option<String>, Header)),
    security(("bearer" = [])),
    responses((status = 200, body = RefundDto),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, description = "TICKET_SCANNED: only an admin refunds a scanned ticket; \
            TICKET_TRANSFERRED: nor one transferred to another user", body = ErrorBody),
        (status = 404, body = ErrorBody)))]
async fn refund_order(
    State(state): State<AppState>,
    caller: Arc<Caller>,
    Path(order_id): Path<String>,
    headers: HeaderMap,
    body: JsonWithBytes<RefundBody>,
) -> Response {
    let key = match idempotency::key_from(&headers) {
        Ok(key) => key,
        Err(e) => return e.into_response(),
    };
    let route = format!("POST /v1/orders/{order_id}/refund");
    idempotency::run_keyed(&state, &caller.user, route, key, &body.raw, async {
        let id = OrderId::parse(&order_id).map_err(|_| ApiError::not_found("order"))?;
        let tickets = match body.value.ticket_ids {
            None => None,
            Some(ids) if ids.is_empty() => {
                return Err(ApiError::invalid("ticket_ids must name at least one ticket (or be left out)"));
            }
            Some(ids) => Some(
                ids.iter()
                    .map(|t| {
                        TicketId::parse(t).map_err(|_| ApiError::invalid(format!("{t:?} is not a ticket id")))
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            ),
        };
        // Its own task, like checkout: a disconnect must not cut a refund in half.
        let task_state = state.clone();
        let task_caller = caller.clone();
        let outcome = tokio::spawn(async move {
            crate::refunds::refund(
                &task_state,
                &task_caller,
                &id,
                tickets,
                boxoffice_engine::ReleaseReason::Refund,
            )
            .await
        })
        .await
        .map_err(|e| ApiError::internal(format!("refund task failed: {e}")))??;
        let dto = RefundDto::new(&outcome.order, outcome.refund.as_ref());
        Ok((StatusCode::OK, serde_json::to_vec(&dto).expect("refunds serialize")))
    })
    .await
}
