//! A Redis Cluster of three masters for tests: three `redis-server --cluster-enabled yes`
//! on free loopback ports, joined by `redis-cli --cluster create`, killed when dropped.
//! A watchdog shell kills them and removes their directory if the test process dies
//! first (a cluster shared by a whole test binary lives in a static, never dropped).
//!
//! Shared by the engine's and the server's tests (`#[path]`); synchronous, so that it
//! works outside a runtime too.

#![allow(dead_code)]

use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Masters of every test cluster.
pub const MASTERS: usize = 3;
/// How long a cluster may take to start and agree on its slots.
const START_PATIENCE: Duration = Duration::from_secs(30);

pub struct RedisCluster {
    /// The masters' ports, in the order of `redis-cli --cluster create`.
    pub ports: Vec<u16>,
    children: Vec<Child>,
    watchdog: Option<Child>,
    dir: std::path::PathBuf,
}

/// A loopback port that is free, as is its cluster bus port (+10,000).
fn free_port() -> u16 {
    loop {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
        let port = listener.local_addr().unwrap().port();
        if port < 55_000 && std::net::TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}

impl RedisCluster {
    /// Starts three masters and waits until every one reports `cluster_state:ok` and
    /// sees all three owning slots.
    pub fn start() -> RedisCluster {
        let dir =
            std::env::temp_dir().join(format!("boxoffice-redis-cluster-{}-{:016x}", std::process::id(), {
                use std::hash::{BuildHasher, RandomState};
                RandomState::new().hash_one(std::time::SystemTime::now())
            }));
        std::fs::create_dir_all(&dir).expect("cluster dir");
        let mut ports: Vec<u16> = Vec::new();
        while ports.len() < MASTERS {
            let port = free_port();
            if !ports.contains(&port) {
                ports.push(port);
            }
        }
        let mut cluster = RedisCluster { ports: ports.clone(), children: Vec::new(), watchdog: None, dir };
        for &port in &ports {
            let child = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--cluster-enabled", "yes"])
                .args([
                    "--cluster-config-file",
                    &cluster.dir.join(format!("nodes-{port}.conf")).to_string_lossy(),
                ])
                .args(["--cluster-node-timeout", "5000"])
                .args(["--save", "", "--appendonly", "no"])
                .args(["--dir", &cluster.dir.to_string_lossy()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("these tests need redis-server on the PATH (apt-get install redis-server)");
            cluster.children.push(child);
        }
        cluster.start_watchdog();
        for i in 0..MASTERS {
            cluster.wait_for(|| cluster.try_conn(i).is_some(), "redis-server to answer");
        }
        let mut create = Command::new("redis-cli");
        create.arg("--cluster").arg("create");
        for &port in &ports {
            create.arg(format!("127.0.0.1:{port}"));
        }
        let out = create
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("these tests need redis-cli on the PATH (apt-get install redis-tools)");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        cluster.wait_for(
            || {
                (0..MASTERS).all(|i| {
                    let Some(mut conn) = cluster.try_conn(i) else { return false };
                    let info: String = redis::cmd("CLUSTER").arg("INFO").query(&mut conn).unwrap_or_default();
                    let nodes: String =
                        redis::cmd("CLUSTER").arg("NODES").query(&mut conn).unwrap_or_default();
                    let owners = nodes.lines().filter(|l| l.split(' ').nth(8).is_some()).count();
                    info.contains("cluster_state:ok") && owners == MASTERS
                })
            },
            "cluster_state:ok on every master",
        );
        cluster
    }

    /// Kills the servers and removes their directory when this process is gone.
    fn start_watchdog(&mut self) {
        let pids: Vec<String> = self.children.iter().map(|c| c.id().to_string()).collect();
        let script = format!(
            "while kill -0 {parent} 2>/dev/null; do sleep 1; done; kill -9 {pids} 2>/dev/null; rm -rf '{dir}'",
            parent = std::process::id(),
            pids = pids.join(" "),
            dir = self.dir.display()
        );
        self.watchdog = Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok();
    }

    fn wait_for(&self, mut ready: impl FnMut() -> bool, what: &str) {
        let started = std::time::Instant::now();
        while !ready() {
            assert!(started.elapsed() < START_PATIENCE, "the test cluster never reached {what}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `redis+cluster://127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3`.
    pub fn url(&self) -> String {
        let nodes: Vec<String> = self.ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        format!("redis+cluster://{}", nodes.join(","))
    }

    fn try_conn(&self, i: usize) -> Option<redis::Connection> {
        let client = redis::Client::open(format!("redis://127.0.0.1:{}", self.ports[i])).ok()?;
        client.get_connection_with_timeout(Duration::from_secs(2)).ok()
    }

    /// A plain connection to master `i` (no redirections: it answers for itself).
    pub fn conn(&self, i: usize) -> redis::Connection {
        self.try_conn(i).unwrap_or_else(|| panic!("master {i} of the test cluster answers"))
    }

    /// The node id of master `i`.
    pub fn node_id(&self, i: usize) -> String {
        redis::cmd("CLUSTER").arg("MYID").query(&mut self.conn(i)).expect("CLUSTER MYID")
    }

    /// `CLUSTER KEYSLOT key`.
    pub fn keyslot(&self, key: &str) -> u16 {
        redis::cmd("CLUSTER").arg("KEYSLOT").arg(key).query(&mut self.conn(0)).expect("CLUSTER KEYSLOT")
    }

    /// The slots master `i` says it owns (its own line of `CLUSTER NODES`).
    pub fn slots_of(&self, i: usize) -> Vec<(u16, u16)> {
        let nodes: String =
            redis::cmd("CLUSTER").arg("NODES").query(&mut self.conn(i)).expect("CLUSTER NODES");
        let mine = nodes.lines().find(|l| l.contains("myself")).expect("a myself line");
        mine.split(' ')
            .skip(8)
            .filter(|s| !s.starts_with('['))
            .map(|range| match range.split_once('-') {
                Some((a, b)) => (a.parse().unwrap(), b.parse().unwrap()),
                None => (range.parse().unwrap(), range.parse().unwrap()),
            })
            .collect()
    }

    /// The master that owns `slot`, by its own account (exactly one must claim it).
    pub fn owner_of(&self, slot: u16) -> usize {
        let owners: Vec<usize> = (0..MASTERS)
            .filter(|&i| self.slots_of(i).iter().any(|&(a, b)| (a..=b).contains(&slot)))
            .collect();
        assert_eq!(owners.len(), 1, "slot {slot} is claimed by masters {owners:?}");
        owners[0]
    }

    /// Every key starting with `prefix`, with the master it is on (SCAN on each master).
    pub fn keys_with_prefix(&self, prefix: &str) -> Vec<(usize, String)> {
        let mut all = Vec::new();
        for i in 0..MASTERS {
            let mut conn = self.conn(i);
            let mut cursor: u64 = 0;
            loop {
                let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(format!("{prefix}*"))
                    .arg("COUNT")
                    .arg(1000)
                    .query(&mut conn)
                    .expect("SCAN");
                all.extend(keys.into_iter().map(|k| (i, k)));
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        all
    }

    /// Deletes every key starting with `prefix`, one key per command (a cluster refuses a
    /// DEL of keys in several slots).
    pub fn delete_prefix(&self, prefix: &str) {
        for (i, key) in self.keys_with_prefix(prefix) {
            if let Some(mut conn) = self.try_conn(i) {
                let _: Result<(), _> = redis::cmd("DEL").arg(key).query(&mut conn);
            }
        }
    }

    /// An `INFO errorstats` counter of master `i` (`MOVED`, `ASK`, `TRYAGAIN`): how often
    /// it answered with that error.
    pub fn error_count(&self, i: usize, code: &str) -> u64 {
        let info: String = redis::cmd("INFO").arg("errorstats").query(&mut self.conn(i)).expect("INFO");
        info.lines()
            .find_map(|l| l.strip_prefix(&format!("errorstat_{code}:count=")))
            .map_or(0, |n| n.trim().parse().unwrap_or(0))
    }

    /// Moves `slot` from its owner to master `to` the way `redis-cli --cluster reshard`
    /// does: IMPORTING on the target, MIGRATING on the source, the keys moved with
    /// MIGRATE (`batch` keys at a time, `pause` between batches, so that commands arrive
    /// mid-migration), then the new owner announced to every master.
    pub fn migrate_slot(&self, slot: u16, to: usize, batch: usize, pause: Duration) {
        let from = self.owner_of(slot);
        assert_ne!(from, to, "slot {slot} is already on master {to}");
        let (from_id, to_id) = (self.node_id(from), self.node_id(to));
        let (mut source, mut target) = (self.conn(from), self.conn(to));
        let ok = |r: redis::RedisResult<String>, what: &str| assert_eq!(r.expect(what), "OK", "{what}");
        ok(
            redis::cmd("CLUSTER").arg("SETSLOT").arg(slot).arg("IMPORTING").arg(&from_id).query(&mut target),
            "SETSLOT IMPORTING",
        );
        ok(
            redis::cmd("CLUSTER").arg("SETSLOT").arg(slot).arg("MIGRATING").arg(&to_id).query(&mut source),
            "SETSLOT MIGRATING",
        );
        std::thread::sleep(pause);
        loop {
            let keys: Vec<String> = redis::cmd("CLUSTER")
                .arg("GETKEYSINSLOT")
                .arg(slot)
                .arg(batch)
                .query(&mut source)
                .expect("GETKEYSINSLOT");
            if keys.is_empty() {
                break;
            }
            let _: String = redis::cmd("MIGRATE")
                .arg("127.0.0.1")
                .arg(self.ports[to])
                .arg("")
                .arg(0)
                .arg(5_000)
                .arg("KEYS")
                .arg(&keys)
                .query(&mut source)
                .expect("MIGRATE");
            std::thread::sleep(pause);
        }
        // The target first, then the source, then the rest (as redis-cli does).
        for i in [to, from].into_iter().chain((0..MASTERS).filter(|&i| i != to && i != from)) {
            ok(
                redis::cmd("CLUSTER")
                    .arg("SETSLOT")
                    .arg(slot)
                    .arg("NODE")
                    .arg(&to_id)
                    .query(&mut self.conn(i)),
                "SETSLOT NODE",
            );
        }
        self.wait_for(
            || {
                (0..MASTERS)
                    .all(|i| self.slots_of(i).iter().any(|&(a, b)| (a..=b).contains(&slot)) == (i == to))
            },
            "agreement on the new owner",
        );
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(mut watchdog) = self.watchdog.take() {
            let _ = watchdog.kill();
            let _ = watchdog.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
