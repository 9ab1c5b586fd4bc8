//! The Stripe adapter against a local mock that speaks Stripe's request and response
//! shapes (form-encoded PaymentIntents calls, `Idempotency-Key` replay and mismatch,
//! `{"error":{...}}` bodies, a Search API that can lag), and the payments webhook:
//! signatures, duplicates, and pending checkouts completed or failed by Stripe's events.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode as AxumStatus, Uri};
use axum::response::{IntoResponse, Response};
use boxoffice_core::{Currency, HoldId, Money};
use boxoffice_server::payments::{LedgerState, PaymentError, PaymentGateway, PaymentRequest};
use boxoffice_server::stripe::{STRIPE_API_VERSION, StripeGateway};
use boxoffice_server::{Application, Config, StartError};
use boxoffice_store::AttemptState;
use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::Sha256;

use crate::helpers::{TestApp, assert_error, bit, send, spawn, spawn_with};

const SECRET_KEY: &str = "sk_test_mock";
const WEBHOOK_SECRET: &str = "whsec_mock";

// ---- the mock ----

/// One request the mock received.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    idempotency_key: Option<String>,
    stripe_version: Option<String>,
    form: Vec<(String, String)>,
}

impl Seen {
    fn field(&self, name: &str) -> Option<&str> {
        self.form.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// A request's form and the answer it got.
type Kept = (Vec<(String, String)>, u16, Value);

#[derive(Default)]
struct Books {
    intents: BTreeMap<String, Value>,
    /// Idempotency key -> the first request's answer, as Stripe keeps them.
    replies: HashMap<String, Kept>,
    refunds: Vec<Value>,
    /// Keys the Search API does not show yet (its index lags).
    unindexed: HashSet<String>,
    seen: Vec<Seen>,
    next_id: u64,
}

#[derive(Clone)]
struct MockStripe {
    url: String,
    books: Arc<Mutex<Books>>,
}

impl MockStripe {
    async fn start() -> MockStripe {
        let books = Arc::new(Mutex::new(Books::default()));
        let app = axum::Router::new().fallback(handle).with_state(books.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        MockStripe { url, books }
    }

    fn seen(&self) -> Vec<Seen> {
        self.books.lock().unwrap().seen.clone()
    }

    fn seen_at(&self, method: &str, path: &str) -> Vec<Seen> {
        self.seen().into_iter().filter(|s| s.method == method && s.path == path).collect()
    }

    fn intent(&self, id: &str) -> Value {
        self.books.lock().unwrap().intents[id].clone()
    }

    /// The intents whose metadata names `key`.
    fn intents_of(&self, key: &str) -> Vec<Value> {
        let books = self.books.lock().unwrap();
        books.intents.values().filter(|i| i["metadata"]["boxoffice_key"] == key).cloned().collect()
    }

    fn set_status(&self, id: &str, status: &str) {
        self.books.lock().unwrap().intents.get_mut(id).unwrap()["status"] = json!(status);
    }

    fn hide_from_search(&self, key: &str) {
        self.books.lock().unwrap().unindexed.insert(key.to_owned());
    }

    fn refunds(&self) -> Vec<Value> {
        self.books.lock().unwrap().refunds.clone()
    }
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).expect("percent escape"));
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).expect("utf-8")
}

