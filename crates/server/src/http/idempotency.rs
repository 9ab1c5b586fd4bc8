//! `Idempotency-Key`: scoped to (user, route), bodies compared by SHA-256. Only final
//! answers (2xx, 402, 409, 410, 422) are stored and replayed; anything else frees the key
//! so that a retry runs again.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use boxoffice_core::UserId;
use boxoffice_store::{KeyClaim, KeyScope};
use sha2::{Digest, Sha256};

use crate::AppState;
use crate::error::ApiError;

/// Longest key accepted.
pub const MAX_KEY_CHARS: usize = 255;

pub fn key_from(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else { return Ok(None) };
    let key =
        value.to_str().ok().map(str::trim).filter(|k| !k.is_empty() && k.len() <= MAX_KEY_CHARS).ok_or_else(
            || {
                ApiError::invalid(format!(
                    "Idempotency-Key must be 1 to {MAX_KEY_CHARS} visible ASCII characters"
                ))
            },
        )?;
    Ok(Some(key.to_owned()))
}

fn is_final(status: StatusCode) -> bool {
    status.is_success() || matches!(status.as_u16(), 402 | 409 | 410 | 422)
}

/// A claimed key: the request runs, then its answer is recorded (or the key freed).
pub struct KeyGuard {
    state: AppState,
    user: UserId,
    route: String,
    key: String,
}

pub enum Claim {
    Run(KeyGuard),
    Replay(Response),
}

pub async fn claim(
    state: &AppState,
    user: &UserId,
    route: String,
    key: String,
    body: &[u8],
) -> Result<Claim, ApiError> {
    let hash: [u8; 32] = Sha256::digest(body).into();
    let scope = KeyScope { user, route: &route, key: &key };
    let now = boxoffice_engine::Clock::now_ms(&boxoffice_engine::SystemClock);
    match state.store.claim_key(scope, hash, now).await? {
        KeyClaim::Claimed => {
            Ok(Claim::Run(KeyGuard { state: state.clone(), user: user.clone(), route, key }))
        }
        KeyClaim::Replay { status, body } => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
            let mut response = (status, body).into_response();
            let headers = response.headers_mut();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
            Ok(Claim::Replay(response))
        }
        KeyClaim::Mismatch => Err(ApiError::unprocessable(
            "IDEMPOTENCY_MISMATCH",
            "this Idempotency-Key was used with another request body",
        )),
        KeyClaim::InProgress => {
            Err(ApiError::conflict("IN_PROGRESS", "a request with this Idempotency-Key is still running"))
        }
    }
}

impl KeyGuard {
    /// Records a final answer or frees the key.
    pub async fn finish(self, status: StatusCode, body: &[u8]) {
        let scope = KeyScope { user: &self.user, route: &self.route, key: &self.key };
        let result = if is_final(status) {
            self.state.store.finish_key(scope, status.as_u16(), body).await
        } else {
            self.state.store.release_key(scope).await
        };
        if let Err(e) = result {
            tracing::error!(error = %e, "cannot record an idempotency key");
        }
    }
}

/// Runs `work` under the request's key (when there is one) and answers.
pub async fn run_keyed<F>(
    state: &AppState,
    user: &UserId,
    route: String,
    key: Option<String>,
    body: &[u8],
    work: F,
) -> Response
where
    F: Future<Output = Result<(StatusCode, Vec<u8>), ApiError>>,
{
    let guard = match key {
        None => None,
        Some(key) => match claim(state, user, route, key, body).await {
            Ok(Claim::Run(guard)) => Some(guard),
            Ok(Claim::Replay(response)) => return response,
            Err(e) => return e.into_response(),
        },
    };
    let (status, body, retry_after) = match work.await {
        Ok((status, body)) => (status, body, None),
        Err(e) => (e.status, serde_json::to_vec(&e.body()).expect("errors serialize"), e.retry_after_s),
    };
    if let Some(guard) = guard {
        guard.finish(status, &body).await;
    }
    let mut response = json_response(status, body);
    // Retry-After (429, 503) is never replayed: those answers are not final.
    if let Some(seconds) = retry_after {
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

pub fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    let mut response = (status, body).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}
