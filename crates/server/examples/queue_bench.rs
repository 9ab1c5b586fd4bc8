//! Waiting room measurements for docs/benchmarks.md:
//!
//! ```sh
//! cargo run --release -p boxoffice-server --example queue_bench -- [memory|http|pow|all] [users]
//! ```
//!
//! - `memory`: joins/s into one event's queue in process (the queue alone, and through the
//!   `WaitingRoom` trait), the memory of 1,000,000 queued users (resident set size before
//!   and after), the onsale shuffle of a 1,000,000 pre-queue, position reads, and one
//!   admission tick.
//! - `http`: joins/s and status polls/s over HTTP against a server in this process (64
//!   concurrent connections on loopback).
//! - `pow`: the client's cost to solve a challenge at several difficulties, and the
//!   server's cost to check one.

use std::sync::Arc;
use std::time::{Duration, Instant};

use boxoffice_core::{EventId, UserId};
use boxoffice_server::auth::Role;
use boxoffice_server::waiting_room::memory::EventQueue;
use boxoffice_server::waiting_room::{MemoryWaitingRoom, Policy, WaitingRoom, pow};
use boxoffice_server::{Application, Config};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::{Value, json};

// As in the server: memory numbers are mimalloc's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const ONSALE: u64 = 1_800_000_000_000;

fn policy(rate: u32) -> Policy {
    Policy { admit_rate_per_second: rate, token_ttl_ms: 600_000, max_length: 10_000_000, onsale_at: ONSALE }
}

/// Resident set size of this process, in bytes (Linux).
fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
    pages * 4096
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn users(n: usize) -> Vec<UserId> {
    (0..n).map(|i| UserId::parse(&format!("user-{i:08}")).expect("a valid user id")).collect()
}