fn parse_form(raw: &str) -> Vec<(String, String)> {
    raw.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn stripe_error(
    status: u16,
    kind: &str,
    code: Option<&str>,
    message: &str,
    intent: Option<&Value>,
) -> (u16, Value) {
    let mut error = json!({"type": kind, "message": message});
    if let Some(code) = code {
        error["code"] = json!(code);
    }
    if let Some(intent) = intent {
        error["payment_intent"] = intent.clone();
    }
    (status, json!({ "error": error }))
}

async fn handle(
    State(books): State<Arc<Mutex<Books>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let form = parse_form(std::str::from_utf8(&body).unwrap());
    let path = uri.path().to_owned();
    let seen = Seen {
        method: method.to_string(),
        path: path.clone(),
        idempotency_key: header("idempotency-key"),
        stripe_version: header("stripe-version"),
        form: form.clone(),
    };
    books.lock().unwrap().seen.push(seen.clone());
    if header("authorization").as_deref() != Some(&format!("Bearer {SECRET_KEY}")) {
        let (status, body) =
            stripe_error(401, "invalid_request_error", None, "Invalid API Key provided", None);
        return reply(status, body);
    }
    if seen.field("payment_method") == Some("pm_card_slow") {
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    let (status, body) = answer(&books, &method, &path, uri.query().unwrap_or(""), &seen);
    reply(status, body)
}

fn reply(status: u16, body: Value) -> Response {
    (AxumStatus::from_u16(status).unwrap(), axum::Json(body)).into_response()
}

fn answer(books: &Mutex<Books>, method: &Method, path: &str, query: &str, seen: &Seen) -> (u16, Value) {
    let mut books = books.lock().unwrap();
    if *method == Method::POST
        && let Some(key) = &seen.idempotency_key
        && let Some((form, status, body)) = books.replies.get(key)
    {
        return if *form == seen.form {
            (*status, body.clone())
        } else {
            stripe_error(
                400,
                "idempotency_error",
                None,
                "Keys for idempotent requests can only be used with the same parameters they were first used with.",
                None,
            )
        };
    }
    let (status, body) = execute(&mut books, method, path, query, seen);
    // Stripe keeps the result of every request that ran, but not of its own failures.
    if *method == Method::POST
        && status < 500
        && let Some(key) = &seen.idempotency_key
    {
        books.replies.insert(key.clone(), (seen.form.clone(), status, body.clone()));
    }
    (status, body)
}

fn execute(books: &mut Books, method: &Method, path: &str, query: &str, seen: &Seen) -> (u16, Value) {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (method.as_str(), segments.as_slice()) {
        ("POST", ["v1", "payment_intents"]) => {
            let token = seen.field("payment_method").unwrap_or("");
            if token == "pm_card_unavailable" {
                return stripe_error(500, "api_error", None, "An unknown error occurred", None);
            }
            books.next_id += 1;
            let id = format!("pi_mock{}", books.next_id);
            let metadata: serde_json::Map<String, Value> = seen
                .form
                .iter()
                .filter_map(|(k, v)| {
                    k.strip_prefix("metadata[")?.strip_suffix(']').map(|k| (k.to_owned(), json!(v)))
                })
                .collect();
            let mut intent = json!({
                "id": id, "object": "payment_intent",
                "amount": seen.field("amount").unwrap().parse::<i64>().unwrap(),
                "currency": seen.field("currency").unwrap(),
                "capture_method": seen.field("capture_method").unwrap_or("automatic"),
                "metadata": metadata, "last_payment_error": null,
                "status": "requires_payment_method",
            });
            if seen.field("confirm") == Some("true") {
                intent["status"] = json!(match token {
                    "pm_card_visa" | "pm_card_slow" => "requires_capture",
                    "pm_card_authenticationRequired" => "requires_action",
                    _ => "requires_payment_method",
                });
            }
            let declined =
                intent["status"] == "requires_payment_method" && seen.field("confirm") == Some("true");
            if declined {
                intent["last_payment_error"] = json!({"type": "card_error", "code": "card_declined", "decline_code": "generic_decline",
                           "message": "Your card was declined."});
            }
            books.intents.insert(id, intent.clone());
            if declined {
                let (status, mut body) = stripe_error(
                    402,
                    "card_error",
                    Some("card_declined"),
                    "Your card was declined.",
                    Some(&intent),
                );
                body["error"]["decline_code"] = json!("generic_decline");
                return (status, body);
            }
            (200, intent)
        }
        ("GET", ["v1", "payment_intents", "search"]) => {
            let query = parse_form(query);
            let text = &query.iter().find(|(k, _)| k == "query").expect("a search query").1;
            let prefix = "metadata['boxoffice_key']:'";
            let key = text.strip_prefix(prefix).and_then(|k| k.strip_suffix('\'')).expect("a metadata query");
            let data: Vec<Value> = if books.unindexed.contains(key) {
                vec![]
            } else {
                books.intents.values().filter(|i| i["metadata"]["boxoffice_key"] == key).cloned().collect()
            };
            (200, json!({"object": "search_result", "data": data, "has_more": false}))
        }
        ("GET", ["v1", "payment_intents", id]) => match books.intents.get(*id) {
            Some(intent) => (200, intent.clone()),
            None => {
                stripe_error(404, "invalid_request_error", Some("resource_missing"), "No such intent", None)
            }
        },
        ("POST", ["v1", "payment_intents", id, action]) => {
            let Some(intent) = books.intents.get_mut(*id) else {
                return stripe_error(
                    404,
                    "invalid_request_error",
                    Some("resource_missing"),
                    "No such intent",
                    None,
                );
            };
            let status = intent["status"].as_str().unwrap().to_owned();
            let allowed = match *action {
                "capture" => status == "requires_capture",
                "cancel" => !matches!(status.as_str(), "succeeded" | "canceled"),
                _ => false,
            };
            if !allowed {
                let message = format!("This PaymentIntent's status is {status}");
                let intent = intent.clone();
                return stripe_error(
                    400,
                    "invalid_request_error",
                    Some("payment_intent_unexpected_state"),
                    &message,
                    Some(&intent),
                );
            }
            intent["status"] = json!(if *action == "capture" { "succeeded" } else { "canceled" });
            (200, intent.clone())
        }
        ("POST", ["v1", "refunds"]) => {
            let intent_id = seen.field("payment_intent").unwrap();
            let amount: i64 = seen.field("amount").unwrap().parse().unwrap();
            let Some(intent) = books.intents.get(intent_id) else {
                return stripe_error(
                    404,
                    "invalid_request_error",
                    Some("resource_missing"),
                    "No such intent",
                    None,
                );
            };
            let refunded: i64 = books
                .refunds
                .iter()
                .filter(|r| r["payment_intent"] == intent_id)
                .map(|r| r["amount"].as_i64().unwrap())
                .sum();
            if intent["status"] != "succeeded" || refunded + amount > intent["amount"].as_i64().unwrap() {
                return stripe_error(
                    400,
                    "invalid_request_error",
                    Some("amount_too_large"),
                    "Refund refused",
                    None,
                );
            }
            let refund = json!({"id": format!("re_mock{}", books.refunds.len() + 1), "object": "refund",
                                "payment_intent": intent_id, "amount": amount, "status": "succeeded"});
            books.refunds.push(refund.clone());
            (200, refund)
        }
        _ => stripe_error(404, "invalid_request_error", None, "Unrecognized request URL", None),
    }
}

// ---- the gateway against the mock ----

fn gateway(mock: &MockStripe) -> StripeGateway {
    StripeGateway::new(&mock.url, SECRET_KEY, Duration::from_secs(1)).expect("a gateway")
}

fn request(key: &str, token: &str, amount: i64) -> PaymentRequest {
    PaymentRequest {
        idempotency_key: key.into(),
        amount: Money::new(amount, Currency::USD),
        token: token.into(),
    }
}

#[tokio::test]
async fn authorize_creates_a_confirmed_manual_capture_intent_under_the_attempts_key() {
    let mock = MockStripe::start().await;
    let stripe = gateway(&mock);
    let auth = stripe.authorize(&request("pa_a1", "pm_card_visa", 7500)).await.expect("authorized");
    assert!(auth.id.starts_with("pi_"), "the authorization is the intent: {auth:?}");

    let created = mock.seen_at("POST", "/v1/payment_intents");
    assert_eq!(created.len(), 1);
    let call = &created[0];
    assert_eq!(call.idempotency_key.as_deref(), Some("pa_a1"), "the attempt's key is the Idempotency-Key");
    assert_eq!(call.stripe_version.as_deref(), Some(STRIPE_API_VERSION));
    assert_eq!(call.field("amount"), Some("7500"));
    assert_eq!(call.field("currency"), Some("usd"));
    assert_eq!(call.field("payment_method"), Some("pm_card_visa"));
    assert_eq!(call.field("confirm"), Some("true"));
    assert_eq!(call.field("capture_method"), Some("manual"));
    assert_eq!(call.field("metadata[boxoffice_key]"), Some("pa_a1"));
    assert_eq!(mock.intent(&auth.id)["status"], "requires_capture");
    assert_eq!(stripe.retrieve("pa_a1").await.unwrap(), Some(LedgerState::Authorized));

    // A retry with the same key is Stripe's replay: the same intent, nothing new.
    let again = stripe.authorize(&request("pa_a1", "pm_card_visa", 7500)).await.expect("replayed");
    assert_eq!(again, auth);
    assert_eq!(mock.intents_of("pa_a1").len(), 1);
}

#[tokio::test]
async fn a_card_error_is_a_decline_that_names_stripes_code_and_retrieve_reports_it() {
    let mock = MockStripe::start().await;
    let stripe = gateway(&mock);
    let declined = stripe.authorize(&request("pa_d1", "pm_card_chargeDeclined", 5000)).await;
    let Err(PaymentError::Declined(reason)) = declined else { panic!("a decline: {declined:?}") };
    assert!(reason.contains("declined") && reason.contains("generic_decline"), "{reason}");
    // A restarted node (no memory of the key) finds it by search.
    assert_eq!(gateway(&mock).retrieve("pa_d1").await.unwrap(), Some(LedgerState::Declined));
    assert_eq!(gateway(&mock).retrieve("pa_never").await.unwrap(), None);
}

#[tokio::test]
async fn capture_void_and_refund_act_on_the_intent_and_are_safe_to_repeat() {
    let mock = MockStripe::start().await;
    let stripe = gateway(&mock);
    let auth = stripe.authorize(&request("pa_c1", "pm_card_visa", 5000)).await.unwrap();
    stripe.capture(&auth).await.expect("captured");
    assert_eq!(mock.intent(&auth.id)["status"], "succeeded");
    stripe.capture(&auth).await.expect("capturing again is done already");
    assert_eq!(stripe.retrieve("pa_c1").await.unwrap(), Some(LedgerState::Captured));
    let void = stripe.void("pa_c1").await;
    assert!(
        matches!(void, Err(PaymentError::Declined(_))),
        "a captured payment is refunded, not voided: {void:?}"
    );

    // Refunds: the refund key is the Idempotency-Key, so a resent refund pays back once.
    let restarted = gateway(&mock);
    restarted.refund("refund:pa_c1", "pa_c1", Money::new(2000, Currency::USD)).await.expect("refunded");
    restarted.refund("refund:pa_c1", "pa_c1", Money::new(2000, Currency::USD)).await.expect("replayed");
    let refunds = mock.seen_at("POST", "/v1/refunds");
    assert_eq!(refunds.len(), 2);
    assert!(refunds.iter().all(|r| r.idempotency_key.as_deref() == Some("refund:pa_c1")));
    assert_eq!(refunds[0].field("payment_intent"), Some(auth.id.as_str()));
    assert_eq!(refunds[0].field("amount"), Some("2000"));
    assert_eq!(mock.refunds().len(), 1, "one refund at Stripe");
    let too_much = restarted.refund("refund:pa_c1:2", "pa_c1", Money::new(3500, Currency::USD)).await;
    assert!(matches!(too_much, Err(PaymentError::Declined(_))), "{too_much:?}");

    // Void = cancel; a second void is done already.
    let auth = stripe.authorize(&request("pa_v1", "pm_card_visa", 5000)).await.unwrap();
    gateway(&mock).void("pa_v1").await.expect("voided");
    assert_eq!(mock.intent(&auth.id)["status"], "canceled");
    gateway(&mock).void("pa_v1").await.expect("voided again");
    assert_eq!(stripe.retrieve("pa_v1").await.unwrap(), Some(LedgerState::Voided));
    assert_eq!(mock.seen_at("POST", &format!("/v1/payment_intents/{}/cancel", auth.id)).len(), 1);
}

#[tokio::test]
async fn voiding_a_key_stripe_never_saw_burns_it_so_a_late_authorization_is_refused() {
    let mock = MockStripe::start().await;
    let stripe = gateway(&mock);
    stripe.void("pa_late").await.expect("burnt");
    let placeholders = mock.intents_of("pa_late");
    assert_eq!(placeholders.len(), 1);
    assert_eq!(placeholders[0]["status"], "canceled", "the placeholder is never confirmed, and cancelled");
    let late = stripe.authorize(&request("pa_late", "pm_card_visa", 5000)).await;
    assert!(matches!(late, Err(PaymentError::Declined(_))), "{late:?}");
    assert_eq!(mock.intents_of("pa_late").len(), 1, "no payment was created with the burnt key");
    assert_eq!(stripe.retrieve("pa_late").await.unwrap(), Some(LedgerState::Voided));
}

#[tokio::test]
async fn a_key_used_at_stripe_but_not_yet_searchable_is_not_burnt_and_its_void_waits() {
    let mock = MockStripe::start().await;
    gateway(&mock).authorize(&request("pa_lag", "pm_card_visa", 5000)).await.unwrap();
    mock.hide_from_search("pa_lag");
    // A node that never saw the answer (a crash mid-call) cannot find the intent yet.
    let restarted = gateway(&mock);
    assert_eq!(restarted.retrieve("pa_lag").await.unwrap(), None);
    let void = restarted.void("pa_lag").await;
    assert!(matches!(void, Err(PaymentError::Unavailable(_))), "the reconciler retries later: {void:?}");
    assert_eq!(mock.intents_of("pa_lag")[0]["status"], "requires_capture", "nothing cancelled blindly");
    // Once indexed, the void cancels the real authorization.
    mock.books.lock().unwrap().unindexed.clear();
    restarted.void("pa_lag").await.expect("voided");
    assert_eq!(mock.intents_of("pa_lag")[0]["status"], "canceled");
}

#[tokio::test]
async fn server_errors_timeouts_and_a_bad_key_are_unavailable_and_3ds_is_pending() {
    let mock = MockStripe::start().await;
    let stripe = gateway(&mock);
    let down = stripe.authorize(&request("pa_u1", "pm_card_unavailable", 5000)).await;
    assert!(matches!(down, Err(PaymentError::Unavailable(_))), "{down:?}");
    let slow = stripe.authorize(&request("pa_u2", "pm_card_slow", 5000)).await;
    assert!(matches!(&slow, Err(PaymentError::Unavailable(m)) if m.contains("in time")), "{slow:?}");
    let wrong_key = StripeGateway::new(&mock.url, "sk_test_wrong", Duration::from_secs(1)).unwrap();
    let refused = wrong_key.authorize(&request("pa_u3", "pm_card_visa", 5000)).await;
    assert!(matches!(refused, Err(PaymentError::Unavailable(_))), "{refused:?}");
    let pending = stripe.authorize(&request("pa_p1", "pm_card_authenticationRequired", 5000)).await;
    let Err(PaymentError::Pending(intent)) = pending else { panic!("pending: {pending:?}") };
    assert_eq!(mock.intent(&intent)["status"], "requires_action");
    assert_eq!(stripe.retrieve("pa_p1").await.unwrap(), Some(LedgerState::Pending));
}

// ---- the server with Stripe, and the webhook ----

async fn stripe_app(mock: &MockStripe) -> TestApp {
    let url = mock.url.clone();
    spawn_with(move |c| {
        c.payment_gateway = "stripe".into();
        c.stripe_secret_key = Some(SECRET_KEY.into());
        c.stripe_base_url = url;
        c.stripe_webhook_secret = Some(WEBHOOK_SECRET.into());
        c.payment_timeout = 2;
    })
    .await
}

fn now_s() -> i64 {
    chrono::Utc::now().timestamp()
}

fn signature(secret: &str, t: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

fn stripe_event(id: &str, kind: &str, intent: &Value) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "id": id, "object": "event", "type": kind, "created": now_s(), "livemode": false,
        "data": {"object": intent}
    }))
    .unwrap()
}

