//! `POST /v1/auth/token`: minting tokens under `--dev-auth`.

use axum::extract::State;
use axum::http::StatusCode;
use boxoffice_core::UserId;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::http::dto::{ErrorBody, TokenBody, TokenDto};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(mint_token))
}

/// Mints a token for any user and role. Only with `--dev-auth` (on with `--demo`).
#[utoipa::path(post, path = "/v1/auth/token", tag = "identity", request_body = TokenBody,
    responses((status = 200, body = TokenDto), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn mint_token(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<TokenBody>,
) -> Result<axum::Json<TokenDto>, ApiError> {
    if !state.config.dev_auth_enabled() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "token minting is off (the server runs without --dev-auth)",
        ));
    }
    let user = UserId::parse(&body.user).map_err(|e| ApiError::invalid(e.to_string()))?;
    if let Some(email) = &body.email {
        crate::http::validate_email(email)?;
    }
    Ok(axum::Json(TokenDto { token: state.auth.mint(&user, body.role, body.email) }))
}
