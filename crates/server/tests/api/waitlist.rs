//! The sold-out waitlist (`POST/GET/DELETE /v1/events/{id}/waitlist`, docs/waitlist.md):
//! joining only when sold out, the rule (freed seats go, in join order, to the first entry
//! they fit), adjacency, freed seats never on sale while an entry fits them, offer expiry
//! passing to the next entry, leaving, owner-only answers and validation.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_error, send, spawn, spawn_with, time_from_now};

/// An event of one row of `seats` seats (`A-1-1` ...), on sale.
async fn event(app: &TestApp, seats: u32) -> String {
    let admin = app.admin().await;
    app.on_sale_event(&admin, &[("A", 1, seats, "standard")]).await
}

async fn join(app: &TestApp, token: &str, event: &str, body: Value) -> (StatusCode, Value) {
    app.post(&format!("/v1/events/{event}/waitlist"), Some(token), body).await
}

async fn entry(app: &TestApp, token: &str, event: &str, id: &str) -> Value {
    let (status, body) = app.get(&format!("/v1/events/{event}/waitlist/{id}"), Some(token)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

/// Polls the entry until it is in `state` (the matcher runs every 100 ms).
async fn until_state(app: &TestApp, token: &str, event: &str, id: &str, state: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let body = entry(app, token, event, id).await;
        if body["state"] == state {
            return body;
        }
        assert!(tokio::time::Instant::now() < deadline, "entry {id} never became {state}: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn id(body: &Value) -> String {
    body["waitlist_id"].as_str().expect("waitlist id").to_owned()
}

fn seat_labels(hold: &Value) -> Vec<String> {
    hold["seats"].as_array().unwrap().iter().map(|s| s["label"].as_str().unwrap().to_owned()).collect()
}

async fn audit_verifies(app: &TestApp, event: &str) {
    let admin = app.admin().await;
    let id = boxoffice_core::EventId::parse(event).unwrap();
    app.state.audit.drain(id).await.expect("audit drain");
    let (status, report) = app.get(&format!("/v1/events/{event}/audit/verify"), Some(&admin)).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["mismatches"], json!([]), "{report}");
}

#[tokio::test]
async fn joining_is_refused_while_seats_are_on_sale_and_bodies_are_validated() {
    let app = spawn().await;
    let event = event(&app, 4).await;
    let bob = app.fan("bob").await;
    let (status, body) = join(&app, &bob, &event, json!({"group_size": 2})).await;
    assert_error(status, &body, 409, "NOT_SOLD_OUT");

    for bad in [
        json!({"group_size": 0}),
        json!({"group_size": 9}),
        json!({"group_size": 2, "sections": ["Z"]}),
        json!({"group_size": 2, "sections": ["A", "A"]}),
        json!({"group_size": 2, "max_price": -1}),
        json!({"group_size": 2, "colour": "red"}),
        json!({"sections": ["A"]}),
    ] {
        let (status, body) = join(&app, &bob, &event, bad.clone()).await;
        assert_error(status, &body, 400, "INVALID_REQUEST");
    }
    let (status, body) = join(&app, &bob, "ev_999999", json!({"group_size": 2})).await;
    assert_error(status, &body, 404, "NOT_FOUND");
    let (status, _) = app.post(&format!("/v1/events/{event}/waitlist"), None, json!({"group_size": 2})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = app.get(&format!("/v1/events/{event}/waitlist/wl_nope"), Some(&bob)).await;
    assert_error(status, &body, 404, "NOT_FOUND");

    // Section-level: a sold-out section can be waited for while another sells.
    let admin = app.admin().await;
    let two = app.on_sale_event(&admin, &[("A", 1, 2, "premium"), ("B", 1, 2, "standard")]).await;
    let ann = app.fan("ann").await;
    app.hold_ok(&ann, &two, &["A-1-1", "A-1-2"]).await;
    let (status, body) = join(&app, &bob, &two, json!({"group_size": 2})).await;
    assert_error(status, &body, 409, "NOT_SOLD_OUT");
    let (status, body) = join(&app, &bob, &two, json!({"group_size": 2, "sections": ["A"]})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["state"], "waiting");
}

/// The rule: freed seats go to the first entry in join order that they fit. Entries
/// [bob: group 4, cat: group 2]; 2 adjacent seats freed -> offered to cat, and never on sale.
#[tokio::test]
async fn freed_seats_go_to_the_first_entry_in_order_they_fit_and_never_on_sale() {
    let app = spawn().await;
    let event = event(&app, 6).await;
    let ann = app.fan("ann").await;
    app.hold_ok(&ann, &event, &["A-1-1", "A-1-2"]).await;
    let freed = app.hold_ok(&ann, &event, &["A-1-3", "A-1-4"]).await;
    app.hold_ok(&ann, &event, &["A-1-5", "A-1-6"]).await;

    let (bob, cat, dan) = (app.fan("bob").await, app.fan("cat").await, app.fan("dan").await);
    let (status, b) = join(&app, &bob, &event, json!({"group_size": 4})).await;
    assert_eq!(status, StatusCode::CREATED, "{b}");
    assert_eq!((b["state"].clone(), b["position"].clone()), (json!("waiting"), json!(1)));
    let (status, c) = join(&app, &cat, &event, json!({"group_size": 2})).await;
    assert_eq!(status, StatusCode::CREATED, "{c}");
    assert_eq!(c["position"], 2);
    // Joining again returns the same entry.
    let (status, again) = join(&app, &bob, &event, json!({"group_size": 3})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(id(&again), id(&b));
    assert_eq!(again["group_size"], 4);

    let (status, _) = app.delete(&format!("/v1/holds/{freed}"), Some(&ann)).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    // Freed but not on sale, not for a moment: in the pool, then offered.
    let (status, body) = app.hold(&dan, &event, &["A-1-3"]).await;
    assert_error(status, &body, 409, "SEATS_UNAVAILABLE");

    let offered = until_state(&app, &cat, &event, &id(&c), "offered").await;
    let hold_id = offered["hold_id"].as_str().expect("hold id").to_owned();
    assert!(offered["expires_at"].is_string());
    let (status, hold) = app.get(&format!("/v1/holds/{hold_id}"), Some(&cat)).await;
    assert_eq!(status, StatusCode::OK, "{hold}");
    assert_eq!(seat_labels(&hold), vec!["A-1-3", "A-1-4"]);
    assert_eq!(hold["status"], "held");
    let (status, body) = app.hold(&dan, &event, &["A-1-3", "A-1-4"]).await;
    assert_error(status, &body, 409, "SEATS_UNAVAILABLE");
    // The group of 4 keeps its place.
    let b = entry(&app, &bob, &event, &id(&b)).await;
    assert_eq!((b["state"].clone(), b["position"].clone()), (json!("waiting"), json!(1)));
    // Announced by mail to the address of the token that joined.
    let mail = app.data_dir.path().join("mail").join(format!("waitlist-{}-{hold_id}.eml", id(&c)));
    let text = std::fs::read_to_string(&mail).expect("offer mail written");
    assert!(text.contains("cat@example.com") && text.contains("A-1-3"), "{text}");

    // The offer is a normal hold: checked out, the entry is done.
    let (status, order) = app.checkout(&cat, &hold_id, "tok_visa", "wl-cat").await;
    assert_eq!(status, StatusCode::CREATED, "{order}");
    until_state(&app, &cat, &event, &id(&c), "done").await;
    audit_verifies(&app, &event).await;
}

#[tokio::test]
async fn adjacent_groups_get_consecutive_seats_of_one_row_only() {
    let app = spawn().await;
    let event = event(&app, 6).await;
    let ann = app.fan("ann").await;
    app.hold_ok(&ann, &event, &["A-1-1", "A-1-3", "A-1-5", "A-1-6"]).await;
    let freed = app.hold_ok(&ann, &event, &["A-1-2", "A-1-4"]).await;
    let (bob, cat) = (app.fan("bob").await, app.fan("cat").await);
    let (_, b) = join(&app, &bob, &event, json!({"group_size": 2})).await;
    let (status, c) = join(&app, &cat, &event, json!({"group_size": 2, "adjacent": false})).await;
    assert_eq!(status, StatusCode::CREATED, "{c}");
    assert_eq!(c["adjacent"], false);

    // Two seats apart: bob (adjacent) does not fit; cat (any two seats) does.
    app.delete(&format!("/v1/holds/{freed}"), Some(&ann)).await;
    let offered = until_state(&app, &cat, &event, &id(&c), "offered").await;
    let (_, hold) = app.get(&format!("/v1/holds/{}", offered["hold_id"].as_str().unwrap()), Some(&cat)).await;
    assert_eq!(seat_labels(&hold), vec!["A-1-2", "A-1-4"]);
    assert_eq!(entry(&app, &bob, &event, &id(&b)).await["state"], "waiting");
    audit_verifies(&app, &event).await;
}

#[tokio::test]
async fn an_offer_not_taken_expires_and_passes_to_the_next_entry() {
    let app = spawn_with(|c| c.waitlist.offer_ttl_s = 1).await;
    let event = event(&app, 4).await;
    let ann = app.fan("ann").await;
    let freed = app.hold_ok(&ann, &event, &["A-1-1", "A-1-2"]).await;
    app.hold_ok(&ann, &event, &["A-1-3", "A-1-4"]).await;
    let (bob, cat, dan) = (app.fan("bob").await, app.fan("cat").await, app.fan("dan").await);
    let (_, b) = join(&app, &bob, &event, json!({"group_size": 2})).await;
    let (_, c) = join(&app, &cat, &event, json!({"group_size": 2, "max_price": 2500})).await;

    app.delete(&format!("/v1/holds/{freed}"), Some(&ann)).await;
    let first = until_state(&app, &bob, &event, &id(&b), "offered").await;
    // Bob lets it lapse: his entry expires and the seats go to cat, never on sale.
    let expired = until_state(&app, &bob, &event, &id(&b), "expired").await;
    assert_eq!(expired["hold_id"], first["hold_id"]);
    let second = until_state(&app, &cat, &event, &id(&c), "offered").await;
    assert_ne!(second["hold_id"], first["hold_id"]);
    let (_, hold) = app.get(&format!("/v1/holds/{}", second["hold_id"].as_str().unwrap()), Some(&cat)).await;
    assert_eq!(seat_labels(&hold), vec!["A-1-1", "A-1-2"]);
    let (status, body) = app.hold(&dan, &event, &["A-1-1"]).await;
    assert_error(status, &body, 409, "SEATS_UNAVAILABLE");

    // Owner only: 404 to another fan, visible to an admin.
    let (status, body) = app.get(&format!("/v1/events/{event}/waitlist/{}", id(&c)), Some(&dan)).await;
    assert_error(status, &body, 404, "NOT_FOUND");
    let (status, body) = app.delete(&format!("/v1/events/{event}/waitlist/{}", id(&c)), Some(&dan)).await;
    assert_error(status, &body, 404, "NOT_FOUND");
    let admin = app.admin().await;
    assert_eq!(entry(&app, &admin, &event, &id(&c)).await["state"], "offered");

    // Cat leaves: her offer's hold is released and, nobody waiting, the seats go on sale.
    let (status, _) = app.delete(&format!("/v1/events/{event}/waitlist/{}", id(&c)), Some(&cat)).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(entry(&app, &cat, &event, &id(&c)).await["state"], "left");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (status, _) = app.hold(&dan, &event, &["A-1-1", "A-1-2"]).await;
        if status == StatusCode::CREATED {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the seats never came back on sale");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    audit_verifies(&app, &event).await;
}

#[tokio::test]
async fn the_entry_stream_announces_the_offer() {
    let app = spawn().await;
    let event = event(&app, 2).await;
    let ann = app.fan("ann").await;
    let freed = app.hold_ok(&ann, &event, &["A-1-1", "A-1-2"]).await;
    let bob = app.fan("bob").await;
    let (_, b) = join(&app, &bob, &event, json!({"group_size": 1})).await;
    let mut response = app
        .client
        .get(app.url(&format!("/v1/events/{event}/waitlist/{}/stream", id(&b))))
        .bearer_auth(&bob)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    app.delete(&format!("/v1/holds/{freed}"), Some(&ann)).await;
    let mut text = String::new();
    let read = tokio::time::timeout(Duration::from_secs(20), async {
        while !text.contains("event: offered") {
            let chunk = response.chunk().await.unwrap().expect("stream open");
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
    })
    .await;
    assert!(read.is_ok(), "no offered event: {text}");
    assert!(text.starts_with("event: waiting"), "{text}");
    assert!(text.contains("\"hold_id\":\"ho_"), "{text}");
}

/// Distributed mode: two nodes on one Redis and PostgreSQL; fans join and release on the
/// node that does not match, the matching node (the audit writer) offers, and either node
/// answers. The pool is in Redis: the freed seats are never holdable in between.
#[tokio::test]
async fn two_nodes_share_the_waitlist_and_the_matcher_node_offers() {
    let backends = crate::distributed::Backends::fresh().await;
    let writer =
        backends.node_with(&crate::services::redis_url(), true, |c| c.waitlist.offer_ttl_s = 1).await;
    let other = backends.node(false).await;
    let event = event(&writer, 4).await;
    let ann = other.fan("ann").await;
    // The other node learns of the event through its catalog follower.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let freed = loop {
        let (status, hold) = other.hold(&ann, &event, &["A-1-1", "A-1-2"]).await;
        if status == StatusCode::CREATED {
            break hold["hold_id"].as_str().unwrap().to_owned();
        }
        assert!(tokio::time::Instant::now() < deadline, "{hold}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let kept = other.hold_ok(&ann, &event, &["A-1-3", "A-1-4"]).await;
    let (bob, cat, dan) = (other.fan("bob").await, other.fan("cat").await, other.fan("dan").await);
    let (status, b) = join(&other, &bob, &event, json!({"group_size": 2})).await;
    assert_eq!(status, StatusCode::CREATED, "{b}");
    let (_, c) = join(&other, &cat, &event, json!({"group_size": 2})).await;
    assert_eq!(entry(&writer, &bob, &event, &id(&b)).await["position"], 1);

    other.delete(&format!("/v1/holds/{freed}"), Some(&ann)).await;
    let (status, body) = other.hold(&dan, &event, &["A-1-1"]).await;
    assert_error(status, &body, 409, "SEATS_UNAVAILABLE");
    let first = until_state(&other, &bob, &event, &id(&b), "offered").await;
    // Not taken: it passes to cat.
    until_state(&other, &bob, &event, &id(&b), "expired").await;
    let second = until_state(&other, &cat, &event, &id(&c), "offered").await;
    assert_ne!(second["hold_id"], first["hold_id"]);
    let (status, hold) =
        other.get(&format!("/v1/holds/{}", second["hold_id"].as_str().unwrap()), Some(&cat)).await;
    assert_eq!(status, StatusCode::OK, "{hold}");
    assert_eq!(seat_labels(&hold), vec!["A-1-1", "A-1-2"]);

    // Nobody waits now (cat's offer is out): a fan joining through the other node must
    // keep the flag set although the writer node's index does not show her yet, so the
    // seats ann frees next go to her, not on sale.
    let eve = other.fan("eve").await;
    let (status, e) = join(&other, &eve, &event, json!({"group_size": 2})).await;
    assert_eq!(status, StatusCode::CREATED, "{e}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    other.delete(&format!("/v1/holds/{kept}"), Some(&ann)).await;
    let (status, body) = other.hold(&dan, &event, &["A-1-3"]).await;
    assert_error(status, &body, 409, "SEATS_UNAVAILABLE");
    let third = until_state(&other, &eve, &event, &id(&e), "offered").await;
    let (_, hold) = other.get(&format!("/v1/holds/{}", third["hold_id"].as_str().unwrap()), Some(&eve)).await;
    // Ann's seats, or cat's if her offer (1 s) ran out first: the rule takes the lowest run.
    let labels = seat_labels(&hold);
    assert!(labels == ["A-1-3", "A-1-4"] || labels == ["A-1-1", "A-1-2"], "{labels:?}");
    audit_verifies(&writer, &event).await;
}

#[tokio::test]
async fn seats_held_back_for_an_allocation_count_as_sold_out_for_the_public() {
    let app = spawn().await;
    let admin = app.admin().await;
    let event = event(&app, 4).await;
    let path = format!("/v1/events/{event}/allocations");
    let release_at = time_from_now(chrono::Duration::days(1));
    let (status, body) = app
        .post(
            &path,
            Some(&admin),
            json!({"name": "fanclub", "seats": ["A-1-3", "A-1-4"], "release_at": release_at}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let ann = app.fan("ann").await;
    let (status, body) = join(&app, &ann, &event, json!({"group_size": 2})).await;
    assert_error(status, &body, 409, "NOT_SOLD_OUT");
    // The two public seats sold: the public sees the event sold out, and may join.
    app.buy(&ann, &event, &["A-1-1", "A-1-2"]).await;
    let bob = app.fan("bob").await;
    let (status, body) = join(&app, &bob, &event, json!({"group_size": 2})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

#[tokio::test]
async fn a_cancelled_events_waiting_entries_end() {
    let app = spawn().await;
    let admin = app.admin().await;
    let event = event(&app, 2).await;
    let ann = app.fan("ann").await;
    app.hold_ok(&ann, &event, &["A-1-1", "A-1-2"]).await;
    let bob = app.fan("bob").await;
    let (status, b) = join(&app, &bob, &event, json!({"group_size": 2})).await;
    assert_eq!(status, StatusCode::CREATED, "{b}");
    let (status, body) = send(
        app.client
            .patch(app.url(&format!("/v1/events/{event}")))
            .bearer_auth(&admin)
            .json(&json!({"status": "cancelled"})),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    // Nothing is offered any more: the entry ends instead of waiting for ever.
    until_state(&app, &bob, &event, &id(&b), "expired").await;
}