async fn deliver_with(app: &TestApp, body: &[u8], header: Option<String>) -> (StatusCode, Value) {
    let mut req = app
        .client
        .post(app.url("/v1/payments/webhook"))
        .header("content-type", "application/json")
        .body(body.to_vec());
    if let Some(header) = header {
        req = req.header("Stripe-Signature", header);
    }
    send(req).await
}

/// Delivers an event signed as Stripe signs it.
async fn deliver(app: &TestApp, body: &[u8]) -> (StatusCode, Value) {
    let t = now_s();
    deliver_with(app, body, Some(format!("t={t},v1={}", signature(WEBHOOK_SECRET, t, body)))).await
}

/// A checkout whose payment Stripe decides later: answers 202 with the attempt.
async fn pending_checkout(app: &TestApp, token: &str, hold: &str) -> String {
    let (status, body) =
        app.checkout(token, hold, "pm_card_authenticationRequired", &format!("k-{hold}")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["status"], "pending_payment");
    body["attempt_id"].as_str().expect("attempt id").to_owned()
}

#[tokio::test]
async fn a_checkout_with_stripe_authorizes_commits_and_captures_and_its_webhook_changes_nothing() {
    let mock = MockStripe::start().await;
    let app = stripe_app(&mock).await;
    let admin = app.admin().await;
    let alice = app.fan("alice").await;
    let event = app.on_sale_event(&admin, &[("A", 1, 10, "premium")]).await;
    let hold = app.hold_ok(&alice, &event, &["A-1-1"]).await;
    let (status, order) = app.checkout(&alice, &hold, "pm_card_visa", "k1").await;
    assert_eq!(status, StatusCode::CREATED, "{order}");
    let attempt = &app.state.store.attempts_for_hold(&HoldId::parse(&hold).unwrap()).await.unwrap()[0];
    assert_eq!((attempt.gateway.as_str(), attempt.state), ("stripe", AttemptState::Captured));
    let intent = attempt.authorization_id.clone().expect("the intent id is recorded");
    assert_eq!(mock.intent(&intent)["status"], "succeeded");
    assert_eq!(
        mock.seen_at("POST", "/v1/payment_intents")[0].idempotency_key.as_deref(),
        Some(attempt.id.as_str())
    );

    // Stripe's event about it: this checkout was never handed to the webhook.
    let body = stripe_event("evt_sync", "payment_intent.amount_capturable_updated", &mock.intent(&intent));
    let (status, answer) = deliver(&app, &body).await;
    assert_eq!((status, answer["outcome"].as_str()), (StatusCode::OK, Some("not_pending")), "{answer}");

    let hold2 = app.hold_ok(&alice, &event, &["A-1-5"]).await;
    let (status, body) = app.checkout(&alice, &hold2, "pm_card_chargeDeclined", "k2").await;
    assert_error(status, &body, 402, "PAYMENT_DECLINED");
    assert!(body["error"]["message"].as_str().unwrap().contains("declined"), "{body}");
}

