//! Cancelling an event: `202`, every order refunded by a resumable job, seats released
//! with the reason `cancel`, nothing more sold.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_error, send, spawn, spawn_in};

async fn patch(app: &TestApp, admin: &str, event: &str, body: Value) -> (StatusCode, Value) {
    send(app.client.patch(app.url(&format!("/v1/events/{event}"))).bearer_auth(admin).json(&body)).await
}

async fn order_status(app: &TestApp, token: &str, order: &Value) -> String {
    let (status, read) =
        app.get(&format!("/v1/orders/{}", order["order_id"].as_str().unwrap()), Some(token)).await;
    assert_eq!(status, StatusCode::OK, "{read}");
    read["status"].as_str().unwrap().to_owned()
}

async fn wait_refunded(app: &TestApp, orders: &[(&str, &Value)]) {
    let deadline = Instant::now() + Duration::from_secs(20);
    for (token, order) in orders {
        while order_status(app, token, order).await != "refunded" {
            assert!(Instant::now() < deadline, "order {} was never refunded", order["order_id"]);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[tokio::test]
async fn cancelling_refunds_every_order_releases_the_seats_and_stops_the_sale() {
    let app = spawn().await;
    let admin = app.admin().await;
    let alice = app.fan("alice").await;
    let bob = app.fan("bob").await;
    let carol = app.fan("carol").await;
    let event = app.on_sale_event(&admin, &[("A", 1, 10, "premium")]).await;
    let alices = app.buy(&alice, &event, &["A-1-1", "A-1-2"]).await;
    let bobs = app.buy(&bob, &event, &["A-1-5"]).await;
    let carols_hold = app.hold_ok(&carol, &event, &["A-1-8"]).await;

    let (status, body) = patch(&app, &admin, &event, json!({"status": "cancelled"})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["status"], "cancelled");
    wait_refunded(&app, &[(&alice, &alices), (&bob, &bobs)]).await;

    // Every sold seat is back; only carol's hold is still taken.
    let (bitmap, _) = app.bitmap(&event).await;
    let taken: Vec<u32> = (0..10).filter(|&i| !crate::helpers::bit(&bitmap, i)).collect();
    assert_eq!(taken, vec![7]);
    // Nothing more is sold: a new hold is refused, and the hold taken before the
    // cancellation cannot be bought (its payment is voided).
    let (status, body) = app.hold(&bob, &event, &["A-1-3"]).await;
    assert_error(status, &body, 409, "NOT_ON_SALE");
    let (status, body) = app.checkout(&carol, &carols_hold, "tok_visa", "k-carol").await;
    assert_error(status, &body, 409, "NOT_ON_SALE");
    // Cancelled stays cancelled; cancelling again changes nothing.
    let (status, body) = patch(&app, &admin, &event, json!({"status": "published"})).await;
    assert_error(status, &body, 409, "EVENT_CANCELLED");
    let (status, body) = patch(&app, &admin, &event, json!({"status": "cancelled"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // The history says why the seats came back, and replays to the current state.
    let id = boxoffice_core::EventId::parse(&event).unwrap();
    app.state.audit.drain(id).await.unwrap();
    let (status, page) = app.get(&format!("/v1/events/{event}/audit?limit=100"), Some(&admin)).await;
    assert_eq!(status, StatusCode::OK);
    let mut cancelled: Vec<u64> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["type"] == "SEAT_RELEASED" && r["reason"] == "cancel")
        .map(|r| r["seat"].as_u64().unwrap())
        .collect();
    cancelled.sort();
    assert_eq!(cancelled, vec![0, 1, 4]);
    let (_, report) = app.get(&format!("/v1/events/{event}/audit/verify"), Some(&admin)).await;
    assert_eq!(report["mismatches"], json!([]), "{report}");
}

#[tokio::test]
async fn the_refund_job_resumes_after_a_restart() {
    let app = spawn().await;
    let admin = app.admin().await;
    let alice = app.fan("alice").await;
    let event = app.on_sale_event(&admin, &[("A", 1, 10, "premium")]).await;
    let order = app.buy(&alice, &event, &["A-1-1"]).await;
    // Cancelled behind the job's back (as if the server died right after the PATCH).
    let id = boxoffice_core::EventId::parse(&event).unwrap();
    let update = boxoffice_store::EventUpdate {
        status: Some(boxoffice_store::EventStatus::Cancelled),
        ..Default::default()
    };
    app.state.store.update_event(id, update).await.unwrap();
    let dir = app.stop().await;

    let app = spawn_in(dir, |_| {}).await;
    let alice = app.fan("alice").await;
    wait_refunded(&app, &[(&alice, &order)]).await;
    let (bitmap, _) = app.bitmap(&event).await;
    assert!(crate::helpers::bit(&bitmap, 0), "the refunded seat is released");
}
