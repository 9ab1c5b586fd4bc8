//! `GET /v1/events/{id}/availability`: one bit per seat, binary or JSON, versioned and
//! cacheable.

use base64::Engine;
use chrono::Duration;
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{Raw, TestApp, assert_error, bit, send_raw, spawn, time_from_now};

async fn binary(app: &TestApp, event: &str) -> Raw {
    send_raw(app.client.get(app.url(&format!("/v1/events/{event}/availability")))).await
}

async fn as_json(app: &TestApp, event: &str) -> Raw {
    send_raw(
        app.client
            .get(app.url(&format!("/v1/events/{event}/availability")))
            .header("Accept", "application/json"),
    )
    .await
}

fn version_of(r: &Raw) -> u64 {
    r.header("seat-map-version").expect("Seat-Map-Version").parse().expect("a u64")
}

#[tokio::test]
async fn availability_is_ceil_n_over_8_bytes_with_a_bit_per_seat_cleared_for_held_and_sold_seats() {
    let app = spawn().await;
    let admin = app.admin().await;
    let alice = app.fan("alice").await;
    // 3 x 7 = 21 seats: 3 bytes.
    let event = app.on_sale_event(&admin, &[("A", 3, 7, "premium")]).await;
    let r = binary(&app, &event).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("content-type"), Some("application/octet-stream"));
    assert_eq!(r.header("cache-control"), Some("public, max-age=1"));
    assert_eq!(r.body.len(), 3);
    assert!((0..21).all(|i| bit(&r.body, i)));

    // A-1-1 is index 0, A-2-3 is 7 + 2 = 9, A-3-7 is 20 (the last).
    app.hold_ok(&alice, &event, &["A-1-1", "A-2-3"]).await;
    app.buy(&alice, &event, &["A-3-7"]).await;
    let r = binary(&app, &event).await;
    assert_eq!(r.body.len(), 3);
    for i in 0..21 {
        assert_eq!(bit(&r.body, i), ![0, 9, 20].contains(&i), "seat {i}");
    }
    // Little-endian within a byte: byte 1 has bit 1 (seat 9) clear.
    assert_eq!(r.body[0], 0b1111_1110);
    assert_eq!(r.body[1], 0b1111_1101);
}

#[tokio::test]
async fn json_availability_carries_the_same_version_count_and_bitmap_as_the_binary_form() {
    let app = spawn().await;
    let admin = app.admin().await;
    let alice = app.fan("alice").await;
    let event = app.on_sale_event(&admin, &[("A", 2, 9, "premium")]).await;
    app.hold_ok(&alice, &event, &["A-1-2", "A-2-9", "A-2-1"]).await;
    let bin = binary(&app, &event).await;
    let js = as_json(&app, &event).await;
    assert_eq!(js.status, StatusCode::OK);
    assert!(js.header("content-type").unwrap().starts_with("application/json"));
    let body = js.json();
    assert_eq!(body["version"], version_of(&bin));
    assert_eq!(version_of(&js), version_of(&bin));
    assert_eq!(body["available_count"], 15);
    let decoded =
        base64::engine::general_purpose::STANDARD.decode(body["bitmap_base64"].as_str().unwrap()).unwrap();
    assert_eq!(decoded, bin.body);
    assert_eq!(decoded.len(), 3);
}

#[tokio::test]
async fn seat_map_version_increases_with_every_hold_and_release() {
    let app = spawn().await;
    let admin = app.admin().await;
    let alice = app.fan("alice").await;
    let event = app.on_sale_event(&admin, &[("A", 1, 10, "premium")]).await;
    let (_, v0) = app.bitmap(&event).await;
    let hold = app.hold_ok(&alice, &event, &["A-1-1"]).await;
    let (_, v1) = app.bitmap(&event).await;
    assert!(v1 > v0, "{v1} > {v0}");
    // A refused hold changes nothing.
    let (status, _) = app.hold(&alice, &event, &["A-1-1"]).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(app.bitmap(&event).await.1, v1);
    let (status, _) = app.delete(&format!("/v1/holds/{hold}"), Some(&alice)).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, v2) = app.bitmap(&event).await;
    assert!(v2 > v1, "{v2} > {v1}");
}

#[tokio::test]
async fn binary_and_json_forms_have_distinct_etags_vary_on_accept_and_answer_304_to_their_own_etag() {
    let app = spawn().await;
    let admin = app.admin().await;
    let alice = app.fan("alice").await;
    let event = app.on_sale_event(&admin, &[("A", 1, 10, "premium")]).await;
    let bin = binary(&app, &event).await;
    let js = as_json(&app, &event).await;
    let bin_etag = bin.header("etag").expect("ETag").to_owned();
    let js_etag = js.header("etag").expect("ETag").to_owned();
    assert_ne!(bin_etag, js_etag);
    for r in [&bin, &js] {
        let vary = r.header("vary").expect("Vary");
        assert!(vary.to_ascii_lowercase().contains("accept"), "{vary}");
        assert_eq!(r.header("cache-control"), Some("public, max-age=1"));
    }

    let path = app.url(&format!("/v1/events/{event}/availability"));
    let r = send_raw(app.client.get(&path).header("If-None-Match", &bin_etag)).await;
    assert_eq!(r.status, StatusCode::NOT_MODIFIED);
    assert!(r.body.is_empty());
    assert_eq!(r.header("etag"), Some(bin_etag.as_str()));
    let r = send_raw(
        app.client.get(&path).header("Accept", "application/json").header("If-None-Match", &js_etag),
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_MODIFIED);
    // The other form's ETag does not match.
    let r = send_raw(app.client.get(&path).header("If-None-Match", &js_etag)).await;
    assert_eq!(r.status, StatusCode::OK);
    let r = send_raw(
        app.client.get(&path).header("Accept", "application/json").header("If-None-Match", &bin_etag),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);

    // After a change the old ETag is stale.
    app.hold_ok(&alice, &event, &["A-1-1"]).await;
    let r = send_raw(app.client.get(&path).header("If-None-Match", &bin_etag)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_ne!(r.header("etag"), Some(bin_etag.as_str()));
    assert!(!bit(&r.body, 0));
}

#[tokio::test]
async fn availability_is_public_served_before_the_onsale_and_404_for_an_unknown_event() {
    let app = spawn().await;
    let admin = app.admin().await;
    let venue = app.venue(&admin, "Paris", json!([{"name": "A", "rows": 1, "seats_per_row": 9}])).await;
    let (status, event) = app
        .event_at(
            &admin,
            &venue,
            "concert",
            &time_from_now(Duration::days(9)),
            &time_from_now(Duration::days(2)),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let r = binary(&app, event["id"].as_str().unwrap()).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body.len(), 2);
    assert!((0..9).all(|i| bit(&r.body, i)));
    for unknown in ["ev_999999", "bogus"] {
        let r = binary(&app, unknown).await;
        assert_error(r.status, &r.json(), 404, "NOT_FOUND");
        let r = as_json(&app, unknown).await;
        assert_error(r.status, &r.json(), 404, "NOT_FOUND");
    }
}
