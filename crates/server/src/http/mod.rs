//! The HTTP API: one module per resource, each exposing `router()`; this module joins
//! them, adds the cross-cutting layers (readiness, metrics, body limit, JSON errors for
//! the framework's own rejections) and serves the OpenAPI document built from the same
//! routes.

pub mod admin_stream;
pub mod allocations;
pub mod audit;
pub mod auth;
pub mod availability;
pub mod dto;
pub mod edge;
pub mod events;
pub mod guard;
pub mod health;
pub mod holds;
pub mod idempotency;
pub mod live;
pub mod metrics;
pub mod orders;
pub mod queue;
pub mod search;
pub mod stats;
pub mod tickets;
pub mod waitlist;
pub mod web;
pub mod webhook;
pub mod webhooks;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::get;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use crate::AppState;
use crate::error::ApiError;
use crate::extract::MAX_BODY_BYTES;

#[derive(OpenApi)]
#[openapi(
    info(title = "boxoffice", description = "Named-seat ticketing: catalog, holds, checkout, orders, live availability."),
    components(schemas(dto::ErrorBody)),
    modifiers(&BearerAuth),
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build(),
            ),
        );
    }
}

/// The OpenAPI document and the routes it describes, from one definition.
pub fn api() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(health::router())
        .merge(auth::router())
        .merge(events::router())
        .merge(search::router())
        .merge(availability::router())
        .merge(allocations::router())
        .merge(live::router())
        .merge(stats::router())
        .merge(admin_stream::router())
        .merge(audit::router())
        .merge(holds::router())
        .merge(orders::router())
        .merge(queue::router())
        .merge(tickets::router())
        .merge(waitlist::router())
        .merge(webhook::router())
        .merge(webhooks::router())
        .split_for_parts()
}

pub fn router(state: AppState) -> Router {
    let (routes, openapi) = api();
    let openapi = serde_json::to_vec(&openapi).expect("the OpenAPI document serializes");
    routes
        .route(
            "/openapi.json",
            get(move || async move { ([(axum::http::header::CONTENT_TYPE, "application/json")], openapi) }),
        )
        .route_layer(guard::GuardLayer::new(state.clone()))
        .route_layer(edge::EdgeLayer::new(state.clone()))
        .merge(web::router())
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "NOT_FOUND", "no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "METHOD_NOT_ALLOWED",
                "method not allowed on this route",
            )
        })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// Parses a `limit` query parameter: 1-100, default 20.
pub fn page_limit(limit: Option<&str>) -> Result<u32, ApiError> {
    match limit {
        None => Ok(20),
        Some(raw) => match raw.parse::<u32>() {
            Ok(n) if (1..=100).contains(&n) => Ok(n),
            _ => Err(ApiError::invalid("limit must be a whole number from 1 to 100")),
        },
    }
}

/// A plausible e-mail address: bounded, one `@`, something on both sides.
pub fn validate_email(email: &str) -> Result<(), ApiError> {
    let ok = email.len() <= 254
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && domain.contains('.') && !domain.contains('@')
        })
        && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    if ok { Ok(()) } else { Err(ApiError::invalid("email is not a valid address")) }
}
