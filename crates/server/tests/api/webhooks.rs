//! Webhooks for integrators: each test runs a receiving endpoint of its own (an axum
//! server on 127.0.0.1:0) that records what arrives and answers as the test scripts it.
//! Signatures are checked by recomputing the HMAC here; retries, ordering and
//! redelivery are read from what the receiver saw and from the delivery log.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode as AxumStatus};
use hmac::{Hmac, Mac};
use parking_lot::Mutex;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::sync::Semaphore;

use crate::helpers::{TestApp, assert_error, spawn, spawn_with};

const SECRET: &str = "whsec_test_0123456789abcdef";

/// One request the receiver got.
#[derive(Clone, Debug)]
struct Received {
    signature: String,
    body: Vec<u8>,
    json: Value,
    /// The status the receiver answered.
    answered: u16,
}

/// How the receiver answers the `n`th request (from 0) carrying `json`.
type Script = dyn Fn(usize, &Value) -> u16 + Send + Sync;

#[derive(Clone)]
struct ReceiverState {
    received: Arc<Mutex<Vec<Received>>>,
    script: Arc<Script>,
    /// When set, each request waits for a permit before it is answered.
    gate: Option<Arc<Semaphore>>,
}

struct Receiver {
    url: String,
    received: Arc<Mutex<Vec<Received>>>,
    gate: Option<Arc<Semaphore>>,
}

impl Receiver {
    fn received(&self) -> Vec<Received> {
        self.received.lock().clone()
    }

    /// Lets `n` more requests be answered (a gated receiver).
    fn release(&self, n: usize) {
        self.gate.as_ref().expect("a gated receiver").add_permits(n);
    }
}

async fn receive(State(state): State<ReceiverState>, headers: HeaderMap, body: Bytes) -> AxumStatus {
    if let Some(gate) = &state.gate {
        gate.acquire().await.expect("the gate stays open").forget();
    }
    let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let signature =
        headers.get("boxoffice-signature").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let mut received = state.received.lock();
    let answered = (state.script)(received.len(), &json);
    received.push(Received { signature, body: body.to_vec(), json, answered });
    AxumStatus::from_u16(answered).expect("a valid status")
}

