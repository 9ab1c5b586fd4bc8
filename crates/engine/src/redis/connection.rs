//! One connection type for a single Redis and for a Redis Cluster, chosen by the URL.
//!
//! `redis://host:port/db` (or `rediss://`, `unix://`) is one server behind a
//! [`ConnectionManager`] that reconnects by itself. `redis+cluster://h1:p1,h2:p2,h3:p3`
//! names some nodes of a Redis Cluster (any reachable one is enough to discover the rest;
//! credentials before the `@` apply to every node); commands go to the master that owns
//! their keys' slot over a [`ClusterConnection`]. Every command and script of boxoffice
//! names keys of one hash tag (one slot), so both kinds run the same code.
//!
//! The cluster client follows `MOVED` (the slot map changed) and `ASK` (a slot in
//! migration) at once, and waits and retries `TRYAGAIN` (a multi-key command on a slot in
//! migration) and `CLUSTERDOWN`, up to [`CLUSTER_RETRIES`] times with a backoff between
//! [`CLUSTER_MIN_RETRY_WAIT_MS`] and [`CLUSTER_MAX_RETRY_WAIT_MS`]: a slot migration is a
//! short wait for the caller, never an error. A response timeout is applied here, around
//! the whole call, and not by the cluster client, which would resend a timed-out script
//! (a second run of a hold or an admission step is not harmless).
//!
//! Scripts run with `EVALSHA`; a master that answers `NOSCRIPT` gets the script's body with
//! `SCRIPT LOAD` on that master alone (the client would send it to every master, so one
//! paused or slow master would hold up scripts everywhere), and a master that lacks a
//! script already seen (its slot just moved there) gets it the same way before the call
//! is retried.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use ::redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use ::redis::cluster::ClusterClientBuilder;
use ::redis::cluster_async::ClusterConnection;
use ::redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use ::redis::{Arg, Cmd, ErrorKind, Pipeline, RedisError, RedisFuture, RedisResult, Script, Value};
use parking_lot::Mutex;

/// The URL scheme of a Redis Cluster: `redis+cluster://host:port,host:port,...`.
pub const CLUSTER_SCHEME: &str = "redis+cluster://";
/// Redirections and retries of one command on a cluster before its error is returned.
/// An `ASK` answered by `TRYAGAIN` costs two, so a migration is waited out for about
/// 16 backoffs (several seconds), far longer than moving one event's keys takes.
pub const CLUSTER_RETRIES: u32 = 32;
/// Shortest wait before retrying a `TRYAGAIN` or `CLUSTERDOWN` on a cluster.
pub const CLUSTER_MIN_RETRY_WAIT_MS: u64 = 5;
/// Longest wait before retrying a `TRYAGAIN` or `CLUSTERDOWN` on a cluster.
pub const CLUSTER_MAX_RETRY_WAIT_MS: u64 = 500;
/// How long connecting to one cluster node may take unless configured.
pub const CLUSTER_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// How a connection waits; `None` keeps the client's default (wait as long as it takes).
#[derive(Clone, Debug, Default)]
pub struct ConnectOptions {
    /// Longest wait to connect to a server.
    pub connection_timeout: Option<Duration>,
    /// Longest wait for the answer to one command, redirections and retries included.
    pub response_timeout: Option<Duration>,
    /// Single server: reconnection attempts after it went away.
    pub reconnect_retries: Option<usize>,
    /// Single server: longest pause between reconnection attempts (ms).
    pub reconnect_max_delay_ms: Option<u64>,
}

/// A connection to one Redis or to a Redis Cluster; cheap to clone (clones share it).
#[derive(Clone)]
pub enum RedisConnection {
    Single(ConnectionManager),
    Cluster(ClusterHandle),
}

/// The cluster connection with what this crate adds to it (see [`ClusterHandle::call`]).
#[derive(Clone)]
pub struct ClusterHandle {
    conn: ClusterConnection,
    response_timeout: Option<Duration>,
    /// The slot of this handle's last script call that a master answered `NOSCRIPT`: the
    /// `SCRIPT LOAD` that [`::redis::Script`] sends next goes to that slot's master only.
    noscript_slot: Option<u16>,
    /// Script bodies seen in `SCRIPT LOAD`s, by SHA-1, shared by every clone: a later
    /// `NOSCRIPT` (a slot moved to a master without the script) is repaired here.
    bodies: Arc<Mutex<HashMap<Vec<u8>, Vec<u8>>>>,
}

/// Loads of a known script on a slot's master and retries of its call, after `NOSCRIPT`s.
const NOSCRIPT_RELOADS: u32 = 3;

impl RedisConnection {
    /// Connects to `url` with the client's defaults.
    pub async fn connect(url: &str) -> RedisResult<Self> {
        Self::connect_with(url, &ConnectOptions::default()).await
    }

