//! Crash and restart: the real `boxoffice` binary as a child process, killed with
//! SIGKILL or stopped with SIGTERM, then started again on the same data dir.
//!
//! What a restart must keep: orders (the order store is the truth of a sale), sold seats,
//! and unexpired holds with their ids (the hold journal); what it must drop: holds whose
//! time ran out while the server was down, and holds released before the crash.
//! Recovered-away holds (expired while down, released, bought) are unknown to the new
//! process: `GET /v1/holds/{id}` answers `404` for them (the tests accept `404` or the
//! matching status, and report which one they saw).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{bit, send};

pub(crate) const LISTENING: &str = "boxoffice listening on http://";

/// A `boxoffice serve` child process; killed (SIGKILL) when dropped, so that a failing
/// test leaves no server behind.
pub(crate) struct Server {
    pub(crate) child: Child,
    pub(crate) addr: SocketAddr,
    pub(crate) client: reqwest::Client,
    pub(crate) logs: Arc<Mutex<String>>,
}

pub(crate) fn command(data_dir: &Path, extra: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_boxoffice"));
    cmd.arg("serve")
        .args(["--addr", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .args(["--dev-auth", "--payment-latency-ms", "0", "--log", "info"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("BOXOFFICE_") {
            cmd.env_remove(name);
        }
    }
    cmd
}

/// Copies a child's output into `logs` until it closes; `on_line` sees each line.
pub(crate) fn drain(
    out: impl Read + Send + 'static,
    logs: Arc<Mutex<String>>,
    mut on_line: impl FnMut(&str) + Send + 'static,
) {
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            on_line(&line);
            let mut logs = logs.lock().unwrap();
            logs.push_str(&line);
            logs.push('\n');
        }
    });
}

