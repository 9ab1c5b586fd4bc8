//! Cross-cutting behaviour: the one error format (framework rejections included), tokens,
//! health, readiness, metrics and the OpenAPI document.

use std::collections::BTreeSet;

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{Raw, assert_error, send_raw, spawn, spawn_with};

const SECRET: &str = "a-test-secret-of-enough-length";

/// Asserts status, code, `{"error":{"code","message"}}` and a JSON content type.
#[track_caller]
fn assert_json_error(what: &str, r: &Raw, status: u16, code: &str) {
    assert_eq!(r.status.as_u16(), status, "{what}: {}", String::from_utf8_lossy(&r.body));
    let content_type = r.header("content-type").unwrap_or_default();
    assert!(content_type.starts_with("application/json"), "{what}: content type {content_type:?}");
    let body = r.json();
    assert_eq!(body["error"]["code"], code, "{what}: {body}");
    assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{what}: {body}");
    assert_eq!(body.as_object().unwrap().len(), 1, "{what}: only `error` at the top: {body}");
}

fn sign(claims: serde_json::Value, secret: &str) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

#[tokio::test]
async fn every_error_is_json_with_a_code_and_a_message_including_the_frameworks_own_rejections() {
    let app = spawn().await;
    let admin = app.admin().await;
    let fan = app.fan("alice").await;
    let event = app.on_sale_event(&admin, &[("A", 1, 10, "premium")]).await;
    let holds = app.url(&format!("/v1/events/{event}/holds"));
    let hold = app.hold_ok(&fan, &event, &["A-1-1"]).await;
    let c = &app.client;
    let cases: Vec<(&str, reqwest::RequestBuilder, u16, &str)> = vec![
        ("unknown route", c.get(app.url("/nope")), 404, "NOT_FOUND"),
        ("unknown API route", c.get(app.url("/v1/nope")), 404, "NOT_FOUND"),
        ("unknown nested route", c.get(app.url(&format!("/v1/events/{event}/nope"))), 404, "NOT_FOUND"),
        ("wrong method on a collection", c.delete(app.url("/v1/events")), 405, "METHOD_NOT_ALLOWED"),
        ("wrong method on holds", c.get(holds.clone()), 405, "METHOD_NOT_ALLOWED"),
        ("wrong method on a hold", c.put(app.url(&format!("/v1/holds/{hold}"))), 405, "METHOD_NOT_ALLOWED"),
        ("wrong method on healthz", c.post(app.url("/healthz")), 405, "METHOD_NOT_ALLOWED"),
        ("path segment not UTF-8", c.get(app.url("/v1/events/%FF")), 400, "INVALID_REQUEST"),
        ("path segment not UTF-8 on seats", c.get(app.url("/v1/events/%FF/seats")), 400, "INVALID_REQUEST"),
        ("hold id not UTF-8", c.get(app.url("/v1/holds/%FF")).bearer_auth(&fan), 400, "INVALID_REQUEST"),
        ("bad query", c.get(app.url("/v1/events?limit=1&limit=2")), 400, "INVALID_REQUEST"),
        ("bad limit", c.get(app.url("/v1/events?limit=0")), 400, "INVALID_REQUEST"),
        (
            "malformed JSON",
            c.post(holds.clone()).bearer_auth(&fan).header("content-type", "application/json").body("{]"),
            400,
            "MALFORMED_JSON",
        ),
        (
            "unknown field",
            c.post(holds.clone()).bearer_auth(&fan).json(&json!({"seats": ["A-1-2"], "x": 1})),
            400,
            "INVALID_REQUEST",
        ),
        (
            "body too large",
            c.post(holds.clone())
                .bearer_auth(&fan)
                .header("content-type", "application/json")
                .body(vec![b' '; 1024 * 1024 + 1]),
            413,
            "BODY_TOO_LARGE",
        ),
        (
            "not JSON",
            c.post(holds.clone()).bearer_auth(&fan).header("content-type", "text/plain").body("{}"),
            415,
            "UNSUPPORTED_MEDIA_TYPE",
        ),
        ("no token", c.post(holds.clone()).json(&json!({"seats": ["A-1-2"]})), 401, "UNAUTHENTICATED"),
        (
            "garbage token",
            c.post(holds.clone()).bearer_auth("x.y.z").json(&json!({"seats": ["A-1-2"]})),
            401,
            "INVALID_TOKEN",
        ),
        (
            "fan on an admin route",
            c.post(app.url("/v1/performers")).bearer_auth(&fan).json(&json!({"name": "P"})),
            403,
            "FORBIDDEN",
        ),
        ("unknown event", c.get(app.url("/v1/events/ev_777")), 404, "NOT_FOUND"),
        (
            "taken seat",
            c.post(holds.clone()).bearer_auth(&admin).json(&json!({"seats": ["A-1-1"]})),
            409,
            "SEATS_UNAVAILABLE",
        ),
        (
            "too many seats",
            c.post(holds.clone()).bearer_auth(&admin).json(&json!({"best_available": {"count": 9}})),
            422,
            "HOLD_LIMIT",
        ),
        (
            "no idempotency key",
            c.post(app.url(&format!("/v1/holds/{hold}/checkout")))
                .bearer_auth(&fan)
                .json(&json!({"payment": {"method": "card", "token": "tok_visa"}})),
            400,
            "IDEMPOTENCY_KEY_REQUIRED",
        ),
        (
            "declined",
            c.post(app.url(&format!("/v1/holds/{hold}/checkout")))
                .bearer_auth(&fan)
                .header("Idempotency-Key", "d")
                .json(&json!({"payment": {"method": "card", "token": "tok_declined"}})),
            402,
            "PAYMENT_DECLINED",
        ),
    ];
    for (what, request, status, code) in cases {
        let r = send_raw(request).await;
        assert_json_error(what, &r, status, code);
    }
    // 410 after a release.
    let (status, _) = app.delete(&format!("/v1/holds/{hold}"), Some(&fan)).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let r = send_raw(app.client.delete(app.url(&format!("/v1/holds/{hold}"))).bearer_auth(&fan)).await;
    assert_json_error("released twice", &r, 410, "HOLD_EXPIRED");
}

