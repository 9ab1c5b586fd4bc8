//! Fault injection: the real `boxoffice` binary started with `BOXOFFICE_FAULT=<point>`
//! aborts (like `kill -9`: no destructor, no flush) when it reaches that step of a
//! checkout or of the ticket worker; it is then restarted without the fault on the same
//! data dir, and the invariants are checked.
//!
//! After a crash at any checkout step, a checkout ends in one of two ways: a paid order
//! (exactly one for the hold, its seats SOLD, valid signed tickets, the payment
//! captured), or nothing (no order, the seats free again or still held by their unexpired
//! hold, the authorization voided or the payment refunded: never money kept without an
//! order). Which one follows from the step: nothing before the order commit, the order
//! from it on. Either way the seats can be bought afterwards (or are sold), and the
//! event's audit history replays to the current state.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::crash::{LISTENING, Server, command, drain, labels, wait_exit};

const FAULT_ENV: &str = "BOXOFFICE_FAULT";
const SIGABRT: i32 = 6;

/// Starts a server on `data_dir` that aborts at `point`, and waits until it is ready.
async fn start_with_fault(data_dir: &Path, point: &str) -> Server {
    let mut cmd = command(data_dir, &[]);
    cmd.env(FAULT_ENV, point);
    let mut child = cmd.spawn().expect("boxoffice starts");
    let logs = Arc::new(Mutex::new(String::new()));
    let (tx, rx) = tokio::sync::oneshot::channel();
    let mut tx = Some(tx);
    drain(child.stdout.take().expect("stdout"), logs.clone(), move |line| {
        if let Some(at) = line.find(LISTENING)
            && let Some(tx) = tx.take()
        {
            let _ = tx.send(line[at + LISTENING.len()..].trim().parse().expect("listening address"));
        }
    });
    drain(child.stderr.take().expect("stderr"), logs.clone(), |_| {});
    let Ok(Ok(addr)) = tokio::time::timeout(Duration::from_secs(30), rx).await else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("boxoffice did not say where it listens; output:\n{}", logs.lock().unwrap());
    };
    let server = Server { child, addr, client: reqwest::Client::new(), logs };
    server.wait_ready().await;
    server
}

/// Asserts that the server died by the injected abort at `point` (not by anything else).
async fn assert_aborted_at(server: &mut Server, point: &str) {
    let Some(status) = wait_exit(&mut server.child, Duration::from_secs(30)).await else {
        panic!("the server did not abort at {point}; output:\n{}", server.logs());
    };
    // The output threads end with the process; give them a moment to copy the tail.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(status.signal(), Some(SIGABRT), "died by abort, got {status}; output:\n{}", server.logs());
    let said = format!("fault injected at {point}");
    assert!(server.logs().contains(&said), "the abort names its point; output:\n{}", server.logs());
}

/// The simulated gateway's ledger (`<data-dir>/gateway_ledger.jsonl`): the last line of
/// each key wins.
fn ledger(data_dir: &Path) -> BTreeMap<String, Value> {
    let text = std::fs::read_to_string(data_dir.join("gateway_ledger.jsonl")).unwrap_or_default();
    let mut entries = BTreeMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let entry: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("ledger line {line:?}: {e}"));
        entries.insert(entry["key"].as_str().expect("key").to_owned(), entry);
    }
    entries
}

/// Payments (not refunds) in the ledger, by key.
fn payments(ledger: &BTreeMap<String, Value>) -> BTreeMap<String, Value> {
    ledger.iter().filter(|(k, _)| !k.starts_with("refund:")).map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// Asserts that the event's audit history replays to its current state.
async fn assert_audit_true(server: &Server, admin: &str, event: &str) {
    let (status, report) = server.get(&format!("/v1/events/{event}/audit/verify"), admin).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    let mismatches = report["mismatches"].as_array().expect("mismatches");
    assert!(mismatches.is_empty(), "audit history disagrees with the state: {report}\n{}", server.logs());
}

/// The buyer's orders for one hold.
async fn orders_for_hold(server: &Server, token: &str, hold_id: &str) -> Vec<Value> {
    let (status, mine) = server.get("/v1/me/orders", token).await;
    assert_eq!(status, StatusCode::OK, "{mine}");
    mine["items"].as_array().expect("items").iter().filter(|o| o["hold_id"] == hold_id).cloned().collect()
}

/// A paid order: confirmed, the hold's seats, one valid ticket per seat with its signed
/// QR code, and the seats taken.
async fn assert_paid_order(server: &Server, token: &str, order: &Value, seats: &BTreeSet<String>) {
    let id = order["order_id"].as_str().expect("order id");
    let (status, order) = server.get(&format!("/v1/orders/{id}"), token).await;
    assert_eq!(status, StatusCode::OK, "{order}");
    assert_eq!(order["status"], "confirmed", "{order}");
    assert_eq!(&labels(&order), seats, "{order}");
    let tickets = order["tickets"].as_array().expect("tickets");
    assert_eq!(tickets.len(), seats.len(), "{order}");
    for ticket in tickets {
        assert_eq!(ticket["status"], "valid", "{order}");
        let ticket_id = ticket["ticket_id"].as_str().expect("ticket id");
        let r = server
            .client
            .get(server.url(&format!("/v1/tickets/{ticket_id}/qr.svg")))
            .bearer_auth(token)
            .send()
            .await
            .expect("qr request");
        assert_eq!(r.status(), StatusCode::OK, "the ticket has its signed QR payload");
    }
}

/// What a crash at a step must end in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Nothing bought, the hold still held (unexpired, its pin gone with the process).
    HeldAgain,
    /// Nothing bought, the hold released and its payment voided.
    Undone,
    /// The order stands: seats sold, tickets valid, payment captured.
    Paid,
}

