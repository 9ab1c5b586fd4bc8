//! Choosing the backends: the embedded default (SQLite in the data dir, the in-process
//! inventory with its journal) or distributed mode (`--database-url` PostgreSQL,
//! `--redis-url` Redis or, `redis+cluster://...`, a Redis Cluster), where any number of
//! nodes share one store and one inventory.
//!
//! In distributed mode the keys every node must share (the JWT secret unless configured,
//! the admission-token key, the ticket signing key) and the inventory epoch are created
//! once in the store's metadata, by whichever node starts first; every node reads the
//! same values. An unreachable backend is retried with backoff for
//! `--backend-connect-timeout` seconds, then start-up fails with a message naming it.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use boxoffice_engine::memory::{MemoryConfig, MemoryInventory};
use boxoffice_engine::{Inventory, RedisConfig, RedisInventory, SystemClock};
use boxoffice_store::{PgConfig, PgStore, SqliteStore, Store};

use crate::http::guard::Guard;
use crate::waiting_room::{MemoryWaitingRoom, RedisWaitingRoom, WaitingRoom};
use crate::{Config, StartError};

/// The order store: PostgreSQL when `--database-url` is set, else SQLite in `dir`.
pub async fn open_store(config: &Config, dir: &Path) -> Result<Arc<dyn Store>, StartError> {
    match &config.database_url {
        Some(url) => {
            let mut pg = PgConfig::new(url.clone());
            pg.max_connections = config.database_pool_size;
            pg.connect_retry = Duration::from_secs(config.backend_connect_timeout);
            let store = PgStore::open(&pg).await?;
            tracing::info!(database = %pg.redacted_url(), "store: PostgreSQL");
            Ok(Arc::new(store))
        }
        None => Ok(Arc::new(SqliteStore::open(&dir.join("boxoffice.db")).await?)),
    }
}

/// The inventory: Redis when `--redis-url` is set (no state in this process), else the
/// embedded inventory journaled in `dir` (also returned, for recovery and shutdown).
pub async fn open_inventory(
    config: &Config,
    dir: &Path,
) -> Result<(Arc<dyn Inventory>, Option<Arc<MemoryInventory>>), StartError> {
    match &config.redis_url {
        Some(url) => {
            let mut redis = RedisConfig::new(url.clone());
            redis.key_prefix = config.redis_key_prefix.clone();
            let inventory = connect_redis(redis, Duration::from_secs(config.backend_connect_timeout)).await?;
            Ok((Arc::new(inventory), None))
        }
        None => {
            let memory = MemoryInventory::open(
                MemoryConfig {
                    journal_dir: Some(dir.to_path_buf()),
                    sync: config.sync_mode(),
                    change_ring_seats: config.change_ring_seats,
                    ..MemoryConfig::default()
                },
                Arc::new(SystemClock),
            )
            .map_err(|source| StartError::DataDir { dir: dir.display().to_string(), source })?;
            let memory = Arc::new(memory);
            Ok((memory.clone(), Some(memory)))
        }
    }
}

/// The waiting room and the rate limits: embedded, this process's own; in distributed
/// mode both in Redis (under the key prefix), one queue per event and one limit per user
/// and address for every node.
pub async fn open_onsale(config: &Config) -> Result<(Arc<dyn WaitingRoom>, Guard), StartError> {
    let Some(url) = &config.redis_url else {
        return Ok((Arc::new(MemoryWaitingRoom::new()), Guard::new(config)));
    };
    let conn = crate::waiting_room::redis::connect(url)
        .await
        .map_err(|e| StartError::Backend(format!("cannot reach Redis at {}: {e}", redact_redis_url(url))))?;
    let room = RedisWaitingRoom::with_connection(conn.clone(), &config.redis_key_prefix);
    tracing::info!(node = room.node(), "waiting room and rate limits: Redis");
    Ok((Arc::new(room), Guard::shared(config, conn)))
}

/// Connects to Redis, retrying with backoff while it is unreachable.
async fn connect_redis(config: RedisConfig, patience: Duration) -> Result<RedisInventory, StartError> {
    let shown = redact_redis_url(&config.url);
    let started = Instant::now();
    let mut pause = Duration::from_millis(100);
    loop {
        match RedisInventory::connect(config.clone()).await {
            Ok(inventory) => {
                let cluster = boxoffice_engine::redis::connection::is_cluster_url(&config.url);
                tracing::info!(redis = %shown, prefix = %config.key_prefix, cluster, "inventory: Redis");
                return Ok(inventory);
            }
            Err(e) if started.elapsed() + pause < patience => {
                tracing::warn!(redis = %shown, error = %e, "Redis unreachable; retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(2));
            }
            Err(e) => {
                return Err(StartError::Backend(format!(
                    "cannot reach Redis at {shown} after {} s: {e}",
                    started.elapsed().as_secs()
                )));
            }
        }
    }
}

/// `redis://user:secret@host` -> `redis://user:***@host`.
pub fn redact_redis_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => format!("{}***{}", &url[..scheme + 3], &url[at..]),
            }
        }
        _ => url.to_owned(),
    }
}

/// A 32-byte key every node shares: in distributed mode created once in the store's
/// metadata (`key.<name>`), else kept in the data dir (`<dir>/<name>`).
pub async fn shared_key(
    config: &Config,
    store: &dyn Store,
    dir: &Path,
    name: &str,
) -> Result<[u8; 32], StartError> {
    let bytes = if config.database_url.is_some() {
        let meta_key = format!("key.{name}");
        let fresh: [u8; 32] = rand::random();
        // The first node's key wins; every node then reads the same one.
        store.meta_set_if_absent(&meta_key, &hex::encode(fresh)).await?;
        let stored = store.meta_get(&meta_key).await?.ok_or_else(|| {
            StartError::Backend(format!("shared key {name} vanished from the store right after it was set"))
        })?;
        hex::decode(stored.trim())
            .map_err(|e| StartError::Backend(format!("shared key {name} is not hex: {e}")))?
    } else {
        crate::auth::load_or_create_key(dir, name)
            .map_err(|source| StartError::DataDir { dir: dir.display().to_string(), source })?
    };
    bytes.try_into().map_err(|_| StartError::Backend(format!("shared key {name} is not 32 bytes long")))
}

/// The start-up generation in availability ETags and stream ids: per process when
/// embedded (versions restart with the process), shared by every node when the
/// inventory is in Redis (versions live there).
pub async fn epoch(config: &Config, store: &dyn Store) -> Result<u64, StartError> {
    let now = boxoffice_engine::Clock::now_ms(&SystemClock);
    if config.redis_url.is_none() {
        return Ok(now);
    }
    store.meta_set_if_absent("inventory.epoch", &now.to_string()).await?;
    let stored = store.meta_get("inventory.epoch").await?.unwrap_or_default();
    stored.parse().map_err(|_| StartError::Backend(format!("inventory epoch {stored:?} is not a number")))
}

#[cfg(test)]
mod tests {
    use super::redact_redis_url;

    #[test]
    fn redis_passwords_never_reach_the_logs() {
        assert_eq!(redact_redis_url("redis://127.0.0.1:6379/0"), "redis://127.0.0.1:6379/0");
        assert_eq!(redact_redis_url("redis://app:s3cret@cache:6379"), "redis://app:***@cache:6379");
        assert_eq!(redact_redis_url("rediss://s3cret@cache"), "rediss://***@cache");
        assert_eq!(redact_redis_url("redis+cluster://app:pw@a:1,b:2"), "redis+cluster://app:***@a:1,b:2");
    }
}
