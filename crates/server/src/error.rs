//! The one HTTP error type: every failure becomes `{"error":{"code","message",...details}}`
//! with the status the API contract gives it.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use boxoffice_engine::InventoryError;
use boxoffice_store::StoreError;
use serde_json::{Map, Value, json};

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub details: Map<String, Value>,
    pub retry_after_s: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into(), details: Map::new(), retry_after_s: None }
    }

    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.details.insert(key.to_owned(), value.into());
        self
    }

    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after_s = Some(seconds);
        self
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::bad_request("INVALID_REQUEST", message)
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, "NOT_FOUND", format!("{what} not found"))
    }

    pub fn unprocessable(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }

    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, message)
    }

    pub fn unavailable(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, code, message).retry_after(1)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL", message)
    }

    pub fn body(&self) -> Value {
        let mut error = Map::new();
        error.insert("code".into(), Value::from(self.code));
        error.insert("message".into(), Value::from(self.message.clone()));
        error.extend(self.details.clone());
        json!({ "error": error })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::warn!(code = self.code, message = %self.message, "request failed");
        }
        let body = serde_json::to_vec(&self.body()).expect("a JSON value serializes");
        let mut response = (self.status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(seconds) = self.retry_after_s {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => ApiError::not_found("resource"),
            StoreError::BadCursor => ApiError::invalid("cursor is not valid for this list"),
            StoreError::EventCancelled(_) => ApiError::conflict("NOT_ON_SALE", "the event is cancelled"),
            other => {
                tracing::error!(error = %other, "store failure");
                ApiError::unavailable("STORE_UNAVAILABLE", "the order store is unavailable")
            }
        }
    }
}

/// The inventory's errors as the hold routes answer them. Routes with their own
/// meaning for an error (checkout, delete) map those cases before calling this.
impl From<InventoryError> for ApiError {
    fn from(e: InventoryError) -> Self {
        match e {
            InventoryError::UnknownEvent => ApiError::not_found("event"),
            InventoryError::UnknownHold => ApiError::not_found("hold"),
            InventoryError::BadSeat(_) => ApiError::not_found("seat"),
            InventoryError::DuplicateSeat => ApiError::invalid("a seat is named twice"),
            InventoryError::SeatsUnavailable(_) => {
                ApiError::conflict("SEATS_UNAVAILABLE", "some seats are not available")
            }
            InventoryError::NotEntitled(_) => ApiError::new(
                StatusCode::FORBIDDEN,
                "NOT_ENTITLED",
                "these seats are reserved for an allocation; a valid presale code or role is needed",
            ),
            InventoryError::NotEnoughSeats => ApiError::conflict(
                "NOT_ENOUGH_SEATS",
                "not enough seats are available together for that request",
            ),
            InventoryError::OrphanSeat(_) => ApiError::unprocessable(
                "ORPHAN_SEAT",
                "the hold would leave a single seat alone in its row; include it, or choose other seats",
            ),
            InventoryError::UserLimit { current, requested, limit } => ApiError::unprocessable(
                "HOLD_LIMIT",
                format!(
                    "you have {current} seats for this event; {requested} more would pass the limit of {limit} per user"
                ),
            )
            .with("limit", limit),
            InventoryError::HoldExpired => {
                ApiError::new(StatusCode::GONE, "HOLD_EXPIRED", "the hold has expired")
            }
            InventoryError::HoldReleased => {
                ApiError::new(StatusCode::GONE, "HOLD_EXPIRED", "the hold was released")
            }
            InventoryError::AlreadyConfirmed => {
                ApiError::conflict("ALREADY_CONFIRMED", "the hold is already bought")
            }
            InventoryError::HoldConfirming => {
                ApiError::conflict("HOLD_CONFIRMING", "the hold is being checked out")
            }
            InventoryError::NotPinned => {
                ApiError::conflict("CHECKOUT_IN_PROGRESS", "another checkout owns this hold")
            }
            InventoryError::EventLost => ApiError::unavailable(
                "INVENTORY_REBUILDING",
                "this event's seat map is being rebuilt after an inventory failure; retry shortly",
            )
            .retry_after(1),
            InventoryError::Journal(message) => {
                tracing::error!(%message, "hold journal failure");
                ApiError::unavailable("INVENTORY_UNAVAILABLE", "holds are unavailable right now")
            }
        }
    }
}
