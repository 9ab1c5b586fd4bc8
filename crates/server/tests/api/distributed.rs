//! Distributed mode: several nodes (each its own process state and data dir) sharing one
//! PostgreSQL database and one Redis key prefix, fresh per test. What one node does, every
//! node sees: events, holds, orders, tokens and ticket signatures.

use std::collections::BTreeMap;

use boxoffice_core::EventId;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, bit, send, spawn_with};
use crate::services::{FreshDatabase, redis_url};

/// A database and a Redis key prefix of one test, both removed when dropped.
pub struct Backends {
    pub database: FreshDatabase,
    pub prefix: String,
}

impl Backends {
    pub async fn fresh() -> Backends {
        let id: u64 = rand::random();
        Backends { database: FreshDatabase::create().await, prefix: format!("bo-test-{id:016x}:") }
    }

    pub async fn node(&self, audit_writer: bool) -> TestApp {
        self.node_on(&redis_url(), audit_writer).await
    }

    /// A node whose inventory is in the Redis at `redis` (under this test's prefix).
    pub async fn node_on(&self, redis: &str, audit_writer: bool) -> TestApp {
        self.node_with(redis, audit_writer, |_| {}).await
    }

    /// A node as `node_on` makes it, with more settings of the test's own.
    pub async fn node_with(
        &self,
        redis: &str,
        audit_writer: bool,
        configure: impl FnOnce(&mut boxoffice_server::config::Config),
    ) -> TestApp {
        let (url, redis, prefix) = (self.database.url(), redis.to_owned(), self.prefix.clone());
        spawn_with(move |c| {
            c.database_url = Some(url);
            c.database_pool_size = 4;
            c.redis_url = Some(redis);
            c.redis_key_prefix = prefix;
            c.audit_writer = Some(audit_writer);
            configure(c);
        })
        .await
    }
}

impl Drop for Backends {
    // The database drops itself after this.
    fn drop(&mut self) {
        let prefix = self.prefix.clone();
        // Its own thread and runtime: this may run during a panic.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async {
                if let Ok(client) = redis::Client::open(redis_url())
                    && let Ok(mut conn) = client.get_multiplexed_async_connection().await
                {
                    let keys: Vec<String> = redis::cmd("KEYS")
                        .arg(format!("{prefix}*"))
                        .query_async(&mut conn)
                        .await
                        .unwrap_or_default();
                    if !keys.is_empty() {
                        let _: Result<(), _> = redis::cmd("DEL").arg(keys).query_async(&mut conn).await;
                    }
                }
            });
        })
        .join();
    }
}