/// Waits for a child to exit, up to `limit`; `None` if it is still running.
pub(crate) async fn wait_exit(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

impl Server {
    /// Starts a server on `data_dir` and waits until it is ready.
    pub(crate) async fn start(data_dir: &Path, extra: &[&str]) -> Server {
        let mut child = command(data_dir, extra).spawn().expect("boxoffice starts");
        let logs = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = tokio::sync::oneshot::channel::<SocketAddr>();
        let mut tx = Some(tx);
        drain(child.stdout.take().expect("stdout"), logs.clone(), move |line| {
            if let Some(at) = line.find(LISTENING) {
                let addr = line[at + LISTENING.len()..].trim().parse().expect("listening address");
                if let Some(tx) = tx.take() {
                    let _ = tx.send(addr);
                }
            }
        });
        drain(child.stderr.take().expect("stderr"), logs.clone(), |_| {});
        let addr = match tokio::time::timeout(Duration::from_secs(30), rx).await {
            Ok(Ok(addr)) => addr,
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("boxoffice did not say where it listens; output:\n{}", logs.lock().unwrap());
            }
        };
        let server = Server { child, addr, client: reqwest::Client::new(), logs };
        server.wait_ready().await;
        server
    }

    pub(crate) async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(r) = self.client.get(self.url("/readyz")).send().await
                && r.status() == StatusCode::OK
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("boxoffice did not become ready; output:\n{}", self.logs());
    }

    pub(crate) fn logs(&self) -> String {
        self.logs.lock().unwrap().clone()
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// SIGKILL: no shutdown code runs.
    pub(crate) fn kill9(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reaped");
    }

    /// SIGTERM, then waits for the graceful exit.
    async fn terminate(mut self) -> (ExitStatus, String) {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill -TERM runs");
        assert!(sent.success(), "kill -TERM failed");
        let Some(status) = wait_exit(&mut self.child, Duration::from_secs(20)).await else {
            panic!("boxoffice did not stop within 20 s of SIGTERM; output:\n{}", self.logs());
        };
        // The output threads end with the process; give them a moment to copy the tail.
        tokio::time::sleep(Duration::from_millis(100)).await;
        (status, self.logs())
    }

    pub(crate) async fn token(&self, user: &str, role: &str) -> String {
        let (status, body) = send(
            self.client
                .post(self.url("/v1/auth/token"))
                .json(&json!({"user": user, "role": role, "email": format!("{user}@example.com")})),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["token"].as_str().expect("token").to_owned()
    }

    pub(crate) async fn get(&self, path: &str, token: &str) -> (StatusCode, Value) {
        send(self.client.get(self.url(path)).bearer_auth(token)).await
    }

    pub(crate) async fn post(&self, path: &str, token: &str, body: Value) -> (StatusCode, Value) {
        send(self.client.post(self.url(path)).bearer_auth(token).json(&body)).await
    }

    async fn delete(&self, path: &str, token: &str) -> (StatusCode, Value) {
        send(self.client.delete(self.url(path)).bearer_auth(token)).await
    }

    pub(crate) async fn hold(&self, token: &str, event: &str, seats: &[&str]) -> Value {
        let (status, hold) =
            self.post(&format!("/v1/events/{event}/holds"), token, json!({"seats": seats})).await;
        assert_eq!(status, StatusCode::CREATED, "hold {seats:?}: {hold}");
        hold
    }

    pub(crate) async fn checkout(
        &self,
        token: &str,
        hold: &Value,
        card: &str,
        key: &str,
    ) -> (StatusCode, Value) {
        let hold_id = hold["hold_id"].as_str().expect("hold id");
        send(
            self.client
                .post(self.url(&format!("/v1/holds/{hold_id}/checkout")))
                .bearer_auth(token)
                .header("Idempotency-Key", key)
                .json(&json!({"payment": {"method": "card", "token": card}})),
        )
        .await
    }

    /// Venue with one section A of `rows` x `per_row` seats, and an event on sale now.
    pub(crate) async fn on_sale_event(&self, admin: &str, rows: u32, per_row: u32) -> String {
        let (status, venue) = self
            .post(
                "/v1/venues",
                admin,
                json!({"name": "Crash Hall", "city": "Testville", "lat": 1.0, "lon": 2.0,
                       "tiers": ["premium", "standard"],
                       "sections": [{"name": "A", "rows": rows, "seats_per_row": per_row, "tier": "premium"}]}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{venue}");
        let now = chrono::Utc::now();
        let (status, event) = self
            .post(
                "/v1/events",
                admin,
                json!({"name": "Crash Show", "venue_id": venue["id"], "category": "concert",
                       "starts_at": (now + chrono::Duration::days(30)).to_rfc3339(),
                       "onsale_at": (now - chrono::Duration::hours(1)).to_rfc3339(),
                       "prices": {"premium": {"amount": 5000, "currency": "USD"},
                                  "standard": {"amount": 2500, "currency": "USD"}}}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{event}");
        event["id"].as_str().expect("event id").to_owned()
    }

    /// The event's unavailable seats, by label, from the public bitmap.
    pub(crate) async fn unavailable(&self, event: &str) -> BTreeSet<String> {
        let r = self.client.get(self.url(&format!("/v1/events/{event}/availability"))).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let bitmap = r.bytes().await.unwrap();
        let (status, seats) = send(self.client.get(self.url(&format!("/v1/events/{event}/seats")))).await;
        assert_eq!(status, StatusCode::OK, "{seats}");
        seats["seats"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| !bit(&bitmap, s["index"].as_u64().unwrap() as u32))
            .map(|s| s["label"].as_str().unwrap().to_owned())
            .collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn labels(v: &Value) -> BTreeSet<String> {
    v["seats"].as_array().expect("seats").iter().map(|s| s["label"].as_str().unwrap().to_owned()).collect()
}

fn expires_at(hold: &Value) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(hold["expires_at"].as_str().expect("expires_at")).unwrap().to_utc()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// Asserts that a hold the restarted server should have forgotten is gone: `404`, or a
/// final status among `allowed`. Returns what it saw, for the report.
async fn assert_gone(server: &Server, token: &str, hold: &Value, allowed: &[&str]) -> String {
    let id = hold["hold_id"].as_str().unwrap();
    let (status, body) = server.get(&format!("/v1/holds/{id}"), token).await;
    match status {
        StatusCode::NOT_FOUND => "404".into(),
        StatusCode::OK => {
            let s = body["status"].as_str().unwrap_or_default();
            assert!(allowed.contains(&s), "hold {id} should be gone ({allowed:?}) but is {body}");
            s.to_owned()
        }
        other => panic!("hold {id}: unexpected {other}: {body}"),
    }
}

/// Asserts that a hold is live after a restart, with its id, seats and expiry.
async fn assert_held(server: &Server, token: &str, hold: &Value) {
    let id = hold["hold_id"].as_str().unwrap();
    let (status, body) = server.get(&format!("/v1/holds/{id}"), token).await;
    assert_eq!(status, StatusCode::OK, "hold {id} survives the restart: {body}\n{}", server.logs());
    assert_eq!(body["status"], "held", "{body}");
    assert_eq!(body["hold_id"], id);
    assert_eq!(labels(&body), labels(hold));
    assert_eq!(expires_at(&body), expires_at(hold), "the expiry survives too");
}

/// Asserts an order and its buyer's list after a restart.
async fn assert_order(server: &Server, token: &str, order: &Value) {
    let id = order["order_id"].as_str().unwrap();
    let (status, body) = server.get(&format!("/v1/orders/{id}"), token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "confirmed");
    assert_eq!(labels(&body), labels(order));
    assert_eq!(body["tickets"], order["tickets"]);
    let (status, mine) = server.get("/v1/me/orders", token).await;
    assert_eq!(status, StatusCode::OK, "{mine}");
    let items = mine["items"].as_array().expect("items");
    assert!(items.iter().any(|o| o["order_id"] == id), "{id} in the buyer's orders: {mine}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_keeps_orders_and_unexpired_holds_and_drops_expired_ones() {
    const TTL: i64 = 10;
    let dir = tempfile::tempdir().expect("temp dir");
    let ttl = TTL.to_string();
    let flags = ["--hold-ttl", ttl.as_str()];
    let server = Server::start(dir.path(), &flags).await;
    let admin = server.token("admin", "admin").await;
    let [alice, bob, carol, dave, erin, frank] = {
        let mut t = Vec::new();
        for user in ["alice", "bob", "carol", "dave", "erin", "frank"] {
            t.push(server.token(user, "fan").await);
        }
        <[String; 6]>::try_from(t).unwrap()
    };
    let event = server.on_sale_event(&admin, 2, 10).await;

    // Group A: will expire while the server is down.
    let a_alice = server.hold(&alice, &event, &["A-1-1", "A-1-2"]).await;
    let a_bob = server.hold(&bob, &event, &["A-1-3"]).await;
    tokio::time::sleep(Duration::from_millis(TTL as u64 * 1000 / 2)).await;

    // Group B, half a TTL later: alive at the restart; some bought, one released, one
    // with a declined payment (kept until its expiry).
    let b_alice = server.hold(&alice, &event, &["A-2-1", "A-2-2"]).await;
    let b_bob = server.hold(&bob, &event, &["A-2-3", "A-2-4"]).await;
    let b_carol = server.hold(&carol, &event, &["A-2-5", "A-2-6", "A-2-7"]).await;
    let b_dave = server.hold(&dave, &event, &["A-2-8"]).await;
    let b_erin = server.hold(&erin, &event, &["A-1-10"]).await;
    let released = server.hold(&carol, &event, &["A-1-9"]).await;
    let (status, order_carol) = server.checkout(&carol, &b_carol, "tok_visa", "carol-1").await;
    assert_eq!(status, StatusCode::CREATED, "{order_carol}");
    let (status, order_dave) = server.checkout(&dave, &b_dave, "tok_visa", "dave-1").await;
    assert_eq!(status, StatusCode::CREATED, "{order_dave}");
    let (status, declined) = server.checkout(&erin, &b_erin, "tok_declined", "erin-1").await;
    assert_eq!(status, StatusCode::PAYMENT_REQUIRED, "{declined}");
    let (status, body) =
        server.delete(&format!("/v1/holds/{}", released["hold_id"].as_str().unwrap()), &carol).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let sold = set(&["A-2-5", "A-2-6", "A-2-7", "A-2-8"]);
    let live_b = set(&["A-2-1", "A-2-2", "A-2-3", "A-2-4", "A-1-10"]);
    let before: BTreeSet<String> =
        sold.union(&live_b).cloned().chain(["A-1-1", "A-1-2", "A-1-3"].map(String::from)).collect();
    assert_eq!(server.unavailable(&event).await, before);
    server.kill9();

    // Down until group A's time is up (B keeps about half its TTL).
    let a_expiry = expires_at(&a_alice).max(expires_at(&a_bob));
    let b_expiry = [&b_alice, &b_bob, &b_erin].iter().map(|h| expires_at(h)).min().unwrap();
    let wait = (a_expiry - chrono::Utc::now()).to_std().unwrap_or_default() + Duration::from_millis(300);
    tokio::time::sleep(wait).await;

    // Restart 1.
    let server = Server::start(dir.path(), &flags).await;
    let in_time = || {
        assert!(
            chrono::Utc::now() + chrono::Duration::milliseconds(500) < b_expiry,
            "the test machine is too slow: group B is about to expire before the checks ran"
        )
    };
    in_time();
    assert_order(&server, &carol, &order_carol).await;
    assert_order(&server, &dave, &order_dave).await;
    assert_held(&server, &alice, &b_alice).await;
    assert_held(&server, &bob, &b_bob).await;
    assert_held(&server, &erin, &b_erin).await;
    let mut seen = BTreeMap::new();
    seen.insert("expired while down", assert_gone(&server, &alice, &a_alice, &["expired"]).await);
    assert_gone(&server, &bob, &a_bob, &["expired"]).await;
    seen.insert("released before the crash", assert_gone(&server, &carol, &released, &["released"]).await);
    seen.insert("bought before the crash", assert_gone(&server, &carol, &b_carol, &["confirmed"]).await);
    let expected: BTreeSet<String> = sold.union(&live_b).cloned().collect();
    assert_eq!(server.unavailable(&event).await, expected, "bitmap after restart 1");

    // The engine agrees with the bitmap: freed seats can be held, kept ones cannot.
    let (status, body) =
        server.post(&format!("/v1/events/{event}/holds"), &frank, json!({"seats": ["A-2-3", "A-1-3"]})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["seats"], json!(["A-2-3"]));
    let c_frank = server.hold(&frank, &event, &["A-1-1", "A-1-2", "A-1-3"]).await;
    // Per-user counts are rebuilt too: carol has 3 sold seats, bob 2 held ones.
    let six: Vec<String> = (1..=6).map(|n| format!("A-1-{n}")).collect();
    let (status, body) =
        server.post(&format!("/v1/events/{event}/holds"), &carol, json!({"seats": six})).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (StatusCode::UNPROCESSABLE_ENTITY, &json!("HOLD_LIMIT")),
        "{body}"
    );
    let seven: Vec<String> = (1..=7).map(|n| format!("A-1-{n}")).collect();
    let (status, body) =
        server.post(&format!("/v1/events/{event}/holds"), &bob, json!({"seats": seven})).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (StatusCode::UNPROCESSABLE_ENTITY, &json!("HOLD_LIMIT")),
        "{body}"
    );
    in_time();
    server.kill9();

    // Restart 2, at once: the journal compacted by restart 1 (plus frank's new hold)
    // restores the same holds.
    let server = Server::start(dir.path(), &flags).await;
    in_time();
    assert_held(&server, &alice, &b_alice).await;
    assert_held(&server, &bob, &b_bob).await;
    assert_held(&server, &erin, &b_erin).await;
    assert_held(&server, &frank, &c_frank).await;
    assert_gone(&server, &alice, &a_alice, &["expired"]).await;
    assert_gone(&server, &carol, &released, &["released"]).await;
    assert_order(&server, &carol, &order_carol).await;
    assert_order(&server, &dave, &order_dave).await;
    let expected: BTreeSet<String> = expected.union(&labels(&c_frank)).cloned().collect();
    assert_eq!(server.unavailable(&event).await, expected, "bitmap after restart 2");

    // A recovered hold can be bought; the others expire on time in the new process.
    let (status, order_alice) = server.checkout(&alice, &b_alice, "tok_visa", "alice-1").await;
    assert_eq!(status, StatusCode::CREATED, "{order_alice}\n{}", server.logs());
    let wait = (b_expiry - chrono::Utc::now()).to_std().unwrap_or_default() + Duration::from_millis(700);
    tokio::time::sleep(wait).await;
    for (token, hold) in [(&bob, &b_bob), (&erin, &b_erin)] {
        let (status, body) =
            server.get(&format!("/v1/holds/{}", hold["hold_id"].as_str().unwrap()), token).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["status"], "expired", "{body}");
    }
    let sold: BTreeSet<String> = sold.union(&labels(&b_alice)).cloned().collect();
    let expected: BTreeSet<String> = sold.union(&labels(&c_frank)).cloned().collect();
    assert_eq!(server.unavailable(&event).await, expected, "after group B expired");
    let (status, mine) = server.get("/v1/me/orders", &alice).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(mine["items"].as_array().unwrap().len(), 1);
    eprintln!("forgotten holds after a restart answer: {seen:?}");
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_gracefully_and_a_restart_keeps_the_holds() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(dir.path(), &[]).await;
    let admin = server.token("admin", "admin").await;
    let alice = server.token("alice", "fan").await;
    let bob = server.token("bob", "fan").await;
    let event = server.on_sale_event(&admin, 2, 10).await;
    let kept = server.hold(&alice, &event, &["A-1-1", "A-1-2"]).await;
    let bought = server.hold(&bob, &event, &["A-1-5"]).await;
    let (status, order) = server.checkout(&bob, &bought, "tok_visa", "bob-1").await;
    assert_eq!(status, StatusCode::CREATED, "{order}");
    let released = server.hold(&bob, &event, &["A-2-1"]).await;
    let (status, _) =
        server.delete(&format!("/v1/holds/{}", released["hold_id"].as_str().unwrap()), &bob).await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    let (status, logs) = server.terminate().await;
    assert!(status.success(), "SIGTERM exits with success, got {status}; output:\n{logs}");
    assert!(logs.contains("shutting down"), "the shutdown is logged:\n{logs}");

    let server = Server::start(dir.path(), &[]).await;
    assert_held(&server, &alice, &kept).await;
    assert_order(&server, &bob, &order).await;
    assert_gone(&server, &bob, &released, &["released"]).await;
    assert_eq!(server.unavailable(&event).await, set(&["A-1-1", "A-1-2", "A-1-5"]));
    // And a second graceful stop works as well after recovery.
    let (status, logs) = server.terminate().await;
    assert!(status.success(), "got {status}; output:\n{logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_server_on_the_same_data_dir_refuses_to_start() {
    let dir = tempfile::tempdir().expect("temp dir");
    let first = Server::start(dir.path(), &[]).await;
    let admin = first.token("admin", "admin").await;
    let alice = first.token("alice", "fan").await;
    let event = first.on_sale_event(&admin, 2, 10).await;
    let hold = first.hold(&alice, &event, &["A-1-4"]).await;

    let mut second = command(dir.path(), &[]).spawn().expect("second boxoffice starts");
    let logs = Arc::new(Mutex::new(String::new()));
    drain(second.stdout.take().unwrap(), logs.clone(), |_| {});
    drain(second.stderr.take().unwrap(), logs.clone(), |_| {});
    let status = wait_exit(&mut second, Duration::from_secs(20)).await;
    if status.is_none() {
        let _ = second.kill();
        let _ = second.wait();
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let output = logs.lock().unwrap().clone();
    let status = status.unwrap_or_else(|| panic!("the second server kept running; output:\n{output}"));
    assert!(!status.success(), "the second server must fail; output:\n{output}");
    assert!(
        output.contains(&dir.path().display().to_string()) && output.contains("data dir"),
        "the refusal names the data dir:\n{output}"
    );
    assert!(!output.contains(LISTENING), "it never listened:\n{output}");

    // The first server is unharmed.
    let (status, body) = first.get(&format!("/v1/holds/{}", hold["hold_id"].as_str().unwrap()), &alice).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "held");
    assert_eq!(first.unavailable(&event).await, set(&["A-1-4"]));

    // Once the first is gone (even by SIGKILL), the lock goes with it.
    first.kill9();
    let again = Server::start(dir.path(), &[]).await;
    assert_held(&again, &alice, &hold).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_a_storm_of_holds_loses_no_acknowledged_change() {
    const BUYERS: u32 = 100;
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(dir.path(), &[]).await;
    let admin = server.token("admin", "admin").await;
    let event = server.on_sale_event(&admin, 10, 20).await;
    let mut tokens = Vec::new();
    for k in 0..BUYERS {
        tokens.push(server.token(&format!("storm{k:03}"), "fan").await);
    }
    // Buyer k asks for its own pair of seats, so requests never conflict; the first
    // buyers, once they have their pair, release it again.
    let pair = |k: u32| {
        let (row, n) = (k / 10 + 1, (k % 10) * 2 + 1);
        [format!("A-{row}-{n}"), format!("A-{row}-{}", n + 1)]
    };
    let mut tasks = tokio::task::JoinSet::new();
    let acks = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    for k in 0..BUYERS {
        let acks = acks.clone();
        let client = server.client.clone();
        let url = server.url(&format!("/v1/events/{event}/holds"));
        let base = server.url("/v1/holds/");
        let token = tokens[k as usize].clone();
        let seats = pair(k);
        tasks.spawn(async move {
            tokio::time::sleep(Duration::from_micros(u64::from(k) * 200)).await;
            let held = client.post(url).bearer_auth(&token).json(&json!({"seats": seats})).send().await;
            let hold = match held {
                Ok(r) if r.status() == StatusCode::CREATED => {
                    acks.fetch_add(1, Ordering::SeqCst);
                    r.json::<Value>().await.ok()
                }
                Ok(r) => panic!("buyer {k}: unexpected {}", r.status()),
                Err(_) => None,
            };
            // None: no release asked; Some(acknowledged?) otherwise.
            let mut release = None;
            if let Some(hold) = &hold
                && k % 4 == 0
            {
                let url = format!("{base}{}", hold["hold_id"].as_str().unwrap());
                release = Some(matches!(client.delete(url).bearer_auth(&token).send().await,
                    Ok(r) if r.status() == StatusCode::NO_CONTENT));
            }
            (k, hold, release)
        });
    }
    // Killed once a quarter of the holds are acknowledged: many are in flight then.
    let deadline = Instant::now() + Duration::from_secs(20);
    while acks.load(Ordering::SeqCst) < BUYERS as usize / 4 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_micros(500)).await;
    }
    server.kill9();
    let killed_after = started.elapsed();
    let mut acked = Vec::new();
    let mut released = BTreeSet::new();
    let mut release_unanswered = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        match joined.expect("storm task") {
            (k, _, Some(true)) => {
                released.insert(k);
            }
            (k, Some(hold), Some(false)) => release_unanswered.push((k, hold)),
            (k, Some(hold), None) => acked.push((k, hold)),
            (_, None, _) => {}
        }
    }
    assert!(!acked.is_empty() && acked.len() + released.len() < BUYERS as usize, "the kill fell mid-storm");

    let server = Server::start(dir.path(), &[]).await;
    let unavailable = server.unavailable(&event).await;
    // Every acknowledged hold is back, with its id; every acknowledged release stays.
    for (k, hold) in &acked {
        assert_held(&server, &tokens[*k as usize], hold).await;
    }
    // A release cut off by the kill: the hold is either still held or gone.
    for (k, hold) in &release_unanswered {
        let id = hold["hold_id"].as_str().unwrap();
        let (status, body) = server.get(&format!("/v1/holds/{id}"), &tokens[*k as usize]).await;
        let still_held = status == StatusCode::OK && body["status"] == "held";
        if still_held {
            assert_eq!(labels(&body), labels(hold));
        } else {
            assert_gone(&server, &tokens[*k as usize], hold, &["released"]).await;
        }
        assert_eq!(still_held, pair(*k).iter().all(|s| unavailable.contains(s)), "{body}");
    }
    for k in &released {
        for seat in pair(*k) {
            assert!(!unavailable.contains(&seat), "released seat {seat} came back after the crash");
        }
    }
    // Unacknowledged requests may or may not have happened, but all or nothing, and
    // nothing that was never asked for is taken.
    let mut unknown = 0;
    for k in 0..BUYERS {
        let [a, b] = pair(k);
        assert_eq!(unavailable.contains(&a), unavailable.contains(&b), "pair {k} is half held");
        let answered = released.contains(&k)
            || acked.iter().any(|(j, _)| *j == k)
            || release_unanswered.iter().any(|(j, _)| *j == k);
        if !answered {
            unknown += 1;
        }
    }
    let asked: BTreeSet<String> = (0..BUYERS).flat_map(pair).collect();
    assert!(unavailable.is_subset(&asked));
    eprintln!(
        "storm: killed after {killed_after:?}: {} holds acknowledged, {} releases acknowledged, \
         {unknown} unanswered; {} seats taken after the restart",
        acked.len(),
        released.len(),
        unavailable.len()
    );
}