    /// Connects to `url`: a cluster for `redis+cluster://`, else one server.
    pub async fn connect_with(url: &str, options: &ConnectOptions) -> RedisResult<Self> {
        match cluster_nodes(url)? {
            Some(nodes) => {
                let conn = ClusterClientBuilder::new(nodes)
                    .retries(CLUSTER_RETRIES)
                    .min_retry_wait(CLUSTER_MIN_RETRY_WAIT_MS)
                    .max_retry_wait(CLUSTER_MAX_RETRY_WAIT_MS)
                    .connection_timeout(options.connection_timeout.unwrap_or(CLUSTER_CONNECT_TIMEOUT))
                    .build()?
                    .get_async_connection()
                    .await?;
                Ok(RedisConnection::Cluster(ClusterHandle {
                    conn,
                    response_timeout: options.response_timeout,
                    noscript_slot: None,
                    bodies: Arc::default(),
                }))
            }
            None => {
                let client = ::redis::Client::open(url)?;
                let mut config = ConnectionManagerConfig::new();
                if let Some(timeout) = options.connection_timeout {
                    config = config.set_connection_timeout(timeout);
                }
                if let Some(timeout) = options.response_timeout {
                    config = config.set_response_timeout(timeout);
                }
                if let Some(retries) = options.reconnect_retries {
                    config = config.set_number_of_retries(retries);
                }
                if let Some(delay) = options.reconnect_max_delay_ms {
                    config = config.set_max_delay(delay);
                }
                Ok(RedisConnection::Single(ConnectionManager::new_with_config(client, config).await?))
            }
        }
    }

    /// Whether this is a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self, RedisConnection::Cluster(_))
    }
}

/// Whether `url` names a Redis Cluster.
pub fn is_cluster_url(url: &str) -> bool {
    url.get(..CLUSTER_SCHEME.len()).is_some_and(|s| s.eq_ignore_ascii_case(CLUSTER_SCHEME))
}

/// The node URLs of a `redis+cluster://[user:password@]h1:p1,h2:p2` URL (`None` for any
/// other URL): `redis://[user:password@]h:p` each. A path other than `/` or `/0` is
/// refused, since a cluster has only database 0.
pub fn cluster_nodes(url: &str) -> RedisResult<Option<Vec<String>>> {
    if !is_cluster_url(url) {
        return Ok(None);
    }
    let invalid =
        |detail: String| RedisError::from((ErrorKind::InvalidClientConfig, "invalid cluster URL", detail));
    let rest = &url[CLUSTER_SCHEME.len()..];
    let (auth, hosts) = match rest.rfind('@') {
        Some(at) => (&rest[..=at], &rest[at + 1..]),
        None => ("", rest),
    };
    let hosts = match hosts.split_once('/') {
        Some((hosts, "" | "0")) => hosts,
        Some((_, db)) => return Err(invalid(format!("a Redis Cluster has only database 0, not {db:?}"))),
        None => hosts,
    };
    let nodes: Vec<String> = hosts
        .split(',')
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .map(|host| if host.contains(':') { host.to_owned() } else { format!("{host}:6379") })
        .map(|host| format!("redis://{auth}{host}"))
        .collect();
    if nodes.is_empty() {
        return Err(invalid("name at least one node: redis+cluster://host:port,host:port".into()));
    }
    Ok(Some(nodes))
}

fn timed_out() -> RedisError {
    RedisError::from(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        "Redis Cluster did not answer in time",
    ))
}

/// Argument `i` of a command (0 is its name).
fn arg(cmd: &Cmd, i: usize) -> Option<&[u8]> {
    match cmd.args_iter().nth(i)? {
        Arg::Simple(bytes) => Some(bytes),
        Arg::Cursor => None,
    }
}

fn is(cmd: &Cmd, i: usize, name: &str) -> bool {
    arg(cmd, i).is_some_and(|a| a.eq_ignore_ascii_case(name.as_bytes()))
}

/// The slot of an `EVALSHA`'s first key, if it names one.
fn script_slot(cmd: &Cmd) -> Option<u16> {
    let keys: usize = std::str::from_utf8(arg(cmd, 2)?).ok()?.parse().ok()?;
    (keys > 0).then(|| arg(cmd, 3).map(key_slot)).flatten()
}

/// The cluster slot of a key: CRC16 (XMODEM) of its hash tag (the part between the
/// first `{` and the next `}`, if not empty) or of the whole key, modulo 16,384.
pub fn key_slot(key: &[u8]) -> u16 {
    let hashed = key
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            rest.iter().position(|&b| b == b'}').filter(|&close| close > 0).map(|close| &rest[..close])
        })
        .unwrap_or(key);
    let mut crc: u16 = 0;
    for &byte in hashed {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 { (crc << 1) ^ 0x1021 } else { crc << 1 };
        }
    }
    crc % 16_384
}

