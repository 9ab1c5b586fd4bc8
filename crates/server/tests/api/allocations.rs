//! Allocations and presale codes over HTTP: entitlement of holds (role, code, none),
//! the codes' limits and expiry answered alike, the wrong-code limit, the release time,
//! best available, the entitled availability view against the public one, the live map
//! at a release, and the admin routes' checks.

use std::time::Duration;

use base64::Engine;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_error, bit, send_raw, spawn, time_from_now};

/// An event on sale now: section `A`, 2 rows of 10 (seats 0-9 row 1, 10-19 row 2).
async fn event(app: &TestApp, admin: &str) -> String {
    app.on_sale_event(admin, &[("A", 2, 10, "premium")]).await
}

fn row(n: u32) -> Vec<String> {
    (1..=10).map(|s| format!("A-{n}-{s}")).collect()
}

async fn allocate(app: &TestApp, admin: &str, event: &str, body: Value) -> (StatusCode, Value) {
    app.post(&format!("/v1/events/{event}/allocations"), Some(admin), body).await
}

/// Allocation `name` of row 1, released a day from now, with `roles`.
async fn allocate_row_one(app: &TestApp, admin: &str, event: &str, name: &str, roles: Value) {
    let body = json!({"name": name, "seats": row(1), "release_at": time_from_now(chrono::Duration::days(1)),
                      "roles": roles});
    let (status, created) = allocate(app, admin, event, body).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["seat_count"], 10, "{created}");
    assert_eq!(created["released"], false, "{created}");
}

async fn codes(app: &TestApp, admin: &str, event: &str, body: Value) -> Vec<String> {
    let (status, made) = app.post(&format!("/v1/events/{event}/presale-codes"), Some(admin), body).await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    made["codes"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_owned()).collect()
}

/// Codes of allocation `presale`, valid for a day.
async fn presale_codes(
    app: &TestApp,
    admin: &str,
    event: &str,
    count: u32,
    seats: u32,
    uses: u32,
) -> Vec<String> {
    let body = json!({"allocation": "presale", "count": count, "max_seats_per_code": seats, "max_uses": uses,
                      "expires_at": time_from_now(chrono::Duration::days(1))});
    codes(app, admin, event, body).await
}

async fn hold_with(
    app: &TestApp,
    token: &str,
    event: &str,
    seats: &[&str],
    code: Option<&str>,
) -> (StatusCode, Value) {
    let mut body = json!({"seats": seats});
    if let Some(code) = code {
        body["presale_code"] = json!(code);
    }
    app.post(&format!("/v1/events/{event}/holds"), Some(token), body).await
}

async fn best_with(
    app: &TestApp,
    token: &str,
    event: &str,
    count: u32,
    code: Option<&str>,
) -> (StatusCode, Value) {
    let mut body = json!({"best_available": {"count": count}});
    if let Some(code) = code {
        body["presale_code"] = json!(code);
    }
    app.post(&format!("/v1/events/{event}/holds"), Some(token), body).await
}

fn seat_indexes(hold: &Value) -> Vec<u64> {
    hold["seats"].as_array().unwrap().iter().map(|s| s["index"].as_u64().unwrap()).collect()
}

/// The entitled view of `allocation`: status and, on 200, the bitmap.
async fn view(
    app: &TestApp,
    event: &str,
    allocation: &str,
    token: Option<&str>,
    code: Option<&str>,
) -> (StatusCode, Vec<u8>) {
    let mut req =
        app.client.get(app.url(&format!("/v1/events/{event}/availability?allocation={allocation}")));
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    if let Some(code) = code {
        req = req.header("Presale-Code", code);
    }
    let response = req.send().await.unwrap();
    let status = response.status();
    (status, response.bytes().await.unwrap().to_vec())
}

