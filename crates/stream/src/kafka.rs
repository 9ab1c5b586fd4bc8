//! The ticket stream on a Kafka-protocol broker, with its bookkeeping in PostgreSQL.
//!
//! The log is a Kafka topic of [`KafkaConfig::partitions`] partitions; a message's record
//! key is the ticketing event it belongs to (the `event_id` of its JSON payload, else its
//! key), and that key picks its partition, so one event's messages stay in order on one
//! partition. The record value is the JSON of the [`StreamMessage`], as on JetStream.
//!
//! A Kafka client without consumer groups (rskafka) leaves three things to the adapter,
//! which it keeps in PostgreSQL, where the orders already are:
//! - **The stream's sequence and de-duplication.** `stream_kafka_log` maps each message id
//!   (the outbox row) to its stream offset (1, 2, 3, ... per topic: the offsets the
//!   [`TicketStream`] contract promises across partitions) and to its partition and Kafka
//!   offset. Publishing takes the topic's head row lock, answers the recorded offset for an
//!   id published before, and otherwise produces the record (acks from all in-sync
//!   replicas) and inserts its row in the same transaction. A publish that dies between
//!   the produce and the commit leaves a record no row points to: it is never delivered,
//!   and the retry produces the message again and records that copy. So an id is
//!   delivered under one offset however often it is published, with no window.
//! - **Durable consumers.** `stream_kafka_consumers` holds each consumer's next offset to
//!   hand out, `stream_kafka_pending` every delivered, unacknowledged offset with its
//!   attempt and ack deadline. A batch is taken in one transaction: first pending rows
//!   past their deadline (`FOR UPDATE SKIP LOCKED`, so two nodes never take the same one;
//!   their attempt grows), then new offsets from the consumer's row (locked). An ack
//!   deletes the pending row. Every node subscribed to one consumer name shares it: each
//!   message goes to one member at a time and comes again after the ack wait.
//! - **Replay** reads the log rows from an offset up to the newest one at the time of the
//!   call, and fetches their records from Kafka; it touches no consumer.
//!
//! The tables are created at connect (`CREATE TABLE IF NOT EXISTS`, under an advisory
//! lock so that nodes starting together do not race) in the database of
//! [`KafkaConfig::database_url`]; rows are per topic, so several streams can share one
//! database.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rskafka::BackoffConfig;
use rskafka::client::partition::{Compression, OffsetAt, PartitionClient, UnknownTopicHandling};
use rskafka::client::{Client, ClientBuilder};
use rskafka::record::Record;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::{Postgres, Row, Transaction};
use tokio::time::Instant;

use crate::{
    AckToken, DEFAULT_ACK_WAIT, Delivery, Replay, StreamError, StreamMessage, Subscription, TicketStream,
};

/// The default topic.
pub const DEFAULT_KAFKA_TOPIC: &str = "boxoffice.tickets";
/// The default partition count of a topic the adapter creates.
pub const DEFAULT_KAFKA_PARTITIONS: u16 = 3;
/// The most partitions a topic may be created with.
pub const MAX_KAFKA_PARTITIONS: u16 = 1024;
/// Messages one consumer may have delivered and unacknowledged at once (as on JetStream).
pub const KAFKA_MAX_ACK_PENDING: i64 = 10_000;
/// The most messages one batch (delivery or replay) takes.
const MAX_BATCH: usize = 1_000;
/// How long start-up keeps trying to reach the broker, by default.
pub const DEFAULT_KAFKA_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one broker request may take, retries included.
const REQUEST_DEADLINE: Duration = Duration::from_secs(10);
/// The longest wait between two start-up connection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How often a waiting subscription looks for new messages.
const POLL_INTERVAL: Duration = Duration::from_millis(25);
/// Bytes one fetch asks the broker for at most (it answers at least one record).
const FETCH_BYTES: Range<i32> = 1..4 * 1024 * 1024;
/// PostgreSQL connections of the adapter.
const POOL_SIZE: u32 = 4;

/// Where and how to reach the broker and the bookkeeping database.
#[derive(Debug, Clone)]
pub struct KafkaConfig {
    /// Bootstrap brokers, `host:port` each.
    pub brokers: Vec<String>,
    /// The topic (created when missing, with `partitions` partitions and replication 1;
    /// create it yourself for more replicas).
    pub topic: String,
    pub partitions: u16,
    /// PostgreSQL holding the log index and the consumers (the order store's database).
    pub database_url: String,
    /// How long a delivered message may stay unacknowledged before it is delivered again.
    pub ack_wait: Duration,
    /// How long start-up keeps trying to reach the broker.
    pub connect_timeout: Duration,
}