impl ClusterHandle {
    /// One command. A script's body is loaded on the master of the slot it runs on, not
    /// on every master as the client would (`SCRIPT LOAD` is routed to all of them): a
    /// master that is slow or paused then never holds up scripts of the others.
    async fn call(&mut self, cmd: &Cmd) -> RedisResult<Value> {
        if is(cmd, 0, "SCRIPT") && is(cmd, 1, "LOAD") {
            if let Some(body) = arg(cmd, 2) {
                let sha = Script::new(&String::from_utf8_lossy(body)).get_hash().as_bytes().to_vec();
                self.bodies.lock().insert(sha, body.to_vec());
            }
            return match self.noscript_slot.take() {
                Some(slot) => self.conn.route_command(cmd, on_master(slot)).await,
                None => self.conn.req_packed_command(cmd).await,
            };
        }
        let mut reloads = 0;
        loop {
            let result = self.conn.req_packed_command(cmd).await;
            let Err(e) = &result else { return result };
            if e.kind() != ErrorKind::NoScriptError || !is(cmd, 0, "EVALSHA") {
                return result;
            }
            let Some(slot) = script_slot(cmd) else { return result };
            let body = arg(cmd, 1).and_then(|sha| self.bodies.lock().get(&sha.to_ascii_lowercase()).cloned());
            match body {
                Some(body) if reloads < NOSCRIPT_RELOADS => {
                    reloads += 1;
                    let load = ::redis::cmd("SCRIPT").arg("LOAD").arg(body).clone();
                    self.conn.route_command(&load, on_master(slot)).await?;
                }
                _ => {
                    self.noscript_slot = Some(slot);
                    return result;
                }
            }
        }
    }
}

fn on_master(slot: u16) -> RoutingInfo {
    RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(Route::new(slot, SlotAddr::Master)))
}

impl ConnectionLike for RedisConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            RedisConnection::Single(conn) => conn.req_packed_command(cmd),
            RedisConnection::Cluster(handle) => Box::pin(async move {
                match handle.response_timeout {
                    None => handle.call(cmd).await,
                    Some(limit) => {
                        tokio::time::timeout(limit, handle.call(cmd)).await.map_err(|_| timed_out())?
                    }
                }
            }),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            RedisConnection::Single(conn) => conn.req_packed_commands(cmd, offset, count),
            RedisConnection::Cluster(handle) => match handle.response_timeout {
                None => handle.conn.req_packed_commands(cmd, offset, count),
                Some(limit) => Box::pin(async move {
                    tokio::time::timeout(limit, handle.conn.req_packed_commands(cmd, offset, count))
                        .await
                        .map_err(|_| timed_out())?
                }),
            },
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            RedisConnection::Single(conn) => conn.get_db(),
            RedisConnection::Cluster(handle) => handle.conn.get_db(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_urls_name_every_node_with_the_same_credentials() {
        assert_eq!(cluster_nodes("redis://127.0.0.1:6379/0").unwrap(), None);
        assert_eq!(
            cluster_nodes("redis+cluster://10.0.0.1:7000,10.0.0.2:7001, 10.0.0.3").unwrap().unwrap(),
            vec!["redis://10.0.0.1:7000", "redis://10.0.0.2:7001", "redis://10.0.0.3:6379"]
        );
        assert_eq!(
            cluster_nodes("REDIS+CLUSTER://app:s3cret@a:1,b:2/").unwrap().unwrap(),
            vec!["redis://app:s3cret@a:1", "redis://app:s3cret@b:2"]
        );
        assert!(cluster_nodes("redis+cluster://a:1/3").is_err(), "a cluster has only database 0");
        assert!(cluster_nodes("redis+cluster://").is_err());
        assert!(cluster_nodes("redis+cluster://,/").is_err());
    }

    #[test]
    fn key_slots_follow_the_cluster_spec() {
        // CRC16/XMODEM of "123456789" is 0x31C3.
        assert_eq!(key_slot(b"123456789"), 0x31C3);
        assert_eq!(key_slot(b"foo"), 12_182);
        assert_eq!(key_slot(b"bo:{ev:7}:meta"), key_slot(b"{ev:7}"));
        assert_eq!(key_slot(b"other:{ev:7}:guard"), key_slot(b"ev:7"));
        assert_eq!(key_slot(b"{}x"), key_slot(b"{}x"), "an empty tag hashes the whole key");
        assert_ne!(key_slot(b"{}x"), key_slot(b""));
    }
}