#[tokio::test]
async fn a_hold_on_allocated_seats_needs_a_role_or_a_valid_code() {
    let app = spawn().await;
    let admin = app.admin().await;
    let fan = app.fan("alice").await;
    let event = event(&app, &admin).await;
    allocate_row_one(&app, &admin, &event, "presale", json!([])).await;
    let (before, version) = app.bitmap(&event).await;

    // Without a code: 403 NOT_ENTITLED naming the allocated seats, nothing changed.
    let (status, body) = hold_with(&app, &fan, &event, &["A-1-1", "A-2-1"], None).await;
    assert_error(status, &body, 403, "NOT_ENTITLED");
    assert_eq!(body["error"]["seats"], json!(["A-1-1"]), "{body}");
    assert_eq!(app.bitmap(&event).await, (before, version), "nothing changed");
    // General sale needs nothing.
    let (status, hold) = hold_with(&app, &fan, &event, &["A-2-1"], None).await;
    assert_eq!(status, StatusCode::CREATED, "{hold}");

    // A code of the allocation opens it.
    let code = presale_codes(&app, &admin, &event, 1, 4, 2).await.remove(0);
    assert_eq!(code.len(), 12);
    let bob = app.fan("bob").await;
    let (status, hold) = hold_with(&app, &bob, &event, &["A-1-1", "A-1-2"], Some(&code)).await;
    assert_eq!(status, StatusCode::CREATED, "{hold}");
    assert_eq!(seat_indexes(&hold), [0, 1]);
    // Typed in lower case with a dash, it is the same code.
    let typed = format!("{}-{}", code[..6].to_lowercase(), &code[6..]);
    let (status, hold) = hold_with(&app, &bob, &event, &["A-1-3"], Some(&typed)).await;
    assert_eq!(status, StatusCode::CREATED, "{hold}");

    // Admins are always entitled; a role the allocation names is too.
    let (status, hold) = hold_with(&app, &admin, &event, &["A-1-5"], None).await;
    assert_eq!(status, StatusCode::CREATED, "{hold}");
    let (status, hold) = hold_with(&app, &app.token("sam", "staff").await, &event, &["A-1-7"], None).await;
    assert_error(status, &hold, 403, "NOT_ENTITLED");
    let event2 = self::event(&app, &admin).await;
    allocate_row_one(&app, &admin, &event2, "box-office", json!(["staff"])).await;
    let (status, hold) = hold_with(&app, &app.token("sam", "staff").await, &event2, &["A-1-7"], None).await;
    assert_eq!(status, StatusCode::CREATED, "{hold}");
    let (status, body) = hold_with(&app, &fan, &event2, &["A-1-8"], None).await;
    assert_error(status, &body, 403, "NOT_ENTITLED");
}

#[tokio::test]
async fn code_limits_and_expiry_answer_the_same_not_entitled() {
    let app = spawn().await;
    let admin = app.admin().await;
    let event = event(&app, &admin).await;
    allocate_row_one(&app, &admin, &event, "presale", json!([])).await;
    // 3 seats in all, 2 holds.
    let code = presale_codes(&app, &admin, &event, 1, 3, 2).await.remove(0);
    let alice = app.fan("alice").await;
    let (status, hold) = hold_with(&app, &alice, &event, &["A-1-1", "A-1-2"], Some(&code)).await;
    assert_eq!(status, StatusCode::CREATED, "{hold}");
    // Two more would pass 3 seats.
    let (status, over_seats) = hold_with(&app, &alice, &event, &["A-1-3", "A-1-4"], Some(&code)).await;
    assert_error(status, &over_seats, 403, "NOT_ENTITLED");
    // One more fits, and is the second and last hold.
    let (status, hold) = hold_with(&app, &alice, &event, &["A-1-3"], Some(&code)).await;
    assert_eq!(status, StatusCode::CREATED, "{hold}");
    let bob = app.fan("bob").await;
    let (status, used_up) = hold_with(&app, &bob, &event, &["A-1-9"], Some(&code)).await;
    assert_error(status, &used_up, 403, "NOT_ENTITLED");

    // A hold refused by the inventory does not spend a use: a fresh code of one use
    // survives a taken seat.
    let once = presale_codes(&app, &admin, &event, 1, 2, 1).await.remove(0);
    let (status, taken) = hold_with(&app, &bob, &event, &["A-1-1"], Some(&once)).await;
    assert_error(status, &taken, 409, "SEATS_UNAVAILABLE");
    let (status, hold) = hold_with(&app, &bob, &event, &["A-1-8"], Some(&once)).await;
    assert_eq!(status, StatusCode::CREATED, "{hold}");

    // Expired: a code valid for two seconds at most, tried after them.
    let short = json!({"allocation": "presale", "count": 1, "max_seats_per_code": 2, "max_uses": 2,
                       "expires_at": time_from_now(chrono::Duration::seconds(2))});
    let expiring = codes(&app, &admin, &event, short).await.remove(0);
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let carol = app.fan("carol").await;
    let (status, expired) = hold_with(&app, &carol, &event, &["A-1-10"], Some(&expiring)).await;
    assert_error(status, &expired, 403, "NOT_ENTITLED");
    // A code that never existed, or of another event, reads the same.
    let (status, wrong) = hold_with(&app, &carol, &event, &["A-1-10"], Some("ABCDEFGHJKLM")).await;
    assert_error(status, &wrong, 403, "NOT_ENTITLED");
    let other = self::event(&app, &admin).await;
    allocate_row_one(&app, &admin, &other, "presale", json!([])).await;
    let (status, elsewhere) = hold_with(&app, &carol, &other, &["A-1-10"], Some(&once)).await;
    assert_error(status, &elsewhere, 403, "NOT_ENTITLED");
    let (status, junk) = hold_with(&app, &carol, &event, &["A-2-5"], Some("not a code!")).await;
    assert_error(status, &junk, 403, "NOT_ENTITLED");
    for body in [&over_seats, &used_up, &expired, &wrong, &elsewhere, &junk] {
        assert_eq!(body["error"]["message"], expired["error"]["message"], "one answer for every bad code");
    }
}