/// Waits until `node` can hold on `event` (it learns of events made elsewhere from the
/// catalog's change feed).
async fn wait_until_known(node: &TestApp, token: &str, event: &str) {
    for _ in 0..100 {
        let (status, _) =
            node.get(&format!("/v1/events/{event}/availability?format=json"), Some(token)).await;
        if status == StatusCode::OK {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("node never learned of {event}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_share_events_holds_orders_tokens_and_ticket_keys() {
    let backends = Backends::fresh().await;
    let a = backends.node(true).await;
    let b = backends.node(false).await;
    // A token minted by one node is accepted by the other.
    let admin = a.admin().await;
    let alice = a.fan("alice").await;
    let event = a.on_sale_event(&admin, &[("A", 1, 10, "premium")]).await;
    wait_until_known(&b, &alice, &event).await;

    // A hold made on A is seen, and bought, on B.
    let hold = a.hold_ok(&alice, &event, &["A-1-1", "A-1-2"]).await;
    let (status, read) = b.get(&format!("/v1/holds/{hold}"), Some(&alice)).await;
    assert_eq!((status, read["status"].as_str()), (StatusCode::OK, Some("held")), "{read}");
    let (status, body) = b.hold(&alice, &event, &["A-1-2"]).await;
    assert_eq!(status, StatusCode::CONFLICT, "B refuses a seat held through A: {body}");
    let (status, order) = b.checkout(&alice, &hold, "tok_visa", "k-1").await;
    assert_eq!(status, StatusCode::CREATED, "{order}");
    for node in [&a, &b] {
        let (bitmap, _) = node.bitmap(&event).await;
        assert!(!bit(&bitmap, 0) && !bit(&bitmap, 1) && bit(&bitmap, 2));
        let (status, read) =
            node.get(&format!("/v1/orders/{}", order["order_id"].as_str().unwrap()), Some(&alice)).await;
        assert_eq!((status, read["status"].as_str()), (StatusCode::OK, Some("confirmed")));
    }
    // A ticket signed on B verifies on A.
    let ticket = order["tickets"][0]["ticket_id"].as_str().unwrap();
    let (_, read) = b.get(&format!("/v1/tickets/{ticket}"), Some(&alice)).await;
    let staff = a.token("door", "staff").await;
    let (status, verdict) =
        a.post("/v1/tickets/verify", Some(&staff), json!({"qr_payload": read["qr_payload"]})).await;
    assert_eq!((status, verdict["result"].as_str()), (StatusCode::OK, Some("valid")), "{verdict}");
    // SOLD in Redis equals the valid tickets in PostgreSQL, seen from either node.
    for node in [&a, &b] {
        assert_eq!(boxoffice_server::workers::anti_entropy(&node.state).await.unwrap(), Default::default());
    }
    // The audit history (written by A) replays to the shared state.
    let (status, report) = a.get(&format!("/v1/events/{event}/audit/verify"), Some(&admin)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(report["mismatches"], json!([]), "{report}");
    assert_eq!(report["sold"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_holds_and_checkouts_on_three_nodes_sell_each_seat_once() {
    let backends = Backends::fresh().await;
    let nodes = [backends.node(true).await, backends.node(false).await, backends.node(false).await];
    let admin = nodes[0].admin().await;
    let event = nodes[0].on_sale_event(&admin, &[("A", 1, 20, "premium")]).await;
    let mut tokens = Vec::new();
    for i in 0..500 {
        tokens.push(nodes[i % 3].fan(&format!("fan{i}")).await);
    }
    for node in &nodes[1..] {
        wait_until_known(node, &tokens[0], &event).await;
    }
    // 2,000 holds of one seat each from 500 users over 20 seats, spread over the nodes.
    let mut attempts = Vec::new();
    for i in 0..2_000usize {
        let node = &nodes[i % 3];
        let user = i % 500;
        let token = tokens[user].clone();
        let seat = format!("A-1-{}", i % 20 + 1);
        let client = node.client.clone();
        let url = node.url(&format!("/v1/events/{event}/holds"));
        attempts.push(tokio::spawn(async move {
            let response = client
                .post(url)
                .bearer_auth(token)
                .json(&json!({"seats": [seat.clone()]}))
                .send()
                .await
                .unwrap();
            let status = response.status();
            let body: Value = response.json().await.unwrap();
            (seat, user, status, body)
        }));
    }
    let mut winners: BTreeMap<String, Vec<(usize, String)>> = BTreeMap::new();
    for attempt in attempts {
        let (seat, user, status, body) = attempt.await.unwrap();
        match status {
            StatusCode::CREATED => {
                winners.entry(seat).or_default().push((user, body["hold_id"].as_str().unwrap().to_owned()))
            }
            StatusCode::CONFLICT => assert_eq!(body["error"]["code"], "SEATS_UNAVAILABLE", "{body}"),
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(winners.len(), 20, "every seat was won: {winners:?}");
    assert!(winners.values().all(|w| w.len() == 1), "one winner per seat: {winners:?}");
    // Every node serves the same map.
    let mut maps = Vec::new();
    for node in &nodes {
        maps.push(node.bitmap(&event).await);
    }
    assert!(maps.iter().all(|m| m == &maps[0]));
    assert!((0..20).all(|i| !bit(&maps[0].0, i)));

    // Each winner checks out twice at once, on two different nodes: one order per hold.
    let mut checkouts = Vec::new();
    for (n, (user, hold)) in winners.values().map(|w| w[0].clone()).enumerate() {
        for twin in 0..2 {
            let node = &nodes[(n + twin) % 3];
            let (client, url) = (node.client.clone(), node.url(&format!("/v1/holds/{hold}/checkout")));
            let token = tokens[user].clone();
            checkouts.push(tokio::spawn(async move {
                let response = client
                    .post(url)
                    .bearer_auth(token)
                    .header("Idempotency-Key", format!("k-{twin}"))
                    .json(&json!({"payment": {"method": "card", "token": "tok_visa"}}))
                    .send()
                    .await
                    .unwrap();
                let status = response.status();
                (status, response.json::<Value>().await.unwrap())
            }));
        }
    }
    let mut orders = 0;
    for checkout in checkouts {
        let (status, body) = checkout.await.unwrap();
        match status {
            StatusCode::CREATED => orders += 1,
            StatusCode::CONFLICT => assert!(
                ["CHECKOUT_IN_PROGRESS", "ALREADY_CONFIRMED"]
                    .contains(&body["error"]["code"].as_str().unwrap()),
                "{body}"
            ),
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert!((1..=20).contains(&orders), "{orders} orders");
    // Losers of a twin race retry once the first is settled; every hold ends bought.
    for (user, hold) in winners.values().map(|w| w[0].clone()) {
        let (status, body) = nodes[1].checkout(&tokens[user], &hold, "tok_visa", "k-final").await;
        assert!(
            status == StatusCode::CREATED || body["error"]["code"] == "ALREADY_CONFIRMED",
            "{status} {body}"
        );
    }
    let id = EventId::parse(&event).unwrap();
    let sold = nodes[2].state.store.sold_seats(id).await.unwrap();
    assert_eq!(sold.len(), 20, "one valid ticket per seat");
    for node in &nodes {
        assert_eq!(boxoffice_server::workers::anti_entropy(&node.state).await.unwrap(), Default::default());
        let counts = node.state.inventory.seat_counts(id).await.unwrap();
        assert_eq!((counts.sold, counts.held, counts.available), (20, 0, 0));
    }
    let (_, report) = nodes[0].get(&format!("/v1/events/{event}/audit/verify"), Some(&admin)).await;
    assert_eq!(report["mismatches"], json!([]), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_on_one_node_sees_the_changes_made_on_another() {
    let backends = Backends::fresh().await;
    let a = backends.node(true).await;
    let b = backends.node(false).await;
    let admin = a.admin().await;
    let alice = a.fan("alice").await;
    let event = a.on_sale_event(&admin, &[("A", 2, 10, "premium")]).await;
    wait_until_known(&b, &alice, &event).await;

    let mut viewer = crate::live::Viewer::open(&b, &event, None).await;
    viewer.apply_next().await;
    let hold = a.hold_ok(&alice, &event, &["A-1-3", "A-2-4"]).await;
    let (bitmap, version) = a.bitmap(&event).await;
    viewer.catch_up_to(version).await;
    assert_eq!(viewer.bitmap, bitmap, "B's viewer shows A's hold");
    let (status, _) = a.delete(&format!("/v1/holds/{hold}"), Some(&alice)).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let order = a.buy(&alice, &event, &["A-1-9"]).await;
    assert_eq!(order["status"], "confirmed");
    let (bitmap, version) = b.bitmap(&event).await;
    viewer.catch_up_to(version).await;
    assert_eq!(viewer.bitmap, bitmap, "B's viewer follows the release and the sale");
    assert!(bit(&bitmap, 2) && !bit(&bitmap, 8));
}

/// `GET /v1/search?q=...` on `node` until `done` holds (each node keeps its own index,
/// fed from the shared catalog change feed); panics after 10 s.
async fn search_on_until(node: &TestApp, query: &str, done: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..200 {
        let (status, body) = node.get(&format!("/v1/search?{query}"), None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        if done(&body) {
            return body;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("search {query} on the other node never showed the change");
}

fn found(page: &Value, event: &str) -> bool {
    page["items"].as_array().is_some_and(|items| items.iter().any(|e| e["id"] == event))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_made_or_changed_on_one_node_is_found_by_search_on_another() {
    let backends = Backends::fresh().await;
    let a = backends.node(true).await;
    let b = backends.node(false).await;
    let admin = a.admin().await;
    let event = a.on_sale_event(&admin, &[("A", 1, 4, "premium")]).await;
    // Made on A, found on B by a word of its name, its city and its category.
    search_on_until(&b, "q=Test+Show&city=Testville&category=concert", |p| found(p, &event)).await;
    let (status, _) =
        send(b.client.patch(a.url(&format!("/v1/events/{event}"))).bearer_auth(&admin).json(&json!({
            "name": "Zanzibar Quartet"
        })))
        .await;
    assert_eq!(status, StatusCode::OK);
    // Renamed on A: B finds it by the new name and no longer by the old one.
    search_on_until(&b, "q=Zanzibar", |p| found(p, &event)).await;
    search_on_until(&b, "q=Test+Show&city=Testville", |p| !found(p, &event)).await;
}

/// Buys two seats through `a` and waits for the ticket mail, which the ticket worker of
/// either node writes once it takes the order's message from the shared stream.
async fn an_order_reaches_its_ticket_mail(a: &TestApp, b: &TestApp, stream_kind: &str) {
    for node in [a, b] {
        let (status, ready) = node.get("/readyz", None).await;
        assert_eq!(status, StatusCode::OK, "{ready}");
        assert_eq!(ready["backends"]["stream"]["kind"], stream_kind, "{ready}");
    }
    let admin = a.admin().await;
    let alice = a.fan("alice").await;
    let event = a.on_sale_event(&admin, &[("A", 1, 10, "premium")]).await;
    let order = a.buy(&alice, &event, &["A-1-1", "A-1-2"]).await;
    let order_id = boxoffice_core::OrderId::parse(order["order_id"].as_str().unwrap()).unwrap();
    let paths: Vec<_> = [a, b]
        .iter()
        .map(|n| {
            boxoffice_server::mail::mail_path(
                &n.data_dir.path().join(boxoffice_server::mail::MAIL_DIR),
                &order_id,
            )
        })
        .collect();
    for _ in 0..1000 {
        if paths.iter().any(|p| p.exists()) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let written: Vec<_> = paths.iter().filter(|p| p.exists()).collect();
    assert_eq!(written.len(), 1, "one node mailed the order once: {paths:?}");
    let mail = std::fs::read_to_string(written[0]).unwrap();
    assert!(mail.contains("To: alice@example.com"), "{mail}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_flow_through_a_shared_jetstream_stream_to_one_ticket_mail() {
    let backends = Backends::fresh().await;
    let tag: u64 = rand::random();
    let stream_settings = move |c: &mut boxoffice_server::config::Config| {
        c.stream.nats_url = Some("nats://127.0.0.1:4222".into());
        c.stream.nats_stream = format!("BOXOFFICE_TEST_{tag:016x}");
        c.stream.nats_subjects = format!("boxoffice.test{tag:016x}.>");
    };
    let a = backends.node_with(&redis_url(), true, stream_settings).await;
    let b = backends.node_with(&redis_url(), false, stream_settings).await;
    an_order_reaches_its_ticket_mail(&a, &b, "jetstream").await;
    let mut config = boxoffice_server::stream::JetStreamConfig::new("nats://127.0.0.1:4222");
    config.stream = format!("BOXOFFICE_TEST_{tag:016x}");
    config.subjects = format!("boxoffice.test{tag:016x}.>");
    boxoffice_server::stream::JetStreamStream::connect(config).await.unwrap().delete_stream().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the tansu broker: scripts/install-tansu.sh (.ci/run runs it when installed)"]
async fn kafka_orders_flow_through_a_shared_kafka_topic_to_one_ticket_mail() {
    let backends = Backends::fresh().await;
    let broker = boxoffice_stream::tansu::Broker::start();
    let address = broker.address.clone();
    let stream_settings = move |c: &mut boxoffice_server::config::Config| {
        c.stream.kafka_brokers = vec![address.clone()];
        c.stream.kafka_topic = "boxoffice.tickets".into();
    };
    let a = backends.node_with(&redis_url(), true, stream_settings.clone()).await;
    let b = backends.node_with(&redis_url(), false, stream_settings).await;
    an_order_reaches_its_ticket_mail(&a, &b, "kafka").await;
    drop(broker);
}
