//! Distributed mode on a Redis Cluster of three masters started by each test (the engine's
//! `tests/support/redis_cluster.rs`): a node given `--redis-url redis+cluster://...` serves
//! holds, checkouts, the waiting room and the shared rate limits, each event's keys and
//! each queue's keys in one slot; and moving an event's slot to another master while fans
//! hold and release through HTTP answers no 5xx and leaves the event consistent.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use boxoffice_core::EventId;
use reqwest::StatusCode;
use serde_json::json;

use crate::distributed::Backends;
use crate::helpers::{TestApp, bit, send, spawn_with};

#[path = "../../../engine/tests/support/redis_cluster.rs"]
mod redis_cluster;

use redis_cluster::RedisCluster;

/// The Redis Cluster the waiting-room suite's `on_cluster` tests share (started by the
/// first one; its watchdog stops it when the test binary exits).
pub fn shared_cluster() -> &'static RedisCluster {
    static CLUSTER: std::sync::OnceLock<RedisCluster> = std::sync::OnceLock::new();
    CLUSTER.get_or_init(RedisCluster::start)
}

async fn start_cluster() -> Arc<RedisCluster> {
    Arc::new(tokio::task::spawn_blocking(RedisCluster::start).await.expect("the test cluster starts"))
}

/// A node of `backends` whose Redis is `cluster`, with a per-user rate limit.
async fn node(backends: &Backends, cluster: &RedisCluster, per_user: u32) -> TestApp {
    let (url, redis, prefix) = (backends.database.url(), cluster.url(), backends.prefix.clone());
    spawn_with(move |c| {
        c.database_url = Some(url);
        c.database_pool_size = 4;
        c.redis_url = Some(redis);
        c.redis_key_prefix = prefix;
        c.audit_writer = Some(true);
        c.rate_limit_per_user = per_user;
    })
    .await
}

