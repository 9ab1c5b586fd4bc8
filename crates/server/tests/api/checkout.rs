//! Checkout and orders: `POST /v1/holds/{id}/checkout` with its idempotency rules, `GET
//! /v1/orders/{id}` and `GET /v1/me/orders`.

use std::collections::HashSet;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{assert_error, bit, send, send_raw, spawn, spawn_with};

fn checkout_path(hold: &str) -> String {
    format!("/v1/holds/{hold}/checkout")
}

fn visa() -> Value {
    json!({"payment": {"method": "card", "token": "tok_visa"}})
}

#[tokio::test]
async fn checkout_with_tok_visa_confirms_an_order_with_one_ticket_per_seat_and_the_seats_stay_sold() {
    let app = spawn().await;
    let admin = app.admin().await;
    let alice = app.fan("alice").await;
    let bob = app.fan("bob").await;
    let event = app.on_sale_event(&admin, &[("A", 1, 10, "premium"), ("B", 1, 10, "standard")]).await;
    let (_, hold) = app.hold(&alice, &event, &["A-1-1", "B-1-2", "A-1-2"]).await;
    let hold_id = hold["hold_id"].as_str().unwrap();

    let (status, order) = app.checkout(&alice, hold_id, "tok_visa", "pay-1").await;
    assert_eq!(status, StatusCode::CREATED, "{order}");
    assert!(order["order_id"].is_string());
    assert_eq!(order["status"], "confirmed");
    assert_eq!(order["event_id"], event.as_str());
    assert_eq!(order["hold_id"], hold_id);
    assert_eq!(order["total"], hold["total"]);
    assert_eq!(order["total"], json!({"amount": 12500, "currency": "USD"}));
    assert_eq!(order["email"], "alice@example.com", "the email defaults to the token's");
    let mut seats: Vec<&str> =
        order["seats"].as_array().unwrap().iter().map(|s| s["label"].as_str().unwrap()).collect();
    seats.sort();
    assert_eq!(seats, ["A-1-1", "A-1-2", "B-1-2"]);
    let tickets = order["tickets"].as_array().unwrap();
    assert_eq!(tickets.len(), 3);
    let mut ticket_seats: Vec<&str> = tickets.iter().map(|t| t["seat"].as_str().unwrap()).collect();
    ticket_seats.sort();
    assert_eq!(ticket_seats, seats);
    let ids: HashSet<&str> = tickets.iter().map(|t| t["ticket_id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 3, "ticket ids are distinct");
    assert!(tickets.iter().all(|t| t["status"] == "valid"));

    let (status, read) = app.get(&format!("/v1/holds/{hold_id}"), Some(&alice)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(read["status"], "confirmed");
    let (bitmap, _) = app.bitmap(&event).await;
    assert!(!bit(&bitmap, 0) && !bit(&bitmap, 1) && !bit(&bitmap, 11));
    assert!(bit(&bitmap, 2) && bit(&bitmap, 10));
    let (status, body) = app.hold(&bob, &event, &["A-1-1"]).await;
    assert_error(status, &body, 409, "SEATS_UNAVAILABLE");
    assert_eq!(body["error"]["seats"], json!(["A-1-1"]));
    // A checkout body may name another address.
    let hold = app.hold_ok(&bob, &event, &["A-1-5"]).await;
    let (status, order) = app
        .post_keyed(
            &checkout_path(&hold),
            &bob,
            "k",
            json!({"payment": {"method": "card", "token": "tok_visa"},
                                                              "email": "bob@mail.example.org"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{order}");
    assert_eq!(order["email"], "bob@mail.example.org");
    // Without an email anywhere the order is still confirmed (tickets are not mailed).
    let (status, minted) = app.post("/v1/auth/token", None, json!({"user": "carol", "role": "fan"})).await;
    assert_eq!(status, StatusCode::OK);
    let carol = minted["token"].as_str().unwrap();
    let hold = app.hold_ok(carol, &event, &["A-1-6"]).await;
    let (status, order) = app.checkout(carol, &hold, "tok_visa", "k").await;
    assert_eq!(status, StatusCode::CREATED, "{order}");
    assert!(order["email"].is_null());
    assert_eq!(order["tickets"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn order_is_visible_to_its_owner_and_admins_and_404_to_anyone_else() {
    let app = spawn().await;
    let admin = app.admin().await;
    let alice = app.fan("alice").await;
    let bob = app.fan("bob").await;
    let event = app.on_sale_event(&admin, &[("A", 1, 10, "premium")]).await;
    let order = app.buy(&alice, &event, &["A-1-1", "A-1-2"]).await;
    let path = format!("/v1/orders/{}", order["order_id"].as_str().unwrap());
    let (status, read) = app.get(&path, Some(&alice)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(read, order);
    let (status, read) = app.get(&path, Some(&admin)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(read, order);
    let (status, body) = app.get(&path, Some(&bob)).await;
    assert_error(status, &body, 404, "NOT_FOUND");
    let (status, body) = app.get(&path, None).await;
    assert_error(status, &body, 401, "UNAUTHENTICATED");
    for unknown in ["or_00000000000000000000000000", "nonsense"] {
        let (status, body) = app.get(&format!("/v1/orders/{unknown}"), Some(&alice)).await;
        assert_error(status, &body, 404, "NOT_FOUND");
    }
}

#[tokio::test]
async fn my_orders_lists_the_callers_orders_only_in_pages() {
    let app = spawn().await;
    let admin = app.admin().await;
    let alice = app.fan("alice").await;
    let bob = app.fan("bob").await;
    let event = app.on_sale_event(&admin, &[("A", 1, 10, "premium")]).await;
    let mut mine = HashSet::new();
    for seats in [&["A-1-1"][..], &["A-1-2", "A-1-3"], &["A-1-4"]] {
        let order = app.buy(&alice, &event, seats).await;
        mine.insert(order["order_id"].as_str().unwrap().to_owned());
    }
    app.buy(&bob, &event, &["A-1-9"]).await;

    let (status, page) = app.get("/v1/me/orders", Some(&alice)).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let listed: HashSet<String> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["order_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(listed, mine);
    assert!(page["next_cursor"].is_null());

    let mut paged = Vec::new();
    let (status, first) = app.get("/v1/me/orders?limit=2", Some(&alice)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(first["items"].as_array().unwrap().len(), 2);
    paged.extend(
        first["items"].as_array().unwrap().iter().map(|o| o["order_id"].as_str().unwrap().to_owned()),
    );
    let cursor = first["next_cursor"].as_str().expect("a second page");
    let (status, second) = app.get(&format!("/v1/me/orders?limit=2&cursor={cursor}"), Some(&alice)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(second["items"].as_array().unwrap().len(), 1);
    assert!(second["next_cursor"].is_null());
    paged.extend(
        second["items"].as_array().unwrap().iter().map(|o| o["order_id"].as_str().unwrap().to_owned()),
    );
    assert_eq!(paged.len(), 3);
    assert_eq!(paged.into_iter().collect::<HashSet<_>>(), mine, "no gaps, no duplicates");

    let (_, page) = app.get("/v1/me/orders", Some(&bob)).await;
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    let carol = app.fan("carol").await;
    let (_, page) = app.get("/v1/me/orders", Some(&carol)).await;
    assert_eq!(page, json!({"items": [], "next_cursor": null}));
    for query in ["limit=0", "limit=101", "limit=abc", "cursor=garbage"] {
        let (status, body) = app.get(&format!("/v1/me/orders?{query}"), Some(&alice)).await;
        assert_error(status, &body, 400, "INVALID_REQUEST");
    }
    let (status, body) = app.get("/v1/me/orders", None).await;
    assert_error(status, &body, 401, "UNAUTHENTICATED");
}

#[tokio::test]
async fn checkout_without_an_idempotency_key_is_400_and_buys_nothing() {
    let app = spawn().await;
    let admin = app.admin().await;
    let alice = app.fan("alice").await;
    let event = app.on_sale_event(&admin, &[("A", 1, 10, "premium")]).await;
    let hold = app.hold_ok(&alice, &event, &["A-1-1"]).await;
    let (status, body) = app.post(&checkout_path(&hold), Some(&alice), visa()).await;
    assert_error(status, &body, 400, "IDEMPOTENCY_KEY_REQUIRED");
    let (_, read) = app.get(&format!("/v1/holds/{hold}"), Some(&alice)).await;
    assert_eq!(read["status"], "held");
}

#[tokio::test]
async fn checkout_with_the_same_key_and_body_replays_the_first_answer() {
    let app = spawn().await;
    let admin = app.admin().await;
    let alice = app.fan("alice").await;
    let event = app.on_sale_event(&admin, &[("A", 1, 10, "premium")]).await;
    let hold = app.hold_ok(&alice, &event, &["A-1-1", "A-1-2"]).await;
    let first = send_raw(
        app.client
            .post(app.url(&checkout_path(&hold)))
            .bearer_auth(&alice)
            .header("Idempotency-Key", "k1")
            .json(&visa()),
    )
    .await;
    assert_eq!(first.status, StatusCode::CREATED);
    let again = send_raw(
        app.client
            .post(app.url(&checkout_path(&hold)))
            .bearer_auth(&alice)
            .header("Idempotency-Key", "k1")
            .json(&visa()),
    )
    .await;
    assert_eq!(again.status, StatusCode::CREATED);
    assert_eq!(again.body, first.body, "byte for byte");
    assert!(again.header("content-type").unwrap().starts_with("application/json"));
    let (_, page) = app.get("/v1/me/orders", Some(&alice)).await;
    assert_eq!(page["items"].as_array().unwrap().len(), 1, "one order, not two");
}

#[tokio::test]
async fn checkout_with_the_same_key_and_another_body_is_422_idempotency_mismatch() {
    let app = spawn().await;
    let admin = app.admin().await;
    let alice = app.fan("alice").await;
    let event = app.on_sale_event(&admin, &[("A", 1, 10, "premium")]).await;
    let hold = app.hold_ok(&alice, &event, &["A-1-1"]).await;
    let (status, _) = app.checkout(&alice, &hold, "tok_declined", "k1").await;
    assert_eq!(status, StatusCode::PAYMENT_REQUIRED);
    let (status, body) = app.checkout(&alice, &hold, "tok_visa", "k1").await;
    assert_error(status, &body, 422, "IDEMPOTENCY_MISMATCH");
    let (status, _) = app.checkout(&alice, &hold, "tok_visa", "k2").await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, body) = app
        .post_keyed(
            &checkout_path(&hold),
            &alice,
            "k2",
            json!({"payment": {"method": "card", "token": "tok_visa"},
                                                                 "email": "x@example.com"}),
        )
        .await;
    assert_error(status, &body, 422, "IDEMPOTENCY_MISMATCH");
}

#[tokio::test]
async fn checkout_of_a_bought_hold_under_another_key_is_409_already_confirmed_with_the_order_id() {
    let app = spawn().await;
    let admin = app.admin().await;
    let alice = app.fan("alice").await;
    let event = app.on_sale_event(&admin, &[("A", 1, 10, "premium")]).await;
    let hold = app.hold_ok(&alice, &event, &["A-1-1"]).await;
    let (status, order) = app.checkout(&alice, &hold, "tok_visa", "k1").await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, body) = app.checkout(&alice, &hold, "tok_visa", "k2").await;
    assert_error(status, &body, 409, "ALREADY_CONFIRMED");
    assert_eq!(body["error"]["order_id"], order["order_id"]);
    // Final: the same key replays the 409.
    let (status, again) = app.checkout(&alice, &hold, "tok_visa", "k2").await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(again, body);
    let (_, page) = app.get("/v1/me/orders", Some(&alice)).await;
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn declined_payment_is_402_and_keeps_the_hold_for_a_retry_with_a_new_key() {
    let app = spawn().await;
    let admin = app.admin().await;
    let alice = app.fan("alice").await;
    let event = app.on_sale_event(&admin, &[("A", 1, 10, "premium")]).await;
    let hold = app.hold_ok(&alice, &event, &["A-1-1", "A-1-2"]).await;
    let (status, body) = app.checkout(&alice, &hold, "tok_declined", "k1").await;
    assert_error(status, &body, 402, "PAYMENT_DECLINED");
    let (_, read) = app.get(&format!("/v1/holds/{hold}"), Some(&alice)).await;
    assert_eq!(read["status"], "held");
    let (bitmap, _) = app.bitmap(&event).await;
    assert!(!bit(&bitmap, 0) && !bit(&bitmap, 1), "the seats stay held");
    // The same key replays the decline.
    let (status, again) = app.checkout(&alice, &hold, "tok_declined", "k1").await;
    assert_eq!(status, StatusCode::PAYMENT_REQUIRED);
    assert_eq!(again, body);
    let (status, order) = app.checkout(&alice, &hold, "tok_visa", "k2").await;
    assert_eq!(status, StatusCode::CREATED, "{order}");
    assert_eq!(order["tickets"].as_array().unwrap().len(), 2);
    let (_, page) = app.get("/v1/me/orders", Some(&alice)).await;
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn checkout_of_someone_elses_or_an_unknown_hold_is_404() {
    let app = spawn().await;
    let admin = app.admin().await;
    let alice = app.fan("alice").await;
    let bob = app.fan("bob").await;
    let event = app.on_sale_event(&admin, &[("A", 1, 10, "premium")]).await;
    let hold = app.hold_ok(&alice, &event, &["A-1-1"]).await;
    let (status, body) = app.checkout(&bob, &hold, "tok_visa", "k1").await;
    assert_error(status, &body, 404, "NOT_FOUND");
    let (_, read) = app.get(&format!("/v1/holds/{hold}"), Some(&alice)).await;
    assert_eq!(read["status"], "held");
    for unknown in ["ho_1_00000000000000000000000000000000", "junk"] {
        let (status, body) = app.checkout(&alice, unknown, "tok_visa", "k2").await;
        assert_error(status, &body, 404, "NOT_FOUND");
    }
    let (status, body) =
        send(app.client.post(app.url(&checkout_path(&hold))).header("Idempotency-Key", "k3").json(&visa()))
            .await;
    assert_error(status, &body, 401, "UNAUTHENTICATED");
    // Alice's own key is still free for her.
    let (status, _) = app.checkout(&alice, &hold, "tok_visa", "k1").await;
    assert_eq!(status, StatusCode::CREATED);
}

#[tokio::test]
async fn checkout_of_a_released_hold_is_410_hold_expired() {
    let app = spawn().await;
    let admin = app.admin().await;
    let alice = app.fan("alice").await;
    let event = app.on_sale_event(&admin, &[("A", 1, 10, "premium")]).await;
    let hold = app.hold_ok(&alice, &event, &["A-1-1"]).await;
    let (status, _) = app.delete(&format!("/v1/holds/{hold}"), Some(&alice)).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = app.checkout(&alice, &hold, "tok_visa", "k1").await;
    assert_error(status, &body, 410, "HOLD_EXPIRED");
    let (bitmap, _) = app.bitmap(&event).await;
    assert!(bit(&bitmap, 0));
}

#[tokio::test]
async fn release_of_a_bought_hold_is_409_and_keeps_the_seats_sold() {
    let app = spawn().await;
    let admin = app.admin().await;
    let alice = app.fan("alice").await;
    let event = app.on_sale_event(&admin, &[("A", 1, 10, "premium")]).await;
    let hold = app.hold_ok(&alice, &event, &["A-1-1"]).await;
    let (status, _) = app.checkout(&alice, &hold, "tok_visa", "k1").await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, body) = app.delete(&format!("/v1/holds/{hold}"), Some(&alice)).await;
    assert_error(status, &body, 409, "ALREADY_CONFIRMED");
    let (bitmap, _) = app.bitmap(&event).await;
    assert!(!bit(&bitmap, 0));
    let (_, read) = app.get(&format!("/v1/holds/{hold}"), Some(&alice)).await;
    assert_eq!(read["status"], "confirmed");
}

#[tokio::test]
async fn checkout_bodies_that_break_the_schema_are_400() {
    let app = spawn().await;
    let admin = app.admin().await;
    let alice = app.fan("alice").await;
    let event = app.on_sale_event(&admin, &[("A", 1, 10, "premium")]).await;
    let hold = app.hold_ok(&alice, &event, &["A-1-1"]).await;
    let cases = [
        ("method other than card", json!({"payment": {"method": "paypal", "token": "tok_visa"}})),
        ("no payment", json!({})),
        ("no token", json!({"payment": {"method": "card"}})),
        ("unknown field", json!({"payment": {"method": "card", "token": "tok_visa"}, "tip": 5})),
        ("unknown payment field", json!({"payment": {"method": "card", "token": "tok_visa", "cvc": "123"}})),
        ("bad email", json!({"payment": {"method": "card", "token": "tok_visa"}, "email": "not-an-address"})),
    ];
    for (i, (what, body)) in cases.into_iter().enumerate() {
        let (status, answer) = app.post_keyed(&checkout_path(&hold), &alice, &format!("k{i}"), body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{what}: {answer}");
        assert_eq!(answer["error"]["code"], "INVALID_REQUEST", "{what}: {answer}");
    }
    let r = send_raw(
        app.client
            .post(app.url(&checkout_path(&hold)))
            .bearer_auth(&alice)
            .header("Idempotency-Key", "raw")
            .header("content-type", "application/json")
            .body("{\"payment\":"),
    )
    .await;
    assert_error(r.status, &r.json(), 400, "MALFORMED_JSON");
    let (_, read) = app.get(&format!("/v1/holds/{hold}"), Some(&alice)).await;
    assert_eq!(read["status"], "held");
    let (status, _) = app.checkout(&alice, &hold, "tok_visa", "ok").await;
    assert_eq!(status, StatusCode::CREATED);
}

#[tokio::test]
async fn gateway_timeout_is_503_payments_unavailable_with_retry_after_and_keeps_the_hold() {
    let app = spawn_with(|c| c.payment_timeout = 1).await;
    let admin = app.admin().await;
    let alice = app.fan("alice").await;
    let event = app.on_sale_event(&admin, &[("A", 1, 10, "premium")]).await;
    let hold = app.hold_ok(&alice, &event, &["A-1-1"]).await;
    let r = send_raw(
        app.client
            .post(app.url(&checkout_path(&hold)))
            .bearer_auth(&alice)
            .header("Idempotency-Key", "k1")
            .json(&json!({"payment": {"method": "card", "token": "tok_timeout"}})),
    )
    .await;
    assert_error(r.status, &r.json(), 503, "PAYMENTS_UNAVAILABLE");
    assert!(r.header("retry-after").is_some());
    let (_, read) = app.get(&format!("/v1/holds/{hold}"), Some(&alice)).await;
    assert_eq!(read["status"], "held");
    // A 503 is not final: the key is free again, and the retry under it runs.
    let (status, order) = app.checkout(&alice, &hold, "tok_visa", "k1").await;
    assert_eq!(status, StatusCode::CREATED, "{order}");
}

#[tokio::test]
async fn requests_during_a_running_checkout_are_409_in_progress_checkout_in_progress_and_hold_confirming() {
    let app = spawn_with(|c| c.payment_latency_ms = (1500, 1500)).await;
    let admin = app.admin().await;
    let alice = app.fan("alice").await;
    let event = app.on_sale_event(&admin, &[("A", 1, 10, "premium")]).await;
    let hold = app.hold_ok(&alice, &event, &["A-1-1"]).await;
    let running = tokio::spawn({
        let req = app
            .client
            .post(app.url(&checkout_path(&hold)))
            .bearer_auth(&alice)
            .header("Idempotency-Key", "k1")
            .json(&visa());
        send(req)
    });
    // Wait until the hold is pinned (polling, not timing).
    let mut confirming = false;
    for _ in 0..200 {
        let (_, read) = app.get(&format!("/v1/holds/{hold}"), Some(&alice)).await;
        if read["status"] == "confirming" {
            confirming = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert!(confirming, "the checkout never pinned the hold");
    let (status, body) = app.checkout(&alice, &hold, "tok_visa", "k1").await;
    assert_error(status, &body, 409, "IN_PROGRESS");
    let (status, body) = app.checkout(&alice, &hold, "tok_visa", "k2").await;
    assert_error(status, &body, 409, "CHECKOUT_IN_PROGRESS");
    let (status, body) = app.delete(&format!("/v1/holds/{hold}"), Some(&alice)).await;
    assert_error(status, &body, 409, "HOLD_CONFIRMING");
    let (status, order) = running.await.unwrap();
    assert_eq!(status, StatusCode::CREATED, "{order}");
    let (_, read) = app.get(&format!("/v1/holds/{hold}"), Some(&alice)).await;
    assert_eq!(read["status"], "confirmed");
}
