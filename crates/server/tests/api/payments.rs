//! Payments: the attempt recorded before the gateway and its states, decline and timeout
//! paths, refunds, and the reconciler settling checkouts that a crash or a hang left open
//! (driven by calling its step function, not by waiting for its timer).

use std::time::Duration;

use boxoffice_core::{Currency, HoldId, Money, OrderId, TicketId, UserId};
use boxoffice_server::payments::{LedgerState, PaymentRequest};
use boxoffice_server::workers::{ReconcileMode, anti_entropy, reconcile};
use boxoffice_store::{AttemptState, AttemptUpdate, NewOrder, NewPaymentAttempt, NewTicket, PaymentAttempt};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_error, bit, spawn, spawn_in, spawn_with};

fn now_ms() -> u64 {
    chrono::Utc::now().timestamp_millis() as u64
}

fn hold_id(raw: &str) -> HoldId {
    HoldId::parse(raw).expect("a hold id")
}

async fn attempts(app: &TestApp, hold: &str) -> Vec<PaymentAttempt> {
    app.state.store.attempts_for_hold(&hold_id(hold)).await.expect("attempts")
}

async fn ledger(app: &TestApp, key: &str) -> Option<LedgerState> {
    app.state.gateway.retrieve(key).await.expect("the simulated gateway answers")
}

fn refund_path(order: &Value) -> String {
    format!("/v1/orders/{}/refund", order["order_id"].as_str().unwrap())
}

