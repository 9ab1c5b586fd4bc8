//! The onsale across nodes: in distributed mode the waiting room and the per-user and
//! per-IP rate limits live in Redis, so every node serves the same queue and the same
//! limits. Nodes here share one PostgreSQL database and one Redis key prefix, fresh per
//! test; the lease test runs the real binary and kills the drainer with SIGKILL; the
//! degrade test stops its own `redis-server`.

use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use boxoffice_core::EventId;
use boxoffice_server::http::guard::{SHARED_RETRY_AFTER, SharedLimit};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::crash::Server;
use crate::distributed::Backends;
use crate::helpers::{TestApp, send, spawn_with};
use crate::services::{RedisServer, redis_url};

/// A node of `backends` with the given per-user and per-IP limits.
async fn node(backends: &Backends, per_user: u32, per_ip: u32) -> TestApp {
    let (url, prefix) = (backends.database.url(), backends.prefix.clone());
    spawn_with(move |c| {
        c.database_url = Some(url);
        c.database_pool_size = 4;
        c.redis_url = Some(redis_url());
        c.redis_key_prefix = prefix;
        c.audit_writer = Some(false);
        c.rate_limit_per_user = per_user;
        c.rate_limit_per_ip = per_ip;
    })
    .await
}

/// Sends `n` requests made by `request(i)`, node by node in turn; returns how many were
/// let through, and checks every refusal is a 429 with `Retry-After`. `started` is when
/// the first was sent.
async fn spread(
    nodes: &[&TestApp],
    n: usize,
    request: impl Fn(&TestApp, usize) -> reqwest::RequestBuilder,
) -> (usize, Instant) {
    let started = Instant::now();
    let mut passed = 0;
    for i in 0..n {
        let response = request(nodes[i % nodes.len()], i).send().await.expect("request");
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            let retry_after: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
            assert!(retry_after >= 1);
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["error"]["code"], "RATE_LIMITED", "{body}");
        } else {
            passed += 1;
        }
    }
    (passed, started)
}

