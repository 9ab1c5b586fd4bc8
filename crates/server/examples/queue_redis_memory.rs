//! Redis memory of the shared waiting room, for docs/benchmarks.md: joins `users` fans
//! (default 1,000,000, user ids `fan0000000`...) to one event's queue through
//! `RedisWaitingRoom::join` (many joins in flight on one multiplexed connection, so they
//! are pipelined), then reads `INFO memory` and `MEMORY USAGE` of the keys, and deletes
//! them. `prequeue` joins before the onsale (random scores), `line` after it (arrival
//! order).
//!
//! ```sh
//! cargo run --release -p boxoffice-server --example queue_redis_memory -- [prequeue|line] [users] [redis-url]
//! ```

use std::sync::Arc;
use std::time::Instant;

use boxoffice_core::{EventId, UserId};
use boxoffice_server::waiting_room::{Policy, RedisWaitingRoom, WaitingRoom};

const IN_FLIGHT: usize = 256;

async fn used_memory(conn: &mut redis::aio::MultiplexedConnection) -> u64 {
    let info: String = redis::cmd("INFO").arg("memory").query_async(conn).await.expect("INFO memory");
    info.lines()
        .find_map(|line| line.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("used_memory in INFO")
}

async fn keys(conn: &mut redis::aio::MultiplexedConnection, prefix: &str) -> Vec<String> {
    let mut cursor: u64 = 0;
    let mut all = Vec::new();
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}*"))
            .arg("COUNT")
            .arg(10_000)
            .query_async(conn)
            .await
            .expect("SCAN");
        all.extend(keys);
        if next == 0 {
            return all;
        }
        cursor = next;
    }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mode = args.get(1).map(String::as_str).unwrap_or("prequeue").to_owned();
    let users: usize = args.get(2).and_then(|n| n.parse().ok()).unwrap_or(1_000_000);
    let url = args.get(3).cloned().unwrap_or_else(|| "redis://127.0.0.1:6379".to_owned());
    let prefix = format!("bo-bench-{:08x}:", rand::random::<u32>());
    let now: u64 = 1_800_000_000_000;
    let onsale_at = if mode == "line" { now - 60_000 } else { now + 3_600_000 };
    let policy =
        Policy { admit_rate_per_second: 1_000, token_ttl_ms: 600_000, max_length: 10_000_000, onsale_at };
    let room = Arc::new(RedisWaitingRoom::connect(&url, &prefix).await.expect("Redis"));
    let client = redis::Client::open(url.as_str()).expect("url");
    let mut conn = client.get_multiplexed_async_connection().await.expect("Redis");
    let before = used_memory(&mut conn).await;

    let started = Instant::now();
    let event = EventId(1);
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..IN_FLIGHT {
        let room = room.clone();
        tasks.spawn(async move {
            let mut i = worker;
            while i < users {
                let user = UserId::parse(&format!("fan{i:07}")).expect("user id");
                room.join(event, &user, &policy, now).await.expect("join");
                i += IN_FLIGHT;
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("worker");
    }
    let took = started.elapsed().as_secs_f64();
    let after = used_memory(&mut conn).await;
    let length = room.length(event).await;
    let all = keys(&mut conn, &prefix).await;
    let mut by_kind: std::collections::BTreeMap<String, (u64, u64)> = Default::default();
    for key in &all {
        let bytes: Option<u64> = redis::cmd("MEMORY")
            .arg("USAGE")
            .arg(key)
            .arg("SAMPLES")
            .arg(0)
            .query_async(&mut conn)
            .await
            .ok();
        let kind = key.rsplit(':').next().unwrap_or("").trim_end_matches(|c: char| c.is_ascii_digit());
        let kind = if kind.is_empty() { "u:<bucket>".to_owned() } else { kind.to_owned() };
        let entry = by_kind.entry(kind).or_default();
        entry.0 += 1;
        entry.1 += bytes.unwrap_or(0);
    }
    println!(
        "mode {mode}: {users} joins in {took:.1} s ({:.0} joins/s); queue length {length}",
        users as f64 / took
    );
    println!(
        "used_memory grew by {:.1} MB ({:.0} bytes per queued user)",
        (after.saturating_sub(before)) as f64 / 1e6,
        after.saturating_sub(before) as f64 / users as f64
    );
    for (kind, (count, bytes)) in &by_kind {
        println!("  {kind}: {count} keys, MEMORY USAGE {:.1} MB", *bytes as f64 / 1e6);
    }
    for chunk in all.chunks(1_000) {
        let _: () = redis::cmd("UNLINK").arg(chunk).query_async(&mut conn).await.expect("UNLINK");
    }
}