fn memory(n: usize) {
    println!("## in process, {n} users");
    let ids = users(n);
    let p = policy(100);

    let mut views = vec![0u64; n];
    let before = rss_bytes();
    let mut queue = EventQueue::new(StdRng::seed_from_u64(1), ONSALE);
    let start = Instant::now();
    for (view, user) in views.iter_mut().zip(&ids) {
        *view = queue.join(user, &p, ONSALE + 1).expect("room in the queue").id;
    }
    let took = start.elapsed();
    let after = rss_bytes();
    println!(
        "joins (line, after the onsale): {n} in {:.3} s = {:.0}/s",
        took.as_secs_f64(),
        n as f64 / took.as_secs_f64()
    );
    println!(
        "memory of the queue: {:.0} MiB for {n} users = {:.0} bytes/user (user id strings not included: {:.0} MiB more)",
        mib(after.saturating_sub(before)),
        after.saturating_sub(before) as f64 / n as f64,
        mib((n * (16 + 16)) as u64),
    );

    let start = Instant::now();
    let probes = 1_000_000;
    let mut sum = 0;
    for i in 0..probes {
        let k = (i * 7_919) % n;
        sum += queue.view(views[k], &ids[k], &p, ONSALE + 2).expect("an entry").position.unwrap_or(0);
    }
    let took = start.elapsed();
    println!(
        "position reads (with heartbeat): {:.0} ns each (checksum {sum})",
        took.as_nanos() as f64 / probes as f64
    );

    let start = Instant::now();
    let report = queue.tick(&p, ONSALE + 1_000);
    println!(
        "one admission tick (admitted {}, sweep of due deadlines): {:.3} ms",
        report.admitted,
        start.elapsed().as_secs_f64() * 1000.0
    );
    queue.check_invariants();
    drop(queue);

    let mut prequeue = EventQueue::new(StdRng::seed_from_u64(2), ONSALE - 10_000);
    let start = Instant::now();
    for user in &ids {
        prequeue.join(user, &p, ONSALE - 5_000).expect("room in the queue");
    }
    let joined = start.elapsed();
    let start = Instant::now();
    prequeue.tick(&p, ONSALE);
    println!(
        "pre-queue joins: {:.0}/s; shuffle of {n} into the line at the onsale: {:.3} s",
        n as f64 / joined.as_secs_f64(),
        start.elapsed().as_secs_f64()
    );
    drop(prequeue);

    let runtime = tokio::runtime::Builder::new_multi_thread().build().expect("a runtime");
    let room = Arc::new(MemoryWaitingRoom::with_seed(3));
    let start = Instant::now();
    runtime.block_on(async {
        for user in &ids {
            room.join(EventId(1), user, &p, ONSALE + 1).await.expect("room in the queue");
        }
    });
    let took = start.elapsed();
    println!("joins through the WaitingRoom trait (one task): {:.0}/s", n as f64 / took.as_secs_f64());
    let threads = 4;
    let room = Arc::new(MemoryWaitingRoom::with_seed(4));
    let ids = Arc::new(ids);
    let start = Instant::now();
    runtime.block_on(async {
        let tasks: Vec<_> = (0..threads)
            .map(|t| {
                let (room, ids) = (room.clone(), ids.clone());
                tokio::spawn(async move {
                    for user in ids.iter().skip(t).step_by(threads) {
                        room.join(EventId(1), user, &p, ONSALE + 1).await.expect("room in the queue");
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("a join task");
        }
    });
    let took = start.elapsed();
    println!(
        "joins through the trait, {threads} tasks on one event (one lock): {:.0}/s",
        n as f64 / took.as_secs_f64()
    );
}

async fn json_of(response: reqwest::Response) -> Value {
    response.json().await.expect("a JSON answer")
}

fn http(n: usize) {
    println!("## over HTTP, {n} users, 64 connections");
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a runtime");
    runtime.block_on(async {
        let dir = tempfile::tempdir().expect("a temp dir");
        let mut config = Config::for_tests(dir.path().to_path_buf());
        config.journal_sync = "write".into();
        let app = Application::build(config).await.expect("the app builds");
        let base = format!("http://{}", app.local_addr());
        let state = app.state().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(app.run(async move {
            let _ = stopped.await;
        }));
        let client = reqwest::Client::builder().pool_max_idle_per_host(128).build().expect("a client");
        while client.get(format!("{base}/readyz")).send().await.map(|r| r.status() != 200).unwrap_or(true) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let admin = state.auth.mint(&UserId::parse("admin").expect("an id"), Role::Admin, None);
        let venue = json_of(
            client
                .post(format!("{base}/v1/venues"))
                .bearer_auth(&admin)
                .json(&json!({"name": "Bench Hall", "city": "Bench", "lat": 1.0, "lon": 1.0,
                              "sections": [{"name": "A", "rows": 10, "seats_per_row": 10}]}))
                .send()
                .await
                .expect("a venue"),
        )
        .await;
        let now = chrono::Utc::now();
        let event = json_of(
            client
                .post(format!("{base}/v1/events"))
                .bearer_auth(&admin)
                .json(&json!({"name": "Bench", "venue_id": venue["id"], "category": "concert",
                              "starts_at": (now + chrono::Duration::days(1)).to_rfc3339(),
                              "onsale_at": (now - chrono::Duration::hours(1)).to_rfc3339(),
                              "prices": {"standard": {"amount": 100, "currency": "USD"}}}))
                .send()
                .await
                .expect("an event"),
        )
        .await;
        let event = event["id"].as_str().expect("an event id").to_owned();
        client
            .patch(format!("{base}/v1/events/{event}"))
            .bearer_auth(&admin)
            .json(&json!({"queue": {"enabled": true, "admit_rate_per_second": 1}}))
            .send()
            .await
            .expect("queue on");
        let tokens: Arc<Vec<String>> = Arc::new(
            (0..n)
                .map(|i| {
                    state.auth.mint(&UserId::parse(&format!("fan-{i}")).expect("an id"), Role::Fan, None)
                })
                .collect(),
        );
        let connections = 64;
        let run = |what: &'static str, ids: Arc<Vec<String>>| {
            let (client, base, event, tokens) = (client.clone(), base.clone(), event.clone(), tokens.clone());
            async move {
                let start = Instant::now();
                let tasks: Vec<_> = (0..connections)
                    .map(|c| {
                        let (client, base, event, tokens, ids) =
                            (client.clone(), base.clone(), event.clone(), tokens.clone(), ids.clone());
                        tokio::spawn(async move {
                            let mut out = Vec::new();
                            for i in (c..tokens.len()).step_by(connections) {
                                let request = if what == "join" {
                                    client.post(format!("{base}/v1/events/{event}/queue"))
                                } else {
                                    client.get(format!("{base}/v1/events/{event}/queue/{}", ids[i]))
                                };
                                let answer =
                                    json_of(request.bearer_auth(&tokens[i]).send().await.expect("an answer"))
                                        .await;
                                out.push((i, answer["queue_id"].as_str().unwrap_or_default().to_owned()));
                            }
                            out
                        })
                    })
                    .collect();
                let mut ids = vec![String::new(); tokens.len()];
                for task in tasks {
                    for (i, id) in task.await.expect("a task") {
                        ids[i] = id;
                    }
                }
                let took = start.elapsed();
                println!(
                    "{what}s over HTTP: {} in {:.2} s = {:.0}/s",
                    tokens.len(),
                    took.as_secs_f64(),
                    tokens.len() as f64 / took.as_secs_f64()
                );
                ids
            }
        };
        let ids = Arc::new(run("join", Arc::new(Vec::new())).await);
        assert!(ids.iter().all(|id| id.starts_with("qu_")), "every join answered with an entry");
        run("status poll", ids).await;
        let _ = stop.send(());
        server.await.expect("the server task").expect("the server ran");
    });
}

fn proof_of_work() {
    println!("## proof of work (one core)");
    println!("| bits | mean hashes | mean time per join | worst of the sample |");
    println!("|---:|---:|---:|---:|");
    for bits in [0u8, 8, 12, 16, 18, 20, 22] {
        let samples = match bits {
            0..=12 => 2_000,
            13..=18 => 100,
            _ => 16,
        };
        let mut hashes = 0u64;
        let mut worst = Duration::ZERO;
        let start = Instant::now();
        for _ in 0..samples {
            let one = Instant::now();
            let challenge = pow::new_challenge();
            let (nonce, tried) = pow::solve(&challenge, bits, 0);
            assert!(pow::verify(&challenge, &nonce, bits));
            hashes += tried;
            worst = worst.max(one.elapsed());
        }
        let mean = start.elapsed() / samples;
        println!(
            "| {bits} | {:.0} | {:.3} ms | {:.1} ms |",
            hashes as f64 / f64::from(samples),
            mean.as_secs_f64() * 1000.0,
            worst.as_secs_f64() * 1000.0
        );
    }
    let challenge = pow::new_challenge();
    let (nonce, _) = pow::solve(&challenge, 16, 0);
    let rounds = 1_000_000;
    let start = Instant::now();
    let mut ok = 0;
    for _ in 0..rounds {
        ok += u32::from(pow::verify(std::hint::black_box(&challenge), std::hint::black_box(&nonce), 16));
    }
    println!(
        "server check of one answer: {:.0} ns ({ok} of {rounds} verified)",
        start.elapsed().as_nanos() as f64 / f64::from(rounds)
    );
}

fn main() {
    let mut args = std::env::args().skip(1);
    let what = args.next().unwrap_or_else(|| "all".into());
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1_000_000);
    match what.as_str() {
        "memory" => memory(n),
        "http" => http(n.min(100_000)),
        "pow" => proof_of_work(),
        _ => {
            memory(n);
            http(n.min(20_000));
            proof_of_work();
        }
    }
}