/// At a shared limit of `rate`/s with a burst of `rate`, at most this many of a run
/// started at `started` can pass, on however many nodes.
fn shared_bound(rate: u32, started: Instant) -> usize {
    let elapsed = started.elapsed().as_secs_f64();
    rate as usize + (elapsed * f64::from(rate)).ceil() as usize
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_hold_across_nodes() {
    let backends = Backends::fresh().await;
    let (per_user, per_ip) = (5, 40);
    let (a, b) = (node(&backends, per_user, per_ip).await, node(&backends, per_user, per_ip).await);

    // Per IP: both nodes see the same address (127.0.0.1) and count it together.
    let (passed, started) =
        spread(&[&a, &b], 3 * per_ip as usize, |n, _| n.client.get(n.url("/v1/events"))).await;
    let bound = shared_bound(per_ip, started);
    assert!(passed >= per_ip as usize, "the burst passes: {passed}");
    assert!(passed <= bound, "{passed} passed over two nodes; a shared limit lets {bound} through");

    // Per user, on the hold route: one fan's requests on both nodes share one limit.
    // (The limit comes before the body is read; these bodies are refused after it.)
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let fan = a.fan("alice").await;
    let other = a.fan("bob").await;
    let (passed, started) = spread(&[&a, &b], 3 * per_user as usize, |n, _| {
        n.client.post(n.url("/v1/events/ev_1/holds")).bearer_auth(&fan).body("not json")
    })
    .await;
    let bound = shared_bound(per_user, started);
    assert!(passed >= per_user as usize, "the burst passes: {passed}");
    assert!(passed <= bound, "{passed} holds passed over two nodes; a shared limit lets {bound} through");
    let (status, _) =
        send(b.client.post(b.url("/v1/events/ev_1/holds")).bearer_auth(&other).body("{}")).await;
    assert_ne!(status, StatusCode::TOO_MANY_REQUESTS, "another user has a limit of their own");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_a_node_limits_alone_and_shares_again_when_redis_returns() {
    let mut redis = RedisServer::start().await;
    let prefix = format!("bo-test-{:016x}:", rand::random::<u64>());
    let url = redis.url();
    let connect = boxoffice_server::waiting_room::redis::connect;
    // 2/s with a burst of 2: the next request is allowed 500 ms after a burst.
    let rate = NonZeroU32::new(2).unwrap();
    let a: SharedLimit<String> = SharedLimit::new(connect(&url).await.unwrap(), &prefix, "ip", rate);
    let b: SharedLimit<String> = SharedLimit::new(connect(&url).await.unwrap(), &prefix, "ip", rate);
    // Shared: what node a used up, node b cannot use.
    assert_eq!(burst(&a, "10.0.0.1").await, 2);
    assert!(b.check(&"10.0.0.1".to_owned()).await.is_err(), "node b sees node a's requests");
    assert!(!a.is_degraded() && !b.is_degraded());

    // Redis dies: each node limits on its own, at the same rate: never no limit, never
    // everyone refused.
    redis.kill();
    assert_eq!(burst(&a, "10.0.0.2").await, 2, "a node's own burst");
    assert!(a.check(&"10.0.0.2".to_owned()).await.is_err(), "and its own limit");
    assert!(a.is_degraded());

    // Redis returns (empty): after the retry pause, both nodes share the limit again.
    redis.restart().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    for (i, limit) in [&a, &b].into_iter().enumerate() {
        loop {
            let _ = limit.check(&format!("probe-{i}")).await;
            if !limit.is_degraded() {
                break;
            }
            assert!(Instant::now() < deadline, "the shared limit never came back");
            tokio::time::sleep(SHARED_RETRY_AFTER).await;
        }
    }
    assert_eq!(burst(&a, "10.0.0.3").await, 2);
    assert!(b.check(&"10.0.0.3".to_owned()).await.is_err(), "node b shares node a's count again");
    assert!(!b.is_degraded());
}

/// Two checks of `key` at once (the burst of a 2/s limit); how many passed.
async fn burst(limit: &SharedLimit<String>, key: &str) -> usize {
    let key = key.to_owned();
    let mut passed = 0;
    for _ in 0..2 {
        if limit.check(&key).await.is_ok() {
            passed += 1;
        }
    }
    passed
}

async fn patch_queue(app: &TestApp, admin: &str, event: &str, queue: Value) {
    let (status, body) = send(
        app.client
            .patch(app.url(&format!("/v1/events/{event}")))
            .bearer_auth(admin)
            .json(&json!({"queue": queue})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fan_queued_on_one_node_is_admitted_on_another_and_the_token_holds_on_either() {
    let backends = Backends::fresh().await;
    let (a, b) = (node(&backends, 0, 0).await, node(&backends, 0, 0).await);
    let admin = a.admin().await;
    let event = a.on_sale_event(&admin, &[("A", 1, 10, "premium")]).await;
    patch_queue(&a, &admin, &event, json!({"enabled": true, "admit_rate_per_second": 100})).await;
    let fan = a.fan("carol").await;

    // Node b learns of the queue from the catalog's change feed.
    let mut joined = None;
    for _ in 0..100 {
        let (status, entry) = b.post(&format!("/v1/events/{event}/queue"), Some(&fan), json!({})).await;
        if status == StatusCode::OK {
            joined = Some(entry);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let joined = joined.expect("node b serves the queue");
    let (status, again) = a.post(&format!("/v1/events/{event}/queue"), Some(&fan), json!({})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again["queue_id"], joined["queue_id"], "one entry per user across nodes");

    let path = format!("/v1/events/{event}/queue/{}", joined["queue_id"].as_str().unwrap());
    let mut admitted = None;
    for _ in 0..100 {
        let (status, entry) = b.get(&path, Some(&fan)).await;
        assert_eq!(status, StatusCode::OK, "{entry}");
        if entry["state"] == "admitted" {
            admitted = Some(entry);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let admitted = admitted.expect("admitted by whichever node drains");
    let token = admitted["admission_token"].as_str().unwrap();
    let hold = |app: &TestApp, seats: Value, admission: Option<&str>| {
        let mut req = app.client.post(app.url(&format!("/v1/events/{event}/holds"))).bearer_auth(&fan);
        if let Some(t) = admission {
            req = req.header("Admission-Token", t);
        }
        send(req.json(&json!({ "seats": seats })))
    };
    let (status, body) = hold(&a, json!(["A-1-1"]), None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::FORBIDDEN, Some("NOT_ADMITTED")));
    let (status, body) = hold(&a, json!(["A-1-1"]), Some(token)).await;
    assert_eq!(status, StatusCode::CREATED, "a token issued on node b holds on node a: {body}");
}

/// The Redis key of an event's drainer lease under `prefix`.
fn lease_key(prefix: &str, event: &str) -> String {
    format!("{prefix}{{q:{}}}:lease", EventId::parse(event).unwrap().0)
}

async fn lease(conn: &mut redis::aio::MultiplexedConnection, key: &str) -> Option<String> {
    redis::cmd("GET").arg(key).query_async(conn).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drainer_lease_moves_to_another_node_when_its_holder_is_killed() {
    let backends = Backends::fresh().await;
    let (db, redis) = (backends.database.url(), redis_url());
    let args = ["--redis-url", &redis, "--database-url", &db, "--redis-key-prefix", &backends.prefix];
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut nodes = vec![Server::start(dir_a.path(), &args).await, Server::start(dir_b.path(), &args).await];
    let admin = nodes[0].token("admin", "admin").await;
    let event = nodes[0].on_sale_event(&admin, 1, 10).await;
    let (status, body) = send(
        nodes[0]
            .client
            .patch(nodes[0].url(&format!("/v1/events/{event}")))
            .bearer_auth(&admin)
            .json(&json!({"queue": {"enabled": true, "admit_rate_per_second": 1}})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Twenty fans queue on node 0: one is admitted a second, so the line lasts.
    let mut fans = Vec::new();
    for i in 0..20 {
        let token = nodes[0].token(&format!("fan{i}"), "fan").await;
        let (status, entry) = nodes[0].post(&format!("/v1/events/{event}/queue"), &token, json!({})).await;
        assert_eq!(status, StatusCode::OK, "{entry}");
        fans.push((token, entry["queue_id"].as_str().unwrap().to_owned()));
    }
    let client = redis::Client::open(redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let key = lease_key(&backends.prefix, &event);
    let mut holder = None;
    for _ in 0..100 {
        if let Some(value) = lease(&mut conn, &key).await {
            holder = Some(value);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let holder = holder.expect("some node drains the queue");
    let pid_of = |lease: &str| -> u32 { lease.split('-').nth(1).unwrap().parse().unwrap() };
    let fence_of = |lease: &str| -> u64 { lease.rsplit(':').next().unwrap().parse().unwrap() };
    let dead = nodes.iter().position(|n| n.child.id() == pid_of(&holder)).expect("the holder is one of ours");
    nodes.remove(dead).kill9();
    let survivor = &nodes[0];

    // Within a few seconds the other node holds the lease, with a higher fencing token...
    let mut taken = None;
    for _ in 0..200 {
        match lease(&mut conn, &key).await {
            Some(value) if pid_of(&value) == survivor.child.id() => {
                taken = Some(value);
                break;
            }
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    let taken = taken.expect("the lease moved to the surviving node");
    assert!(fence_of(&taken) > fence_of(&holder), "{taken} after {holder}");

    // ...and admits: fans polling it keep getting in.
    let count_admitted = || async {
        let mut admitted = 0;
        for (token, id) in &fans {
            let (status, entry) = survivor.get(&format!("/v1/events/{event}/queue/{id}"), token).await;
            assert_eq!(status, StatusCode::OK, "{entry}");
            if entry["state"] == "admitted" {
                admitted += 1;
            }
        }
        admitted
    };
    let before = count_admitted().await;
    let mut after = before;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        after = count_admitted().await;
        if after >= before + 2 {
            break;
        }
    }
    assert!(after >= before + 2, "admission went on after the kill: {before} then {after}");
}