#[tokio::test]
async fn the_webhook_completes_a_pending_checkout_once_and_the_seats_are_sold() {
    let mock = MockStripe::start().await;
    let app = stripe_app(&mock).await;
    let admin = app.admin().await;
    let alice = app.fan("alice").await;
    let event = app.on_sale_event(&admin, &[("A", 1, 10, "premium")]).await;
    let hold = app.hold_ok(&alice, &event, &["A-1-1", "A-1-2"]).await;
    let attempt = pending_checkout(&app, &alice, &hold).await;

    let recorded = app.state.store.attempt(&attempt).await.unwrap();
    assert_eq!(recorded.state, AttemptState::Unknown, "the outcome is Stripe's to tell");
    let intent = recorded.authorization_id.clone().expect("the intent id is recorded");
    let (_, read) = app.get(&format!("/v1/holds/{hold}"), Some(&alice)).await;
    assert_eq!(read["status"], "confirming", "the pin stays while Stripe decides");
    assert!(app.state.store.order_for_hold(&HoldId::parse(&hold).unwrap()).await.unwrap().is_none());

    // The buyer authenticates; Stripe says the amount is capturable.
    mock.set_status(&intent, "requires_capture");
    let body = stripe_event("evt_ok", "payment_intent.amount_capturable_updated", &mock.intent(&intent));
    let (status, answer) = deliver(&app, &body).await;
    assert_eq!((status, answer["outcome"].as_str()), (StatusCode::OK, Some("completed")), "{answer}");

    let order =
        app.state.store.order_for_hold(&HoldId::parse(&hold).unwrap()).await.unwrap().expect("an order");
    assert_eq!(order.tickets.len(), 2);
    assert_eq!(order.email.as_deref(), Some("alice@example.com"), "the checkout's email is kept for it");
    assert_eq!(order.payment_attempt.as_deref(), Some(attempt.as_str()));
    let (status, read) = app.get(&format!("/v1/orders/{}", order.id), Some(&alice)).await;
    assert_eq!((status, read["status"].as_str()), (StatusCode::OK, Some("confirmed")), "{read}");
    let (_, read) = app.get(&format!("/v1/holds/{hold}"), Some(&alice)).await;
    assert_eq!(read["status"], "confirmed");
    let (bitmap, _) = app.bitmap(&event).await;
    assert!(!bit(&bitmap, 0) && !bit(&bitmap, 1), "the seats are sold");
    let sold: Vec<u32> =
        app.state.store.sold_seats(order.event).await.unwrap().iter().map(|s| s.seat_index).collect();
    assert_eq!(sold, [0, 1]);
    assert_eq!(app.state.store.attempt(&attempt).await.unwrap().state, AttemptState::Captured);
    assert_eq!(mock.intent(&intent)["status"], "succeeded");

    // The same event again (Stripe delivers at least once): acknowledged, nothing done.
    let captures = mock.seen_at("POST", &format!("/v1/payment_intents/{intent}/capture")).len();
    let (status, answer) = deliver(&app, &body).await;
    assert_eq!((status, answer["outcome"].as_str()), (StatusCode::OK, Some("duplicate")), "{answer}");
    assert_eq!(mock.seen_at("POST", &format!("/v1/payment_intents/{intent}/capture")).len(), captures);
    // Stripe's later `succeeded` event finds the checkout settled.
    let body = stripe_event("evt_succeeded", "payment_intent.succeeded", &mock.intent(&intent));
    let (status, answer) = deliver(&app, &body).await;
    assert_eq!((status, answer["outcome"].as_str()), (StatusCode::OK, Some("settled")), "{answer}");
    let (_, page) = app.get("/v1/me/orders", Some(&alice)).await;
    assert_eq!(page["items"].as_array().unwrap().len(), 1, "one order: {page}");
}