#[tokio::test]
async fn wrong_codes_are_rate_limited_per_user() {
    let app = spawn().await;
    let admin = app.admin().await;
    let event = event(&app, &admin).await;
    allocate_row_one(&app, &admin, &event, "presale", json!([])).await;
    let code = presale_codes(&app, &admin, &event, 1, 8, 8).await.remove(0);
    let mallory = app.fan("mallory").await;
    for guess in 0..5 {
        let (status, body) =
            hold_with(&app, &mallory, &event, &["A-1-1"], Some(&format!("ABCDEFGHJK{guess}{guess}"))).await;
        assert_error(status, &body, 403, "NOT_ENTITLED");
    }
    let raw = send_raw(
        app.client
            .post(app.url(&format!("/v1/events/{event}/holds")))
            .bearer_auth(&mallory)
            .json(&json!({"seats": ["A-1-1"], "presale_code": "ABCDEFGHJK99"})),
    )
    .await;
    assert_eq!(raw.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(raw.json()["error"]["code"], "RATE_LIMITED");
    assert!(raw.header("retry-after").and_then(|s| s.parse::<u64>().ok()).is_some_and(|s| s >= 1));
    // While limited even the right code gets no answer about itself.
    let (status, body) = hold_with(&app, &mallory, &event, &["A-1-1"], Some(&code)).await;
    assert_error(status, &body, 429, "RATE_LIMITED");
    // Other users are not affected.
    let (status, hold) = hold_with(&app, &app.fan("alice").await, &event, &["A-1-1"], Some(&code)).await;
    assert_eq!(status, StatusCode::CREATED, "{hold}");
}

#[tokio::test]
async fn best_available_never_gives_allocated_seats_to_a_non_entitled_caller() {
    let app = spawn().await;
    let admin = app.admin().await;
    let event = event(&app, &admin).await;
    // Row 1 is the best row; it is allocated.
    allocate_row_one(&app, &admin, &event, "presale", json!([])).await;
    let mut fans = Vec::new();
    for i in 0..5 {
        fans.push(app.fan(&format!("fan{i}")).await);
    }
    for (i, fan) in fans.iter().take(2).enumerate() {
        let (status, hold) = best_with(&app, fan, &event, 4, None).await;
        assert_eq!(status, StatusCode::CREATED, "{hold}");
        assert!(seat_indexes(&hold).iter().all(|&s| s >= 10), "fan {i} got allocated seats: {hold}");
    }
    let (status, hold) = best_with(&app, &fans[2], &event, 2, None).await;
    assert_eq!(status, StatusCode::CREATED, "{hold}");
    // Row 2 is full; row 1's ten seats are all available but not for this caller.
    let (status, body) = best_with(&app, &fans[3], &event, 1, None).await;
    assert_error(status, &body, 409, "NOT_ENOUGH_SEATS");
    // With a code the same request is served from the allocation.
    let code = presale_codes(&app, &admin, &event, 1, 4, 1).await.remove(0);
    let (status, hold) = best_with(&app, &fans[3], &event, 2, Some(&code)).await;
    assert_eq!(status, StatusCode::CREATED, "{hold}");
    assert!(seat_indexes(&hold).iter().all(|&s| s < 10), "{hold}");
    // ... and that was the code's one use.
    let (status, body) = best_with(&app, &fans[4], &event, 1, Some(&code)).await;
    assert_error(status, &body, 403, "NOT_ENTITLED");
}

#[tokio::test]
async fn the_entitled_view_shows_the_allocation_that_the_public_view_hides() {
    let app = spawn().await;
    let admin = app.admin().await;
    let event = event(&app, &admin).await;
    allocate_row_one(&app, &admin, &event, "presale", json!(["staff"])).await;
    let fan = app.fan("alice").await;
    let code = presale_codes(&app, &admin, &event, 1, 2, 1).await.remove(0);

    let (public, _) = app.bitmap(&event).await;
    assert!((0..10).all(|i| !bit(&public, i)), "allocated seats are not for sale to the public");
    assert!((10..20).all(|i| bit(&public, i)));
    let raw = send_raw(
        app.client
            .get(app.url(&format!("/v1/events/{event}/availability")))
            .header("accept", "application/json"),
    )
    .await;
    assert_eq!(raw.json()["available_count"], 10, "{:?}", raw.json());

    assert_eq!(view(&app, &event, "presale", None, None).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(view(&app, &event, "presale", Some(&fan), None).await.0, StatusCode::FORBIDDEN);
    assert_eq!(
        view(&app, &event, "presale", Some(&fan), Some("ABCDEFGHJKLM")).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(view(&app, &event, "nope", Some(&admin), None).await.0, StatusCode::NOT_FOUND);
    for (token, code) in
        [(&fan, Some(code.as_str())), (&admin, None), (&app.token("sam", "staff").await, None)]
    {
        let (status, bitmap) = view(&app, &event, "presale", Some(token), code).await;
        assert_eq!(status, StatusCode::OK);
        assert!((0..20).all(|i| bit(&bitmap, i)), "the entitled view shows every seat");
    }
    // Looking does not spend the code's one use.
    let (status, hold) = hold_with(&app, &fan, &event, &["A-1-1"], Some(&code)).await;
    assert_eq!(status, StatusCode::CREATED, "{hold}");
    let (_, bitmap) = view(&app, &event, "presale", Some(&admin), None).await;
    assert!(!bit(&bitmap, 0) && bit(&bitmap, 1));

    // The admin's list.
    let (status, list) = app.get(&format!("/v1/events/{event}/allocations"), Some(&admin)).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let item = &list["items"][0];
    assert_eq!((item["name"].as_str(), item["seat_count"].as_u64()), (Some("presale"), Some(10)), "{list}");
    assert_eq!(item["available_count"], 9, "{list}");
    assert_eq!(item["roles"], json!(["staff"]), "{list}");
}

/// Reads SSE frames until one satisfies `done` (at most `limit` frames).
async fn read_until(
    response: &mut reqwest::Response,
    limit: usize,
    done: impl Fn(&str, &Value) -> bool,
) -> Value {
    let mut buffer = String::new();
    let mut seen = 0;
    loop {
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let event = block.lines().find_map(|l| l.strip_prefix("event: ")).unwrap_or_default().to_owned();
            let Some(data) = block.lines().find_map(|l| l.strip_prefix("data: ")) else { continue };
            let data: Value = serde_json::from_str(data).unwrap();
            if done(&event, &data) {
                return data;
            }
            seen += 1;
            assert!(seen < limit, "no matching frame in {limit}");
        }
        let chunk = tokio::time::timeout(Duration::from_secs(10), response.chunk())
            .await
            .expect("a frame within 10 s")
            .unwrap()
            .expect("stream open");
        buffer.push_str(std::str::from_utf8(&chunk).unwrap());
    }
}

fn snapshot_bit(data: &Value, index: u32) -> bool {
    let bytes =
        base64::engine::general_purpose::STANDARD.decode(data["bitmap_base64"].as_str().unwrap()).unwrap();
    bit(&bytes, index)
}

#[tokio::test]
async fn after_release_at_the_unsold_seats_are_general_sale_and_the_live_map_shows_them() {
    let app = spawn().await;
    let admin = app.admin().await;
    let event = event(&app, &admin).await;
    let body = json!({"name": "presale", "seats": ["A-1-1", "A-1-2", "A-1-3"],
                      "release_at": time_from_now(chrono::Duration::seconds(5))});
    let (status, created) = allocate(&app, &admin, &event, body).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let code = presale_codes(&app, &admin, &event, 1, 1, 1).await.remove(0);
    let fan = app.fan("alice").await;
    // One allocated seat is sold to a code holder before the release.
    let (status, hold) = hold_with(&app, &fan, &event, &["A-1-1"], Some(&code)).await;
    assert_eq!(status, StatusCode::CREATED, "{hold}");

    let mut stream =
        app.client.get(app.url(&format!("/v1/events/{event}/availability/stream"))).send().await.unwrap();
    let first = read_until(&mut stream, 1, |e, _| e == "snapshot").await;
    assert!(!snapshot_bit(&first, 1), "before the release the public map hides the allocation");
    let bob = app.fan("bob").await;
    let (status, body) = hold_with(&app, &bob, &event, &["A-1-2"], None).await;
    assert_error(status, &body, 403, "NOT_ENTITLED");

    // At the release, with no change of seats, viewers get a snapshot showing the seats.
    let released = read_until(&mut stream, 100, |e, d| e == "snapshot" && snapshot_bit(d, 1)).await;
    assert!(snapshot_bit(&released, 2) && !snapshot_bit(&released, 0), "the held seat stays taken");
    assert_eq!(released["version"], first["version"], "the seats did not change, only who may buy them");
    let (bitmap, _) = app.bitmap(&event).await;
    assert!(bit(&bitmap, 1) && bit(&bitmap, 2) && !bit(&bitmap, 0));
    let (status, hold) = hold_with(&app, &bob, &event, &["A-1-2"], None).await;
    assert_eq!(status, StatusCode::CREATED, "{hold}");
    let (_, list) = app.get(&format!("/v1/events/{event}/allocations"), Some(&admin)).await;
    assert_eq!(list["items"][0]["released"], true, "{list}");
}

#[tokio::test]
async fn only_admins_make_allocations_and_codes_and_bad_requests_are_refused() {
    let app = spawn().await;
    let admin = app.admin().await;
    let fan = app.fan("alice").await;
    let event = event(&app, &admin).await;
    let day = time_from_now(chrono::Duration::days(1));
    let good = json!({"name": "presale", "seats": ["A-1-1"], "release_at": day});
    let (status, body) = allocate(&app, &fan, &event, good.clone()).await;
    assert_error(status, &body, 403, "FORBIDDEN");
    let (status, body) = app.get(&format!("/v1/events/{event}/allocations"), Some(&fan)).await;
    assert_error(status, &body, 403, "FORBIDDEN");
    let (status, body) = app
        .post(&format!("/v1/events/{event}/presale-codes"), Some(&fan),
              json!({"allocation": "presale", "count": 1, "max_seats_per_code": 1, "max_uses": 1, "expires_at": day}))
        .await;
    assert_error(status, &body, 403, "FORBIDDEN");

    for bad in [
        json!({"name": "Pre Sale", "seats": ["A-1-1"], "release_at": day}),
        json!({"name": "presale", "seats": [], "release_at": day}),
        json!({"name": "presale", "seats": ["A-1-1"], "release_at": "tomorrow"}),
        json!({"name": "presale", "seats": ["A-1-1"], "release_at": day, "roles": ["vip"]}),
        json!({"name": "presale", "seats": ["A-1-1", "A-1-1"], "release_at": day}),
        json!({"name": "presale", "seats": ["A-1-1"], "release_at": day, "colour": "red"}),
    ] {
        let (status, body) = allocate(&app, &admin, &event, bad.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad} -> {body}");
        assert!(body["error"]["message"].is_string(), "{body}");
    }
    let (status, body) =
        allocate(&app, &admin, &event, json!({"name": "presale", "seats": ["Z-9-9"], "release_at": day}))
            .await;
    assert_error(status, &body, 404, "SEAT_NOT_FOUND");
    let (status, body) = allocate(&app, &admin, "ev_999999", good.clone()).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");

    let (status, created) = allocate(&app, &admin, &event, good.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let (status, body) = allocate(&app, &admin, &event, good).await;
    assert_error(status, &body, 409, "ALLOCATION_EXISTS");
    let (status, body) = allocate(
        &app,
        &admin,
        &event,
        json!({"name": "fanclub", "seats": ["A-1-2", "A-1-1"], "release_at": day}),
    )
    .await;
    assert_error(status, &body, 409, "SEATS_ALLOCATED");
    assert_eq!(body["error"]["seats"], json!(["A-1-1"]), "{body}");

    let codes_body = |count: u32, seats: u32, uses: u32, expires: &str, allocation: &str| {
        json!({"allocation": allocation, "count": count, "max_seats_per_code": seats, "max_uses": uses,
               "expires_at": expires})
    };
    let past = time_from_now(chrono::Duration::hours(-1));
    for bad in [
        codes_body(0, 1, 1, &day, "presale"),
        codes_body(10_001, 1, 1, &day, "presale"),
        codes_body(1, 0, 1, &day, "presale"),
        codes_body(1, 1, 0, &day, "presale"),
        codes_body(1, 1, 1, &past, "presale"),
    ] {
        let (status, body) =
            app.post(&format!("/v1/events/{event}/presale-codes"), Some(&admin), bad.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad} -> {body}");
    }
    let (status, body) = app
        .post(&format!("/v1/events/{event}/presale-codes"), Some(&admin), codes_body(1, 1, 1, &day, "nope"))
        .await;
    assert_error(status, &body, 404, "ALLOCATION_NOT_FOUND");
    // Many codes at once, all distinct, from the unambiguous alphabet.
    let many = codes(&app, &admin, &event, codes_body(2_000, 1, 1, &day, "presale")).await;
    assert_eq!(many.iter().collect::<std::collections::HashSet<_>>().len(), 2_000);
    assert!(many.iter().all(|c| c.len() == 12 && !c.contains(['0', 'O', '1', 'I'])));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn in_distributed_mode_every_node_enforces_an_allocation_made_on_one() {
    let backends = crate::distributed::Backends::fresh().await;
    let a = backends.node(true).await;
    let b = backends.node(false).await;
    let admin = a.admin().await;
    let event = event(&a, &admin).await;
    allocate_row_one(&a, &admin, &event, "presale", json!([])).await;
    let code = presale_codes(&a, &admin, &event, 1, 4, 2).await.remove(0);
    // Node b learns of the event and its allocation from the catalog's change feed.
    let mut hidden = false;
    for _ in 0..100 {
        let r = b.client.get(b.url(&format!("/v1/events/{event}/availability"))).send().await.unwrap();
        if r.status() == StatusCode::OK {
            let bytes = r.bytes().await.unwrap();
            if !bit(&bytes, 0) && bit(&bytes, 10) {
                hidden = true;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(hidden, "node b never hid the allocation from the public");

    let fan = b.fan("alice").await;
    let (status, body) = hold_with(&b, &fan, &event, &["A-1-1"], None).await;
    assert_error(status, &body, 403, "NOT_ENTITLED");
    let (status, hold) = best_with(&b, &fan, &event, 2, None).await;
    assert_eq!(status, StatusCode::CREATED, "{hold}");
    assert!(seat_indexes(&hold).iter().all(|&s| s >= 10), "{hold}");
    // The code, made on node a, works on node b and its uses count in the shared store.
    let (status, hold) = hold_with(&b, &fan, &event, &["A-1-1"], Some(&code)).await;
    assert_eq!(status, StatusCode::CREATED, "{hold}");
    let (status, hold) = hold_with(&a, &a.fan("bob").await, &event, &["A-1-2"], Some(&code)).await;
    assert_eq!(status, StatusCode::CREATED, "{hold}");
    let (status, body) = hold_with(&b, &b.fan("carol").await, &event, &["A-1-3"], Some(&code)).await;
    assert_error(status, &body, 403, "NOT_ENTITLED");

    // The wrong-code limit is one for the cluster: 5 wrong codes spread over both nodes.
    let mallory = a.fan("mallory").await;
    for guess in 0..5 {
        let node = if guess % 2 == 0 { &a } else { &b };
        let (status, body) =
            hold_with(node, &mallory, &event, &["A-1-5"], Some(&format!("ABCDEFGHJK{guess}{guess}"))).await;
        assert_error(status, &body, 403, "NOT_ENTITLED");
    }
    let (status, body) = hold_with(&b, &mallory, &event, &["A-1-5"], Some("ABCDEFGHJK77")).await;
    assert_error(status, &body, 429, "RATE_LIMITED");
}