/// Starts a receiver that answers as `script` says; `gated` holds every request until
/// [`Receiver::release`].
async fn receiver(gated: bool, script: impl Fn(usize, &Value) -> u16 + Send + Sync + 'static) -> Receiver {
    let received = Arc::new(Mutex::new(Vec::new()));
    let gate = gated.then(|| Arc::new(Semaphore::new(0)));
    let state = ReceiverState { received: received.clone(), script: Arc::new(script), gate: gate.clone() };
    let app = axum::Router::new().route("/hook", axum::routing::post(receive)).with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the receiver");
    let addr = listener.local_addr().expect("receiver address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    Receiver { url: format!("http://{addr}/hook"), received, gate }
}

/// An app whose retries come quickly (tests must not wait for the real schedule).
async fn spawn_fast_retries() -> TestApp {
    spawn_with(|config| {
        config.webhooks.webhook_retry_base_ms = 50;
        config.webhooks.webhook_retry_max_ms = 200;
    })
    .await
}

async fn register(app: &TestApp, admin: &str, url: &str, events: &[&str]) -> String {
    let (status, body) =
        app.post("/v1/webhooks", Some(admin), json!({"url": url, "secret": SECRET, "events": events})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["webhook_id"].as_str().expect("webhook id").to_owned()
}

/// Polls until `done` holds (bounded: a broken dispatcher fails the test, not hangs it).
async fn eventually<T>(what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    for _ in 0..1_500 {
        if let Some(value) = check().await {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("gave up waiting: {what}");
}

async fn deliveries(app: &TestApp, admin: &str, webhook: &str) -> Vec<Value> {
    let (status, page) = app.get(&format!("/v1/webhooks/{webhook}/deliveries"), Some(admin)).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    page["items"].as_array().expect("items").clone()
}

/// `t=<unix s>,v1=<hex>` checked against the body with the secret.
fn assert_signed(received: &Received) {
    let mut timestamp = None;
    let mut signature = None;
    for part in received.signature.split(',') {
        match part.split_once('=') {
            Some(("t", t)) => timestamp = Some(t.to_owned()),
            Some(("v1", v)) => signature = Some(v.to_owned()),
            _ => {}
        }
    }
    let timestamp = timestamp.expect("t= in the signature header");
    let t: i64 = timestamp.parse().expect("t is unix seconds");
    let now = chrono::Utc::now().timestamp();
    assert!((now - 300..=now + 5).contains(&t), "t={t} is the time of sending");
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(format!("{timestamp}.").as_bytes());
    mac.update(&received.body);
    let expected = hex::encode(mac.finalize().into_bytes());
    assert_eq!(signature.as_deref(), Some(expected.as_str()), "v1 is HMAC-SHA256(secret, t.body)");
}

#[tokio::test]
async fn a_checkout_and_a_scan_are_delivered_signed_to_the_subscribed_endpoint() {
    let app = spawn().await;
    let admin = app.admin().await;
    let alice = app.fan("alice").await;
    let staff = app.token("door", "staff").await;
    let hook = receiver(false, |_, _| 200).await;
    let other = receiver(false, |_, _| 200).await;
    let webhook = register(&app, &admin, &hook.url, &["order.created", "ticket.scanned"]).await;
    register(&app, &admin, &other.url, &["order.refunded"]).await;
    let event = app.on_sale_event(&admin, &[("A", 1, 10, "premium")]).await;
    let order = app.buy(&alice, &event, &["A-1-1"]).await;

    let created = eventually("order.created arrives", async || hook.received().first().cloned()).await;
    assert_signed(&created);
    let body = &created.json;
    assert_eq!(body["type"], "order.created");
    assert!(body["id"].as_str().is_some_and(|id| id.starts_with("evt_")), "{body}");
    assert!(chrono::DateTime::parse_from_rfc3339(body["created_at"].as_str().unwrap()).is_ok(), "{body}");
    assert_eq!(body["data"]["order_id"], order["order_id"]);
    assert_eq!(body["data"]["event_id"], event.as_str());

    // The door scan announces itself too.
    let ticket_id = order["tickets"][0]["ticket_id"].as_str().unwrap();
    let (_, ticket) = app.get(&format!("/v1/tickets/{ticket_id}"), Some(&alice)).await;
    let (status, verdict) =
        app.post("/v1/tickets/verify", Some(&staff), json!({"qr_payload": ticket["qr_payload"]})).await;
    assert_eq!((status, verdict["result"].as_str()), (StatusCode::OK, Some("valid")), "{verdict}");
    let scanned = eventually("ticket.scanned arrives", async || hook.received().get(1).cloned()).await;
    assert_signed(&scanned);
    assert_eq!(scanned.json["type"], "ticket.scanned");
    assert_eq!(scanned.json["data"]["ticket_id"], ticket_id);
    assert_ne!(scanned.json["id"], created.json["id"]);

    let log = eventually("the log shows both delivered", async || {
        let log = deliveries(&app, &admin, &webhook).await;
        log.iter().all(|d| d["status"] == "delivered").then_some(log)
    })
    .await;
    assert_eq!(log.len(), 2);
    assert_eq!(
        (log[0]["type"].as_str(), log[1]["type"].as_str()),
        (Some("ticket.scanned"), Some("order.created"))
    );
    assert_eq!((log[1]["attempts"].as_u64(), log[1]["last_status_code"].as_u64()), (Some(1), Some(200)));
    assert_eq!(log[1]["event_id"], created.json["id"]);
    assert!(other.received().is_empty(), "not subscribed to these types");

    // The secret is never shown back, only a hint.
    let (status, list) = app.get("/v1/webhooks", Some(&admin)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!list.to_string().contains(SECRET), "{list}");
    assert_eq!(list["items"][0]["secret_hint"], "...cdef");
    assert_eq!(list["items"][0]["events"], json!(["order.created", "ticket.scanned"]));
}

#[tokio::test]
async fn a_failing_endpoint_is_retried_until_it_accepts_and_the_log_counts_the_attempts() {
    let app = spawn_fast_retries().await;
    let admin = app.admin().await;
    let alice = app.fan("alice").await;
    // 500 twice, then 200.
    let hook = receiver(false, |n, _| if n < 2 { 500 } else { 200 }).await;
    let webhook = register(&app, &admin, &hook.url, &["order.created"]).await;
    let event = app.on_sale_event(&admin, &[("A", 1, 10, "premium")]).await;
    app.buy(&alice, &event, &["A-1-1"]).await;

    let log = eventually("delivered after the retries", async || {
        let log = deliveries(&app, &admin, &webhook).await;
        (log.first()?["status"] == "delivered").then_some(log)
    })
    .await;
    assert_eq!(log.len(), 1);
    assert_eq!((log[0]["attempts"].as_u64(), log[0]["last_status_code"].as_u64()), (Some(3), Some(200)));
    assert!(log[0]["last_error"].is_null() && log[0]["delivered_at"].is_string(), "{}", log[0]);
    let received = hook.received();
    assert_eq!(received.iter().map(|r| r.answered).collect::<Vec<_>>(), [500, 500, 200]);
    assert!(
        received.iter().all(|r| r.json["id"] == received[0].json["id"]),
        "one message id on every attempt"
    );
    received.iter().for_each(assert_signed);
}

#[tokio::test]
async fn a_delivery_is_failed_once_its_retry_window_closes() {
    let app = spawn_with(|config| {
        config.webhooks.webhook_retry_base_ms = 100;
        config.webhooks.webhook_retry_max_ms = 200;
        config.webhooks.webhook_retry_window_seconds = 1;
    })
    .await;
    let admin = app.admin().await;
    let alice = app.fan("alice").await;
    let hook = receiver(false, |_, _| 503).await;
    let webhook = register(&app, &admin, &hook.url, &["order.created"]).await;
    let event = app.on_sale_event(&admin, &[("A", 1, 10, "premium")]).await;
    app.buy(&alice, &event, &["A-1-1"]).await;

    let failed = eventually("given up", async || {
        let log = deliveries(&app, &admin, &webhook).await;
        log.first().filter(|d| d["status"] == "failed").cloned()
    })
    .await;
    assert_eq!(failed["last_status_code"], 503);
    assert_eq!(failed["last_error"], "the endpoint answered 503");
    assert!(failed["next_attempt_at"].is_null());
    let attempts = failed["attempts"].as_u64().unwrap();
    assert!(attempts >= 2, "retried before giving up: {failed}");
    assert_eq!(hook.received().len() as u64, attempts, "every attempt reached the endpoint");
}

#[tokio::test]
async fn deliveries_of_one_event_arrive_in_order_even_when_the_first_fails() {
    let app = spawn_fast_retries().await;
    let admin = app.admin().await;
    let alice = app.fan("alice").await;
    // Every request waits at the gate; the first one is refused.
    let hook = receiver(true, |n, _| if n == 0 { 500 } else { 200 }).await;
    let webhook = register(&app, &admin, &hook.url, &["order.created"]).await;
    let event = app.on_sale_event(&admin, &[("A", 1, 10, "premium")]).await;
    let first = app.buy(&alice, &event, &["A-1-1"]).await;
    // The first delivery is in flight (held at the gate) before the second order exists.
    eventually("the first delivery is attempted", async || {
        let log = deliveries(&app, &admin, &webhook).await;
        (log.first()?["attempts"] == 1).then_some(())
    })
    .await;
    let second = app.buy(&alice, &event, &["A-1-2"]).await;
    eventually("the second delivery is queued", async || {
        (deliveries(&app, &admin, &webhook).await.len() == 2).then_some(())
    })
    .await;
    // While the first is unanswered, the second is not attempted.
    let log = deliveries(&app, &admin, &webhook).await;
    assert_eq!(
        (log[0]["status"].as_str(), log[0]["attempts"].as_u64()),
        (Some("pending"), Some(0)),
        "{log:?}"
    );
    hook.release(10);

    eventually("both delivered", async || {
        let log = deliveries(&app, &admin, &webhook).await;
        log.iter().all(|d| d["status"] == "delivered").then_some(())
    })
    .await;
    let orders: Vec<(Value, u16)> =
        hook.received().iter().map(|r| (r.json["data"]["order_id"].clone(), r.answered)).collect();
    assert_eq!(
        orders,
        [
            (first["order_id"].clone(), 500),
            (first["order_id"].clone(), 200),
            (second["order_id"].clone(), 200)
        ],
        "the second order's message only after the first one's was accepted"
    );
}

#[tokio::test]
async fn a_redelivery_sends_a_delivered_message_again() {
    let app = spawn().await;
    let admin = app.admin().await;
    let alice = app.fan("alice").await;
    let hook = receiver(false, |_, _| 200).await;
    let webhook = register(&app, &admin, &hook.url, &["order.created"]).await;
    let event = app.on_sale_event(&admin, &[("A", 1, 10, "premium")]).await;
    app.buy(&alice, &event, &["A-1-1"]).await;
    let delivered = eventually("delivered", async || {
        deliveries(&app, &admin, &webhook).await.into_iter().find(|d| d["status"] == "delivered")
    })
    .await;
    let delivery = delivered["delivery_id"].as_str().unwrap();

    let path = format!("/v1/webhooks/{webhook}/deliveries/{delivery}/redeliver");
    let (status, queued) = app.post(&path, Some(&admin), json!({})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{queued}");
    assert_eq!(queued["status"], "pending");
    let received = eventually("sent again", async || {
        let received = hook.received();
        (received.len() == 2).then_some(received)
    })
    .await;
    assert_eq!(received[0].json["id"], received[1].json["id"], "the same message");
    assert_signed(&received[1]);
    let again = eventually("delivered again", async || {
        deliveries(&app, &admin, &webhook)
            .await
            .into_iter()
            .find(|d| d["status"] == "delivered" && d["attempts"] == 2)
    })
    .await;
    assert_eq!(again["delivery_id"], delivery);

    let (status, body) = app
        .post(&format!("/v1/webhooks/{webhook}/deliveries/whd_999999/redeliver"), Some(&admin), json!({}))
        .await;
    assert_error(status, &body, 404, "NOT_FOUND");
}

#[tokio::test]
async fn webhooks_are_for_admins_and_their_input_is_checked() {
    let app = spawn().await;
    let admin = app.admin().await;
    let fan = app.fan("alice").await;
    let good = json!({"url": "http://127.0.0.1:9/hook", "secret": SECRET, "events": ["order.created"]});

    let (status, body) = app.post("/v1/webhooks", Some(&fan), good.clone()).await;
    assert_error(status, &body, 403, "FORBIDDEN");
    let (status, body) = app.post("/v1/webhooks", None, good.clone()).await;
    assert_error(status, &body, 401, "UNAUTHENTICATED");
    let (status, body) = app.get("/v1/webhooks", Some(&fan)).await;
    assert_error(status, &body, 403, "FORBIDDEN");

    let with = |key: &str, value: Value| {
        let mut body = good.clone();
        body[key] = value;
        body
    };
    for (body, code) in [
        (with("events", json!(["order.shipped"])), "UNKNOWN_EVENT_TYPE"),
        (with("events", json!([])), "UNKNOWN_EVENT_TYPE"),
        (with("url", json!("ftp://example.com/hook")), "INVALID_URL"),
        (with("url", json!("not a url")), "INVALID_URL"),
        (with("secret", json!("short")), "INVALID_SECRET"),
        (with("secret", json!("x".repeat(257))), "INVALID_SECRET"),
        (with("extra", json!(1)), "INVALID_REQUEST"),
    ] {
        let (status, answer) = app.post("/v1/webhooks", Some(&admin), body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body} -> {answer}");
        if code != "INVALID_REQUEST" {
            assert_error(status, &answer, 400, code);
        }
    }

    let webhook = register(&app, &admin, "http://127.0.0.1:9/hook", &["order.created"]).await;
    let (status, body) = app.get(&format!("/v1/webhooks/{webhook}/deliveries"), Some(&fan)).await;
    assert_error(status, &body, 403, "FORBIDDEN");
    let (status, body) =
        app.post(&format!("/v1/webhooks/{webhook}/deliveries/whd_1/redeliver"), Some(&fan), json!({})).await;
    assert_error(status, &body, 403, "FORBIDDEN");
    for unknown in ["wh_999999", "junk", "wh_"] {
        let (status, body) = app.get(&format!("/v1/webhooks/{unknown}/deliveries"), Some(&admin)).await;
        assert_error(status, &body, 404, "NOT_FOUND");
    }
    let (status, body) = app.get(&format!("/v1/webhooks/{webhook}/deliveries?limit=0"), Some(&admin)).await;
    assert_error(status, &body, 400, "INVALID_REQUEST");

    let (status, _) = app.delete(&format!("/v1/webhooks/{webhook}"), Some(&admin)).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, list) = app.get("/v1/webhooks", Some(&admin)).await;
    assert_eq!(list["items"][0]["enabled"], false);
    let (status, body) = app.delete("/v1/webhooks/wh_999999", Some(&admin)).await;
    assert_error(status, &body, 404, "NOT_FOUND");

    // A deployment may forbid private addresses.
    let strict = spawn_with(|config| config.webhooks.webhook_forbid_private = true).await;
    let admin = strict.admin().await;
    for private in ["http://127.0.0.1:9/hook", "http://localhost/hook", "http://10.0.0.1/hook"] {
        let (status, body) = strict.post("/v1/webhooks", Some(&admin), with("url", json!(private))).await;
        assert_error(status, &body, 400, "INVALID_URL");
    }
}
