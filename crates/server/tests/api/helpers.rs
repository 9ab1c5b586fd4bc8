//! A running app per test, and a client that speaks its API.

use std::net::SocketAddr;

use boxoffice_server::{AppState, Application, Config};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::sync::oneshot;

pub struct TestApp {
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    pub data_dir: tempfile::TempDir,
    /// The app's shared state, for tests that drive workers or plant state directly.
    pub state: AppState,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

/// Starts an app with a fresh data dir; `configure` may change the config.
pub async fn spawn_with(configure: impl FnOnce(&mut Config)) -> TestApp {
    let data_dir = tempfile::tempdir().expect("temp dir");
    spawn_in(data_dir, configure).await
}

pub async fn spawn() -> TestApp {
    spawn_with(|_| {}).await
}

/// Starts an app on an existing data dir (e.g. to test a restart).
pub async fn spawn_in(data_dir: tempfile::TempDir, configure: impl FnOnce(&mut Config)) -> TestApp {
    let clock = std::sync::Arc::new(boxoffice_engine::SystemClock);
    spawn_in_with_queue_clock(data_dir, clock, configure).await
}

/// Starts an app whose waiting room runs on `clock` (tests that move its time).
pub async fn spawn_in_with_queue_clock(
    data_dir: tempfile::TempDir,
    clock: std::sync::Arc<dyn boxoffice_engine::Clock>,
    configure: impl FnOnce(&mut Config),
) -> TestApp {
    let mut config = Config::for_tests(data_dir.path().to_path_buf());
    configure(&mut config);
    let app = Application::build_with_queue_clock(config, clock).await.expect("app builds");
    let addr = app.local_addr();
    let state = app.state().clone();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(app.run(async move {
        let _ = stopped.await;
    }));
    let test_app = TestApp {
        addr,
        client: reqwest::Client::builder().pool_max_idle_per_host(64).build().expect("client"),
        data_dir,
        state,
        stop: Some(stop),
        task: Some(task),
    };
    test_app.wait_ready().await;
    test_app
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    async fn wait_ready(&self) {
        for _ in 0..500 {
            if let Ok(r) = self.client.get(self.url("/readyz")).send().await
                && r.status() == StatusCode::OK
            {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        panic!("app did not become ready");
    }

    /// Stops the app gracefully and returns its data dir.
    pub async fn stop(mut self) -> tempfile::TempDir {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("app task").expect("app ran");
        }
        let dir = tempfile::tempdir().expect("temp dir");
        std::mem::replace(&mut self.data_dir, dir)
    }

    pub async fn token(&self, user: &str, role: &str) -> String {
        let r = self
            .client
            .post(self.url("/v1/auth/token"))
            .json(&json!({"user": user, "role": role, "email": format!("{user}@example.com")}))
            .send()
            .await
            .expect("token request");
        assert_eq!(r.status(), StatusCode::OK);
        r.json::<Value>().await.expect("json")["token"].as_str().expect("token").to_owned()
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> (StatusCode, Value) {
        let mut req = self.client.get(self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        send(req).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
        let mut req = self.client.post(self.url(path)).json(&body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        send(req).await
    }

    pub async fn delete(&self, path: &str, token: Option<&str>) -> (StatusCode, Value) {
        let mut req = self.client.delete(self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        send(req).await
    }

    /// Creates a venue of `sections` (name, rows, seats per row, tier) with tiers
    /// premium/standard, and an event there on sale now; returns the event id.
    pub async fn on_sale_event(&self, admin: &str, sections: &[(&str, u32, u32, &str)]) -> String {
        let sections: Vec<Value> = sections
            .iter()
            .map(|(name, rows, per_row, tier)| {
                json!({"name": name, "rows": rows, "seats_per_row": per_row, "tier": tier})
            })
            .collect();
        let (status, venue) = self
            .post(
                "/v1/venues",
                Some(admin),
                json!({"name": "Test Hall", "city": "Testville", "lat": 10.0, "lon": 20.0,
                       "tiers": ["premium", "standard"], "sections": sections}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{venue}");
        let now = chrono::Utc::now();
        let (status, event) = self
            .post(
                "/v1/events",
                Some(admin),
                json!({
                    "name": "Test Show",
                    "venue_id": venue["id"],
                    "category": "concert",
                    "starts_at": (now + chrono::Duration::days(30)).to_rfc3339(),
                    "onsale_at": (now - chrono::Duration::hours(1)).to_rfc3339(),
                    "prices": {"premium": {"amount": 5000, "currency": "USD"},
                               "standard": {"amount": 2500, "currency": "USD"}},
                    // Tests of other rules hold any seats; `orphan_rule.rs` tests the rule.
                    "orphan_rule": false
                }),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{event}");
        event["id"].as_str().expect("event id").to_owned()
    }

    /// Holds seats by label; returns status and body.
    pub async fn hold(&self, token: &str, event: &str, seats: &[&str]) -> (StatusCode, Value) {
        self.post(&format!("/v1/events/{event}/holds"), Some(token), json!({"seats": seats})).await
    }

    /// Pays for a hold with a test card token under an idempotency key.
    pub async fn checkout(&self, token: &str, hold: &str, card: &str, key: &str) -> (StatusCode, Value) {
        send(
            self.client
                .post(self.url(&format!("/v1/holds/{hold}/checkout")))
                .bearer_auth(token)
                .header("Idempotency-Key", key)
                .json(&json!({"payment": {"method": "card", "token": card}})),
        )
        .await
    }

    /// The availability bitmap (binary form) and its version.
    pub async fn bitmap(&self, event: &str) -> (Vec<u8>, u64) {
        let r = self
            .client
            .get(self.url(&format!("/v1/events/{event}/availability")))
            .send()
            .await
            .expect("availability");
        assert_eq!(r.status(), StatusCode::OK);
        let version = r.headers()["seat-map-version"].to_str().unwrap().parse().unwrap();
        (r.bytes().await.expect("bytes").to_vec(), version)
    }
}

pub fn bit(bitmap: &[u8], index: u32) -> bool {
    bitmap[(index / 8) as usize] & (1 << (index % 8)) != 0
}

pub async fn send(req: reqwest::RequestBuilder) -> (StatusCode, Value) {
    let r = req.send().await.expect("request sent");
    let status = r.status();
    let bytes = r.bytes().await.expect("body");
    let value =
        if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap_or(Value::Null) };
    (status, value)
}

/// Asserts the API's error shape and code.
#[track_caller]
pub fn assert_error(status: StatusCode, body: &Value, expected_status: u16, code: &str) {
    assert_eq!(status.as_u16(), expected_status, "body: {body}");
    assert_eq!(body["error"]["code"], code, "body: {body}");
    assert!(body["error"]["message"].is_string(), "body: {body}");
}

// ---- Helpers for the catalog, holds, availability, checkout and errors tests ----

/// A response with its headers and raw body.
pub struct Raw {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
}

impl Raw {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// Sends a request and keeps status, headers and body.
pub async fn send_raw(req: reqwest::RequestBuilder) -> Raw {
    let r = req.send().await.expect("request sent");
    let status = r.status();
    let headers = r.headers().clone();
    let body = r.bytes().await.expect("body").to_vec();
    Raw { status, headers, body }
}

/// An RFC 3339 UTC time `offset` from now, with a `Z` (safe in a query string).
pub fn time_from_now(offset: chrono::Duration) -> String {
    (chrono::Utc::now() + offset).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

impl TestApp {
    pub async fn admin(&self) -> String {
        self.token("admin", "admin").await
    }

    pub async fn fan(&self, user: &str) -> String {
        self.token(user, "fan").await
    }

    /// POST with an `Idempotency-Key`.
    pub async fn post_keyed(&self, path: &str, token: &str, key: &str, body: Value) -> (StatusCode, Value) {
        send(self.client.post(self.url(path)).bearer_auth(token).header("Idempotency-Key", key).json(&body))
            .await
    }

    /// Creates a venue with tiers premium/standard and the given sections; returns its id.
    pub async fn venue(&self, admin: &str, city: &str, sections: Value) -> String {
        let (status, venue) = self
            .post(
                "/v1/venues",
                Some(admin),
                json!({"name": "Hall", "city": city, "lat": 1.0, "lon": 2.0,
                       "tiers": ["premium", "standard"], "sections": sections}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{venue}");
        venue["id"].as_str().expect("venue id").to_owned()
    }

    /// Creates an event at a venue with tiers premium/standard; returns status and body.
    pub async fn event_at(
        &self,
        admin: &str,
        venue_id: &str,
        category: &str,
        starts_at: &str,
        onsale_at: &str,
    ) -> (StatusCode, Value) {
        self.post(
            "/v1/events",
            Some(admin),
            json!({
                "name": "Show", "venue_id": venue_id, "category": category,
                "starts_at": starts_at, "onsale_at": onsale_at,
                "prices": {"premium": {"amount": 5000, "currency": "USD"},
                           "standard": {"amount": 2500, "currency": "USD"}},
                // Tests of other rules hold any seats; `orphan_rule.rs` tests the rule.
                "orphan_rule": false
            }),
        )
        .await
    }

    /// Holds seats and asserts 201; returns the hold id.
    pub async fn hold_ok(&self, token: &str, event: &str, seats: &[&str]) -> String {
        let (status, hold) = self.hold(token, event, seats).await;
        assert_eq!(status, StatusCode::CREATED, "{hold}");
        hold["hold_id"].as_str().expect("hold id").to_owned()
    }

    /// Holds seats and buys them with `tok_visa`; returns the order.
    pub async fn buy(&self, token: &str, event: &str, seats: &[&str]) -> Value {
        let hold = self.hold_ok(token, event, seats).await;
        let (status, order) = self.checkout(token, &hold, "tok_visa", &format!("buy-{hold}")).await;
        assert_eq!(status, StatusCode::CREATED, "{order}");
        order
    }
}
