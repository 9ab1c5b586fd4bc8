//! The one middleware on every matched route: refuses `/v1/` requests with 503 until
//! recovery has finished, times each request into a per-route histogram, and turns any
//! error the framework answered in plain text (e.g. a path that is not UTF-8) into the
//! API's JSON error.
//!
//! Hand-written rather than `from_fn`: it sits on the hot path, and this form costs one
//! allocation per request and no per-request label strings.

use std::cell::RefCell;
use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use parking_lot::RwLock;
use tower::{Layer, Service};

use crate::AppState;
use crate::error::ApiError;

#[derive(Clone)]
pub struct EdgeLayer {
    state: AppState,
}

impl EdgeLayer {
    pub fn new(state: AppState) -> Self {
        EdgeLayer { state }
    }
}

impl<S> Layer<S> for EdgeLayer {
    type Service = Edge<S>;
    fn layer(&self, inner: S) -> Edge<S> {
        Edge { inner, state: self.state.clone() }
    }
}

#[derive(Clone)]
pub struct Edge<S> {
    inner: S,
    state: AppState,
}

impl<S> Service<Request> for Edge<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        if !self.state.is_ready() && request.uri().path().starts_with("/v1/") {
            let refused = ApiError::unavailable("NOT_READY", "the server is starting up").into_response();
            return Box::pin(std::future::ready(Ok(refused)));
        }
        let start = Instant::now();
        let method = method_label(request.method());
        let route = request.extensions().get::<MatchedPath>().cloned();
        let future = self.inner.call(request);
        Box::pin(async move {
            let response = future.await?;
            let status = response.status();
            if let Some(route) = route {
                observe(method, route.as_str(), status.as_u16(), start.elapsed().as_secs_f64());
            }
            if status.as_u16() >= 400 && !is_json(&response) {
                return Ok(json_error(response).await);
            }
            Ok(response)
        })
    }
}

fn method_label(method: &axum::http::Method) -> &'static str {
    match *method {
        axum::http::Method::GET => "GET",
        axum::http::Method::POST => "POST",
        axum::http::Method::DELETE => "DELETE",
        axum::http::Method::PATCH => "PATCH",
        axum::http::Method::PUT => "PUT",
        axum::http::Method::HEAD => "HEAD",
        _ => "OTHER",
    }
}

/// Histogram handles by `"METHOD route status"`, made once each.
static HISTOGRAMS: RwLock<Option<HashMap<Box<str>, metrics::Histogram>>> = RwLock::new(None);

thread_local! {
    static KEY: RefCell<String> = RefCell::new(String::with_capacity(96));
}

fn observe(method: &'static str, route: &str, status: u16, seconds: f64) {
    KEY.with_borrow_mut(|key| {
        use std::fmt::Write;
        key.clear();
        let _ = write!(key, "{method} {route} {status}");
        if let Some(histogram) = HISTOGRAMS.read().as_ref().and_then(|m| m.get(key.as_str())) {
            histogram.record(seconds);
            return;
        }
        let histogram = metrics::histogram!(
            "boxoffice_http_request_duration_seconds",
            "method" => method,
            "route" => route.to_owned(),
            "status" => status.to_string(),
        );
        histogram.record(seconds);
        HISTOGRAMS.write().get_or_insert_with(HashMap::new).insert(key.as_str().into(), histogram);
    });
}

fn is_json(response: &Response) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
}

/// The framework's own plain-text rejections, in the API's error format (status and
/// headers kept).
async fn json_error(response: Response) -> Response {
    let status = response.status();
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 4096)
        .await
        .ok()
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .filter(|t| !t.is_empty());
    let code = match status {
        StatusCode::BAD_REQUEST => "INVALID_REQUEST",
        StatusCode::NOT_FOUND => "NOT_FOUND",
        StatusCode::METHOD_NOT_ALLOWED => "METHOD_NOT_ALLOWED",
        StatusCode::PAYLOAD_TOO_LARGE => "BODY_TOO_LARGE",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "UNSUPPORTED_MEDIA_TYPE",
        s if s.is_server_error() => "INTERNAL",
        _ => "REQUEST_FAILED",
    };
    let message = text.unwrap_or_else(|| status.canonical_reason().unwrap_or("request failed").to_owned());
    let mut json = ApiError::new(status, code, message).into_response();
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            json.headers_mut().entry(name).or_insert_with(|| value.clone());
        }
    }
    json
}