/// Checks out a hold on a server that aborts at `point`, restarts it without the fault,
/// and checks the invariants.
async fn crash_in_checkout(point: &str, expected: Outcome) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut server = start_with_fault(dir.path(), point).await;
    let admin = server.token("admin", "admin").await;
    let alice = server.token("alice", "fan").await;
    let bob = server.token("bob", "fan").await;
    let event = server.on_sale_event(&admin, 2, 10).await;
    let hold = server.hold(&alice, &event, &["A-1-4", "A-1-5"]).await;
    let hold_id = hold["hold_id"].as_str().expect("hold id").to_owned();
    let seats = labels(&hold);
    // Another buyer's hold on other seats, untouched by the crash.
    let other = server.hold(&bob, &event, &["A-2-1"]).await;

    let answer = server
        .client
        .post(server.url(&format!("/v1/holds/{hold_id}/checkout")))
        .bearer_auth(&alice)
        .header("Idempotency-Key", "alice-crash")
        .json(&json!({"payment": {"method": "card", "token": "tok_visa"}}))
        .send()
        .await;
    assert!(answer.is_err(), "the checkout must die with the process at {point}: {answer:?}");
    assert_aborted_at(&mut server, point).await;
    let at_crash = payments(&ledger(dir.path()));
    drop(server);

    let server = Server::start(dir.path(), &[]).await;
    let orders = orders_for_hold(&server, &alice, &hold_id).await;
    assert!(orders.len() <= 1, "one order at most for a hold: {orders:?}");
    let ledger_after = ledger(dir.path());
    let paid = payments(&ledger_after);
    assert!(paid.len() <= 1, "one payment key for one checkout: {paid:?}");
    let seen = match orders.first() {
        Some(order) => {
            // (a) The order stands.
            assert_paid_order(&server, &alice, order, &seats).await;
            let (key, payment) = paid.iter().next().expect("a paid order has its payment in the ledger");
            assert_eq!(payment["state"], "captured", "the order's payment is captured: {payment}");
            assert_eq!(payment["amount"], order["total"]["amount"], "{payment} for {order}");
            assert!(!ledger_after.contains_key(&format!("refund:{key}")), "a paid order is not refunded");
            // Sold: nobody else can hold its seats, and the hold is over.
            let (status, body) =
                server.post(&format!("/v1/events/{event}/holds"), &bob, json!({"seats": ["A-1-4"]})).await;
            assert_eq!(status, StatusCode::CONFLICT, "a sold seat cannot be held: {body}");
            let (status, body) = server.get(&format!("/v1/holds/{hold_id}"), &alice).await;
            assert!(
                status == StatusCode::NOT_FOUND || body["status"] == "confirmed",
                "the bought hold is over: {status} {body}"
            );
            let expected_taken: BTreeSet<String> = seats.iter().cloned().chain(labels(&other)).collect();
            assert_eq!(server.unavailable(&event).await, expected_taken);
            // Its tickets are mailed, from the outbox row of the commit.
            let mail = format!("{}.eml", order["order_id"].as_str().unwrap());
            wait_for_mails(dir.path(), 1).await;
            assert_eq!(mails(dir.path()).into_keys().collect::<Vec<_>>(), [mail]);
            // A buyer who lost the answer and checks out again learns of the order.
            let (status, again) = server.checkout(&alice, &hold, "tok_visa", "alice-retry").await;
            assert_eq!(status, StatusCode::CONFLICT, "{again}");
            assert_eq!(again["error"]["code"], "ALREADY_CONFIRMED");
            assert_eq!(again["error"]["order_id"], order["order_id"]);
            Outcome::Paid
        }
        None => {
            // (b) Nothing was bought and nothing is kept.
            for (key, payment) in &paid {
                match payment["state"].as_str() {
                    Some("voided") => {}
                    Some("refunded") | Some("captured") => assert!(
                        ledger_after.get(&format!("refund:{key}")).is_some_and(|r| r["state"] == "refunded")
                            && payment["refunded"] == payment["amount"],
                        "money taken without an order must be refunded in full: {payment}"
                    ),
                    _ => panic!("a payment without an order is left open: {payment}\n{}", server.logs()),
                }
            }
            let (status, body) = server.get(&format!("/v1/holds/{hold_id}"), &alice).await;
            let held = status == StatusCode::OK && body["status"] == "held";
            let taken = server.unavailable(&event).await;
            if held {
                assert_eq!(labels(&body), seats, "{body}");
                assert_eq!(body["expires_at"], hold["expires_at"], "the hold keeps its expiry: {body}");
                let expected_taken: BTreeSet<String> = seats.iter().cloned().chain(labels(&other)).collect();
                assert_eq!(taken, expected_taken, "the held seats stay taken by their hold");
                Outcome::HeldAgain
            } else {
                assert!(
                    status == StatusCode::NOT_FOUND || body["status"] == "released",
                    "the hold is either still held or released: {status} {body}"
                );
                assert_eq!(taken, labels(&other), "the seats are free again");
                Outcome::Undone
            }
        }
    };
    eprintln!("{point}: {seen:?}; ledger at the crash {at_crash:?}, after the restart {paid:?}");
    assert_eq!(seen, expected, "a crash at {point}; output:\n{}", server.logs());
    assert_audit_true(&server, &admin, &event).await;

    // Settled for good: another kill -9 and restart changes nothing.
    let taken = server.unavailable(&event).await;
    server.kill9();
    let server = Server::start(dir.path(), &[]).await;
    assert_eq!(server.unavailable(&event).await, taken);
    assert_eq!(payments(&ledger(dir.path())), paid);
    assert_eq!(orders_for_hold(&server, &alice, &hold_id).await.len(), orders.len());

    // No stale state: the seats can be bought (again by their hold if it is still held).
    if seen != Outcome::Paid {
        let hold = if seen == Outcome::HeldAgain {
            hold.clone()
        } else {
            server.hold(&alice, &event, &["A-1-4", "A-1-5"]).await
        };
        let (status, order) = server.checkout(&alice, &hold, "tok_visa", "alice-again").await;
        assert_eq!(status, StatusCode::CREATED, "{order}\n{}", server.logs());
        assert_paid_order(&server, &alice, &order, &seats).await;
        let key = order_payment_key(&ledger(dir.path()), &paid);
        assert_eq!(ledger(dir.path())[&key]["state"], "captured");
    }
    // The other buyer's hold was not disturbed and can be bought too.
    let (status, order) = server.checkout(&bob, &other, "tok_visa", "bob-1").await;
    assert_eq!(status, StatusCode::CREATED, "{order}\n{}", server.logs());
    let taken: BTreeSet<String> = seats.iter().cloned().chain(labels(&other)).collect();
    assert_eq!(server.unavailable(&event).await, taken);
    assert_audit_true(&server, &admin, &event).await;
}