#[tokio::test]
async fn a_failed_payment_event_declines_the_attempt_and_gives_the_hold_back() {
    let mock = MockStripe::start().await;
    let app = stripe_app(&mock).await;
    let admin = app.admin().await;
    let alice = app.fan("alice").await;
    let event = app.on_sale_event(&admin, &[("A", 1, 10, "premium")]).await;
    let hold = app.hold_ok(&alice, &event, &["A-1-3"]).await;
    let attempt = pending_checkout(&app, &alice, &hold).await;
    let intent = app.state.store.attempt(&attempt).await.unwrap().authorization_id.unwrap();

    mock.set_status(&intent, "requires_payment_method");
    let body = stripe_event("evt_fail", "payment_intent.payment_failed", &mock.intent(&intent));
    let (status, answer) = deliver(&app, &body).await;
    assert_eq!((status, answer["outcome"].as_str()), (StatusCode::OK, Some("failed")), "{answer}");
    let after = app.state.store.attempt(&attempt).await.unwrap();
    assert_eq!((after.state, after.order), (AttemptState::Declined, None));
    let (_, read) = app.get(&format!("/v1/holds/{hold}"), Some(&alice)).await;
    assert_eq!(read["status"], "held", "unpinned: the buyer may pay again");
    let (bitmap, _) = app.bitmap(&event).await;
    assert!(!bit(&bitmap, 2), "the seat stays held for its buyer");

    // A late `amount_capturable_updated` for the failed attempt commits nothing.
    let body = stripe_event("evt_late", "payment_intent.amount_capturable_updated", &mock.intent(&intent));
    let (_, answer) = deliver(&app, &body).await;
    assert_eq!(answer["outcome"], "settled", "{answer}");
    assert!(app.state.store.order_for_hold(&HoldId::parse(&hold).unwrap()).await.unwrap().is_none());

    let (status, order) = app.checkout(&alice, &hold, "pm_card_visa", "k-again").await;
    assert_eq!(status, StatusCode::CREATED, "{order}");
}

