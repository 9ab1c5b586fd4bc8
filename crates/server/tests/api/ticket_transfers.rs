//! Rotating tickets, revocation and transfers: the live payload verifies inside its time
//! window and not outside (the time is injected by signing payloads for chosen steps with
//! the app's own key, no waiting), static payloads follow the event's setting, a refund or
//! a transfer revokes the old payload at once (online and on the list for offline
//! scanners), transfers refuse what they must, and the audit history still replays.

use boxoffice_core::{EventId, TicketId};
use boxoffice_server::tickets::{
    OfflineScanner, OfflineVerdict, ROTATION_STEP_SECONDS, SignedTicket, TicketSigner, TicketVerifier,
    time_step,
};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_error, send, spawn};

async fn verify(app: &TestApp, staff: &str, payload: &str) -> Value {
    let (status, body) = app.post("/v1/tickets/verify", Some(staff), json!({"qr_payload": payload})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

async fn patch_event(app: &TestApp, admin: &str, event: &str, body: Value) -> (StatusCode, Value) {
    send(app.client.patch(app.url(&format!("/v1/events/{event}"))).bearer_auth(admin).json(&body)).await
}

async fn transfer(app: &TestApp, token: &str, ticket: &str, body: Value) -> (StatusCode, Value) {
    app.post(&format!("/v1/tickets/{ticket}/transfer"), Some(token), body).await
}

async fn refund(app: &TestApp, token: &str, order: &str, body: Value) -> (StatusCode, Value) {
    app.post(&format!("/v1/orders/{order}/refund"), Some(token), body).await
}

async fn ticket(app: &TestApp, token: &str, id: &str) -> Value {
    let (status, body) = app.get(&format!("/v1/tickets/{id}"), Some(token)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

async fn live(app: &TestApp, token: &str, id: &str) -> Value {
    let (status, body) = app.get(&format!("/v1/tickets/{id}/live"), Some(token)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

async fn revocations(app: &TestApp, token: &str, event: &str, query: &str) -> (StatusCode, Value) {
    app.get(&format!("/v1/events/{event}/revocations{query}"), Some(token)).await
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
}

/// The current time step, away from its end: a step computed here is still the server's
/// when the request arrives (at most half a second's wait).
async fn steady_step() -> u64 {
    let step_ms = ROTATION_STEP_SECONDS * 1000;
    let into = now_ms() % step_ms;
    if into > step_ms - 500 {
        tokio::time::sleep(std::time::Duration::from_millis(step_ms - into + 50)).await;
    }
    time_step(now_ms())
}

/// The app's own signing key, read from its data dir as a test that injects time needs.
fn signer(app: &TestApp) -> TicketSigner {
    TicketSigner::load_or_create(app.data_dir.path()).unwrap()
}

fn signed(t: &Value) -> SignedTicket {
    SignedTicket {
        ticket: TicketId::parse(t["ticket_id"].as_str().unwrap()).unwrap(),
        event: EventId::parse(t["event_id"].as_str().unwrap()).unwrap(),
        seat_index: t["seat_index"].as_u64().unwrap() as u32,
        revision: t["revision"].as_u64().unwrap() as u32,
    }
}

fn ids(order: &Value) -> Vec<String> {
    order["tickets"].as_array().unwrap().iter().map(|t| t["ticket_id"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn the_live_payload_rotates_and_verifies_only_inside_its_window() {
    let app = spawn().await;
    let admin = app.admin().await;
    let (alice, bob) = (app.fan("alice").await, app.fan("bob").await);
    let staff = app.token("door-1", "staff").await;
    let event = app.on_sale_event(&admin, &[("A", 1, 10, "premium")]).await;
    let id = ids(&app.buy(&alice, &event, &["A-1-2"]).await).remove(0);
    let t = ticket(&app, &alice, &id).await;

    let step = steady_step().await;
    let body = live(&app, &alice, &id).await;
    assert_eq!((body["ticket_id"].as_str(), body["revision"].as_u64()), (Some(id.as_str()), Some(1)));
    assert_eq!(body["step_seconds"], 15);
    let served_step = body["step"].as_u64().unwrap();
    assert!(served_step == step || served_step == step + 1, "{body}");
    let left = body["next_step_in_seconds"].as_u64().unwrap();
    assert!((1..=15).contains(&left), "{body}");
    let payload = body["qr_payload"].as_str().unwrap().to_owned();
    assert!(payload.starts_with("r1.") && payload.contains(&format!(".{served_step}.")), "{payload}");
    assert_ne!(Some(payload.as_str()), t["qr_payload"].as_str(), "not the static payload");
    assert!(body["valid_until"].as_str().unwrap() > body["next_step_at"].as_str().unwrap());
    // Another step, another payload (the time is injected through the app's own key).
    let key = signer(&app);
    assert_eq!(
        key.rotating_payload(&signed(&t), served_step),
        payload,
        "the server signs with the app's key"
    );
    let (status, other) = app.get(&format!("/v1/tickets/{id}/live"), Some(&bob)).await;
    assert_error(status, &other, 404, "NOT_FOUND");

    // Outside the window: screenshots of two or more steps ago (or ahead) are refused and
    // change nothing.
    let step = steady_step().await;
    for far in [step - 2, step - 40, step + 2, step + 100] {
        let old = verify(&app, &staff, &key.rotating_payload(&signed(&t), far)).await;
        assert_eq!(
            (old["result"].as_str(), old["ticket_id"].as_str()),
            (Some("expired"), Some(id.as_str())),
            "step {far}"
        );
    }
    // A payload whose step was edited is not genuine.
    let edited = payload.replace(&format!(".{served_step}."), &format!(".{}.", served_step + 1));
    assert_eq!(verify(&app, &staff, &edited).await["result"], "invalid");
    assert_eq!(ticket(&app, &alice, &id).await["status"], "valid", "nothing scanned yet");

    // Inside: the live one admits; one step behind (a scanner's clock ahead) reaches the
    // ticket too, which is scanned by then.
    let admitted = verify(&app, &staff, &payload).await;
    assert_eq!((admitted["result"].as_str(), admitted["seat"].as_str()), (Some("valid"), Some("A-1-2")));
    let step = steady_step().await;
    let behind = verify(&app, &staff, &key.rotating_payload(&signed(&t), step - 1)).await;
    assert_eq!(behind["result"], "already_scanned");
    let ahead = verify(&app, &staff, &key.rotating_payload(&signed(&t), step + 1)).await;
    assert_eq!(ahead["result"], "already_scanned");
    let (status, body) = app.get(&format!("/v1/tickets/{id}/live"), Some(&alice)).await;
    assert_error(status, &body, 409, "TICKET_NOT_VALID");
    assert_eq!(body["error"]["status"], "scanned");
}

#[tokio::test]
async fn an_event_may_refuse_static_payloads_and_keep_rotating_ones() {
    let app = spawn().await;
    let admin = app.admin().await;
    let alice = app.fan("alice").await;
    let staff = app.token("door-1", "staff").await;
    let event = app.on_sale_event(&admin, &[("A", 1, 10, "premium")]).await;
    let ids = ids(&app.buy(&alice, &event, &["A-1-1", "A-1-2"]).await);
    let (status, detail) = app.get(&format!("/v1/events/{event}"), None).await;
    assert_eq!((status, &detail["static_tickets_allowed"]), (StatusCode::OK, &json!(true)), "on by default");

    let (status, body) = patch_event(&app, &alice, &event, json!({"static_tickets_allowed": false})).await;
    assert_error(status, &body, 403, "FORBIDDEN");
    let (status, body) = patch_event(&app, &admin, &event, json!({"static_tickets_allowed": "no"})).await;
    assert_error(status, &body, 400, "INVALID_REQUEST");
    let (status, body) = patch_event(&app, &admin, &event, json!({"static_tickets_allowed": false})).await;
    assert_eq!((status, &body["static_tickets_allowed"]), (StatusCode::OK, &json!(false)), "{body}");
    let (_, detail) = app.get(&format!("/v1/events/{event}"), None).await;
    assert_eq!(detail["static_tickets_allowed"], false);

    let printed = ticket(&app, &alice, &ids[0]).await["qr_payload"].as_str().unwrap().to_owned();
    let refused = verify(&app, &staff, &printed).await;
    assert_eq!(
        (refused["result"].as_str(), refused["ticket_id"].as_str()),
        (Some("static_not_allowed"), Some(ids[0].as_str()))
    );
    assert_eq!(ticket(&app, &alice, &ids[0]).await["status"], "valid", "not scanned");
    let phone = live(&app, &alice, &ids[0]).await["qr_payload"].as_str().unwrap().to_owned();
    assert_eq!(verify(&app, &staff, &phone).await["result"], "valid");

    let (status, body) = patch_event(&app, &admin, &event, json!({"static_tickets_allowed": true})).await;
    assert_eq!((status, &body["static_tickets_allowed"]), (StatusCode::OK, &json!(true)));
    let other = ticket(&app, &alice, &ids[1]).await["qr_payload"].as_str().unwrap().to_owned();
    assert_eq!(verify(&app, &staff, &other).await["result"], "valid");
}

#[tokio::test]
async fn a_transfer_reissues_the_ticket_revokes_the_old_payloads_and_is_audited() {
    let app = spawn().await;
    let admin = app.admin().await;
    let (alice, bob) = (app.fan("alice").await, app.fan("bob").await);
    let staff = app.token("door-1", "staff").await;
    let event = app.on_sale_event(&admin, &[("A", 1, 10, "premium")]).await;
    let order = app.buy(&alice, &event, &["A-1-5", "A-1-6"]).await;
    let ids = ids(&order);
    let old = ticket(&app, &alice, &ids[0]).await;
    let old_static = old["qr_payload"].as_str().unwrap().to_owned();
    let old_live = live(&app, &alice, &ids[0]).await["qr_payload"].as_str().unwrap().to_owned();

    let (status, moved) = transfer(&app, &alice, &ids[0], json!({"to_user": "bob"})).await;
    assert_eq!(status, StatusCode::CREATED, "{moved}");
    let new_id = moved["ticket_id"].as_str().unwrap().to_owned();
    assert_ne!(new_id, ids[0]);
    assert_eq!(moved["previous_ticket_id"], ids[0].as_str());
    assert_eq!(
        (moved["owner"].as_str(), moved["status"].as_str(), moved["revision"].as_u64()),
        (Some("bob"), Some("valid"), Some(2))
    );
    assert_eq!(
        (moved["seat"].as_str(), moved["order_id"].as_str()),
        (Some("A-1-5"), order["order_id"].as_str())
    );
    assert!(moved.get("qr_payload").is_none(), "the giver never sees the new payload: {moved}");

    // The old ticket is transferred; its static and live payloads are refused at once.
    assert_eq!(ticket(&app, &alice, &ids[0]).await["status"], "transferred");
    for payload in [&old_static, &old_live] {
        let answer = verify(&app, &staff, payload).await;
        assert_eq!(
            (answer["result"].as_str(), answer["ticket_id"].as_str()),
            (Some("voided"), Some(ids[0].as_str()))
        );
    }
    let (status, body) = app.get(&format!("/v1/tickets/{}/live", ids[0]), Some(&alice)).await;
    assert_error(status, &body, 409, "TICKET_NOT_VALID");

    // Bob sees his ticket (new id, revision 2, a new static payload); alice does not.
    let new = ticket(&app, &bob, &new_id).await;
    assert_eq!(
        (new["status"].as_str(), new["revision"].as_u64(), new["seat"].as_str()),
        (Some("valid"), Some(2), Some("A-1-5"))
    );
    let new_static = new["qr_payload"].as_str().unwrap();
    assert_ne!(new_static, old_static);
    assert_eq!(signer(&app).verify(new_static), Some(signed(&new)));
    let (status, body) = app.get(&format!("/v1/tickets/{new_id}"), Some(&alice)).await;
    assert_error(status, &body, 404, "NOT_FOUND");
    let (status, mine) = app.get("/v1/me/tickets", Some(&bob)).await;
    assert_eq!(status, StatusCode::OK, "{mine}");
    assert_eq!(mine["items"].as_array().unwrap().len(), 1);
    assert_eq!(
        (mine["items"][0]["ticket_id"].as_str(), &mine["next_cursor"]),
        (Some(new_id.as_str()), &Value::Null)
    );
    let (_, hers) = app.get("/v1/me/tickets?limit=1", Some(&alice)).await;
    let (_, rest) = app
        .get(
            &format!("/v1/me/tickets?limit=1&cursor={}", hers["next_cursor"].as_str().unwrap()),
            Some(&alice),
        )
        .await;
    let mut statuses: Vec<&str> =
        [&hers, &rest].iter().map(|p| p["items"][0]["status"].as_str().unwrap()).collect();
    statuses.sort();
    assert_eq!(statuses, ["transferred", "valid"]);
    let (status, body) = app.get("/v1/me/tickets?limit=0", Some(&bob)).await;
    assert_error(status, &body, 400, "INVALID_REQUEST");

    // Bob's live payload admits him.
    let bobs_live = live(&app, &bob, &new_id).await["qr_payload"].as_str().unwrap().to_owned();
    assert_eq!(verify(&app, &staff, &bobs_live).await["result"], "valid");

    // The audit history names the recipient and still replays to the current state.
    app.state.audit.drain(EventId::parse(&event).unwrap()).await.unwrap();
    let (status, page) = app.get(&format!("/v1/events/{event}/audit?limit=100"), Some(&admin)).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let records = page["items"].as_array().unwrap();
    let moved_record =
        records.iter().find(|r| r["type"] == "TICKET_TRANSFERRED").expect("a TICKET_TRANSFERRED record");
    assert_eq!((moved_record["seat"].as_u64(), moved_record["user"].as_str()), (Some(4), Some("bob")));
    assert_eq!(moved_record["order_id"], order["order_id"]);
    let (status, report) = app.get(&format!("/v1/events/{event}/audit/verify"), Some(&admin)).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!((report["mismatches"].clone(), report["sold"].as_u64()), (json!([]), Some(2)), "{report}");

    // The revocation list has the old revision.
    let (status, list) = revocations(&app, &staff, &event, "").await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(list["revoked"].as_array().unwrap().len(), 1, "{list}");
    let entry = &list["revoked"][0];
    assert_eq!(
        (entry["ticket_id"].as_str(), entry["revision"].as_u64(), entry["reason"].as_str()),
        (Some(ids[0].as_str()), Some(1), Some("transferred"))
    );
    assert_eq!(list["next"], entry["seq"]);
    assert_eq!(list["more"], false);
}

#[tokio::test]
async fn transfers_refuse_what_they_must_with_clear_errors() {
    let app = spawn().await;
    let admin = app.admin().await;
    let (alice, bob) = (app.fan("alice").await, app.fan("bob").await);
    let staff = app.token("door-1", "staff").await;
    let event = app.on_sale_event(&admin, &[("A", 1, 10, "premium")]).await;
    let order = app.buy(&alice, &event, &["A-1-1", "A-1-2", "A-1-3"]).await;
    let ids = ids(&order);

    let (status, body) = transfer(&app, &alice, &ids[0], json!({"to_user": "alice"})).await;
    assert_error(status, &body, 422, "TRANSFER_TO_SELF");
    for bad in
        [json!({"to_user": ""}), json!({"to_user": "x".repeat(129)}), json!({"to_user": "a\nb"}), json!({})]
    {
        let (status, body) = transfer(&app, &alice, &ids[0], bad.clone()).await;
        assert_error(status, &body, 400, "INVALID_REQUEST");
    }
    let (status, body) = transfer(&app, &alice, &ids[0], json!({"to_user": "bob", "price": 1})).await;
    assert_error(status, &body, 400, "INVALID_REQUEST");
    for (token, id) in [
        (&bob, ids[0].clone()),
        (&admin, ids[0].clone()),
        (&alice, TicketId::random().to_string()),
        (&alice, "junk".into()),
    ] {
        let (status, body) = transfer(&app, token, &id, json!({"to_user": "carol"})).await;
        assert_error(status, &body, 404, "NOT_FOUND");
    }
    let (status, body) =
        app.post(&format!("/v1/tickets/{}/transfer", ids[0]), None, json!({"to_user": "bob"})).await;
    assert_error(status, &body, 401, "UNAUTHENTICATED");

    // Scanned, refunded, already transferred: 409 naming the status, and nothing changes.
    let printed = ticket(&app, &alice, &ids[0]).await["qr_payload"].as_str().unwrap().to_owned();
    assert_eq!(verify(&app, &staff, &printed).await["result"], "valid");
    let (status, body) = app
        .post(
            &format!("/v1/orders/{}/refund", order["order_id"].as_str().unwrap()),
            Some(&alice),
            json!({"ticket_ids": [ids[1]]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = transfer(&app, &alice, &ids[2], json!({"to_user": "bob"})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    for (id, state) in [(&ids[0], "scanned"), (&ids[1], "voided"), (&ids[2], "transferred")] {
        let (status, body) = transfer(&app, &alice, id, json!({"to_user": "carol"})).await;
        assert_error(status, &body, 409, "TICKET_NOT_TRANSFERABLE");
        assert_eq!(body["error"]["status"], state, "{body}");
    }
    let (_, carols) = app.get("/v1/me/tickets", Some(&app.fan("carol").await)).await;
    assert_eq!(carols["items"], json!([]));
}

#[tokio::test]
async fn refunds_and_transfers_reach_the_revocation_list_that_offline_scanners_use() {
    let app = spawn().await;
    let admin = app.admin().await;
    let alice = app.fan("alice").await;
    let staff = app.token("door-1", "staff").await;
    let event = app.on_sale_event(&admin, &[("A", 1, 10, "premium")]).await;
    let order = app.buy(&alice, &event, &["A-1-7", "A-1-8"]).await;
    let order_id = order["order_id"].as_str().unwrap();
    let ids = ids(&order);
    let before: Vec<Value> =
        [ticket(&app, &alice, &ids[0]).await, ticket(&app, &alice, &ids[1]).await].into();
    let (status, moved) = transfer(&app, &alice, &ids[0], json!({"to_user": "bob"})).await;
    assert_eq!(status, StatusCode::CREATED, "{moved}");
    let bobs = moved["ticket_id"].as_str().unwrap().to_owned();

    // The buyer's refund of "everything" is what she still holds; bob's ticket needs an admin.
    let (status, body) = refund(&app, &alice, order_id, json!({"ticket_ids": [bobs]})).await;
    assert_error(status, &body, 403, "TICKET_TRANSFERRED");
    let (status, body) = refund(&app, &alice, order_id, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["refund"]["ticket_ids"], json!([ids[1]]));
    assert_eq!(ticket(&app, &admin, &bobs).await["status"], "valid");
    let refunded = verify(&app, &staff, before[1]["qr_payload"].as_str().unwrap()).await;
    assert_eq!(refunded["result"], "voided");

    // Fans may not read the list; bad positions and limits are named.
    let (status, body) = revocations(&app, &alice, &event, "").await;
    assert_error(status, &body, 403, "FORBIDDEN");
    for query in ["?since=-1", "?since=abc", "?limit=0", "?limit=1001"] {
        let (status, body) = revocations(&app, &staff, &event, query).await;
        assert_error(status, &body, 400, "INVALID_REQUEST");
    }
    let (status, body) = revocations(&app, &staff, "ev_999999", "").await;
    assert_error(status, &body, 404, "NOT_FOUND");

    // Page by page, the list names both, in order; then nothing new.
    let (_, first) = revocations(&app, &staff, &event, "?limit=1").await;
    assert_eq!(
        (first["revoked"][0]["reason"].as_str(), first["more"].as_bool()),
        (Some("transferred"), Some(true))
    );
    let (_, second) = revocations(&app, &staff, &event, &format!("?since={}&limit=1", first["next"])).await;
    assert_eq!(second["revoked"][0]["ticket_id"], ids[1].as_str());
    assert_eq!(second["revoked"][0]["reason"], "refunded");
    let (_, empty) = revocations(&app, &admin, &event, &format!("?since={}", second["next"])).await;
    assert_eq!((empty["revoked"].clone(), empty["next"].clone()), (json!([]), second["next"].clone()));

    // An offline scanner with only the public key and that list refuses both old tickets
    // and admits bob's.
    let (status, body) = app.get("/v1/tickets/public-key", Some(&alice)).await;
    assert_error(status, &body, 403, "FORBIDDEN");
    let (status, config) = app.get("/v1/tickets/public-key", Some(&staff)).await;
    assert_eq!(status, StatusCode::OK, "{config}");
    assert_eq!(
        (config["algorithm"].as_str(), config["step_seconds"].as_u64(), config["tolerance_steps"].as_u64()),
        (Some("Ed25519"), Some(15), Some(1))
    );
    let key = signer(&app);
    assert_eq!(config["public_key"].as_str(), Some(key.public_key_hex().as_str()));
    let verifier = TicketVerifier::from_public_key_hex(config["public_key"].as_str().unwrap()).unwrap();
    let mut scanner = OfflineScanner::new(verifier, EventId::parse(&event).unwrap(), true);
    for page in [&first, &second] {
        for entry in page["revoked"].as_array().unwrap() {
            let id = TicketId::parse(entry["ticket_id"].as_str().unwrap()).unwrap();
            scanner.revoke(id, entry["revision"].as_u64().unwrap() as u32);
        }
    }
    let now = now_ms();
    for old in &before {
        assert!(matches!(scanner.scan(old["qr_payload"].as_str().unwrap(), now), OfflineVerdict::Revoked(_)));
        let rotating = key.rotating_payload(&signed(old), time_step(now));
        assert!(matches!(scanner.scan(&rotating, now), OfflineVerdict::Revoked(_)));
    }
    let bobs_ticket = ticket(&app, &admin, &bobs).await;
    assert!(matches!(
        scanner.scan(bobs_ticket["qr_payload"].as_str().unwrap(), now),
        OfflineVerdict::Admit(_)
    ));

    // An admin's refund (as the event's cancellation does) revokes bob's too.
    let (status, body) = refund(&app, &admin, order_id, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["refund"]["ticket_ids"], json!([bobs]));
    let (_, last) = revocations(&app, &staff, &event, &format!("?since={}", second["next"])).await;
    assert_eq!(
        (last["revoked"][0]["ticket_id"].as_str(), last["revoked"][0]["revision"].as_u64()),
        (Some(bobs.as_str()), Some(2))
    );
    assert_eq!(verify(&app, &staff, bobs_ticket["qr_payload"].as_str().unwrap()).await["result"], "voided");
    app.state.audit.drain(EventId::parse(&event).unwrap()).await.unwrap();
    let (_, report) = app.get(&format!("/v1/events/{event}/audit/verify"), Some(&admin)).await;
    assert_eq!(report["mismatches"], json!([]), "{report}");
}