#[tokio::test]
async fn dev_auth_mints_tokens_the_api_accepts_for_each_role() {
    let app = spawn().await;
    let (status, body) = app.post("/v1/auth/token", None, json!({"user": "alice", "role": "fan"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let token = body["token"].as_str().unwrap();
    assert_eq!(token.split('.').count(), 3, "a JWT");
    let (status, page) = app.get("/v1/me/orders", Some(token)).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    for role in ["staff", "admin"] {
        let (status, body) = app
            .post("/v1/auth/token", None, json!({"user": "u1", "role": role, "email": "u1@example.com"}))
            .await;
        assert_eq!(status, StatusCode::OK, "{role}: {body}");
    }
    let (status, body) =
        app.post("/v1/auth/token", None, json!({"user": "alice", "role": "superuser"})).await;
    assert_error(status, &body, 400, "INVALID_REQUEST");
    let (status, body) = app.post("/v1/auth/token", None, json!({"role": "fan"})).await;
    assert_error(status, &body, 400, "INVALID_REQUEST");
    let (status, body) =
        app.post("/v1/auth/token", None, json!({"user": "alice", "role": "fan", "email": "nope"})).await;
    assert_error(status, &body, 400, "INVALID_REQUEST");
    let (status, body) = app.post("/v1/auth/token", None, json!({"user": "", "role": "fan"})).await;
    assert_error(status, &body, 400, "INVALID_REQUEST");
    let (status, body) =
        app.post("/v1/auth/token", None, json!({"user": "a", "role": "fan", "admin": true})).await;
    assert_error(status, &body, 400, "INVALID_REQUEST");
}

#[tokio::test]
async fn token_minting_is_404_without_dev_auth() {
    let app = spawn_with(|c| c.dev_auth = false).await;
    let (status, body) = app.post("/v1/auth/token", None, json!({"user": "alice", "role": "admin"})).await;
    assert_error(status, &body, 404, "NOT_FOUND");
}

#[tokio::test]
async fn expired_forged_or_incomplete_tokens_are_401_invalid_token() {
    let app = spawn_with(|c| c.jwt_secret = Some(SECRET.into())).await;
    let later = unix_now() + 3600;
    let good = sign(json!({"sub": "alice", "role": "fan", "exp": later}), SECRET);
    let (status, body) = app.get("/v1/me/orders", Some(&good)).await;
    assert_eq!(status, StatusCode::OK, "a token signed with the configured secret works: {body}");
    let admin = sign(json!({"sub": "root", "role": "admin", "exp": later}), SECRET);
    let (status, body) = app.post("/v1/performers", Some(&admin), json!({"name": "P"})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    let bad = [
        ("expired", sign(json!({"sub": "alice", "role": "fan", "exp": unix_now() - 5}), SECRET)),
        (
            "other secret",
            sign(json!({"sub": "alice", "role": "fan", "exp": later}), "another-secret-entirely"),
        ),
        ("unknown role", sign(json!({"sub": "alice", "role": "superuser", "exp": later}), SECRET)),
        ("no role", sign(json!({"sub": "alice", "exp": later}), SECRET)),
        ("no exp", sign(json!({"sub": "alice", "role": "fan"}), SECRET)),
        ("no sub", sign(json!({"role": "fan", "exp": later}), SECRET)),
        ("garbage", "garbage".to_owned()),
        ("truncated", good[..good.len() - 4].to_owned()),
    ];
    for (what, token) in bad {
        let r = send_raw(app.client.get(app.url("/v1/me/orders")).bearer_auth(&token)).await;
        assert_json_error(what, &r, 401, "INVALID_TOKEN");
    }
    let r =
        send_raw(app.client.get(app.url("/v1/me/orders")).header("Authorization", format!("Token {good}")))
            .await;
    assert_json_error("not a bearer token", &r, 401, "INVALID_TOKEN");
    let r = send_raw(app.client.get(app.url("/v1/me/orders"))).await;
    assert_json_error("no token", &r, 401, "UNAUTHENTICATED");
}

#[tokio::test]
async fn healthz_and_readyz_answer_200() {
    let app = spawn().await;
    for path in ["/healthz", "/readyz"] {
        let (status, body) = app.get(path, None).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
    }
}

#[tokio::test]
async fn metrics_count_holds_and_time_requests_by_route() {
    let app = spawn().await;
    let admin = app.admin().await;
    let fan = app.fan("alice").await;
    let event = app.on_sale_event(&admin, &[("A", 1, 10, "premium")]).await;
    app.hold_ok(&fan, &event, &["A-1-1"]).await;
    let r = send_raw(app.client.get(app.url("/metrics"))).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.header("content-type").unwrap().starts_with("text/plain"));
    let text = String::from_utf8(r.body).unwrap();
    assert!(text.contains("boxoffice_holds_total"), "{text}");
    assert!(text.contains("boxoffice_http_request_duration_seconds"), "{text}");
    assert!(
        text.contains("route=\"/v1/events/{event_id}/holds\""),
        "latency is labelled by route template: {text}"
    );
}

#[tokio::test]
async fn openapi_lists_exactly_the_routes_the_server_serves() {
    let app = spawn().await;
    let r = send_raw(app.client.get(app.url("/openapi.json"))).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.header("content-type").unwrap().starts_with("application/json"));
    let doc = r.json();
    assert!(doc["openapi"].is_string());
    let paths = doc["paths"].as_object().expect("paths");
    let listed: BTreeSet<&str> = paths.keys().map(String::as_str).collect();
    let served: BTreeSet<&str> = [
        "/v1/events",
        "/v1/events/{event_id}",
        "/v1/events/{event_id}/seats",
        "/v1/events/{event_id}/availability",
        "/v1/events/{event_id}/availability/stream",
        "/v1/events/{event_id}/allocations",
        "/v1/events/{event_id}/presale-codes",
        "/v1/events/{event_id}/waitlist",
        "/v1/events/{event_id}/waitlist/{waitlist_id}",
        "/v1/events/{event_id}/waitlist/{waitlist_id}/stream",
        "/v1/events/{event_id}/stats",
        "/v1/events/{event_id}/audit",
        "/v1/events/{event_id}/audit/verify",
        "/v1/admin/stream/replay",
        "/v1/payments/webhook",
        "/v1/webhooks",
        "/v1/webhooks/{webhook_id}",
        "/v1/webhooks/{webhook_id}/deliveries",
        "/v1/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver",
        "/v1/events/{event_id}/holds",
        "/v1/events/{event_id}/queue",
        "/v1/events/{event_id}/queue/challenge",
        "/v1/events/{event_id}/queue/{queue_id}",
        "/v1/events/{event_id}/queue/{queue_id}/stream",
        "/v1/holds/{hold_id}",
        "/v1/holds/{hold_id}/checkout",
        "/v1/orders/{order_id}",
        "/v1/orders/{order_id}/refund",
        "/v1/me/orders",
        "/v1/tickets/{ticket_id}",
        "/v1/tickets/{ticket_id}/qr.svg",
        "/v1/tickets/{ticket_id}/qr.png",
        "/v1/tickets/verify",
        "/v1/tickets/public-key",
        "/v1/tickets/{ticket_id}/live",
        "/v1/tickets/{ticket_id}/transfer",
        "/v1/me/tickets",
        "/v1/events/{event_id}/revocations",
        "/v1/venues",
        "/v1/venues/{venue_id}",
        "/v1/performers",
        "/v1/search",
        "/v1/auth/token",
        "/healthz",
        "/readyz",
        "/metrics",
    ]
    .into_iter()
    .collect();
    assert_eq!(listed, served);
    let methods =
        |path: &str| -> BTreeSet<String> { paths[path].as_object().unwrap().keys().cloned().collect() };
    assert_eq!(methods("/v1/events"), ["get", "post"].map(String::from).into());
    assert_eq!(methods("/v1/events/{event_id}"), ["get", "patch"].map(String::from).into());
    assert_eq!(methods("/v1/events/{event_id}/queue"), ["post"].map(String::from).into());
    assert_eq!(methods("/v1/holds/{hold_id}"), ["delete", "get"].map(String::from).into());
    assert_eq!(methods("/v1/events/{event_id}/holds"), ["post"].map(String::from).into());
    assert_eq!(methods("/v1/holds/{hold_id}/checkout"), ["post"].map(String::from).into());

    // Every listed route and method is served: none answers 404 (no route) or 405.
    for (path, ops) in paths {
        for method in ops.as_object().unwrap().keys() {
            let concrete = path
                .replace("{event_id}", "ev_1")
                .replace("{hold_id}", "ho_1_00000000000000000000000000000000")
                .replace("{order_id}", "or_00000000000000000000000000")
                .replace("{ticket_id}", "tk_00000000000000000000000000")
                .replace("{venue_id}", "1");
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let r = send_raw(app.client.request(method.clone(), app.url(&concrete))).await;
            assert_ne!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
            if r.status == StatusCode::NOT_FOUND {
                assert_ne!(r.json()["error"]["message"], "no such route", "{method} {path}");
            }
        }
    }
}