/// The one payment key in `ledger` that is not among `before`.
fn order_payment_key(ledger: &BTreeMap<String, Value>, before: &BTreeMap<String, Value>) -> String {
    let new: Vec<String> = payments(ledger).into_keys().filter(|k| !before.contains_key(k)).collect();
    assert_eq!(new.len(), 1, "one new payment: {new:?}");
    new.into_iter().next().expect("one")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_after_pin_keeps_the_hold_and_takes_no_money() {
    crash_in_checkout("checkout.after_pin", Outcome::HeldAgain).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_after_the_attempt_is_recorded_voids_and_frees_the_seats() {
    crash_in_checkout("checkout.after_attempt", Outcome::Undone).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_after_authorize_voids_the_authorization_and_frees_the_seats() {
    crash_in_checkout("checkout.after_authorize", Outcome::Undone).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_after_the_authorization_is_recorded_voids_it_and_frees_the_seats() {
    crash_in_checkout("checkout.after_authorized_recorded", Outcome::Undone).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_after_the_order_commit_sells_the_seats_and_captures() {
    crash_in_checkout("checkout.after_commit", Outcome::Paid).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_after_the_engine_confirm_captures() {
    crash_in_checkout("checkout.after_confirm", Outcome::Paid).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_fault_point_refuses_to_start() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut cmd = command(dir.path(), &[]);
    cmd.env(FAULT_ENV, "checkout.nowhere");
    let mut child = cmd.spawn().expect("boxoffice starts");
    let logs = Arc::new(Mutex::new(String::new()));
    drain(child.stdout.take().expect("stdout"), logs.clone(), |_| {});
    drain(child.stderr.take().expect("stderr"), logs.clone(), |_| {});
    let status = wait_exit(&mut child, Duration::from_secs(20)).await;
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let output = logs.lock().unwrap().clone();
    let status = status.unwrap_or_else(|| panic!("it kept running; output:\n{output}"));
    assert!(!status.success(), "{output}");
    assert!(output.contains(FAULT_ENV) && output.contains("checkout.nowhere"), "{output}");
    assert!(!output.contains(LISTENING), "{output}");
}

/// The `.eml` files of the mail dir, by name, with their bytes.
fn mails(data_dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let Ok(dir) = std::fs::read_dir(data_dir.join("mail")) else { return BTreeMap::new() };
    dir.map(|e| e.expect("dir entry").path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "eml"))
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).expect("mail readable"))
        })
        .collect()
}

/// Waits (bounded) until the mail dir holds `n` mails; the caller checks which.
async fn wait_for_mails(data_dir: &Path, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while mails(data_dir).len() < n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `boxoffice_ticket_mails_total{result="<result>"}` from `/metrics`.
async fn mails_counted(server: &Server, result: &str) -> u64 {
    let text = server.client.get(server.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let label = format!("boxoffice_ticket_mails_total{{result=\"{result}\"}} ");
    text.lines().find_map(|l| l.strip_prefix(&label)).map_or(0, |v| v.trim().parse::<f64>().unwrap() as u64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_ticket_worker_mid_batch_loses_no_mail_and_sends_none_twice() {
    const BUYERS: usize = 6;
    let dir = tempfile::tempdir().expect("temp dir");
    // A file where the mail dir goes: the ticket worker cannot write, so it retries its
    // first message while the other orders' messages queue up behind it.
    let blocker = dir.path().join("mail");
    std::fs::write(&blocker, b"not a directory").unwrap();
    let mut server = start_with_fault(dir.path(), "ticket_worker.mid_batch").await;
    let admin = server.token("admin", "admin").await;
    let event = server.on_sale_event(&admin, 2, 10).await;
    let mut orders = BTreeMap::new();
    for k in 0..BUYERS {
        let user = format!("fan{k}");
        let token = server.token(&user, "fan").await;
        let seat = format!("A-1-{}", k + 1);
        let hold = server.hold(&token, &event, &[seat.as_str()]).await;
        let (status, order) = server.checkout(&token, &hold, "tok_visa", &format!("{user}-1")).await;
        assert_eq!(status, StatusCode::CREATED, "{order}");
        orders.insert(order["order_id"].as_str().unwrap().to_owned(), user);
    }
    assert!(mails(dir.path()).is_empty());
    assert!(server.child.try_wait().unwrap().is_none(), "alive while the mail cannot be written");
    // Let the relay publish every order (not asserted: it only fills the worker's next
    // batch), then let the worker write: it aborts after a mail of a batch with more left.
    tokio::time::sleep(Duration::from_millis(500)).await;
    std::fs::remove_file(&blocker).unwrap();
    assert_aborted_at(&mut server, "ticket_worker.mid_batch").await;
    let before = mails(dir.path());
    assert!(
        !before.is_empty() && before.len() < BUYERS,
        "the crash fell mid-way: {} of {BUYERS} mails written",
        before.len()
    );
    drop(server);

    let server = Server::start(dir.path(), &[]).await;
    wait_for_mails(dir.path(), BUYERS).await;
    let after = mails(dir.path());
    let expected: BTreeSet<String> = orders.keys().map(|o| format!("{o}.eml")).collect();
    assert_eq!(after.keys().cloned().collect::<BTreeSet<_>>(), expected, "one mail per order, none missing");
    for (name, bytes) in &before {
        assert_eq!(&after[name], bytes, "{name} was written before the crash and not again");
    }
    for (order, user) in &orders {
        let text = String::from_utf8_lossy(&after[&format!("{order}.eml")]).into_owned();
        assert!(text.contains(&format!("{user}@example.com")) && text.contains(order.as_str()), "{text}");
    }
    // The restarted worker wrote exactly the missing ones: nobody got a second mail.
    assert_eq!(mails_counted(&server, "written").await, (BUYERS - before.len()) as u64);
    assert!(mails_counted(&server, "duplicate").await >= 1, "the interrupted batch came again");
    assert_audit_true(&server, &admin, &event).await;
}