impl KafkaConfig {
    pub fn new(brokers: Vec<String>, database_url: impl Into<String>) -> Self {
        KafkaConfig {
            brokers,
            topic: DEFAULT_KAFKA_TOPIC.into(),
            partitions: DEFAULT_KAFKA_PARTITIONS,
            database_url: database_url.into(),
            ack_wait: DEFAULT_ACK_WAIT,
            connect_timeout: DEFAULT_KAFKA_CONNECT_TIMEOUT,
        }
    }

    /// The brokers as one URL for messages: `kafka://a:9092,b:9092`.
    pub fn url(&self) -> String {
        format!("kafka://{}", self.brokers.join(","))
    }
}

/// A Kafka topic name: letters, digits, `.`, `_` and `-`, at most 249 characters.
fn valid_topic(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 249
        && name != "."
        && name != ".."
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// A consumer name: letters, digits, `-` and `_` (as on JetStream).
fn valid_consumer(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn backend(what: &'static str) -> impl Fn(&dyn std::fmt::Display) -> StreamError {
    move |e| StreamError::Backend(format!("{what}: {e}"))
}

fn db(e: sqlx::Error) -> StreamError {
    StreamError::Backend(format!("stream bookkeeping in PostgreSQL: {e}"))
}

/// The key that picks a message's partition: its event.
fn partition_key(message: &StreamMessage) -> String {
    serde_json::from_str::<serde_json::Value>(&message.payload)
        .ok()
        .and_then(|v| v.get("event_id").and_then(|e| e.as_str().map(str::to_owned)))
        .unwrap_or_else(|| message.key.clone())
}

/// FNV-1a: a stable hash, so every node puts one event on the same partition.
fn partition_of(key: &str, partitions: u16) -> i32 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in key.bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    (hash % u32::from(partitions.max(1))) as i32
}

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS stream_kafka_head (
        topic TEXT PRIMARY KEY,
        last_offset BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS stream_kafka_log (
        topic TEXT NOT NULL,
        stream_offset BIGINT NOT NULL,
        message_id BIGINT NOT NULL,
        kafka_partition INT NOT NULL,
        kafka_offset BIGINT NOT NULL,
        PRIMARY KEY (topic, stream_offset),
        UNIQUE (topic, message_id))",
    "CREATE TABLE IF NOT EXISTS stream_kafka_consumers (
        topic TEXT NOT NULL,
        consumer TEXT NOT NULL,
        next_offset BIGINT NOT NULL,
        PRIMARY KEY (topic, consumer))",
    "CREATE TABLE IF NOT EXISTS stream_kafka_pending (
        topic TEXT NOT NULL,
        consumer TEXT NOT NULL,
        stream_offset BIGINT NOT NULL,
        attempt BIGINT NOT NULL,
        deadline_ms BIGINT NOT NULL,
        PRIMARY KEY (topic, consumer, stream_offset))",
];

/// The ticket stream on a Kafka-protocol broker.
pub struct KafkaStream {
    inner: Arc<Inner>,
}

struct Inner {
    config: KafkaConfig,
    pool: PgPool,
    client: Client,
    partitions: Vec<PartitionClient>,
}