fn ticket_ids(order: &Value) -> Vec<String> {
    order["tickets"].as_array().unwrap().iter().map(|t| t["ticket_id"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn a_paid_checkout_records_its_attempt_authorized_then_captured_under_one_gateway_key() {
    let app = spawn().await;
    let admin = app.admin().await;
    let alice = app.fan("alice").await;
    let event = app.on_sale_event(&admin, &[("A", 1, 10, "premium")]).await;
    let hold = app.hold_ok(&alice, &event, &["A-1-1", "A-1-2"]).await;
    let (status, order) = app.checkout(&alice, &hold, "tok_visa", "k1").await;
    assert_eq!(status, StatusCode::CREATED, "{order}");

    let recorded = attempts(&app, &hold).await;
    assert_eq!(recorded.len(), 1, "one attempt per checkout");
    let attempt = &recorded[0];
    assert_eq!(attempt.state, AttemptState::Captured);
    assert_eq!(attempt.gateway, "simulated");
    assert_eq!(attempt.gateway_key, attempt.id, "the gateway key is the attempt's");
    assert_eq!(attempt.seats, [0, 1]);
    assert_eq!(attempt.amount, Money::new(10_000, Currency::USD));
    assert_eq!(attempt.order.as_ref().map(OrderId::as_str), order["order_id"].as_str());
    assert!(attempt.pin_deadline > attempt.created_at);
    assert_eq!(ledger(&app, &attempt.gateway_key).await, Some(LedgerState::Captured));
    let stored = app.state.store.order(&attempt.order.clone().unwrap()).await.unwrap();
    assert_eq!(stored.payment_attempt.as_deref(), Some(attempt.id.as_str()));
}

#[tokio::test]
async fn the_attempt_is_committed_before_the_gateway_answers_and_a_timeout_voids_it() {
    // `tok_timeout` never answers: while the checkout waits, the attempt is on record and
    // the gateway has nothing; after the timeout the key is voided and the hold usable.
    let app = spawn_with(|c| c.payment_timeout = 2).await;
    let admin = app.admin().await;
    let alice = app.fan("alice").await;
    let event = app.on_sale_event(&admin, &[("A", 1, 10, "premium")]).await;
    let hold = app.hold_ok(&alice, &event, &["A-1-1"]).await;
    let running = {
        let req = app
            .client
            .post(app.url(&format!("/v1/holds/{hold}/checkout")))
            .bearer_auth(&alice)
            .header("Idempotency-Key", "k1")
            .json(&json!({"payment": {"method": "card", "token": "tok_timeout"}}));
        tokio::spawn(crate::helpers::send(req))
    };
    let mut seen = None;
    for _ in 0..400 {
        if let Some(attempt) = attempts(&app, &hold).await.pop() {
            seen = Some(attempt);
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let in_flight = seen.expect("the attempt is recorded while the gateway call runs");
    assert_eq!(in_flight.state, AttemptState::Initiated);
    assert_eq!(ledger(&app, &in_flight.gateway_key).await, None, "the gateway has not answered");
    let (_, read) = app.get(&format!("/v1/holds/{hold}"), Some(&alice)).await;
    assert_eq!(read["status"], "confirming");

    let (status, body) = running.await.unwrap();
    assert_error(status, &body, 503, "PAYMENTS_UNAVAILABLE");
    let after = app.state.store.attempt(&in_flight.id).await.unwrap();
    assert_eq!((after.state, after.order), (AttemptState::Voided, None));
    assert_eq!(ledger(&app, &in_flight.gateway_key).await, Some(LedgerState::Voided), "the key is burnt");
    assert!(app.state.store.order_for_hold(&hold_id(&hold)).await.unwrap().is_none());
    let (_, read) = app.get(&format!("/v1/holds/{hold}"), Some(&alice)).await;
    assert_eq!(read["status"], "held", "the hold is usable again");
    let (status, order) = app.checkout(&alice, &hold, "tok_visa", "k2").await;
    assert_eq!(status, StatusCode::CREATED, "{order}");
    let states: Vec<AttemptState> = attempts(&app, &hold).await.iter().map(|a| a.state).collect();
    assert_eq!(states, [AttemptState::Voided, AttemptState::Captured]);
}

#[tokio::test]
async fn a_declined_payment_records_a_declined_attempt_and_no_order() {
    let app = spawn().await;
    let admin = app.admin().await;
    let alice = app.fan("alice").await;
    let event = app.on_sale_event(&admin, &[("A", 1, 10, "premium")]).await;
    let hold = app.hold_ok(&alice, &event, &["A-1-1"]).await;
    let (status, body) = app.checkout(&alice, &hold, "tok_declined", "k1").await;
    assert_error(status, &body, 402, "PAYMENT_DECLINED");
    let recorded = attempts(&app, &hold).await;
    assert_eq!(recorded.len(), 1);
    assert_eq!((recorded[0].state, recorded[0].order.clone()), (AttemptState::Declined, None));
    assert_eq!(ledger(&app, &recorded[0].gateway_key).await, Some(LedgerState::Declined));
    assert!(app.state.store.order_for_hold(&hold_id(&hold)).await.unwrap().is_none());
    let (_, page) = app.get("/v1/me/orders", Some(&alice)).await;
    assert_eq!(page["items"], json!([]));
    let (_, read) = app.get(&format!("/v1/holds/{hold}"), Some(&alice)).await;
    assert_eq!(read["status"], "held");
}

#[tokio::test]
async fn a_whole_refund_voids_every_ticket_returns_the_money_once_and_puts_the_seats_back_on_sale_at_once() {
    let app = spawn().await;
    let admin = app.admin().await;
    let alice = app.fan("alice").await;
    let event = app.on_sale_event(&admin, &[("A", 1, 10, "premium")]).await;
    let order = app.buy(&alice, &event, &["A-1-1", "A-1-2"]).await;
    let attempt = order_attempt(&app, &order).await;

    let (status, refunded) = app.post(&refund_path(&order), Some(&alice), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{refunded}");
    assert_eq!(refunded["order_id"], order["order_id"]);
    assert_eq!(refunded["status"], "refunded");
    assert!(refunded["tickets"].as_array().unwrap().iter().all(|t| t["status"] == "voided"));
    let refund = &refunded["refund"];
    assert_eq!(refund["amount"], json!({"amount": 10000, "currency": "USD"}));
    assert_eq!(refund["status"], "succeeded");
    let mut refunded_ids: Vec<String> =
        refund["ticket_ids"].as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_owned()).collect();
    refunded_ids.sort();
    let mut all = ticket_ids(&order);
    all.sort();
    assert_eq!(refunded_ids, all);
    assert_eq!(ledger(&app, &format!("refund:{}", attempt.id)).await, Some(LedgerState::Refunded));
    assert_eq!(app.state.store.attempt(&attempt.id).await.unwrap().state, AttemptState::Refunded);
    let (_, read) =
        app.get(&format!("/v1/orders/{}", order["order_id"].as_str().unwrap()), Some(&alice)).await;
    assert_eq!(read["status"], "refunded");

    // Twice: nothing more is voided or sent to the gateway.
    let (status, again) = app.post(&refund_path(&order), Some(&alice), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["status"], "refunded");
    assert!(again["refund"].is_null(), "{again}");
    assert_eq!(ledger(&app, &format!("refund:{}:2", attempt.id)).await, None);

    // The seats are back on sale at once, and nothing is left for anti-entropy.
    let (bitmap, _) = app.bitmap(&event).await;
    assert!(bit(&bitmap, 0) && bit(&bitmap, 1), "refunded seats are back on sale at once");
    assert_eq!(anti_entropy(&app.state).await.unwrap(), Default::default());
    let bob = app.fan("bob").await;
    app.buy(&bob, &event, &["A-1-1", "A-1-2"]).await;
    // And a restart rebuilds the same state from the valid tickets.
    let dir = app.stop().await;
    let app = spawn_in(dir, |_| {}).await;
    let (bitmap, _) = app.bitmap(&event).await;
    assert!(!bit(&bitmap, 0) && !bit(&bitmap, 1), "bob's seats are sold after a restart");
    assert_eq!(anti_entropy(&app.state).await.unwrap(), Default::default());
}

async fn order_attempt(app: &TestApp, order: &Value) -> PaymentAttempt {
    let attempts = attempts(app, order["hold_id"].as_str().unwrap()).await;
    attempts.into_iter().find(|a| a.order.is_some()).expect("the attempt that paid")
}

#[tokio::test]
async fn partial_refunds_each_get_their_own_gateway_key_and_the_order_tracks_them() {
    let app = spawn().await;
    let admin = app.admin().await;
    let alice = app.fan("alice").await;
    let event = app.on_sale_event(&admin, &[("A", 1, 10, "premium"), ("B", 1, 10, "standard")]).await;
    let order = app.buy(&alice, &event, &["A-1-1", "B-1-1", "B-1-2"]).await;
    let attempt = order_attempt(&app, &order).await;
    let tickets = order["tickets"].as_array().unwrap().clone();
    let premium =
        tickets.iter().find(|t| t["seat"] == "A-1-1").unwrap()["ticket_id"].as_str().unwrap().to_owned();
    let standard =
        tickets.iter().find(|t| t["seat"] == "B-1-1").unwrap()["ticket_id"].as_str().unwrap().to_owned();

    let (status, first) =
        app.post(&refund_path(&order), Some(&alice), json!({"ticket_ids": [premium]})).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(first["status"], "partially_refunded");
    assert_eq!(first["refund"]["amount"], json!({"amount": 5000, "currency": "USD"}));
    assert_eq!(first["refund"]["ticket_ids"], json!([premium]));
    let status_of = |order: &Value, id: &str| {
        order["tickets"].as_array().unwrap().iter().find(|t| t["ticket_id"] == id).unwrap()["status"].clone()
    };
    assert_eq!(status_of(&first, &premium), "voided");
    assert_eq!(status_of(&first, &standard), "valid");
    assert_eq!(ledger(&app, &format!("refund:{}", attempt.id)).await, Some(LedgerState::Refunded));

    // The same ticket again, listed twice, with another: only the other is refunded.
    let (status, second) = app
        .post(&refund_path(&order), Some(&alice), json!({"ticket_ids": [premium, standard, premium]}))
        .await;
    assert_eq!(status, StatusCode::OK, "{second}");
    assert_eq!(second["refund"]["ticket_ids"], json!([standard]));
    assert_eq!(second["refund"]["amount"], json!({"amount": 2500, "currency": "USD"}));
    assert_eq!(second["status"], "partially_refunded");
    assert_eq!(ledger(&app, &format!("refund:{}:2", attempt.id)).await, Some(LedgerState::Refunded));

    // An admin refunds the rest.
    let (status, last) = app.post(&refund_path(&order), Some(&admin), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{last}");
    assert_eq!(last["status"], "refunded");
    assert_eq!(last["refund"]["amount"], json!({"amount": 2500, "currency": "USD"}));
    assert_eq!(app.state.store.attempt(&attempt.id).await.unwrap().state, AttemptState::Refunded);
}

#[tokio::test]
async fn refunds_are_for_the_owner_or_an_admin_and_need_a_sound_body() {
    let app = spawn().await;
    let admin = app.admin().await;
    let alice = app.fan("alice").await;
    let bob = app.fan("bob").await;
    let event = app.on_sale_event(&admin, &[("A", 1, 10, "premium")]).await;
    let order = app.buy(&alice, &event, &["A-1-1"]).await;
    let other = app.buy(&bob, &event, &["A-1-5"]).await;

    let (status, body) = app.post(&refund_path(&order), Some(&bob), json!({})).await;
    assert_error(status, &body, 404, "NOT_FOUND");
    let (status, body) = app.post(&refund_path(&order), None, json!({})).await;
    assert_error(status, &body, 401, "UNAUTHENTICATED");
    for unknown in ["or_00000000000000000000000000", "junk"] {
        let (status, body) = app.post(&format!("/v1/orders/{unknown}/refund"), Some(&alice), json!({})).await;
        assert_error(status, &body, 404, "NOT_FOUND");
    }
    let bobs_ticket = ticket_ids(&other)[0].clone();
    let bad_bodies = [
        json!({"ticket_ids": []}),
        json!({"ticket_ids": ["not-a-ticket"]}),
        json!({"ticket_ids": [bobs_ticket]}),
        json!({"ticket_ids": [TicketId::random().to_string()]}),
        json!({"reason": "changed my mind"}),
    ];
    for body in bad_bodies {
        let (status, answer) = app.post(&refund_path(&order), Some(&alice), body.clone()).await;
        assert_error(status, &answer, 400, "INVALID_REQUEST");
    }
    let (_, read) =
        app.get(&format!("/v1/orders/{}", order["order_id"].as_str().unwrap()), Some(&alice)).await;
    assert_eq!(read["status"], "confirmed", "nothing was refunded");

    // With an Idempotency-Key the first answer is replayed byte for byte.
    let (status, first) = app.post_keyed(&refund_path(&order), &alice, "r1", json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let (status, replay) = app.post_keyed(&refund_path(&order), &alice, "r1", json!({})).await;
    assert_eq!((status, &replay), (StatusCode::OK, &first));
    assert!(replay["refund"].is_object(), "the replay is the first answer, not a second refund");
}

#[tokio::test]
async fn a_fan_cannot_refund_a_scanned_ticket_but_an_admin_can() {
    let app = spawn().await;
    let admin = app.admin().await;
    let staff = app.token("door", "staff").await;
    let alice = app.fan("alice").await;
    let event = app.on_sale_event(&admin, &[("A", 1, 10, "premium")]).await;
    let order = app.buy(&alice, &event, &["A-1-1", "A-1-2"]).await;
    let scanned = ticket_ids(&order)[0].clone();
    let (_, ticket) = app.get(&format!("/v1/tickets/{scanned}"), Some(&alice)).await;
    let (status, verdict) =
        app.post("/v1/tickets/verify", Some(&staff), json!({"qr_payload": ticket["qr_payload"]})).await;
    assert_eq!((status, verdict["result"].as_str()), (StatusCode::OK, Some("valid")));

    for body in [json!({}), json!({"ticket_ids": [scanned]})] {
        let (status, answer) = app.post(&refund_path(&order), Some(&alice), body).await;
        assert_error(status, &answer, 403, "TICKET_SCANNED");
        assert_eq!(answer["error"]["ticket_id"], scanned.as_str());
    }
    let (_, read) =
        app.get(&format!("/v1/orders/{}", order["order_id"].as_str().unwrap()), Some(&alice)).await;
    assert_eq!(read["status"], "confirmed");
    // The fan may still refund the unscanned ticket alone.
    let unscanned = ticket_ids(&order)[1].clone();
    let (status, partial) =
        app.post(&refund_path(&order), Some(&alice), json!({"ticket_ids": [unscanned]})).await;
    assert_eq!(status, StatusCode::OK, "{partial}");
    assert_eq!(partial["status"], "partially_refunded");
    let (status, whole) = app.post(&refund_path(&order), Some(&admin), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{whole}");
    assert_eq!(whole["status"], "refunded");
    assert_eq!(whole["refund"]["ticket_ids"], json!([scanned]));
}

/// Plants what a checkout that died after authorizing leaves behind: an authorized
/// attempt with no order whose deadline is past, and (if `pinned`) its pin on the hold.
async fn plant_authorized_attempt(
    app: &TestApp,
    hold: &str,
    user: &str,
    deadline: u64,
    pinned: bool,
) -> String {
    let hold = hold_id(hold);
    let view = app.state.inventory.hold_view(hold).await.unwrap();
    let attempt = format!("pa_{:032x}", rand_u128());
    let amount = Money::new(5_000 * view.seats.len() as i64, Currency::USD);
    // Gateway first, then the store, then the pin: whatever a background reconciler pass
    // sees in between, the end state is the same.
    let request = PaymentRequest { idempotency_key: attempt.clone(), amount, token: "tok_visa".into() };
    app.state.gateway.authorize(&request).await.unwrap();
    app.state
        .store
        .create_attempt(NewPaymentAttempt {
            id: attempt.clone(),
            hold,
            user: UserId::parse(user).unwrap(),
            seats: view.seats.clone(),
            amount,
            gateway: "simulated".into(),
            gateway_key: attempt.clone(),
            pin_deadline: deadline,
            created_at: deadline.saturating_sub(40_000),
        })
        .await
        .unwrap();
    let update = AttemptUpdate {
        id: &attempt,
        from: &[AttemptState::Initiated],
        to: AttemptState::Authorized,
        authorization_id: Some(&attempt),
        now: now_ms(),
    };
    app.state.store.update_attempt(update).await.unwrap();
    if pinned {
        let _ = app.state.inventory.pin(hold, &attempt, deadline).await;
    }
    attempt
}

fn rand_u128() -> u128 {
    u128::from_str_radix(&OrderId::random().as_str()[3..], 16).unwrap()
}

#[tokio::test]
async fn the_reconciler_voids_an_authorized_attempt_without_an_order_and_releases_its_hold() {
    let app = spawn().await;
    let admin = app.admin().await;
    let alice = app.fan("alice").await;
    let event = app.on_sale_event(&admin, &[("A", 1, 10, "premium")]).await;
    let hold = app.hold_ok(&alice, &event, &["A-1-1", "A-1-2"]).await;
    let attempt = plant_authorized_attempt(&app, &hold, "alice", now_ms() - 1_000, true).await;

    reconcile(&app.state, ReconcileMode::Periodic).await.unwrap();
    let settled = app.state.store.attempt(&attempt).await.unwrap();
    assert_eq!((settled.state, settled.order), (AttemptState::Voided, None));
    assert_eq!(ledger(&app, &attempt).await, Some(LedgerState::Voided));
    let (_, read) = app.get(&format!("/v1/holds/{hold}"), Some(&alice)).await;
    assert_eq!(read["status"], "released");
    let (bitmap, _) = app.bitmap(&event).await;
    assert!(bit(&bitmap, 0) && bit(&bitmap, 1), "the seats are free again");
    // A second pass finds nothing left to do.
    let again = reconcile(&app.state, ReconcileMode::Periodic).await.unwrap();
    assert_eq!((again.count("voided"), again.count("released")), (0, 0));
    let metrics = reqwest::get(app.url("/metrics")).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("boxoffice_reconciled_total{action=\"voided\"}"), "{metrics}");
}

#[tokio::test]
async fn the_reconciler_confirms_a_pinned_hold_whose_order_committed_and_captures_its_payment() {
    let app = spawn().await;
    let admin = app.admin().await;
    let alice = app.fan("alice").await;
    let event = app.on_sale_event(&admin, &[("A", 1, 10, "premium")]).await;
    let hold = app.hold_ok(&alice, &event, &["A-1-3"]).await;
    let deadline = now_ms() - 1_000;
    let attempt = plant_authorized_attempt(&app, &hold, "alice", deadline, true).await;
    // The checkout died right after its commit, before the engine heard of it.
    let order = NewOrder {
        id: OrderId::random(),
        event: hold_id(&hold).event,
        user: UserId::parse("alice").unwrap(),
        hold: hold_id(&hold),
        payment_attempt: Some(attempt.clone()),
        email: None,
        total: Money::new(5_000, Currency::USD),
        tickets: vec![NewTicket {
            id: TicketId::random(),
            seat_index: 2,
            seat_label: "A-1-3".into(),
            price: Money::new(5_000, Currency::USD),
            qr_payload: None,
        }],
        created_at: deadline - 10,
    };
    let committed = app.state.store.create_order(order).await.unwrap();

    reconcile(&app.state, ReconcileMode::Periodic).await.unwrap();
    let (_, read) = app.get(&format!("/v1/holds/{hold}"), Some(&alice)).await;
    assert_eq!(read["status"], "confirmed");
    let settled = app.state.store.attempt(&attempt).await.unwrap();
    assert_eq!((settled.state, settled.order), (AttemptState::Captured, Some(committed.id)));
    assert_eq!(ledger(&app, &attempt).await, Some(LedgerState::Captured));
    let (bitmap, _) = app.bitmap(&event).await;
    assert!(!bit(&bitmap, 2));
}

#[tokio::test]
async fn at_start_up_an_attempt_left_authorized_by_a_crash_is_voided_and_its_recovered_hold_released() {
    let app = spawn().await;
    let admin = app.admin().await;
    let alice = app.fan("alice").await;
    let event = app.on_sale_event(&admin, &[("A", 1, 10, "premium")]).await;
    let hold = app.hold_ok(&alice, &event, &["A-1-4"]).await;
    let kept = app.hold_ok(&alice, &event, &["A-1-9"]).await;
    // Its deadline is still ahead: the running server's reconciler leaves it alone.
    let attempt = plant_authorized_attempt(&app, &hold, "alice", now_ms() + 600_000, false).await;
    let dir = app.stop().await;

    let app = spawn_in(dir, |_| {}).await;
    let settled = app.state.store.attempt(&attempt).await.unwrap();
    assert_eq!(settled.state, AttemptState::Voided);
    assert_eq!(ledger(&app, &attempt).await, Some(LedgerState::Voided));
    let (bitmap, _) = app.bitmap(&event).await;
    assert!(bit(&bitmap, 3), "the crashed checkout's seat is free");
    assert!(!bit(&bitmap, 8), "a hold without a checkout is restored as it was");
    let (_, read) = app.get(&format!("/v1/holds/{hold}"), Some(&alice)).await;
    assert_eq!(read["status"], "released");
    let (_, read) = app.get(&format!("/v1/holds/{kept}"), Some(&alice)).await;
    assert_eq!(read["status"], "held");
}

#[tokio::test]
async fn anti_entropy_sells_again_a_seat_with_a_valid_ticket_that_the_engine_had_available() {
    let app = spawn().await;
    let admin = app.admin().await;
    let bob = app.fan("bob").await;
    let event = app.on_sale_event(&admin, &[("A", 1, 10, "premium")]).await;
    // A ticket the engine never heard of (as if the engine lost a confirm).
    let event_id = boxoffice_core::EventId::parse(&event).unwrap();
    let order = NewOrder {
        id: OrderId::random(),
        event: event_id,
        user: UserId::parse("alice").unwrap(),
        hold: HoldId::random(event_id),
        payment_attempt: None,
        email: None,
        total: Money::new(5_000, Currency::USD),
        tickets: vec![NewTicket {
            id: TicketId::random(),
            seat_index: 6,
            seat_label: "A-1-7".into(),
            price: Money::new(5_000, Currency::USD),
            qr_payload: None,
        }],
        created_at: now_ms(),
    };
    app.state.store.create_order(order).await.unwrap();
    let (bitmap, _) = app.bitmap(&event).await;
    assert!(bit(&bitmap, 6));

    let report = anti_entropy(&app.state).await.unwrap();
    assert_eq!((report.resold, report.released), (1, 0));
    let (bitmap, _) = app.bitmap(&event).await;
    assert!(!bit(&bitmap, 6), "sold in the engine too");
    let (status, body) = app.hold(&bob, &event, &["A-1-7"]).await;
    assert_error(status, &body, 409, "SEATS_UNAVAILABLE");
    assert_eq!(anti_entropy(&app.state).await.unwrap(), Default::default(), "nothing left to fix");
}
