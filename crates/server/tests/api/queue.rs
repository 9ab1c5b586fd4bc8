//! The waiting room, admission tokens, rate limits, proof of work and load shedding, and
//! the admin `PATCH /v1/events/{id}` that turns a queue on.
//!
//! The waiting room runs on a manual clock here: admission happens only when a test moves
//! that clock, so positions are exact and nothing depends on how fast the machine is.
//! The tests wait (without timing anything) for the admission task's next pass.

use std::sync::Arc;
use std::time::Duration;

use boxoffice_engine::ManualClock;
use boxoffice_server::waiting_room::pow;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{
    TestApp, assert_error, send, send_raw, spawn, spawn_in_with_queue_clock, spawn_with, time_from_now,
};

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
}

/// An app whose waiting room runs on a manual clock that starts at the real time.
async fn app_with_clock() -> (TestApp, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(now_ms()));
    let app = spawn_in_with_queue_clock(tempfile::tempdir().unwrap(), clock.clone(), |_| {}).await;
    (app, clock)
}

impl TestApp {
    async fn patch_event(&self, token: Option<&str>, event: &str, body: Value) -> (StatusCode, Value) {
        let mut req = self.client.patch(self.url(&format!("/v1/events/{event}"))).json(&body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        send(req).await
    }

    /// An event at a 2x10 venue whose onsale is `onsale_in` from now, with the given queue
    /// settings.
    async fn queued_event(&self, admin: &str, onsale_in: chrono::Duration, queue: Value) -> String {
        let venue =
            self.venue(admin, "Queuetown", json!([{"name": "A", "rows": 2, "seats_per_row": 10}])).await;
        let (status, event) = self
            .event_at(
                admin,
                &venue,
                "concert",
                &time_from_now(chrono::Duration::days(30)),
                &time_from_now(onsale_in),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{event}");
        let id = event["id"].as_str().unwrap().to_owned();
        let (status, body) = self.patch_event(Some(admin), &id, json!({ "queue": queue })).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        id
    }

    async fn join(&self, token: &str, event: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut req = self.client.post(self.url(&format!("/v1/events/{event}/queue"))).bearer_auth(token);
        if let Some(body) = body {
            req = req.json(&body);
        }
        send(req).await
    }

    async fn join_ok(&self, token: &str, event: &str) -> Value {
        let (status, entry) = self.join(token, event, None).await;
        assert_eq!(status, StatusCode::OK, "{entry}");
        entry
    }

    async fn entry(&self, token: &str, event: &str, queue_id: &str) -> Value {
        let (status, entry) = self.get(&format!("/v1/events/{event}/queue/{queue_id}"), Some(token)).await;
        assert_eq!(status, StatusCode::OK, "{entry}");
        entry
    }

    /// Polls the entry until `done` holds (the admission task runs every 100 ms).
    async fn entry_until(
        &self,
        token: &str,
        event: &str,
        queue_id: &str,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        for _ in 0..250 {
            let entry = self.entry(token, event, queue_id).await;
            if done(&entry) {
                return entry;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("entry {queue_id} never reached the expected state");
    }

    async fn hold_with(
        &self,
        token: &str,
        event: &str,
        seats: &[&str],
        admission: Option<&str>,
    ) -> (StatusCode, Value) {
        let mut req = self.client.post(self.url(&format!("/v1/events/{event}/holds"))).bearer_auth(token);
        if let Some(a) = admission {
            req = req.header("Admission-Token", a);
        }
        send(req.json(&json!({ "seats": seats }))).await
    }

    /// Joins with the event's queue on and waits until admitted (the test moves the
    /// queue's clock); returns the admission token.
    async fn admitted(&self, clock: &ManualClock, token: &str, event: &str) -> String {
        let entry = self.join_ok(token, event).await;
        let id = entry["queue_id"].as_str().unwrap().to_owned();
        clock.advance_ms(1_000);
        let entry = self.entry_until(token, event, &id, |e| e["state"] == "admitted").await;
        entry["admission_token"].as_str().expect("an admitted entry carries its token").to_owned()
    }
}

// ---- PATCH /v1/events/{id} ----

#[tokio::test]
async fn patch_changes_only_the_fields_it_names_and_the_event_shows_them() {
    let app = spawn().await;
    let admin = app.admin().await;
    let fan = app.fan("alice").await;
    let event = app.on_sale_event(&admin, &[("A", 1, 10, "premium")]).await;
    let (_, before) = app.get(&format!("/v1/events/{event}"), None).await;
    assert_eq!(
        before["queue"],
        json!({"enabled": false, "admit_rate_per_second": 100, "token_ttl_seconds": 600,
               "max_length": 10_000_000, "proof_of_work_bits": 0}),
        "the defaults"
    );
    let etag = send_raw(app.client.get(app.url(&format!("/v1/events/{event}"))))
        .await
        .header("etag")
        .unwrap()
        .to_owned();

    let (status, after) = app.patch_event(Some(&admin), &event, json!({"queue": {"enabled": true}})).await;
    assert_eq!(status, StatusCode::OK, "{after}");
    assert_eq!(after["queue"]["enabled"], true);
    assert_eq!(after["queue"]["admit_rate_per_second"], 100, "not named: kept");
    let (_, after) =
        app.patch_event(Some(&admin), &event, json!({"queue": {"admit_rate_per_second": 5}})).await;
    assert_eq!(after["queue"]["enabled"], true, "named before, kept now");
    assert_eq!(after["queue"]["admit_rate_per_second"], 5);
    assert_eq!(after["queue"]["token_ttl_seconds"], 600);
    assert_eq!((&after["onsale_at"], &after["starts_at"]), (&before["onsale_at"], &before["starts_at"]));
    assert_eq!(after["status"], "published");

    let (_, shown) = app.get(&format!("/v1/events/{event}"), None).await;
    assert_eq!(shown["queue"], after["queue"], "GET serves the change at once");
    let r = send_raw(app.client.get(app.url(&format!("/v1/events/{event}")))).await;
    assert_ne!(r.header("etag").unwrap(), etag, "a new ETag");

    let starts = time_from_now(chrono::Duration::days(60));
    let (status, moved) =
        app.patch_event(Some(&admin), &event, json!({"starts_at": starts, "status": "cancelled"})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "cancelling starts the refund job: {moved}");
    assert_eq!(moved["status"], "cancelled");
    assert_ne!(moved["starts_at"], before["starts_at"]);
    assert_eq!(moved["queue"], after["queue"], "queue settings kept");
    let (status, body) = app.hold(&fan, &event, &["A-1-1"]).await;
    assert_error(status, &body, 409, "NOT_ON_SALE");
    // Cancelled is final: its orders are being refunded.
    let (status, body) = app
        .patch_event(Some(&admin), &event, json!({"status": "published", "queue": {"enabled": false}}))
        .await;
    assert_error(status, &body, 409, "EVENT_CANCELLED");
    assert_eq!(app.hold(&fan, &event, &["A-1-1"]).await.0, StatusCode::CONFLICT, "still not on sale");
}

#[tokio::test]
async fn patch_is_for_admins_and_refuses_invalid_changes_whole() {
    let app = spawn().await;
    let admin = app.admin().await;
    let fan = app.fan("alice").await;
    let event = app.on_sale_event(&admin, &[("A", 1, 10, "premium")]).await;
    let (_, before) = app.get(&format!("/v1/events/{event}"), None).await;

    let (status, body) = app.patch_event(None, &event, json!({"queue": {"enabled": true}})).await;
    assert_error(status, &body, 401, "UNAUTHENTICATED");
    let (status, body) = app.patch_event(Some(&fan), &event, json!({"queue": {"enabled": true}})).await;
    assert_error(status, &body, 403, "FORBIDDEN");

    let far = time_from_now(chrono::Duration::days(90));
    let cases = [
        ("rate 0", json!({"queue": {"admit_rate_per_second": 0}})),
        ("negative rate", json!({"queue": {"admit_rate_per_second": -1}})),
        ("ttl 0", json!({"queue": {"token_ttl_seconds": 0}})),
        ("max length 0", json!({"queue": {"max_length": 0}})),
        ("33 bits", json!({"queue": {"enabled": true, "proof_of_work_bits": 33}})),
        ("not a time", json!({"onsale_at": "tomorrow"})),
        ("onsale after the start", json!({"onsale_at": far})),
        ("unknown status", json!({"status": "sold_out"})),
        ("unknown field", json!({"seat_count": 5})),
        ("unknown queue field", json!({"queue": {"enabled": true, "speed": 3}})),
        ("enabled not a bool", json!({"queue": {"enabled": "yes"}})),
    ];
    for (what, body) in cases {
        let (status, answer) = app.patch_event(Some(&admin), &event, body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{what}: {answer}");
    }
    let (_, after) = app.get(&format!("/v1/events/{event}"), None).await;
    assert_eq!(after, before, "nothing changed");
    let (status, body) = app.patch_event(Some(&admin), "ev_999999", json!({})).await;
    assert_error(status, &body, 404, "NOT_FOUND");
    let (status, body) =
        app.patch_event(Some(&admin), &event, json!({"queue": {"proof_of_work_bits": 32}})).await;
    assert_eq!((status, &body["queue"]["proof_of_work_bits"]), (StatusCode::OK, &json!(32)), "{body}");
}

// ---- the waiting room ----

#[tokio::test]
async fn holds_on_a_queued_event_need_the_callers_own_admission_token_for_that_event() {
    let (app, clock) = app_with_clock().await;
    let admin = app.admin().await;
    let (alice, bob) = (app.fan("alice").await, app.fan("bob").await);
    let queue = json!({"enabled": true, "admit_rate_per_second": 10});
    let event = app.queued_event(&admin, chrono::Duration::hours(-1), queue.clone()).await;
    let other = app.queued_event(&admin, chrono::Duration::hours(-1), queue).await;

    let (status, body) = app.hold_with(&alice, &event, &["A-1-1"], None).await;
    assert_error(status, &body, 403, "NOT_ADMITTED");
    let token = app.admitted(&clock, &alice, &event).await;
    assert!(token.starts_with("at1."), "{token}");

    for (what, caller, on, admission) in [
        ("bob with alice's token", &bob, &event, token.as_str()),
        ("alice's token for another event", &alice, &other, token.as_str()),
        ("garbage", &alice, &event, "at1.garbage"),
    ] {
        let (status, body) = app.hold_with(caller, on, &["A-1-2"], Some(admission)).await;
        assert_error(status, &body, 403, "NOT_ADMITTED");
        assert!(body["error"]["message"].is_string(), "{what}");
    }
    // The rules before admission answer first: the body (400); after it: the seat (404).
    let r = send(
        app.client
            .post(app.url(&format!("/v1/events/{event}/holds")))
            .bearer_auth(&bob)
            .json(&json!({"seats": []})),
    )
    .await;
    assert_error(r.0, &r.1, 400, "INVALID_REQUEST");
    let (status, body) = app.hold_with(&bob, &event, &["Z-9-9"], None).await;
    assert_error(status, &body, 403, "NOT_ADMITTED");
    let (status, body) = app.hold_with(&alice, &event, &["Z-9-9"], Some(&token)).await;
    assert_error(status, &body, 404, "SEAT_NOT_FOUND");

    let (status, hold) = app.hold_with(&alice, &event, &["A-1-1", "A-1-2"], Some(&token)).await;
    assert_eq!(status, StatusCode::CREATED, "{hold}");
    let (status, again) = app.hold_with(&alice, &event, &["A-2-1"], Some(&token)).await;
    assert_eq!(status, StatusCode::CREATED, "a token serves until it expires: {again}");

    clock.advance_ms(600_000);
    let (status, body) = app.hold_with(&alice, &event, &["A-2-2"], Some(&token)).await;
    assert_error(status, &body, 403, "NOT_ADMITTED");
    assert!(body["error"]["message"].as_str().unwrap().contains("expired"), "{body}");
}

#[tokio::test]
async fn the_prequeue_is_shuffled_into_the_line_at_the_onsale_and_later_joins_line_up_behind_it() {
    let (app, clock) = app_with_clock().await;
    let admin = app.admin().await;
    let event = app
        .queued_event(
            &admin,
            chrono::Duration::seconds(50),
            json!({"enabled": true, "admit_rate_per_second": 1}),
        )
        .await;
    let mut early = Vec::new();
    for i in 0..5 {
        let token = app.fan(&format!("early{i}")).await;
        let entry = app.join_ok(&token, &event).await;
        assert_eq!(entry["state"], "prequeue", "{entry}");
        assert_eq!((&entry["position"], &entry["eta_seconds"]), (&Value::Null, &Value::Null));
        assert!(entry["poll_after_seconds"].as_u64().unwrap() >= 5);
        let again = app.join_ok(&token, &event).await;
        assert_eq!(again["queue_id"], entry["queue_id"], "one entry per user");
        early.push((token, entry["queue_id"].as_str().unwrap().to_owned()));
    }
    // Past the onsale, polling on the way so that nobody expires.
    for _ in 0..3 {
        clock.advance_ms(20_000);
        for (token, id) in &early {
            app.entry(token, &event, id).await;
        }
    }
    let mut positions = Vec::new();
    for (token, id) in &early {
        let entry = app.entry(token, &event, id).await;
        assert_eq!(entry["state"], "waiting", "{entry}");
        assert_eq!(entry["eta_seconds"], entry["position"], "at 1/s the ETA is the position");
        positions.push(entry["position"].as_u64().unwrap());
    }
    positions.sort();
    assert_eq!(positions, [1, 2, 3, 4, 5], "the pre-queue holds the first five places, each once");
    let mut late = Vec::new();
    for i in 0..3 {
        let token = app.fan(&format!("late{i}")).await;
        let entry = app.join_ok(&token, &event).await;
        assert_eq!(
            (&entry["state"], &entry["position"]),
            (&json!("waiting"), &json!(6 + i)),
            "FIFO behind it"
        );
        late.push((token, entry["queue_id"].as_str().unwrap().to_owned()));
    }
    clock.advance_ms(1_000);
    let first = late.first().unwrap();
    app.entry_until(&first.0, &event, &first.1, |e| e["position"] == 5).await;
    let mut positions = Vec::new();
    for (token, id) in early.iter().chain(&late) {
        let entry = app.entry(token, &event, id).await;
        positions.push((entry["state"].as_str().unwrap().to_owned(), entry["position"].as_u64()));
    }
    let admitted = positions.iter().filter(|(s, _)| s == "admitted").count();
    assert_eq!(admitted, 1, "one second at 1/s: {positions:?}");
    let mut waiting: Vec<u64> = positions.iter().filter_map(|(_, p)| *p).collect();
    waiting.sort();
    assert_eq!(waiting, [1, 2, 3, 4, 5, 6, 7], "everyone moved up by exactly one");
    let late_positions: Vec<Option<u64>> = positions[5..].iter().map(|(_, p)| *p).collect();
    assert_eq!(late_positions, [Some(5), Some(6), Some(7)], "the later joins keep their order");
}

#[tokio::test]
async fn an_entry_is_its_owners_and_joins_need_a_queue_that_is_open() {
    let (app, _clock) = app_with_clock().await;
    let admin = app.admin().await;
    let (alice, bob) = (app.fan("alice").await, app.fan("bob").await);
    let event = app
        .queued_event(
            &admin,
            chrono::Duration::hours(-1),
            json!({"enabled": true, "admit_rate_per_second": 1}),
        )
        .await;
    let entry = app.join_ok(&alice, &event).await;
    let id = entry["queue_id"].as_str().unwrap();
    assert!(id.starts_with("qu_"), "{entry}");
    assert_eq!(
        (&entry["state"], &entry["position"], &entry["eta_seconds"]),
        (&json!("waiting"), &json!(1), &json!(1))
    );
    assert!(entry.get("admission_token").is_none());

    let path = format!("/v1/events/{event}/queue/{id}");
    let (status, body) = app.get(&path, Some(&bob)).await;
    assert_error(status, &body, 404, "NOT_FOUND");
    let (status, body) = app.get(&path, None).await;
    assert_error(status, &body, 401, "UNAUTHENTICATED");
    let (status, seen) = app.get(&path, Some(&admin)).await;
    assert_eq!((status, &seen["queue_id"]), (StatusCode::OK, &json!(id)), "admins see every entry");
    for bad in ["qu_nope", "qu_0000000000000001", "42"] {
        let (status, body) = app.get(&format!("/v1/events/{event}/queue/{bad}"), Some(&alice)).await;
        assert_error(status, &body, 404, "NOT_FOUND");
    }
    let (status, body) = app.join(&alice, "ev_999999", None).await;
    assert_error(status, &body, 404, "NOT_FOUND");
    let (status, body) = send(app.client.post(app.url(&format!("/v1/events/{event}/queue")))).await;
    assert_error(status, &body, 401, "UNAUTHENTICATED");
    let (status, body) = app.join(&bob, &event, Some(json!({"pow": 1}))).await;
    assert_error(status, &body, 400, "INVALID_REQUEST");
    let (status, body) = app.join(&bob, &event, Some(json!({"extra": true}))).await;
    assert_error(status, &body, 400, "INVALID_REQUEST");
    let (status, entry) = app.join(&bob, &event, Some(json!({}))).await;
    assert_eq!((status, &entry["position"]), (StatusCode::OK, &json!(2)), "{entry}");

    let plain = app.on_sale_event(&admin, &[("A", 1, 10, "premium")]).await;
    let (status, body) = app.join(&alice, &plain, None).await;
    assert_error(status, &body, 409, "QUEUE_DISABLED");
    app.patch_event(Some(&admin), &event, json!({"status": "cancelled"})).await;
    let (status, body) = app.join(&alice, &event, None).await;
    assert_error(status, &body, 409, "NOT_ON_SALE");
}

#[tokio::test]
async fn an_entry_not_polled_for_three_intervals_expires_and_a_new_join_starts_at_the_back() {
    let (app, clock) = app_with_clock().await;
    let admin = app.admin().await;
    let (alice, bob) = (app.fan("alice").await, app.fan("bob").await);
    let event = app.queued_event(&admin, chrono::Duration::minutes(10), json!({"enabled": true})).await;
    let a = app.join_ok(&alice, &event).await;
    let b = app.join_ok(&bob, &event).await;
    let (a_id, b_id) = (a["queue_id"].as_str().unwrap(), b["queue_id"].as_str().unwrap());
    let poll_ms = a["poll_after_seconds"].as_u64().unwrap() * 1000;
    // Bob polls as advised; Alice does not.
    let mut waited = 0;
    while waited <= 3 * poll_ms {
        clock.advance_ms(poll_ms / 2);
        waited += poll_ms / 2;
        app.entry(&bob, &event, b_id).await;
    }
    let a_now = app.entry(&alice, &event, a_id).await;
    assert_eq!(a_now["state"], "expired", "{a_now}");
    assert_eq!(a_now["poll_after_seconds"], Value::Null);
    assert_eq!(app.entry(&bob, &event, b_id).await["state"], "prequeue");
    let again = app.join_ok(&alice, &event).await;
    assert_ne!(again["queue_id"], a["queue_id"], "a new entry");
    assert_eq!(again["state"], "prequeue");
}

#[tokio::test]
async fn the_entry_stream_sends_positions_then_the_admission_and_ends() {
    let (app, clock) = app_with_clock().await;
    let admin = app.admin().await;
    let (alice, bob) = (app.fan("alice").await, app.fan("bob").await);
    let event = app
        .queued_event(
            &admin,
            chrono::Duration::hours(-1),
            json!({"enabled": true, "admit_rate_per_second": 1}),
        )
        .await;
    let entry = app.join_ok(&alice, &event).await;
    let path = format!("/v1/events/{event}/queue/{}/stream", entry["queue_id"].as_str().unwrap());
    let (status, body) = app.get(&path, Some(&bob)).await;
    assert_error(status, &body, 404, "NOT_FOUND");

    let mut response = app.client.get(app.url(&path)).bearer_auth(&alice).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut text = String::new();
    let mut frames: Vec<(String, Value)> = Vec::new();
    let mut advanced = false;
    while let Some(chunk) = tokio::time::timeout(Duration::from_secs(10), response.chunk())
        .await
        .expect("a frame in time")
        .unwrap()
    {
        text.push_str(std::str::from_utf8(&chunk).unwrap());
        while let Some(end) = text.find("\n\n") {
            let block: String = text.drain(..end + 2).collect();
            let event_name =
                block.lines().find_map(|l| l.strip_prefix("event: ")).unwrap_or_default().to_owned();
            let data = block
                .lines()
                .find_map(|l| l.strip_prefix("data: "))
                .map(|d| serde_json::from_str(d).unwrap());
            if let Some(data) = data {
                frames.push((event_name, data));
            }
        }
        if !advanced && !frames.is_empty() {
            clock.advance_ms(1_000);
            advanced = true;
        }
    }
    assert_eq!(frames[0].0, "position");
    assert_eq!((&frames[0].1["state"], &frames[0].1["position"]), (&json!("waiting"), &json!(1)));
    let (last, data) = frames.last().unwrap();
    assert_eq!(last, "admitted", "{frames:?}");
    assert!(data["admission_token"].as_str().unwrap().starts_with("at1."));
    let (status, hold) = app.hold_with(&alice, &event, &["A-1-1"], data["admission_token"].as_str()).await;
    assert_eq!(status, StatusCode::CREATED, "{hold}");
}

// ---- proof of work ----

#[tokio::test]
async fn a_join_needs_a_solved_single_use_challenge_when_the_event_asks_for_work() {
    let (app, clock) = app_with_clock().await;
    let admin = app.admin().await;
    let (alice, bob, carol) = (app.fan("alice").await, app.fan("bob").await, app.fan("carol").await);
    let bits = 8;
    let event = app
        .queued_event(
            &admin,
            chrono::Duration::hours(-1),
            json!({"enabled": true, "proof_of_work_bits": bits, "max_length": 2}),
        )
        .await;
    let challenge_path = format!("/v1/events/{event}/queue/challenge");

    let (status, body) = app.join(&alice, &event, None).await;
    assert_error(status, &body, 403, "POW_REQUIRED");
    assert_eq!(body["error"]["bits"], bits);
    let (status, c) = app.post(&challenge_path, Some(&alice), json!(null)).await;
    assert_eq!(status, StatusCode::OK, "{c}");
    assert_eq!(c["bits"], bits);
    let challenge = c["challenge"].as_str().unwrap().to_owned();
    assert_eq!(challenge.len(), 32, "16 random bytes in hex");
    let (nonce, _) = pow::solve(&challenge, bits, 0);
    let wrong = (0u64..).map(|n| n.to_string()).find(|n| !pow::verify(&challenge, n, bits)).unwrap();

    let (status, body) =
        app.join(&alice, &event, Some(json!({"pow": {"challenge": challenge, "nonce": wrong}}))).await;
    assert_error(status, &body, 403, "POW_INVALID");
    let (status, body) =
        app.join(&bob, &event, Some(json!({"pow": {"challenge": challenge, "nonce": nonce}}))).await;
    assert_error(status, &body, 403, "POW_INVALID");
    assert!(body["error"]["message"].as_str().unwrap().contains("not yours"), "bound to its user: {body}");
    let (status, entry) =
        app.join(&alice, &event, Some(json!({"pow": {"challenge": challenge, "nonce": nonce}}))).await;
    assert_eq!(status, StatusCode::OK, "{entry}");
    let (status, again) = app.join(&alice, &event, None).await;
    assert_eq!(
        (status, &again["queue_id"]),
        (StatusCode::OK, &entry["queue_id"]),
        "a member joins again for free"
    );

    // Bob: a used challenge does not serve twice. The queue holds 2: his first join fills
    // it; Carol's solved join is refused as full and her challenge is spent.
    let (_, c) = app.post(&challenge_path, Some(&bob), json!(null)).await;
    let bob_challenge = c["challenge"].as_str().unwrap().to_owned();
    let (bob_nonce, _) = pow::solve(&bob_challenge, bits, 0);
    let pow_body = json!({"pow": {"challenge": bob_challenge, "nonce": bob_nonce}});
    assert_eq!(app.join(&bob, &event, Some(pow_body.clone())).await.0, StatusCode::OK);
    let (_, c) = app.post(&challenge_path, Some(&carol), json!(null)).await;
    let carol_challenge = c["challenge"].as_str().unwrap().to_owned();
    let (carol_nonce, _) = pow::solve(&carol_challenge, bits, 0);
    let carol_body = json!({"pow": {"challenge": carol_challenge, "nonce": carol_nonce}});
    let r = send_raw(
        app.client.post(app.url(&format!("/v1/events/{event}/queue"))).bearer_auth(&carol).json(&carol_body),
    )
    .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.json()["error"]["code"], "QUEUE_FULL");
    assert!(r.header("retry-after").is_some_and(|s| s.parse::<u64>().unwrap() >= 1));
    let (status, body) = app.join(&carol, &event, Some(carol_body)).await;
    assert_error(status, &body, 403, "POW_INVALID");

    // A challenge expires.
    let (_, c) = app.post(&challenge_path, Some(&carol), json!(null)).await;
    let late = c["challenge"].as_str().unwrap().to_owned();
    let (late_nonce, _) = pow::solve(&late, bits, 0);
    clock.advance_ms(5 * 60 * 1000);
    let (status, body) =
        app.join(&carol, &event, Some(json!({"pow": {"challenge": late, "nonce": late_nonce}}))).await;
    assert_error(status, &body, 403, "POW_INVALID");
}

// ---- rate limits and load shedding ----

#[tokio::test]
async fn the_per_user_limit_answers_429_with_retry_after_after_authentication_and_before_the_body() {
    let app = spawn_with(|c| c.rate_limit_per_user = 1).await;
    let admin = app.admin().await;
    let (alice, bob) = (app.fan("alice").await, app.fan("bob").await);
    let event = app.on_sale_event(&admin, &[("A", 1, 10, "premium")]).await;
    let holds = app.url(&format!("/v1/events/{event}/holds"));
    // Bodies that would be 400: whatever comes back is 400 or 429, and the limit comes
    // first once the single request a second is spent.
    let mut limited = None;
    for _ in 0..10 {
        let r = send_raw(app.client.post(&holds).bearer_auth(&alice).json(&json!({"seats": []}))).await;
        match r.status.as_u16() {
            400 => {}
            429 => {
                limited = Some(r);
                break;
            }
            other => panic!("unexpected {other}"),
        }
    }
    let r = limited.expect("one request a second: ten in a row meet the limit");
    assert_eq!(r.json()["error"]["code"], "RATE_LIMITED");
    assert_eq!(r.json()["error"]["scope"], "user");
    assert!(r.header("retry-after").unwrap().parse::<u64>().unwrap() >= 1);
    // A token that does not verify is 401, never 429: the limit counts verified users.
    let r =
        send_raw(app.client.post(&holds).bearer_auth("not-a-token").json(&json!({"seats": ["A-1-1"]}))).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // Bob has his own budget; reads are not limited per user.
    assert_ne!(app.hold(&bob, &event, &["A-1-1"]).await.0, StatusCode::TOO_MANY_REQUESTS);
    for _ in 0..5 {
        assert_eq!(app.get(&format!("/v1/events/{event}"), Some(&alice)).await.0, StatusCode::OK);
    }
    let metrics = send_raw(app.client.get(app.url("/metrics"))).await;
    assert!(String::from_utf8_lossy(&metrics.body).contains("boxoffice_rate_limited_total{scope=\"user\"}"));
}

#[tokio::test]
async fn the_per_ip_limit_covers_every_api_route_but_health_and_is_off_by_default() {
    let app = spawn_with(|c| c.rate_limit_per_ip = 1).await;
    let mut limited = None;
    for _ in 0..10 {
        let r = send_raw(app.client.get(app.url("/v1/events"))).await;
        if r.status == StatusCode::TOO_MANY_REQUESTS {
            limited = Some(r);
            break;
        }
        assert_eq!(r.status, StatusCode::OK);
    }
    let r = limited.expect("ten in a row meet a limit of one a second");
    assert_eq!(r.json()["error"]["code"], "RATE_LIMITED");
    assert_eq!(r.json()["error"]["scope"], "ip");
    assert!(r.header("retry-after").unwrap().parse::<u64>().unwrap() >= 1);
    for path in ["/healthz", "/readyz", "/metrics"] {
        for _ in 0..3 {
            assert_eq!(send_raw(app.client.get(app.url(path))).await.status, StatusCode::OK, "{path}");
        }
    }

    let open = spawn().await;
    for _ in 0..30 {
        assert_eq!(send_raw(open.client.get(open.url("/v1/events"))).await.status, StatusCode::OK);
    }
}

#[tokio::test]
async fn a_full_hold_path_sheds_at_once_with_503_and_retry_after() {
    let app = spawn_with(|c| {
        c.max_inflight_holds = 1;
        c.payment_latency_ms = (1_500, 1_500);
    })
    .await;
    let admin = app.admin().await;
    let (alice, bob) = (app.fan("alice").await, app.fan("bob").await);
    let event = app.on_sale_event(&admin, &[("A", 1, 10, "premium")]).await;
    let hold = app.hold_ok(&alice, &event, &["A-1-1"]).await;
    // Alice's checkout takes the only slot for the gateway's 1.5 s.
    let checkout = {
        let client = app.client.clone();
        let url = app.url(&format!("/v1/holds/{hold}/checkout"));
        let alice = alice.clone();
        tokio::spawn(async move {
            send(
                client
                    .post(url)
                    .bearer_auth(alice)
                    .header("Idempotency-Key", "k1")
                    .json(&json!({"payment": {"method": "card", "token": "tok_visa"}})),
            )
            .await
        })
    };
    for _ in 0..500 {
        if app.state.guard.inflight() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert_eq!(app.state.guard.inflight(), 1, "the checkout is in flight");
    let r = send_raw(
        app.client
            .post(app.url(&format!("/v1/events/{event}/holds")))
            .bearer_auth(&bob)
            .json(&json!({"seats": ["A-1-2"]})),
    )
    .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.json()["error"]["code"], "OVERLOADED");
    assert_eq!(r.header("retry-after"), Some("1"));
    assert_eq!(app.get(&format!("/v1/events/{event}"), None).await.0, StatusCode::OK, "reads are not shed");

    let (status, order) = checkout.await.unwrap();
    assert_eq!(status, StatusCode::CREATED, "{order}");
    assert_eq!(app.state.guard.inflight(), 0, "the slot is free again");
    assert_eq!(app.hold(&bob, &event, &["A-1-2"]).await.0, StatusCode::CREATED);
    let metrics =
        String::from_utf8_lossy(&send_raw(app.client.get(app.url("/metrics"))).await.body).into_owned();
    assert!(metrics.contains("boxoffice_shed_total{route=\"holds\"}"), "{metrics}");
    assert!(metrics.contains("boxoffice_limit{name=\"max_inflight_holds\"}"));
}

#[tokio::test]
async fn metrics_show_queue_length_admissions_and_rate() {
    let (app, clock) = app_with_clock().await;
    let admin = app.admin().await;
    let event = app
        .queued_event(
            &admin,
            chrono::Duration::hours(-1),
            json!({"enabled": true, "admit_rate_per_second": 7}),
        )
        .await;
    let alice = app.fan("alice").await;
    app.admitted(&clock, &alice, &event).await;
    app.join_ok(&app.fan("bob").await, &event).await;
    // The recorder is shared by every app of this test process, and other tests' apps have
    // events with the same ids: the series must be there, their values are not asserted.
    let wanted = [
        format!("boxoffice_queue_length{{event=\"{event}\"}}"),
        format!("boxoffice_queue_admit_rate{{event=\"{event}\"}}"),
        format!("boxoffice_queue_admitted_total{{event=\"{event}\"}}"),
    ];
    for _ in 0..250 {
        let metrics =
            String::from_utf8_lossy(&send_raw(app.client.get(app.url("/metrics"))).await.body).into_owned();
        if wanted.iter().all(|w| metrics.contains(w.as_str())) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("metrics never showed {wanted:?}");
}