#[tokio::test]
async fn bad_or_stale_signatures_are_refused_and_change_nothing() {
    let mock = MockStripe::start().await;
    let app = stripe_app(&mock).await;
    let admin = app.admin().await;
    let alice = app.fan("alice").await;
    let event = app.on_sale_event(&admin, &[("A", 1, 10, "premium")]).await;
    let hold = app.hold_ok(&alice, &event, &["A-1-1"]).await;
    let attempt = pending_checkout(&app, &alice, &hold).await;
    let intent = app.state.store.attempt(&attempt).await.unwrap().authorization_id.unwrap();
    mock.set_status(&intent, "requires_capture");
    let body = stripe_event("evt_1", "payment_intent.amount_capturable_updated", &mock.intent(&intent));

    let t = now_s();
    let forged = format!("t={t},v1={}", signature("whsec_someone_else", t, &body));
    let (status, answer) = deliver_with(&app, &body, Some(forged)).await;
    assert_error(status, &answer, 400, "INVALID_SIGNATURE");
    let mut tampered = body.clone();
    tampered.extend_from_slice(b" ");
    let signed_other = format!("t={t},v1={}", signature(WEBHOOK_SECRET, t, &body));
    let (status, answer) = deliver_with(&app, &tampered, Some(signed_other)).await;
    assert_error(status, &answer, 400, "INVALID_SIGNATURE");
    let (status, answer) = deliver_with(&app, &body, None).await;
    assert_error(status, &answer, 400, "INVALID_SIGNATURE");
    let old = t - 301;
    let stale = format!("t={old},v1={}", signature(WEBHOOK_SECRET, old, &body));
    let (status, answer) = deliver_with(&app, &body, Some(stale)).await;
    assert_error(status, &answer, 400, "STALE_SIGNATURE");

    assert_eq!(app.state.store.attempt(&attempt).await.unwrap().state, AttemptState::Unknown, "nothing done");
    assert!(app.state.store.order_for_hold(&HoldId::parse(&hold).unwrap()).await.unwrap().is_none());

    // The same event, properly signed (with a second, rolled secret's v1 beside it), is
    // handled: the refusals did not mark it as seen.
    let rolled =
        format!("t={t},v1={},v1={}", signature("whsec_old", t, &body), signature(WEBHOOK_SECRET, t, &body));
    let (status, answer) = deliver_with(&app, &body, Some(rolled)).await;
    assert_eq!((status, answer["outcome"].as_str()), (StatusCode::OK, Some("completed")), "{answer}");
}

