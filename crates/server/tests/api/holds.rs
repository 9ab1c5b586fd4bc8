//! Holds: `POST /v1/events/{id}/holds` (labels or best available), `GET` and `DELETE
//! /v1/holds/{id}`, expiry, idempotency keys and the order in which rules answer.

use std::time::Duration as StdDuration;

use chrono::Duration;
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{TestApp, assert_error, bit, send, send_raw, spawn, spawn_with, time_from_now};

/// Labels `{section}-{row}-{n}` for the seat numbers `numbers`.
fn labels(section: &str, row: u32, numbers: std::ops::RangeInclusive<u32>) -> Vec<String> {
    numbers.map(|n| format!("{section}-{row}-{n}")).collect()
}

fn strs(labels: &[String]) -> Vec<&str> {
    labels.iter().map(String::as_str).collect()
}

/// Row and number of a label `S-R-N`.
fn row_and_number(label: &str) -> (String, u32, u32) {
    let parts: Vec<&str> = label.split('-').collect();
    (parts[0].to_owned(), parts[1].parse().unwrap(), parts[2].parse().unwrap())
}

/// An event whose onsale is a day away.
async fn future_onsale_event(app: &TestApp, admin: &str) -> String {
    let venue = app.venue(admin, "Paris", json!([{"name": "A", "rows": 2, "seats_per_row": 10}])).await;
    let (status, event) = app
        .event_at(
            admin,
            &venue,
            "concert",
            &time_from_now(Duration::days(10)),
            &time_from_now(Duration::days(1)),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{event}");
    event["id"].as_str().unwrap().to_owned()
}

async fn hold_status(app: &TestApp, token: &str, hold: &str) -> String {
    let (status, body) = app.get(&format!("/v1/holds/{hold}"), Some(token)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["status"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn hold_by_labels_is_201_with_priced_seats_their_total_and_an_expiry_one_ttl_away() {
    let app = spawn().await;
    let admin = app.admin().await;
    let fan = app.fan("alice").await;
    let event = app.on_sale_event(&admin, &[("A", 2, 5, "premium"), ("B", 2, 5, "standard")]).await;

    let before = chrono::Utc::now();
    let (status, hold) = app.hold(&fan, &event, &["A-1-2", "B-2-5", "A-1-3"]).await;
    assert_eq!(status, StatusCode::CREATED, "{hold}");
    assert!(hold["hold_id"].as_str().unwrap().starts_with("ho_"));
    assert_eq!(hold["event_id"], event.as_str());
    assert_eq!(hold["status"], "held");
    let seats = hold["seats"].as_array().unwrap();
    let mut got: Vec<(String, u64, i64)> = seats
        .iter()
        .map(|s| {
            assert_eq!(s["price"]["currency"], "USD");
            (
                s["label"].as_str().unwrap().to_owned(),
                s["index"].as_u64().unwrap(),
                s["price"]["amount"].as_i64().unwrap(),
            )
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        [("A-1-2".to_owned(), 1, 5000), ("A-1-3".to_owned(), 2, 5000), ("B-2-5".to_owned(), 19, 2500)]
    );
    assert_eq!(hold["total"], json!({"amount": 12500, "currency": "USD"}));
    let expires = chrono::DateTime::parse_from_rfc3339(hold["expires_at"].as_str().unwrap()).unwrap();
    let ttl = (expires.with_timezone(&chrono::Utc) - before).num_seconds();
    assert!((595..=601).contains(&ttl), "expires {ttl} s from now, not 600");

    let (bitmap, _) = app.bitmap(&event).await;
    for i in 0..20 {
        assert_eq!(bit(&bitmap, i), ![1, 2, 19].contains(&i), "seat {i}");
    }
    // The hold reads back the same.
    let (status, read) =
        app.get(&format!("/v1/holds/{}", hold["hold_id"].as_str().unwrap()), Some(&fan)).await;
    assert_eq!(status, StatusCode::OK);
    for field in ["hold_id", "event_id", "status", "seats", "total", "expires_at"] {
        assert_eq!(read[field], hold[field], "{field}");
    }
}

#[tokio::test]
async fn best_available_holds_adjacent_seats_in_one_row_of_the_best_tier() {
    let app = spawn().await;
    let admin = app.admin().await;
    let fan = app.fan("alice").await;
    let event = app.on_sale_event(&admin, &[("B", 3, 8, "standard"), ("A", 3, 8, "premium")]).await;
    for count in [4, 3, 1] {
        let (status, hold) = app
            .post(
                &format!("/v1/events/{event}/holds"),
                Some(&fan),
                json!({"best_available": {"count": count}}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{hold}");
        let seats = hold["seats"].as_array().unwrap();
        assert_eq!(seats.len(), count);
        let mut places: Vec<(String, u32, u32)> =
            seats.iter().map(|s| row_and_number(s["label"].as_str().unwrap())).collect();
        places.sort();
        assert!(places.iter().all(|p| p.0 == "A"), "best tier first: {places:?}");
        assert!(places.iter().all(|p| p.1 == places[0].1), "one row: {places:?}");
        for pair in places.windows(2) {
            assert_eq!(pair[1].2, pair[0].2 + 1, "adjacent: {places:?}");
        }
        assert_eq!(hold["total"]["amount"], 5000 * count as i64);
    }
}

#[tokio::test]
async fn best_available_honours_the_section_and_refuses_an_unknown_one() {
    let app = spawn().await;
    let admin = app.admin().await;
    let fan = app.fan("alice").await;
    let event = app.on_sale_event(&admin, &[("A", 2, 6, "premium"), ("B", 2, 6, "standard")]).await;
    let (status, hold) = app
        .post(
            &format!("/v1/events/{event}/holds"),
            Some(&fan),
            json!({"best_available": {"count": 2, "section": "B"}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{hold}");
    for seat in hold["seats"].as_array().unwrap() {
        assert!(seat["label"].as_str().unwrap().starts_with("B-"), "{seat}");
        assert_eq!(seat["price"]["amount"], 2500);
    }
    let (status, body) = app
        .post(
            &format!("/v1/events/{event}/holds"),
            Some(&fan),
            json!({"best_available": {"count": 2, "section": "Z"}}),
        )
        .await;
    assert_error(status, &body, 404, "SECTION_NOT_FOUND");
}

#[tokio::test]
async fn best_available_for_more_seats_than_are_left_is_409_not_enough_seats_and_changes_nothing() {
    let app = spawn().await;
    let admin = app.admin().await;
    let fan = app.fan("alice").await;
    let bob = app.fan("bob").await;
    let event = app.on_sale_event(&admin, &[("A", 1, 3, "premium"), ("B", 1, 5, "standard")]).await;
    let path = format!("/v1/events/{event}/holds");
    let (before, version) = app.bitmap(&event).await;
    let (status, body) =
        app.post(&path, Some(&fan), json!({"best_available": {"count": 4, "section": "A"}})).await;
    assert_error(status, &body, 409, "NOT_ENOUGH_SEATS");
    assert_eq!(app.bitmap(&event).await, (before, version));

    app.hold_ok(&bob, &event, &["B-1-1", "B-1-2", "B-1-3"]).await;
    // Five seats are left in all (three in A, two in B): six cannot be found.
    let (status, body) = app.post(&path, Some(&fan), json!({"best_available": {"count": 6}})).await;
    assert_error(status, &body, 409, "NOT_ENOUGH_SEATS");
    let (status, body) =
        app.post(&path, Some(&fan), json!({"best_available": {"count": 3, "section": "B"}})).await;
    assert_error(status, &body, 409, "NOT_ENOUGH_SEATS");
    let (status, body) =
        app.post(&path, Some(&fan), json!({"best_available": {"count": 3, "section": "A"}})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

#[tokio::test]
async fn hold_of_a_taken_seat_is_rejected_with_the_taken_labels_and_changes_nothing() {
    let app = spawn().await;
    let admin = app.admin().await;
    let alice = app.fan("alice").await;
    let bob = app.fan("bob").await;
    let event = app.on_sale_event(&admin, &[("A", 2, 10, "premium")]).await;
    app.hold_ok(&alice, &event, &["A-1-3", "A-1-4", "A-2-1"]).await;
    let (before, version) = app.bitmap(&event).await;

    let (status, body) = app.hold(&bob, &event, &["A-1-2", "A-1-3", "A-1-4", "A-1-5"]).await;
    assert_error(status, &body, 409, "SEATS_UNAVAILABLE");
    let mut taken: Vec<&str> =
        body["error"]["seats"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
    taken.sort();
    assert_eq!(taken, ["A-1-3", "A-1-4"]);
    assert_eq!(app.bitmap(&event).await, (before, version), "all or nothing: A-1-2 and A-1-5 stay free");

    // The free seats of that request can still be held.
    app.hold_ok(&bob, &event, &["A-1-2", "A-1-5"]).await;
    // One's own held seats are taken too.
    let (status, body) = app.hold(&alice, &event, &["A-2-1"]).await;
    assert_error(status, &body, 409, "SEATS_UNAVAILABLE");
    assert_eq!(body["error"]["seats"], json!(["A-2-1"]));
}

#[tokio::test]
async fn hold_of_an_unknown_seat_label_is_404_seat_not_found_naming_it() {
    let app = spawn().await;
    let admin = app.admin().await;
    let fan = app.fan("alice").await;
    let event = app.on_sale_event(&admin, &[("A", 2, 10, "premium")]).await;
    let (before, version) = app.bitmap(&event).await;
    let (status, body) = app.hold(&fan, &event, &["A-1-1", "A-3-1", "Z-1-1", "A-1-11", "junk"]).await;
    assert_error(status, &body, 404, "SEAT_NOT_FOUND");
    assert_eq!(body["error"]["seats"], json!(["A-3-1", "Z-1-1", "A-1-11", "junk"]));
    assert_eq!(app.bitmap(&event).await, (before, version));
}

#[tokio::test]
async fn hold_on_an_unknown_event_is_404() {
    let app = spawn().await;
    let fan = app.fan("alice").await;
    for event in ["ev_424242", "ev_x", "424242"] {
        let (status, body) = app.hold(&fan, event, &["A-1-1"]).await;
        assert_error(status, &body, 404, "NOT_FOUND");
    }
}

#[tokio::test]
async fn hold_before_the_onsale_is_409_not_on_sale() {
    let app = spawn().await;
    let admin = app.admin().await;
    let fan = app.fan("alice").await;
    let event = future_onsale_event(&app, &admin).await;
    let (before, version) = app.bitmap(&event).await;
    let (status, body) = app.hold(&fan, &event, &["A-1-1"]).await;
    assert_error(status, &body, 409, "NOT_ON_SALE");
    let (status, body) = app
        .post(&format!("/v1/events/{event}/holds"), Some(&fan), json!({"best_available": {"count": 2}}))
        .await;
    assert_error(status, &body, 409, "NOT_ON_SALE");
    assert_eq!(app.bitmap(&event).await, (before, version));

    // After the start, too.
    let venue = app.venue(&admin, "Paris", json!([{"name": "A", "rows": 1, "seats_per_row": 4}])).await;
    let (status, started) = app
        .event_at(
            &admin,
            &venue,
            "concert",
            &time_from_now(-Duration::hours(1)),
            &time_from_now(-Duration::days(2)),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{started}");
    let (status, body) = app.hold(&fan, started["id"].as_str().unwrap(), &["A-1-1"]).await;
    assert_error(status, &body, 409, "NOT_ON_SALE");
}

#[tokio::test]
async fn hold_of_more_than_8_seats_is_422_hold_limit() {
    let app = spawn().await;
    let admin = app.admin().await;
    let fan = app.fan("alice").await;
    let event = app.on_sale_event(&admin, &[("A", 2, 10, "premium")]).await;
    let nine = labels("A", 1, 1..=9);
    let (status, body) = app.hold(&fan, &event, &strs(&nine)).await;
    assert_error(status, &body, 422, "HOLD_LIMIT");
    let (status, body) = app
        .post(&format!("/v1/events/{event}/holds"), Some(&fan), json!({"best_available": {"count": 9}}))
        .await;
    assert_error(status, &body, 422, "HOLD_LIMIT");
    let (bitmap, _) = app.bitmap(&event).await;
    assert!((0..20).all(|i| bit(&bitmap, i)));
    let eight = labels("A", 1, 1..=8);
    app.hold_ok(&fan, &event, &strs(&eight)).await;
}

#[tokio::test]
async fn a_user_may_hold_at_most_8_seats_per_event_across_holds() {
    let app = spawn().await;
    let admin = app.admin().await;
    let alice = app.fan("alice").await;
    let bob = app.fan("bob").await;
    let event = app.on_sale_event(&admin, &[("A", 3, 10, "premium")]).await;
    let other = app.on_sale_event(&admin, &[("A", 1, 10, "premium")]).await;
    app.hold_ok(&alice, &event, &strs(&labels("A", 1, 1..=5))).await;
    let (status, body) = app.hold(&alice, &event, &strs(&labels("A", 2, 1..=4))).await;
    assert_error(status, &body, 422, "HOLD_LIMIT");
    let (status, body) = app
        .post(&format!("/v1/events/{event}/holds"), Some(&alice), json!({"best_available": {"count": 4}}))
        .await;
    assert_error(status, &body, 422, "HOLD_LIMIT");
    let third = app.hold_ok(&alice, &event, &strs(&labels("A", 2, 1..=3))).await;
    let (status, body) = app.hold(&alice, &event, &["A-3-1"]).await;
    assert_error(status, &body, 422, "HOLD_LIMIT");
    // The limit is per user and per event.
    app.hold_ok(&bob, &event, &["A-3-1"]).await;
    app.hold_ok(&alice, &other, &strs(&labels("A", 1, 1..=8))).await;
    // A released hold no longer counts.
    let (status, _) = app.delete(&format!("/v1/holds/{third}"), Some(&alice)).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    app.hold_ok(&alice, &event, &strs(&labels("A", 3, 5..=7))).await;
}

#[tokio::test]
async fn bought_seats_count_towards_the_8_seats_per_user_and_event() {
    let app = spawn().await;
    let admin = app.admin().await;
    let alice = app.fan("alice").await;
    let event = app.on_sale_event(&admin, &[("A", 2, 10, "premium")]).await;
    app.buy(&alice, &event, &strs(&labels("A", 1, 1..=6))).await;
    let (status, body) = app.hold(&alice, &event, &["A-2-1", "A-2-2", "A-2-3"]).await;
    assert_error(status, &body, 422, "HOLD_LIMIT");
    app.hold_ok(&alice, &event, &["A-2-1", "A-2-2"]).await;
    let (status, body) = app.hold(&alice, &event, &["A-2-5"]).await;
    assert_error(status, &body, 422, "HOLD_LIMIT");
}

#[tokio::test]
async fn rules_answer_in_the_documented_order() {
    let app = spawn().await;
    let admin = app.admin().await;
    let alice = app.fan("alice").await;
    let bob = app.fan("bob").await;
    let event = app.on_sale_event(&admin, &[("A", 2, 10, "premium")]).await;
    let not_yet = future_onsale_event(&app, &admin).await;
    let holds = |event: &str| format!("/v1/events/{event}/holds");

    // 401 before a bad body.
    let r = send_raw(
        app.client.post(app.url(&holds(&event))).header("content-type", "application/json").body("{"),
    )
    .await;
    assert_error(r.status, &r.json(), 401, "UNAUTHENTICATED");
    let huge = json!({"seats": ["A-1-1"], "pad": "x".repeat(1_100_000)});
    let (status, body) = app.post(&holds(&event), None, huge).await;
    assert_error(status, &body, 401, "UNAUTHENTICATED");
    // A malformed or invalid body on an unknown event: 400, not 404.
    let r = send_raw(
        app.client
            .post(app.url(&holds("ev_999999")))
            .bearer_auth(&bob)
            .header("content-type", "application/json")
            .body("{"),
    )
    .await;
    assert_error(r.status, &r.json(), 400, "MALFORMED_JSON");
    let (status, body) = app.post(&holds("ev_999999"), Some(&bob), json!({"seats": []})).await;
    assert_error(status, &body, 400, "INVALID_REQUEST");
    // A body over 1 MiB on an unknown event: 413, not 404.
    let huge = json!({"seats": ["A-1-1"], "pad": "x".repeat(1_100_000)});
    let (status, body) = app.post(&holds("ev_999999"), Some(&bob), huge).await;
    assert_error(status, &body, 413, "BODY_TOO_LARGE");
    let r = send_raw(
        app.client.post(app.url(&holds("ev_999999"))).bearer_auth(&bob).body(r#"{"seats":["A-1-1"]}"#),
    )
    .await;
    assert_error(r.status, &r.json(), 415, "UNSUPPORTED_MEDIA_TYPE");
    // Unknown event before not on sale / limits.
    let (status, body) = app.hold(&bob, "ev_999999", &strs(&labels("A", 1, 1..=9))).await;
    assert_error(status, &body, 404, "NOT_FOUND");
    // Not on sale before the hold limit.
    let (status, body) = app.hold(&bob, &not_yet, &strs(&labels("A", 1, 1..=9))).await;
    assert_error(status, &body, 409, "NOT_ON_SALE");
    // The hold limit before an unknown label.
    let mut nine = labels("A", 1, 1..=8);
    nine.push("Z-1-1".into());
    let (status, body) = app.hold(&bob, &event, &strs(&nine)).await;
    assert_error(status, &body, 422, "HOLD_LIMIT");
    // The per-user limit before an unknown label.
    app.hold_ok(&alice, &event, &strs(&labels("A", 2, 1..=7))).await;
    let (status, body) = app.hold(&alice, &event, &["A-1-1", "Z-1-1"]).await;
    assert_error(status, &body, 422, "HOLD_LIMIT");
    // An unknown label before taken seats.
    let (status, body) = app.hold(&bob, &event, &["A-2-1", "Z-1-1"]).await;
    assert_error(status, &body, 404, "SEAT_NOT_FOUND");
    assert_eq!(body["error"]["seats"], json!(["Z-1-1"]));
    // The per-user limit before taken seats.
    let (status, body) = app.hold(&alice, &event, &["A-2-1", "A-2-2"]).await;
    assert_error(status, &body, 422, "HOLD_LIMIT");
    let (status, body) = app.hold(&bob, &event, &["A-2-1", "A-1-1"]).await;
    assert_error(status, &body, 409, "SEATS_UNAVAILABLE");
    assert_eq!(body["error"]["seats"], json!(["A-2-1"]));
}

#[tokio::test]
async fn hold_bodies_that_break_the_schema_are_400() {
    let app = spawn().await;
    let admin = app.admin().await;
    let fan = app.fan("alice").await;
    let event = app.on_sale_event(&admin, &[("A", 2, 10, "premium")]).await;
    let path = format!("/v1/events/{event}/holds");
    let cases = [
        ("empty seats", json!({"seats": []})),
        ("duplicate labels", json!({"seats": ["A-1-1", "A-1-2", "A-1-1"]})),
        ("seats and best_available", json!({"seats": ["A-1-1"], "best_available": {"count": 1}})),
        ("neither", json!({})),
        ("unknown field", json!({"seats": ["A-1-1"], "note": "hi"})),
        ("unknown best_available field", json!({"best_available": {"count": 1, "tier": "premium"}})),
        ("count 0", json!({"best_available": {"count": 0}})),
        ("negative count", json!({"best_available": {"count": -1}})),
        ("seats not a list", json!({"seats": "A-1-1"})),
        ("label not a string", json!({"seats": [1]})),
        ("not an object", json!(["A-1-1"])),
    ];
    for (what, body) in cases {
        let (status, answer) = app.post(&path, Some(&fan), body).await;
        assert_eq!(answer["error"]["code"], "INVALID_REQUEST", "{what}: {answer}");
        assert_error(status, &answer, 400, "INVALID_REQUEST");
    }
    for raw in ["{", "", "{\"seats\": [\"A-1-1\",]}", "null x"] {
        let r = send_raw(
            app.client
                .post(app.url(&path))
                .bearer_auth(&fan)
                .header("content-type", "application/json")
                .body(raw),
        )
        .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{raw:?}");
        assert!(r.json()["error"]["code"].is_string(), "{raw:?}");
    }
    let (bitmap, _) = app.bitmap(&event).await;
    assert!((0..20).all(|i| bit(&bitmap, i)), "nothing was held");
}

#[tokio::test]
async fn hold_body_over_1_mib_is_413_and_without_a_json_content_type_is_415() {
    let app = spawn().await;
    let admin = app.admin().await;
    let fan = app.fan("alice").await;
    let event = app.on_sale_event(&admin, &[("A", 2, 10, "premium")]).await;
    let path = format!("/v1/events/{event}/holds");
    let big = format!("{{\"seats\": [\"A-1-1\"], \"pad\": \"{}\"}}", "x".repeat(1024 * 1024));
    let r = send_raw(
        app.client
            .post(app.url(&path))
            .bearer_auth(&fan)
            .header("content-type", "application/json")
            .body(big),
    )
    .await;
    assert_error(r.status, &r.json(), 413, "BODY_TOO_LARGE");
    assert!(r.header("content-type").unwrap().starts_with("application/json"));

    let body = r#"{"seats": ["A-1-1"]}"#;
    for content_type in [Some("text/plain"), Some("application/x-www-form-urlencoded"), None] {
        let mut req = app.client.post(app.url(&path)).bearer_auth(&fan).body(body);
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        let r = send_raw(req).await;
        assert_error(r.status, &r.json(), 415, "UNSUPPORTED_MEDIA_TYPE");
    }
    let (bitmap, _) = app.bitmap(&event).await;
    assert!(bit(&bitmap, 0));
    // With a charset it is JSON.
    let r = send_raw(
        app.client
            .post(app.url(&path))
            .bearer_auth(&fan)
            .header("content-type", "application/json; charset=utf-8")
            .body(body),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);
}

#[tokio::test]
async fn hold_is_visible_to_its_owner_and_admins_and_404_to_anyone_else() {
    let app = spawn().await;
    let admin = app.admin().await;
    let alice = app.fan("alice").await;
    let bob = app.fan("bob").await;
    let event = app.on_sale_event(&admin, &[("A", 2, 10, "premium")]).await;
    let hold = app.hold_ok(&alice, &event, &["A-1-1"]).await;
    let path = format!("/v1/holds/{hold}");
    let (status, body) = app.get(&path, Some(&alice)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["hold_id"], hold.as_str());
    assert_eq!(body["status"], "held");
    let (status, body) = app.get(&path, Some(&admin)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["hold_id"], hold.as_str());
    let (status, body) = app.get(&path, Some(&bob)).await;
    assert_error(status, &body, 404, "NOT_FOUND");
    let (status, body) = app.get(&path, None).await;
    assert_error(status, &body, 401, "UNAUTHENTICATED");
    // Someone else cannot release it either.
    let (status, body) = app.delete(&path, Some(&bob)).await;
    assert_error(status, &body, 404, "NOT_FOUND");
    assert_eq!(hold_status(&app, &alice, &hold).await, "held");
    for unknown in ["ho_1_00000000000000000000000000000000", "nonsense", "ho_"] {
        let (status, body) = app.get(&format!("/v1/holds/{unknown}"), Some(&alice)).await;
        assert_error(status, &body, 404, "NOT_FOUND");
        let (status, body) = app.delete(&format!("/v1/holds/{unknown}"), Some(&alice)).await;
        assert_error(status, &body, 404, "NOT_FOUND");
    }
    // A forged id naming the right event but another nonce is unknown too.
    let forged = format!("{}0", &hold[..hold.len() - 1]);
    let forged = if forged == hold { format!("{}1", &hold[..hold.len() - 1]) } else { forged };
    let (status, body) = app.get(&format!("/v1/holds/{forged}"), Some(&alice)).await;
    assert_error(status, &body, 404, "NOT_FOUND");
}

#[tokio::test]
async fn released_hold_frees_its_seats_at_once_and_a_second_release_is_410() {
    let app = spawn().await;
    let admin = app.admin().await;
    let alice = app.fan("alice").await;
    let bob = app.fan("bob").await;
    let event = app.on_sale_event(&admin, &[("A", 2, 10, "premium")]).await;
    let hold = app.hold_ok(&alice, &event, &["A-1-4", "A-1-5"]).await;
    let (_, held_version) = app.bitmap(&event).await;
    let (status, body) = app.delete(&format!("/v1/holds/{hold}"), Some(&alice)).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert!(body.is_null(), "204 has no body");
    let (bitmap, version) = app.bitmap(&event).await;
    assert!(bit(&bitmap, 3) && bit(&bitmap, 4));
    assert!(version > held_version);
    assert_eq!(hold_status(&app, &alice, &hold).await, "released");
    let (status, body) = app.delete(&format!("/v1/holds/{hold}"), Some(&alice)).await;
    assert_error(status, &body, 410, "HOLD_EXPIRED");
    app.hold_ok(&bob, &event, &["A-1-4", "A-1-5"]).await;
    // An admin may release anyone's hold.
    let other = app.hold_ok(&alice, &event, &["A-2-1"]).await;
    let (status, _) = app.delete(&format!("/v1/holds/{other}"), Some(&admin)).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(hold_status(&app, &alice, &other).await, "released");
}

#[tokio::test]
async fn expired_hold_reads_expired_frees_its_seats_and_cannot_be_checked_out_or_released() {
    let app = spawn_with(|c| c.hold_ttl = 1).await;
    let admin = app.admin().await;
    let alice = app.fan("alice").await;
    let bob = app.fan("bob").await;
    let event = app.on_sale_event(&admin, &[("A", 1, 10, "premium")]).await;
    let (status, body) = app.hold(&alice, &event, &["A-1-1", "A-1-2"]).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let hold = body["hold_id"].as_str().unwrap().to_owned();
    let created = chrono::DateTime::parse_from_rfc3339(body["created_at"].as_str().unwrap()).unwrap();
    let expires = chrono::DateTime::parse_from_rfc3339(body["expires_at"].as_str().unwrap()).unwrap();
    assert_eq!((expires - created).num_milliseconds(), 1000);
    let (bitmap, _) = app.bitmap(&event).await;
    assert!(!bit(&bitmap, 0) && !bit(&bitmap, 1));

    tokio::time::sleep(StdDuration::from_millis(2200)).await;

    assert_eq!(hold_status(&app, &alice, &hold).await, "expired");
    let (bitmap, _) = app.bitmap(&event).await;
    assert!(bit(&bitmap, 0) && bit(&bitmap, 1), "expired seats are available");
    let (status, body) = app.checkout(&alice, &hold, "tok_visa", "k1").await;
    assert_error(status, &body, 410, "HOLD_EXPIRED");
    let (status, body) = app.delete(&format!("/v1/holds/{hold}"), Some(&alice)).await;
    assert_error(status, &body, 410, "HOLD_EXPIRED");
    // Expired seats no longer count towards the user's limit, and others may hold them.
    app.hold_ok(&bob, &event, &["A-1-1", "A-1-2"]).await;
    app.hold_ok(&alice, &event, &strs(&labels("A", 1, 3..=10))).await;
}

#[tokio::test]
async fn idempotency_key_on_a_hold_replays_the_same_hold_and_refuses_another_body() {
    let app = spawn().await;
    let admin = app.admin().await;
    let alice = app.fan("alice").await;
    let bob = app.fan("bob").await;
    let event = app.on_sale_event(&admin, &[("A", 2, 10, "premium")]).await;
    let path = format!("/v1/events/{event}/holds");
    let body = json!({"seats": ["A-1-1", "A-1-2"]});
    let (status, first) = app.post_keyed(&path, &alice, "hold-1", body.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    let (_, version) = app.bitmap(&event).await;
    let (status, again) = app.post_keyed(&path, &alice, "hold-1", body.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{again}");
    assert_eq!(again, first, "the same hold, replayed");
    assert_eq!(app.bitmap(&event).await.1, version, "nothing new was held");

    let (status, answer) = app.post_keyed(&path, &alice, "hold-1", json!({"seats": ["A-1-3"]})).await;
    assert_error(status, &answer, 422, "IDEMPOTENCY_MISMATCH");
    let (bitmap, _) = app.bitmap(&event).await;
    assert!(bit(&bitmap, 2));

    // Keys are scoped to the user: bob's request with alice's key runs (and finds the seats taken).
    let (status, answer) = app.post_keyed(&path, &bob, "hold-1", body).await;
    assert_error(status, &answer, 409, "SEATS_UNAVAILABLE");
    // A new key is a new hold.
    let (status, second) = app.post_keyed(&path, &alice, "hold-2", json!({"seats": ["A-1-3"]})).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_ne!(second["hold_id"], first["hold_id"]);
    // A blank key is refused.
    let (status, answer) = send(
        app.client
            .post(app.url(&path))
            .bearer_auth(&alice)
            .header("Idempotency-Key", "  ")
            .json(&json!({"seats": ["A-1-4"]})),
    )
    .await;
    assert_error(status, &answer, 400, "INVALID_REQUEST");
}

#[tokio::test]
async fn hold_answers_401_without_a_token_and_with_a_bad_one() {
    let app = spawn().await;
    let admin = app.admin().await;
    let event = app.on_sale_event(&admin, &[("A", 1, 10, "premium")]).await;
    let path = format!("/v1/events/{event}/holds");
    let (status, body) = app.post(&path, None, json!({"seats": ["A-1-1"]})).await;
    assert_error(status, &body, 401, "UNAUTHENTICATED");
    let (status, body) = app.post(&path, Some("garbage"), json!({"seats": ["A-1-1"]})).await;
    assert_error(status, &body, 401, "INVALID_TOKEN");
    let r = send_raw(
        app.client
            .post(app.url(&path))
            .header("Authorization", "Basic YTpi")
            .json(&json!({"seats": ["A-1-1"]})),
    )
    .await;
    assert_error(r.status, &r.json(), 401, "INVALID_TOKEN");
    let (bitmap, _) = app.bitmap(&event).await;
    assert!(bit(&bitmap, 0));
    // Staff and admins may hold like fans.
    let staff = app.token("sam", "staff").await;
    app.hold_ok(&staff, &event, &["A-1-1"]).await;
    app.hold_ok(&admin, &event, &["A-1-2"]).await;
}
