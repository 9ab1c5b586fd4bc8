//! Liveness, readiness and metrics. `/readyz` also checks each backend (store,
//! inventory, ticket stream) with one cheap round trip bounded by [`BACKEND_CHECK_TIMEOUT`];
//! the checks are made by one probe at a time and their result reused for
//! [`BACKEND_CHECK_REUSE`], so a flood of probes costs the backends nothing more.

use std::future::Future;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde_json::{Value, json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;

/// Longest a backend check may take; a slower backend counts as failed.
pub const BACKEND_CHECK_TIMEOUT: Duration = Duration::from_secs(1);
/// How long one round of backend checks answers every probe.
pub const BACKEND_CHECK_REUSE: Duration = Duration::from_millis(500);

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(healthz)).routes(routes!(readyz)).routes(routes!(metrics))
}

/// Answers as soon as the process serves.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "alive")))]
async fn healthz() -> impl IntoResponse {
    axum::Json(serde_json::json!({"status": "ok"}))
}

/// 200 once recovery (and demo seeding) are done and every backend answers; 503 with
/// `recovering` before, `degraded` when a backend fails its check. Each backend is
/// reported with its kind and whether it answered.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, description = "ready"),
              (status = 503, description = "recovering, or degraded: a backend failed its check")))]
async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let checks = state.backend_checks.current(&state).await;
    let healthy = checks.store.is_ok() && checks.inventory.is_ok() && checks.stream.is_ok();
    let status = match (state.is_ready(), healthy) {
        (false, _) => "recovering",
        (true, false) => "degraded",
        (true, true) => "ready",
    };
    let code = if status == "ready" { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let config = &state.config;
    let store_kind = if config.database_url.is_some() { "postgres" } else { "sqlite" };
    let inventory_kind = if config.redis_url.is_some() { "redis" } else { "memory" };
    let stream_kind = config.stream.kind();
    let body = json!({
        "status": status,
        "backends": {
            "store": report(store_kind, &checks.store),
            "inventory": report(inventory_kind, &checks.inventory),
            "stream": report(stream_kind, &checks.stream),
        },
    });
    (code, axum::Json(body))
}

/// The outcome of one round of backend checks.
#[derive(Debug, Clone)]
pub struct BackendChecks {
    pub store: Result<(), String>,
    pub inventory: Result<(), String>,
    pub stream: Result<(), String>,
}

/// The newest [`BackendChecks`] and when they were made.
#[derive(Default)]
pub struct BackendCheckCache(tokio::sync::Mutex<Option<(Instant, BackendChecks)>>);

impl BackendCheckCache {
    /// Checks made at most [`BACKEND_CHECK_REUSE`] ago, or a new round. The async lock is
    /// held across the checks on purpose: probes arriving meanwhile wait for this round
    /// (at most [`BACKEND_CHECK_TIMEOUT`]) instead of starting their own.
    pub async fn current(&self, state: &AppState) -> BackendChecks {
        let mut last = self.0.lock().await;
        if let Some((at, checks)) = last.as_ref()
            && at.elapsed() < BACKEND_CHECK_REUSE
        {
            return checks.clone();
        }
        let (store, inventory, stream) = tokio::join!(
            check(state.store.ping()),
            check(state.inventory.ping()),
            check(state.stream.ping())
        );
        for (name, result) in [("store", &store), ("inventory", &inventory), ("stream", &stream)] {
            let up = if result.is_ok() { 1.0 } else { 0.0 };
            metrics::gauge!("boxoffice_backend_up", "backend" => name).set(up);
        }
        let checks = BackendChecks { store, inventory, stream };
        *last = Some((Instant::now(), checks.clone()));
        checks
    }
}

async fn check<E: std::fmt::Display>(ping: impl Future<Output = Result<(), E>>) -> Result<(), String> {
    match tokio::time::timeout(BACKEND_CHECK_TIMEOUT, ping).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {} ms", BACKEND_CHECK_TIMEOUT.as_millis())),
    }
}

fn report(kind: &str, checked: &Result<(), String>) -> Value {
    match checked {
        Ok(()) => json!({"kind": kind, "ok": true}),
        Err(error) => json!({"kind": kind, "ok": false, "error": error}),
    }
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.metrics.render())
}