#[tokio::test]
async fn unknown_events_are_acknowledged_oversized_bodies_refused_and_no_secret_means_no_webhook() {
    let mock = MockStripe::start().await;
    let app = stripe_app(&mock).await;
    let body = stripe_event("evt_other", "customer.created", &json!({"id": "cus_1", "object": "customer"}));
    let (status, answer) = deliver(&app, &body).await;
    assert_eq!((status, answer["outcome"].as_str()), (StatusCode::OK, Some("ignored")), "{answer}");
    let huge = vec![b' '; 1024 * 1024 + 1];
    let (status, answer) = deliver(&app, &huge).await;
    assert_error(status, &answer, 413, "BODY_TOO_LARGE");
    let (status, answer) = deliver(&app, b"not json").await;
    assert_error(status, &answer, 400, "INVALID_REQUEST");

    let simulated = spawn().await;
    let (status, answer) = deliver(&simulated, &body).await;
    assert_error(status, &answer, 404, "WEBHOOK_NOT_CONFIGURED");
}

#[tokio::test]
async fn choosing_stripe_without_a_secret_key_fails_start_up_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::for_tests(dir.path().to_path_buf());
    config.payment_gateway = "stripe".into();
    let error = Application::build(config).await.err().expect("start-up refuses");
    assert!(matches!(error, StartError::Config(_)), "{error}");
    assert!(error.to_string().contains("--stripe-secret-key"), "{error}");
}
