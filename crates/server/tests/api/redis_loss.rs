//! Redis loses its data: two nodes on a `redis-server` of this test (never the machine's
//! shared one), restarted empty in the middle of an onsale. No hold or read is answered
//! from the empty Redis: the event is rebuilt once from PostgreSQL (SOLD from valid
//! tickets, CONFIRMING from open payment attempts) under its lock, with a new epoch; holds
//! that were not being paid are lost, sales are not.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use boxoffice_core::{EventId, HoldId};
use reqwest::StatusCode;

use crate::distributed::Backends;
use crate::helpers::{TestApp, assert_error, bit};

/// A `redis-server` without persistence on a free port. Its data dir only ever holds a
/// seed file written by [`LossyRedis::restart_empty_but`].
struct LossyRedis {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn spawn_redis(port: u16, dir: &Path) -> Child {
    Command::new("/usr/bin/redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .args(["--dir", dir.to_str().unwrap(), "--dbfilename", "seed.rdb"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("these tests need /usr/bin/redis-server")
}

async fn connect(port: u16) -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).unwrap();
    for _ in 0..250 {
        if let Ok(mut conn) = client.get_multiplexed_async_connection().await {
            let pong: Result<String, _> = redis::cmd("PING").query_async(&mut conn).await;
            if pong.is_ok() {
                return conn;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("redis-server on port {port} did not answer");
}

impl LossyRedis {
    async fn start() -> LossyRedis {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let child = spawn_redis(port, dir.path());
        connect(port).await;
        LossyRedis { port, dir, child: Some(child) }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server (nothing is saved) and starts it again on its port with nothing
    /// but `key` (set by a helper server into the seed file it loads): here the event's
    /// rebuild lock, as if another node were rebuilding, so the window before the
    /// rebuild can be seen.
    async fn restart_empty_but(&mut self, key: &str) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
        let seed_port = free_port();
        let mut seeder = spawn_redis(seed_port, self.dir.path());
        let mut conn = connect(seed_port).await;
        let _: () = redis::cmd("SET")
            .arg(key)
            .arg("another-node")
            .arg("PX")
            .arg(120_000)
            .query_async(&mut conn)
            .await
            .unwrap();
        let _: () = redis::cmd("SAVE").query_async(&mut conn).await.unwrap();
        seeder.kill().unwrap();
        seeder.wait().unwrap();
        self.child = Some(spawn_redis(self.port, self.dir.path()));
        let mut conn = connect(self.port).await;
        let keys: Vec<String> = redis::cmd("KEYS").arg("*").query_async(&mut conn).await.unwrap();
        assert_eq!(keys, vec![key.to_owned()], "restarted empty but for the lock");
    }

    async fn del(&self, key: &str) {
        let mut conn = connect(self.port).await;
        let _: () = redis::cmd("DEL").arg(key).query_async(&mut conn).await.unwrap();
    }
}

impl Drop for LossyRedis {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

async fn wait_until_known(node: &TestApp, token: &str, event: &str) {
    for _ in 0..100 {
        let (status, _) =
            node.get(&format!("/v1/events/{event}/availability?format=json"), Some(token)).await;
        if status == StatusCode::OK {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("node never learned of {event}");
}

/// The availability ETag's epoch (`"<epoch>.<version>b"`).
async fn etag_epoch(node: &TestApp, event: &str) -> String {
    let r = node.client.get(node.url(&format!("/v1/events/{event}/availability"))).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let etag = r.headers()["etag"].to_str().unwrap().trim_matches('"').to_owned();
    etag.split_once('.').unwrap().0.to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_empty_costs_the_unpaid_holds_never_the_sales() {
    let mut redis = LossyRedis::start().await;
    let backends = Backends::fresh().await;
    let a = backends.node_on(&redis.url(), true).await;
    let b = backends.node_on(&redis.url(), false).await;
    let admin = a.admin().await;
    let (alice, bob, carol) = (a.fan("alice").await, a.fan("bob").await, a.fan("carol").await);
    let event = a.on_sale_event(&admin, &[("A", 1, 10, "premium")]).await;
    let id = EventId::parse(&event).unwrap();
    wait_until_known(&b, &alice, &event).await;

    // Before the loss: an order (seats 0, 1) and two unpaid holds (2, 3 and 4).
    let order = a.buy(&alice, &event, &["A-1-1", "A-1-2"]).await;
    let bought_hold = order["hold_id"].as_str().map(str::to_owned);
    let lost = b.hold_ok(&bob, &event, &["A-1-3", "A-1-4"]).await;
    let lost_too = a.hold_ok(&carol, &event, &["A-1-5"]).await;
    let epoch_before = etag_epoch(&a, &event).await;

    let lock = format!("{}{{ev:{}}}:rebuild", backends.prefix, id.0);
    redis.restart_empty_but(&lock).await;

    // Until the event is rebuilt nothing is answered from the empty Redis: holds and reads
    // are refused as retryable, on both nodes.
    let mut refused = 0;
    for round in 0..100 {
        let (status, body) = b.hold(&carol, &event, &["A-1-9"]).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "no hold before the rebuild: {body}");
        let r = a.client.get(a.url(&format!("/v1/events/{event}/availability"))).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE, "no map before the rebuild");
        if body["error"]["code"] == "INVENTORY_REBUILDING" {
            refused += 1;
            if refused >= 3 {
                break;
            }
        }
        assert!(round < 99, "the nodes never noticed the loss: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        a.state.store.meta_get(&format!("inventory.lost.{event}")).await.unwrap(),
        None,
        "nobody rebuilt it while the lock was held"
    );

    // The lock is released (its holder died): one node rebuilds the event.
    redis.del(&lock).await;
    let mut map = None;
    for _ in 0..100 {
        let r = b.client.get(b.url(&format!("/v1/events/{event}/availability"))).send().await.unwrap();
        match r.status() {
            StatusCode::OK => {
                map = Some(r.bytes().await.unwrap().to_vec());
                break;
            }
            status => assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let map = map.expect("the event was rebuilt");
    // The map equals the valid tickets: the sold seats taken, the lost holds' seats free.
    assert!(!bit(&map, 0) && !bit(&map, 1), "sold seats stay sold");
    assert!((2..10).all(|i| bit(&map, i)), "lost holds' seats are free again");
    assert_eq!(a.bitmap(&event).await.0, map, "both nodes serve the rebuilt map");

    // The epoch changed, in PostgreSQL and in every ETag, so no cache mixes the histories.
    let epoch_after = etag_epoch(&a, &event).await;
    assert_ne!(epoch_after, epoch_before);
    assert_eq!(etag_epoch(&b, &event).await, epoch_after);
    let stored = a.state.store.meta_get(&format!("inventory.epoch.{event}")).await.unwrap();
    assert_eq!(stored.as_deref(), Some(epoch_after.as_str()));

    // A checkout of a lost hold fails cleanly: 410, and nothing is charged.
    let (status, body) = a.checkout(&bob, &lost, "tok_visa", "lost-1").await;
    assert_error(status, &body, 410, "HOLD_EXPIRED");
    let (status, body) = b.checkout(&carol, &lost_too, "tok_visa", "lost-2").await;
    assert_error(status, &body, 410, "HOLD_EXPIRED");
    for hold in [&lost, &lost_too] {
        let attempts = a.state.store.attempts_for_hold(&HoldId::parse(hold).unwrap()).await.unwrap();
        assert!(attempts.is_empty(), "no payment for a lost hold: {attempts:?}");
    }

    // The order made before the loss is intact.
    let order_id = order["order_id"].as_str().unwrap();
    for node in [&a, &b] {
        let (status, read) = node.get(&format!("/v1/orders/{order_id}"), Some(&alice)).await;
        assert_eq!((status, read["status"].as_str()), (StatusCode::OK, Some("confirmed")), "{read}");
    }
    if let Some(hold) = bought_hold {
        let (status, body) = a.checkout(&alice, &hold, "tok_visa", "again").await;
        assert_error(status, &body, 409, "ALREADY_CONFIRMED");
    }
    // Sold in Redis equals the valid tickets: nothing for anti-entropy to fix.
    for node in [&a, &b] {
        assert_eq!(boxoffice_server::workers::anti_entropy(&node.state).await.unwrap(), Default::default());
    }

    // The rebuilt event sells again.
    let again = b.hold_ok(&carol, &event, &["A-1-3"]).await;
    let (status, bought) = a.checkout(&carol, &again, "tok_visa", "after-1").await;
    assert_eq!(status, StatusCode::CREATED, "{bought}");
    let (status, body) = a.hold(&bob, &event, &["A-1-1"]).await;
    assert_error(status, &body, 409, "SEATS_UNAVAILABLE");
}