impl KafkaStream {
    /// Connects to the broker (retrying with backoff for `config.connect_timeout`) and the
    /// database, creates the topic and the bookkeeping tables when missing.
    pub async fn connect(config: KafkaConfig) -> Result<Self, StreamError> {
        if !valid_topic(&config.topic) {
            return Err(StreamError::Invalid(format!(
                "Kafka topic {:?}: letters, digits, '.', '_' and '-' only, at most 249",
                config.topic
            )));
        }
        if config.brokers.is_empty() || config.brokers.iter().any(|b| b.is_empty() || b.contains('/')) {
            return Err(StreamError::Invalid(format!(
                "Kafka brokers {:?}: give host:port, several separated by commas",
                config.brokers
            )));
        }
        if !(1..=MAX_KAFKA_PARTITIONS).contains(&config.partitions) {
            return Err(StreamError::Invalid(format!(
                "Kafka partitions {}: 1 to {MAX_KAFKA_PARTITIONS}",
                config.partitions
            )));
        }
        let pool = PgPoolOptions::new()
            .max_connections(POOL_SIZE)
            .acquire_timeout(REQUEST_DEADLINE)
            .connect(&config.database_url)
            .await
            .map_err(db)?;
        ensure_schema(&pool, &config.topic).await?;

        let started = Instant::now();
        let mut backoff = Duration::from_millis(100);
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let left = config.connect_timeout.saturating_sub(started.elapsed());
            let attempt =
                tokio::time::timeout(left.max(Duration::from_millis(100)), Self::connect_once(&config))
                    .await
                    .unwrap_or_else(|_| Err("timed out".into()));
            match attempt {
                Ok((client, partitions)) => {
                    tracing::info!(brokers = %config.url(), topic = %config.topic, partitions = partitions.len(),
                        attempts, "ticket stream on a Kafka-protocol broker");
                    return Ok(KafkaStream { inner: Arc::new(Inner { config, pool, client, partitions }) });
                }
                Err(reason) => {
                    let waited = started.elapsed();
                    let left = config.connect_timeout.saturating_sub(waited);
                    if left.is_zero() {
                        return Err(StreamError::Unreachable {
                            url: config.url(),
                            waited_ms: waited.as_millis() as u64,
                            reason,
                        });
                    }
                    let pause = backoff.min(left);
                    tracing::warn!(brokers = %config.url(), error = %reason, retry_in_ms = pause.as_millis() as u64,
                        "Kafka broker not reachable yet; retrying");
                    tokio::time::sleep(pause).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    async fn connect_once(config: &KafkaConfig) -> Result<(Client, Vec<PartitionClient>), String> {
        let backoff = BackoffConfig { deadline: Some(REQUEST_DEADLINE), ..Default::default() };
        let client = ClientBuilder::new(config.brokers.clone())
            .client_id("boxoffice")
            .backoff_config(backoff)
            .build()
            .await
            .map_err(|e| e.to_string())?;
        let topics = client.list_topics().await.map_err(|e| e.to_string())?;
        let existing = topics.iter().find(|t| t.name == config.topic).map(|t| t.partitions.len());
        let count = match existing {
            Some(count) if count > 0 => count,
            _ => {
                let controller = client.controller_client().map_err(|e| e.to_string())?;
                match controller
                    .create_topic(config.topic.clone(), i32::from(config.partitions), 1, 10_000)
                    .await
                {
                    Ok(()) => {}
                    // Another node created it meanwhile.
                    Err(e) if e.to_string().contains("TopicAlreadyExists") => {}
                    Err(e) => return Err(format!("create topic {}: {e}", config.topic)),
                }
                usize::from(config.partitions)
            }
        };
        let mut partitions = Vec::with_capacity(count);
        for partition in 0..count as i32 {
            let pc = client
                .partition_client(config.topic.clone(), partition, UnknownTopicHandling::Retry)
                .await
                .map_err(|e| format!("partition {partition} of {}: {e}", config.topic))?;
            partitions.push(pc);
        }
        Ok((client, partitions))
    }

    /// Deletes the topic and its bookkeeping rows (tests and operators).
    pub async fn delete_topic(&self) -> Result<(), StreamError> {
        delete_rows(&self.inner.pool, &self.inner.config.topic).await?;
        let controller = self.inner.client.controller_client().map_err(|e| backend("delete topic")(&e))?;
        bounded(controller.delete_topic(self.inner.config.topic.clone(), 10_000))
            .await?
            .map_err(|e| backend("delete topic")(&e))
    }

    /// Deletes a topic's bookkeeping rows over a connection of its own (for clean-up when
    /// the stream's own runtime may be gone).
    pub async fn delete_bookkeeping(database_url: &str, topic: &str) -> Result<(), StreamError> {
        let pool = PgPoolOptions::new().max_connections(1).connect(database_url).await.map_err(db)?;
        delete_rows(&pool, topic).await
    }

    /// The stream's settings.
    pub fn config(&self) -> &KafkaConfig {
        &self.inner.config
    }
}

async fn delete_rows(pool: &PgPool, topic: &str) -> Result<(), StreamError> {
    let mut tx = pool.begin().await.map_err(db)?;
    for table in ["stream_kafka_pending", "stream_kafka_consumers", "stream_kafka_log", "stream_kafka_head"] {
        sqlx::query(&format!("DELETE FROM {table} WHERE topic = $1"))
            .bind(topic)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
    }
    tx.commit().await.map_err(db)
}

async fn ensure_schema(pool: &PgPool, topic: &str) -> Result<(), StreamError> {
    let mut tx = pool.begin().await.map_err(db)?;
    // One key for every node of every deployment: creating tables is rare and quick.
    sqlx::query("SELECT pg_advisory_xact_lock(7355608471)").execute(&mut *tx).await.map_err(db)?;
    for statement in SCHEMA {
        sqlx::query(statement).execute(&mut *tx).await.map_err(db)?;
    }
    sqlx::query("INSERT INTO stream_kafka_head (topic, last_offset) VALUES ($1, 0) ON CONFLICT DO NOTHING")
        .bind(topic)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
    tx.commit().await.map_err(db)
}

/// One broker request, bounded: the client retries within its backoff deadline, and a
/// broker that accepts a request and never answers must not hang the caller.
async fn bounded<T>(request: impl std::future::Future<Output = T>) -> Result<T, StreamError> {
    tokio::time::timeout(REQUEST_DEADLINE + Duration::from_secs(1), request)
        .await
        .map_err(|_| StreamError::Backend(format!("the broker did not answer within {REQUEST_DEADLINE:?}")))
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// Where one stream offset's record is.
#[derive(Debug, Clone, Copy)]
struct Located {
    offset: u64,
    partition: i32,
    kafka_offset: i64,
}

impl Inner {
    /// The records of these log rows from Kafka, by stream offset.
    async fn fetch(&self, rows: &[Located]) -> Result<HashMap<u64, StreamMessage>, StreamError> {
        let mut by_partition: BTreeMap<i32, Vec<(i64, u64)>> = BTreeMap::new();
        for row in rows {
            by_partition.entry(row.partition).or_default().push((row.kafka_offset, row.offset));
        }
        let mut found = HashMap::with_capacity(rows.len());
        for (partition, mut wanted) in by_partition {
            let client = self.partitions.get(partition as usize).ok_or_else(|| {
                StreamError::Backend(format!("the log names partition {partition}, which the topic lacks"))
            })?;
            wanted.sort_unstable();
            let mut next = 0;
            while next < wanted.len() {
                let from = wanted[next].0;
                let (records, _high) = match bounded(client.fetch_records(from, FETCH_BYTES, 100)).await? {
                    Ok(answer) => answer,
                    Err(e) if e.to_string().contains("OffsetOutOfRange") => {
                        let earliest = client.get_offset(OffsetAt::Earliest).await.unwrap_or(-1);
                        return Err(StreamError::Backend(format!(
                            "stream offset {} (Kafka offset {from} of partition {partition}) is no longer kept by \
                             the broker, whose earliest is {earliest}: the topic's retention is shorter than the log's",
                            wanted[next].1
                        )));
                    }
                    Err(e) => return Err(backend("fetch")(&e)),
                };
                if records.is_empty() {
                    return Err(StreamError::Backend(format!(
                        "partition {partition} has no record at offset {from}, which the log names"
                    )));
                }
                let last = records.last().map_or(from, |r| r.offset);
                for record in records {
                    // Several wanted offsets may come in one answer, and records the log
                    // does not name (copies of a publish that did not commit) in between.
                    if next < wanted.len() && wanted[next].0 < record.offset {
                        return Err(StreamError::Backend(format!(
                            "partition {partition} has no record at offset {}, which the log names",
                            wanted[next].0
                        )));
                    }
                    if next < wanted.len() && wanted[next].0 == record.offset {
                        let value = record.record.value.unwrap_or_default();
                        let message: StreamMessage = serde_json::from_slice(&value).map_err(|e| {
                            StreamError::Backend(format!(
                                "record at offset {} of partition {partition} is not a ticket stream message: {e}",
                                record.offset
                            ))
                        })?;
                        found.insert(wanted[next].1, message);
                        next += 1;
                    }
                }
                if next < wanted.len() && wanted[next].0 <= last {
                    return Err(StreamError::Backend(format!(
                        "partition {partition} has no record at offset {}, which the log names",
                        wanted[next].0
                    )));
                }
            }
        }
        Ok(found)
    }

    async fn locate(&self, offsets: &[i64]) -> Result<Vec<Located>, StreamError> {
        let rows = sqlx::query(
            "SELECT stream_offset, kafka_partition, kafka_offset FROM stream_kafka_log \
             WHERE topic = $1 AND stream_offset = ANY($2) ORDER BY stream_offset",
        )
        .bind(&self.config.topic)
        .bind(offsets)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        Ok(rows
            .iter()
            .map(|r| Located {
                offset: r.get::<i64, _>(0) as u64,
                partition: r.get(1),
                kafka_offset: r.get(2),
            })
            .collect())
    }

    async fn oldest_kept(&self) -> Result<Option<u64>, StreamError> {
        let oldest: Option<i64> =
            sqlx::query_scalar("SELECT MIN(stream_offset) FROM stream_kafka_log WHERE topic = $1")
                .bind(&self.config.topic)
                .fetch_one(&self.pool)
                .await
                .map_err(db)?;
        Ok(oldest.map(|o| o as u64))
    }
}

#[async_trait]
impl TicketStream for KafkaStream {
    async fn publish(&self, message: StreamMessage) -> Result<u64, StreamError> {
        let inner = &self.inner;
        let topic = &inner.config.topic;
        let id = i64::try_from(message.id)
            .map_err(|_| StreamError::Invalid(format!("message id {} is too large", message.id)))?;
        let mut tx: Transaction<'_, Postgres> = inner.pool.begin().await.map_err(db)?;
        // The head row's lock orders publishes: stream offsets follow Kafka's order.
        let last: i64 =
            sqlx::query_scalar("SELECT last_offset FROM stream_kafka_head WHERE topic = $1 FOR UPDATE")
                .bind(topic)
                .fetch_one(&mut *tx)
                .await
                .map_err(db)?;
        let known: Option<i64> = sqlx::query_scalar(
            "SELECT stream_offset FROM stream_kafka_log WHERE topic = $1 AND message_id = $2",
        )
        .bind(topic)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db)?;
        if let Some(offset) = known {
            tx.rollback().await.map_err(db)?;
            return Ok(offset as u64);
        }
        let key = partition_key(&message);
        let partition = partition_of(&key, inner.partitions.len() as u16);
        let value = serde_json::to_vec(&message).map_err(|e| backend("encode")(&e))?;
        let record = Record {
            key: Some(key.into_bytes()),
            value: Some(value),
            headers: BTreeMap::from([("message-id".to_owned(), message.id.to_string().into_bytes())]),
            timestamp: chrono::DateTime::from_timestamp_millis(message.created_at as i64).unwrap_or_default(),
        };
        let produced =
            bounded(inner.partitions[partition as usize].produce(vec![record], Compression::NoCompression))
                .await?
                .map_err(|e| backend("produce")(&e))?;
        let kafka_offset = *produced.first().ok_or_else(|| {
            StreamError::Backend("the broker answered the produce without an offset".into())
        })?;
        let offset = last + 1;
        sqlx::query(
            "INSERT INTO stream_kafka_log (topic, stream_offset, message_id, kafka_partition, kafka_offset) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(topic)
        .bind(offset)
        .bind(id)
        .bind(partition)
        .bind(kafka_offset)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        sqlx::query("UPDATE stream_kafka_head SET last_offset = $2 WHERE topic = $1")
            .bind(topic)
            .bind(offset)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(offset as u64)
    }

    async fn subscribe(&self, consumer: &str) -> Result<Box<dyn Subscription>, StreamError> {
        if !valid_consumer(consumer) {
            return Err(StreamError::Invalid(format!(
                "consumer name {consumer:?}: letters, digits, '-' and '_' only"
            )));
        }
        // A new consumer starts at the oldest message kept.
        let start = self.inner.oldest_kept().await?.unwrap_or(1);
        sqlx::query(
            "INSERT INTO stream_kafka_consumers (topic, consumer, next_offset) VALUES ($1, $2, $3) \
             ON CONFLICT DO NOTHING",
        )
        .bind(&self.inner.config.topic)
        .bind(consumer)
        .bind(start as i64)
        .execute(&self.inner.pool)
        .await
        .map_err(db)?;
        Ok(Box::new(KafkaSubscription { inner: self.inner.clone(), consumer: consumer.to_owned() }))
    }

    async fn read_from(&self, from: u64) -> Result<Box<dyn Replay>, StreamError> {
        let from = from.max(1);
        let through = self.last_offset().await?;
        if from <= through
            && let Some(oldest) = self.inner.oldest_kept().await?
            && from < oldest
        {
            return Err(StreamError::Truncated { requested: from, oldest });
        }
        Ok(Box::new(KafkaReplay { inner: self.inner.clone(), next: from, through }))
    }

    async fn last_offset(&self) -> Result<u64, StreamError> {
        let last: i64 = sqlx::query_scalar("SELECT last_offset FROM stream_kafka_head WHERE topic = $1")
            .bind(&self.inner.config.topic)
            .fetch_one(&self.inner.pool)
            .await
            .map_err(db)?;
        Ok(last as u64)
    }

    fn durable(&self) -> bool {
        true
    }

    /// One round trip to the broker and one to the database.
    async fn ping(&self) -> Result<(), StreamError> {
        bounded(self.inner.partitions[0].get_offset(OffsetAt::Latest))
            .await?
            .map_err(|e| backend("broker")(&e))?;
        self.last_offset().await.map(|_| ())
    }
}

/// One member of a durable consumer.
struct KafkaSubscription {
    inner: Arc<Inner>,
    consumer: String,
}

impl KafkaSubscription {
    /// Takes up to `max` offsets for this member in one transaction: overdue pending ones
    /// first, then new ones. Returns `(offset, attempt)` pairs.
    async fn take(&self, max: usize) -> Result<Vec<(u64, u64)>, StreamError> {
        let inner = &self.inner;
        let topic = &inner.config.topic;
        let now = now_ms();
        let deadline = now + inner.config.ack_wait.as_millis() as i64;
        let mut tx = inner.pool.begin().await.map_err(db)?;
        let mut taken: Vec<(u64, u64)> = sqlx::query(
            "UPDATE stream_kafka_pending p SET attempt = p.attempt + 1, deadline_ms = $4 \
             FROM (SELECT stream_offset FROM stream_kafka_pending \
                   WHERE topic = $1 AND consumer = $2 AND deadline_ms <= $3 \
                   ORDER BY stream_offset LIMIT $5 FOR UPDATE SKIP LOCKED) due \
             WHERE p.topic = $1 AND p.consumer = $2 AND p.stream_offset = due.stream_offset \
             RETURNING p.stream_offset, p.attempt",
        )
        .bind(topic)
        .bind(&self.consumer)
        .bind(now)
        .bind(deadline)
        .bind(max as i64)
        .fetch_all(&mut *tx)
        .await
        .map_err(db)?
        .iter()
        .map(|r| (r.get::<i64, _>(0) as u64, r.get::<i64, _>(1) as u64))
        .collect();
        let room = max.saturating_sub(taken.len()) as i64;
        if room > 0 {
            let next: i64 = sqlx::query_scalar(
                "SELECT next_offset FROM stream_kafka_consumers WHERE topic = $1 AND consumer = $2 FOR UPDATE",
            )
            .bind(topic)
            .bind(&self.consumer)
            .fetch_one(&mut *tx)
            .await
            .map_err(db)?;
            let last: i64 = sqlx::query_scalar("SELECT last_offset FROM stream_kafka_head WHERE topic = $1")
                .bind(topic)
                .fetch_one(&mut *tx)
                .await
                .map_err(db)?;
            let pending: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM stream_kafka_pending WHERE topic = $1 AND consumer = $2",
            )
            .bind(topic)
            .bind(&self.consumer)
            .fetch_one(&mut *tx)
            .await
            .map_err(db)?;
            let count = room.min(last - next + 1).min(KAFKA_MAX_ACK_PENDING - pending).max(0);
            if count > 0 {
                sqlx::query(
                    "INSERT INTO stream_kafka_pending (topic, consumer, stream_offset, attempt, deadline_ms) \
                     SELECT $1, $2, o, 1, $3 FROM generate_series($4::BIGINT, $5::BIGINT) AS o",
                )
                .bind(topic)
                .bind(&self.consumer)
                .bind(deadline)
                .bind(next)
                .bind(next + count - 1)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
                sqlx::query(
                    "UPDATE stream_kafka_consumers SET next_offset = $3 WHERE topic = $1 AND consumer = $2",
                )
                .bind(topic)
                .bind(&self.consumer)
                .bind(next + count)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
                taken.extend((next..next + count).map(|o| (o as u64, 1)));
            }
        }
        tx.commit().await.map_err(db)?;
        taken.sort_unstable();
        Ok(taken)
    }
}

#[async_trait]
impl Subscription for KafkaSubscription {
    async fn next_batch(&mut self, max: usize, wait: Duration) -> Result<Vec<Delivery>, StreamError> {
        let max = max.clamp(1, MAX_BATCH);
        let until = Instant::now() + wait;
        loop {
            let taken = self.take(max).await?;
            if !taken.is_empty() {
                let offsets: Vec<i64> = taken.iter().map(|&(o, _)| o as i64).collect();
                let located = self.inner.locate(&offsets).await?;
                let mut messages = self.inner.fetch(&located).await?;
                let mut out = Vec::with_capacity(taken.len());
                for (offset, attempt) in taken {
                    let message = messages.remove(&offset).ok_or_else(|| {
                        StreamError::Backend(format!("offset {offset} is in no log row of the topic"))
                    })?;
                    out.push(Delivery { offset, attempt, message, ack: AckToken::Offset });
                }
                return Ok(out);
            }
            let now = Instant::now();
            if now >= until {
                return Ok(Vec::new());
            }
            tokio::time::sleep(POLL_INTERVAL.min(until - now)).await;
        }
    }

    async fn ack(&mut self, delivery: &Delivery) -> Result<(), StreamError> {
        sqlx::query(
            "DELETE FROM stream_kafka_pending WHERE topic = $1 AND consumer = $2 AND stream_offset = $3",
        )
        .bind(&self.inner.config.topic)
        .bind(&self.consumer)
        .bind(delivery.offset as i64)
        .execute(&self.inner.pool)
        .await
        .map_err(db)?;
        Ok(())
    }
}

/// An ordered read of the log.
struct KafkaReplay {
    inner: Arc<Inner>,
    next: u64,
    through: u64,
}

#[async_trait]
impl Replay for KafkaReplay {
    async fn next_batch(&mut self, max: usize) -> Result<Vec<(u64, StreamMessage)>, StreamError> {
        if self.next > self.through || max == 0 {
            return Ok(Vec::new());
        }
        let last = self.through.min(self.next + max.min(MAX_BATCH) as u64 - 1);
        let offsets: Vec<i64> = (self.next as i64..=last as i64).collect();
        let located = self.inner.locate(&offsets).await?;
        let mut messages = self.inner.fetch(&located).await?;
        let mut out = Vec::with_capacity(offsets.len());
        for offset in self.next..=last {
            match messages.remove(&offset) {
                Some(message) => out.push((offset, message)),
                None => {
                    return Err(StreamError::Truncated {
                        requested: offset,
                        oldest: self.inner.oldest_kept().await?.unwrap_or(offset + 1),
                    });
                }
            }
        }
        self.next = last + 1;
        Ok(out)
    }

    fn through(&self) -> u64 {
        self.through
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_event_always_lands_on_one_partition() {
        let message = |key: &str, payload: &str| StreamMessage {
            id: 1,
            topic: "order.created".into(),
            key: key.into(),
            payload: payload.into(),
            created_at: 0,
        };
        let a = message("or_1", r#"{"event_id":"ev_7","order_id":"or_1"}"#);
        let b = message("or_2", r#"{"event_id":"ev_7","order_id":"or_2"}"#);
        assert_eq!(partition_key(&a), "ev_7");
        assert_eq!(partition_of(&partition_key(&a), 12), partition_of(&partition_key(&b), 12));
        assert_eq!(partition_key(&message("or_3", "not json")), "or_3");
        let spread: std::collections::HashSet<i32> =
            (0..200).map(|i| partition_of(&format!("ev_{i}"), 8)).collect();
        assert_eq!(spread.len(), 8, "events spread over every partition");
        assert!((0..100).all(|i| partition_of(&format!("ev_{i}"), 1) == 0));
    }

    #[test]
    fn names_are_checked() {
        assert!(valid_topic("boxoffice.tickets") && valid_topic("a-b_c.9"));
        assert!(
            !valid_topic("") && !valid_topic("..") && !valid_topic("a b") && !valid_topic(&"x".repeat(250))
        );
        assert!(valid_consumer("ticket-worker") && !valid_consumer("a.b") && !valid_consumer(""));
    }
}