fn event_slot(cluster: &RedisCluster, event: &str) -> u16 {
    cluster.keyslot(&format!("{{ev:{}}}", EventId::parse(event).unwrap().0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_on_redis_cluster_serves_holds_the_waiting_room_and_rate_limits() {
    let cluster = start_cluster().await;
    let backends = Backends::fresh().await;
    let app = node(&backends, &cluster, 5).await;
    let admin = app.admin().await;
    let alice = app.fan("alice").await;

    // Holds, a conflict, the bitmap and a checkout.
    let event = app.on_sale_event(&admin, &[("A", 2, 10, "premium")]).await;
    let hold = app.hold_ok(&alice, &event, &["A-1-1", "A-1-2"]).await;
    let bob = app.fan("bob").await;
    let (status, body) = app.hold(&bob, &event, &["A-1-2"]).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (bitmap, _) = app.bitmap(&event).await;
    assert!(!bit(&bitmap, 0) && !bit(&bitmap, 1) && bit(&bitmap, 2));
    let (status, order) = app.checkout(&alice, &hold, "tok_visa", "cluster-1").await;
    assert_eq!(status, StatusCode::CREATED, "{order}");

    // The waiting room: join, get admitted, hold with the admission token.
    let queued = app.on_sale_event(&admin, &[("A", 1, 10, "premium")]).await;
    let (status, body) = send(
        app.client
            .patch(app.url(&format!("/v1/events/{queued}")))
            .bearer_auth(&admin)
            .json(&json!({"queue": {"enabled": true, "admit_rate_per_second": 100}})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let carol = app.fan("carol").await;
    let (status, entry) = app.post(&format!("/v1/events/{queued}/queue"), Some(&carol), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{entry}");
    let path = format!("/v1/events/{queued}/queue/{}", entry["queue_id"].as_str().unwrap());
    let mut token = None;
    for _ in 0..200 {
        let (status, entry) = app.get(&path, Some(&carol)).await;
        assert_eq!(status, StatusCode::OK, "{entry}");
        if entry["state"] == "admitted" {
            token = entry["admission_token"].as_str().map(str::to_owned);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let token = token.expect("the admission step runs on the cluster");
    let (status, body) = send(
        app.client
            .post(app.url(&format!("/v1/events/{queued}/holds")))
            .bearer_auth(&carol)
            .header("Admission-Token", token)
            .json(&json!({"seats": ["A-1-5"]})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    // The per-user limit (5/s, burst 5) is counted in the cluster.
    let dave = app.fan("dave").await;
    let mut limited = 0;
    for _ in 0..15 {
        let request = app.client.post(app.url(&format!("/v1/events/{event}/holds"))).bearer_auth(&dave);
        let (status, body) = send(request.body("not json")).await;
        if status == StatusCode::TOO_MANY_REQUESTS {
            assert_eq!(body["error"]["code"], "RATE_LIMITED", "{body}");
            limited += 1;
        }
    }
    assert!(limited >= 5, "15 requests at once over a 5/s limit: {limited} refused");

    // Every key is in its event's or queue's slot, or a key of its own (rate limits, the
    // set of queued events); an event's and a queue's keys never span slots.
    let mut slots: BTreeMap<String, BTreeSet<u16>> = BTreeMap::new();
    for (_, key) in cluster.keys_with_prefix(&backends.prefix) {
        let rest = &key[backends.prefix.len()..];
        let group = match rest.split_once('}') {
            Some((tag, _)) => tag.to_owned(),
            None => rest.to_owned(),
        };
        slots.entry(group).or_default().insert(cluster.keyslot(&key));
    }
    let ev = EventId::parse(&event).unwrap().0;
    let q = EventId::parse(&queued).unwrap().0;
    for tag in [format!("{{ev:{ev}"), format!("{{q:{q}")] {
        assert!(slots.contains_key(&tag), "{tag} has keys: {slots:?}");
    }
    assert!(slots.keys().any(|k| k.starts_with("rl:user:")), "the rate limit is in the cluster: {slots:?}");
    for (group, in_slots) in &slots {
        assert_eq!(in_slots.len(), 1, "{group} spans slots {in_slots:?}");
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn moving_an_events_slot_while_fans_hold_answers_no_5xx() {
    let cluster = start_cluster().await;
    let backends = Backends::fresh().await;
    let app = Arc::new(node(&backends, &cluster, 0).await);
    let admin = app.admin().await;
    let event = app.on_sale_event(&admin, &[("A", 8, 10, "premium")]).await;
    let slot = event_slot(&cluster, &event);
    let from = cluster.owner_of(slot);
    let to = (from + 1) % redis_cluster::MASTERS;

    let stop = Arc::new(AtomicBool::new(false));
    let migrating = Arc::new(AtomicBool::new(false));
    let (requests, in_migration) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let server_errors = Arc::new(parking_lot::Mutex::new(Vec::<String>::new()));
    let mut fans = Vec::new();
    for f in 1..=6u32 {
        let token = app.fan(&format!("fan{f}")).await;
        let (app, event) = (app.clone(), event.clone());
        let (stop, migrating, requests, in_migration, server_errors) =
            (stop.clone(), migrating.clone(), requests.clone(), in_migration.clone(), server_errors.clone());
        fans.push(tokio::spawn(async move {
            // Each fan holds and releases seats of its own row; the last hold stays.
            let mut held: Option<String> = None;
            let mut i = 0u32;
            while !stop.load(Ordering::Acquire) {
                let during = migrating.load(Ordering::Acquire);
                let (status, body) = match held.take() {
                    Some(hold) => app.delete(&format!("/v1/holds/{hold}"), Some(&token)).await,
                    None => {
                        let seat = format!("A-{f}-{}", i % 10 + 1);
                        let (status, body) = app.hold(&token, &event, &[&seat]).await;
                        if status == StatusCode::CREATED {
                            held = body["hold_id"].as_str().map(str::to_owned);
                        }
                        (status, body)
                    }
                };
                if status.is_server_error() {
                    server_errors.lock().push(format!("{status} {body}"));
                }
                requests.fetch_add(1, Ordering::AcqRel);
                if during {
                    in_migration.fetch_add(1, Ordering::AcqRel);
                }
                i += 1;
            }
            held
        }));
    }
    let wait_for = |n: u64| {
        let requests = requests.clone();
        async move {
            while requests.load(Ordering::Acquire) < n {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    wait_for(60).await;
    migrating.store(true, Ordering::Release);
    let mover = cluster.clone();
    tokio::task::spawn_blocking(move || mover.migrate_slot(slot, to, 1, Duration::from_millis(50)))
        .await
        .unwrap();
    migrating.store(false, Ordering::Release);
    let after = requests.load(Ordering::Acquire);
    wait_for(after + 60).await;
    stop.store(true, Ordering::Release);
    let mut still_held = Vec::new();
    for fan in fans {
        still_held.extend(fan.await.unwrap());
    }

    assert!(server_errors.lock().is_empty(), "5xx during the migration: {:?}", server_errors.lock());
    assert!(in_migration.load(Ordering::Acquire) > 0, "requests were sent while the slot moved");
    assert_eq!(cluster.owner_of(slot), to);
    let ev = EventId::parse(&event).unwrap().0;
    for (master, key) in cluster.keys_with_prefix(&backends.prefix) {
        if key.contains(&format!("{{ev:{ev}}}")) {
            assert_eq!(master, to, "{key} stayed behind");
        }
    }
    // The map shows exactly the holds the fans were left with.
    let (bitmap, _) = app.bitmap(&event).await;
    let taken = (0..80).filter(|&s| !bit(&bitmap, s)).count();
    assert_eq!(taken, still_held.len(), "one seat per live hold");
    let (status, counts) =
        app.get(&format!("/v1/events/{event}/availability?format=json"), Some(&admin)).await;
    assert_eq!(status, StatusCode::OK, "{counts}");
    // The audit history replays to the same state once the writer caught up.
    let mut report = json!(null);
    for _ in 0..100 {
        let (status, r) = app.get(&format!("/v1/events/{event}/audit/verify"), Some(&admin)).await;
        assert_eq!(status, StatusCode::OK, "{r}");
        report = r;
        if report["mismatches"] == json!([]) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(report["mismatches"], json!([]), "{report}");
}
