//! Tickets: reading a ticket and its QR code, verifying payloads at the door (valid,
//! forged, scanned twice, voided), and the ticket mail written once per order.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use boxoffice_core::{EventId, OrderId, TicketId};
use boxoffice_server::mail::{MAIL_DIR, mail_path};
use boxoffice_server::stream::StreamMessage;
use boxoffice_server::tickets::TicketSigner;
use boxoffice_server::workers::{deliver_tickets, redrive_stream, relay_outbox};
use boxoffice_store::TOPIC_ORDER_CREATED;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_error, send_raw, spawn};

async fn verify(app: &TestApp, token: &str, payload: &str) -> Value {
    let (status, body) = app.post("/v1/tickets/verify", Some(token), json!({"qr_payload": payload})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

fn first_ticket(order: &Value) -> String {
    order["tickets"][0]["ticket_id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_ticket_shows_its_owner_its_status_and_signed_qr_payload_and_404_to_others() {
    let app = spawn().await;
    let admin = app.admin().await;
    let alice = app.fan("alice").await;
    let bob = app.fan("bob").await;
    let event = app.on_sale_event(&admin, &[("A", 1, 10, "premium")]).await;
    let order = app.buy(&alice, &event, &["A-1-4"]).await;
    let id = first_ticket(&order);
    let path = format!("/v1/tickets/{id}");

    let (status, ticket) = app.get(&path, Some(&alice)).await;
    assert_eq!(status, StatusCode::OK, "{ticket}");
    assert_eq!(ticket["ticket_id"], id.as_str());
    assert_eq!(ticket["order_id"], order["order_id"]);
    assert_eq!(ticket["event_id"], event.as_str());
    assert_eq!((ticket["seat"].as_str(), ticket["seat_index"].as_u64()), (Some("A-1-4"), Some(3)));
    assert_eq!((ticket["status"].as_str(), ticket["revision"].as_u64()), (Some("valid"), Some(1)));
    let payload = ticket["qr_payload"].as_str().expect("a signed payload");
    let (message, signature) = payload.split_once('.').expect("message.signature");
    let message = String::from_utf8(URL_SAFE_NO_PAD.decode(message).unwrap()).unwrap();
    assert_eq!(message, format!("{id}|{event}|3|1"));
    assert_eq!(URL_SAFE_NO_PAD.decode(signature).unwrap().len(), 64, "an Ed25519 signature");
    let (status, seen) = app.get(&path, Some(&admin)).await;
    assert_eq!((status, &seen), (StatusCode::OK, &ticket));

    let (status, body) = app.get(&path, Some(&bob)).await;
    assert_error(status, &body, 404, "NOT_FOUND");
    let (status, body) = app.get(&path, None).await;
    assert_error(status, &body, 401, "UNAUTHENTICATED");
    for unknown in [TicketId::random().to_string(), "junk".to_owned()] {
        let (status, body) = app.get(&format!("/v1/tickets/{unknown}"), Some(&alice)).await;
        assert_error(status, &body, 404, "NOT_FOUND");
    }

    let svg = send_raw(app.client.get(app.url(&format!("{path}/qr.svg"))).bearer_auth(&alice)).await;
    assert_eq!(svg.status, StatusCode::OK);
    assert_eq!(svg.header("content-type"), Some("image/svg+xml"));
    let text = String::from_utf8(svg.body).unwrap();
    assert!(text.contains("<svg") && text.contains("</svg>"), "{text}");
    let hidden = send_raw(app.client.get(app.url(&format!("{path}/qr.svg"))).bearer_auth(&bob)).await;
    assert_error(hidden.status, &hidden.json(), 404, "NOT_FOUND");
    let png = send_raw(app.client.get(app.url(&format!("{path}/qr.png"))).bearer_auth(&alice)).await;
    assert_eq!(png.status, StatusCode::OK);
    assert_eq!(png.header("content-type"), Some("image/png"));
    assert!(png.body.starts_with(b"\x89PNG\r\n\x1a\n") && png.body.ends_with(&[0xae, 0x42, 0x60, 0x82]));
    let hidden = send_raw(app.client.get(app.url(&format!("{path}/qr.png"))).bearer_auth(&bob)).await;
    assert_error(hidden.status, &hidden.json(), 404, "NOT_FOUND");
}

#[tokio::test]
async fn verify_admits_a_valid_ticket_once_then_says_already_scanned() {
    let app = spawn().await;
    let admin = app.admin().await;
    let staff = app.token("door", "staff").await;
    let alice = app.fan("alice").await;
    let event = app.on_sale_event(&admin, &[("A", 1, 10, "premium")]).await;
    let order = app.buy(&alice, &event, &["A-1-1", "A-1-2"]).await;
    let id = first_ticket(&order);
    let (_, ticket) = app.get(&format!("/v1/tickets/{id}"), Some(&alice)).await;
    let payload = ticket["qr_payload"].as_str().unwrap();

    let verdict = verify(&app, &staff, payload).await;
    assert_eq!(verdict, json!({"result": "valid", "ticket_id": id, "seat": ticket["seat"]}));
    let verdict = verify(&app, &admin, payload).await;
    assert_eq!(verdict["result"], "already_scanned");
    assert_eq!(verdict["ticket_id"], id.as_str());
    let (_, read) = app.get(&format!("/v1/tickets/{id}"), Some(&alice)).await;
    assert_eq!(read["status"], "scanned");
    // The other ticket of the order is untouched.
    let other = order["tickets"][1]["ticket_id"].as_str().unwrap();
    let (_, read) = app.get(&format!("/v1/tickets/{other}"), Some(&alice)).await;
    assert_eq!(read["status"], "valid");

    let (status, body) = app.post("/v1/tickets/verify", Some(&alice), json!({"qr_payload": payload})).await;
    assert_error(status, &body, 403, "FORBIDDEN");
    let (status, body) = app.post("/v1/tickets/verify", None, json!({"qr_payload": payload})).await;
    assert_error(status, &body, 401, "UNAUTHENTICATED");
    let (status, body) = app.post("/v1/tickets/verify", Some(&staff), json!({"payload": payload})).await;
    assert_error(status, &body, 400, "INVALID_REQUEST");
}

#[tokio::test]
async fn verify_says_invalid_for_forged_altered_or_unknown_payloads_and_scans_nothing() {
    let app = spawn().await;
    let admin = app.admin().await;
    let staff = app.token("door", "staff").await;
    let alice = app.fan("alice").await;
    let event = app.on_sale_event(&admin, &[("A", 1, 10, "premium")]).await;
    let order = app.buy(&alice, &event, &["A-1-1", "A-1-2"]).await;
    let id = first_ticket(&order);
    let (_, ticket) = app.get(&format!("/v1/tickets/{id}"), Some(&alice)).await;
    let payload = ticket["qr_payload"].as_str().unwrap();
    let (_, signature) = payload.split_once('.').unwrap();
    let ticket_id = TicketId::parse(&id).unwrap();
    let event_id = EventId::parse(&event).unwrap();

    // The right fields signed with another key; the genuine signature over another seat;
    // the right key over a ticket that does not exist; garbage.
    let forged = TicketSigner::from_seed([42; 32]).payload(&ticket_id, event_id, 0, 1);
    let other_seat = format!("{}.{signature}", URL_SAFE_NO_PAD.encode(format!("{id}|{event}|1|1")));
    let unknown = app.state.signer.payload(&TicketId::random(), event_id, 0, 1);
    let wrong_revision = app.state.signer.payload(&ticket_id, event_id, 0, 2);
    let wrong_seat = app.state.signer.payload(&ticket_id, event_id, 5, 1);
    for bad in [forged.as_str(), &other_seat, &unknown, &wrong_revision, &wrong_seat, "", "abc.def", "x"] {
        let verdict = verify(&app, &staff, bad).await;
        assert_eq!(verdict, json!({"result": "invalid"}), "{bad:?}");
    }
    let (_, read) = app.get(&format!("/v1/tickets/{id}"), Some(&alice)).await;
    assert_eq!(read["status"], "valid", "nothing was scanned");
    assert_eq!(verify(&app, &staff, payload).await["result"], "valid");
}

#[tokio::test]
async fn verify_says_voided_for_a_refunded_ticket() {
    let app = spawn().await;
    let admin = app.admin().await;
    let staff = app.token("door", "staff").await;
    let alice = app.fan("alice").await;
    let event = app.on_sale_event(&admin, &[("A", 1, 10, "premium")]).await;
    let order = app.buy(&alice, &event, &["A-1-1"]).await;
    let id = first_ticket(&order);
    let (_, ticket) = app.get(&format!("/v1/tickets/{id}"), Some(&alice)).await;
    let path = format!("/v1/orders/{}/refund", order["order_id"].as_str().unwrap());
    let (status, refunded) = app.post(&path, Some(&alice), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{refunded}");
    let verdict = verify(&app, &staff, ticket["qr_payload"].as_str().unwrap()).await;
    assert_eq!(verdict, json!({"result": "voided", "ticket_id": id, "seat": "A-1-1"}));
    let (_, read) = app.get(&format!("/v1/tickets/{id}"), Some(&alice)).await;
    assert_eq!(read["status"], "voided");
}

/// Waits (bounded) for a file to appear.
async fn wait_for(path: &std::path::Path) -> Vec<u8> {
    for _ in 0..500 {
        if let Ok(bytes) = std::fs::read(path) {
            return bytes;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{} was never written", path.display());
}

fn mails_in(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[tokio::test]
async fn the_ticket_mail_is_written_once_per_order_with_each_qr_code_inline() {
    let app = spawn().await;
    let admin = app.admin().await;
    let alice = app.fan("alice").await;
    let event = app.on_sale_event(&admin, &[("A", 1, 10, "premium")]).await;
    let order = app.buy(&alice, &event, &["A-1-1", "A-1-2"]).await;
    let order_id = OrderId::parse(order["order_id"].as_str().unwrap()).unwrap();
    let dir = app.data_dir.path().join(MAIL_DIR);
    let path = mail_path(&dir, &order_id);
    let mail = wait_for(&path).await;

    let text = String::from_utf8(mail.clone()).expect("7-bit clean");
    let (headers, body) = text.split_once("\r\n\r\n").expect("headers, a blank line, a body");
    for expected in [
        "To: alice@example.com".to_owned(),
        format!("Message-ID: <{order_id}@boxoffice.localhost>"),
        "MIME-Version: 1.0".to_owned(),
        "Subject: Your tickets: Test Show".to_owned(),
        "Content-Type: multipart/alternative".to_owned(),
    ] {
        assert!(headers.contains(&expected), "{expected:?} missing in:\n{headers}");
    }
    assert!(
        headers.lines().any(|l| l.starts_with("From: ")) && headers.lines().any(|l| l.starts_with("Date: "))
    );
    assert!(text.split("\r\n").all(|line| !line.contains('\n')), "CRLF line ends");
    assert!(body.contains("Content-Type: multipart/related"));
    assert_eq!(body.matches("Content-Type: image/png").count(), 2, "one QR code per ticket");
    for ticket in order["tickets"].as_array().unwrap() {
        let id = ticket["ticket_id"].as_str().unwrap();
        assert!(body.contains(&format!("Content-ID: <{id}>")), "inline part of {id}");
        assert!(body.contains(&format!("cid:{id}")), "the HTML shows {id}");
    }
    assert!(body.contains("Content-Disposition: inline"));
    assert_eq!(mails_in(&dir), [format!("{order_id}.eml")], "no temp files, no other mail");

    // A redelivered message (at least once) writes no second mail and leaves the first.
    let again = StreamMessage {
        id: 1,
        topic: TOPIC_ORDER_CREATED.into(),
        key: order_id.to_string(),
        payload: "{}".into(),
        created_at: 0,
    };
    assert!(!deliver_tickets(&app.state, &again).await.unwrap());
    assert_eq!(std::fs::read(&path).unwrap(), mail);
    // So does re-driving the whole stream, as a restart with the in-process stream does.
    app.state.store.meta_set(boxoffice_server::workers::TICKET_WORKER_POSITION_KEY, "0").await.unwrap();
    assert!(redrive_stream(&app.state).await.unwrap() >= 1);
    relay_outbox(&app.state).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(mails_in(&dir), [format!("{order_id}.eml")]);
    assert_eq!(std::fs::read(&path).unwrap(), mail);
}

#[tokio::test]
async fn without_an_email_address_tickets_are_issued_but_not_mailed() {
    let app = spawn().await;
    let admin = app.admin().await;
    let event = app.on_sale_event(&admin, &[("A", 1, 10, "premium")]).await;
    let (_, minted) = app.post("/v1/auth/token", None, json!({"user": "carol", "role": "fan"})).await;
    let carol = minted["token"].as_str().unwrap().to_owned();
    let order = app.buy(&carol, &event, &["A-1-1"]).await;
    assert!(order["email"].is_null());
    let (status, ticket) = app.get(&format!("/v1/tickets/{}", first_ticket(&order)), Some(&carol)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(ticket["qr_payload"].is_string(), "issued with its payload");
    let message = StreamMessage {
        id: 1,
        topic: TOPIC_ORDER_CREATED.into(),
        key: order["order_id"].as_str().unwrap().to_owned(),
        payload: "{}".into(),
        created_at: 0,
    };
    assert!(!deliver_tickets(&app.state, &message).await.unwrap());
    let order_id = OrderId::parse(order["order_id"].as_str().unwrap()).unwrap();
    assert!(!mail_path(&app.data_dir.path().join(MAIL_DIR), &order_id).exists());
}
