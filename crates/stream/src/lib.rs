//! The ticket stream: the outbox relay publishes each committed outbox row here, in order;
//! consumers (the ticket worker) take messages through a shared durable consumer and
//! acknowledge each one once it is handled. Delivery is at least once, so every consumer
//! is idempotent.
//!
//! [`TicketStream`] is the seam; one adapter per backend, one conformance suite
//! (`tests/conformance.rs`) run against each:
//! - [`InProcessStream`] (embedded): a bounded log in memory. It does not survive a
//!   restart ([`TicketStream::durable`] is false), so at start-up the server publishes the
//!   outbox rows after the ticket worker's last handled row again.
//! - [`JetStreamStream`] (distributed): a NATS JetStream stream (file storage) and a durable
//!   pull consumer with explicit acks that every node shares.
//! - [`KafkaStream`] (distributed): a topic on a Kafka-protocol broker, partitioned by
//!   event, with the stream's offsets, de-duplication and durable consumers kept in
//!   PostgreSQL (see its module).
//!
//! The semantics both keep:
//! - **Offsets** are stream sequence numbers: the first message is 1, each next one 1 more.
//! - **Publishing** is de-duplicated by [`StreamMessage::id`] (the outbox row's sequence
//!   number) within a window, so a relay that publishes one row twice (it crashed between
//!   the publish and marking the row sent) appends it once; the second publish answers the
//!   first one's offset.
//! - **Consuming**: every [`Subscription`] to one consumer name shares that consumer. Each
//!   message goes to one subscription at a time; it is delivered again (to any of them)
//!   when it was not acknowledged within the ack wait (its handler crashed, hung or lost
//!   its connection). A new consumer starts at the oldest message kept.
//! - **Replay** ([`TicketStream::read_from`]) is an ordered read of the messages from an
//!   offset up to the newest one at the time of the call, without acks, that leaves every
//!   consumer as it is.

mod in_process;
mod jetstream;
mod kafka;
pub mod tansu;

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub use in_process::{InProcessStream, STREAM_RETENTION_MESSAGES};
pub use jetstream::{DEFAULT_STREAM_NAME, DEFAULT_SUBJECTS, JetStreamConfig, JetStreamStream};
pub use kafka::{
    DEFAULT_KAFKA_PARTITIONS, DEFAULT_KAFKA_TOPIC, KAFKA_MAX_ACK_PENDING, KafkaConfig, KafkaStream,
    MAX_KAFKA_PARTITIONS,
};

/// How long a delivered message may stay unacknowledged before it is delivered again.
pub const DEFAULT_ACK_WAIT: Duration = Duration::from_secs(30);

/// One message: an outbox row as published.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamMessage {
    /// The outbox row's sequence number: unique and growing, the publish de-duplication key.
    pub id: u64,
    pub topic: String,
    pub key: String,
    /// JSON.
    pub payload: String,
    /// Unix milliseconds of the outbox row.
    pub created_at: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    /// The reader asked for messages the stream no longer keeps.
    #[error("offset {requested} is no longer kept; the oldest is {oldest}")]
    Truncated { requested: u64, oldest: u64 },
    /// The backend could not be reached within the start-up budget.
    #[error("cannot reach the stream's broker at {url} (tried for {waited_ms} ms): {reason}")]
    Unreachable { url: String, waited_ms: u64, reason: String },
    /// A name or setting the backend refuses.
    #[error("invalid stream setting: {0}")]
    Invalid(String),
    #[error("stream backend: {0}")]
    Backend(String),
}

/// A message handed to one subscription, to be acknowledged with [`Subscription::ack`]
/// once it is handled.
#[derive(Debug)]
pub struct Delivery {
    /// The message's offset in the stream.
    pub offset: u64,
    /// 1 for the first delivery, more for a redelivery.
    pub attempt: u64,
    pub message: StreamMessage,
    ack: AckToken,
}

impl Delivery {
    pub fn is_redelivery(&self) -> bool {
        self.attempt > 1
    }
}

/// What a backend needs to acknowledge one delivery.
#[derive(Debug)]
enum AckToken {
    /// The in-process stream acknowledges by offset.
    Offset,
    JetStream(Box<async_nats::jetstream::Message>),
}

#[async_trait]
pub trait TicketStream: Send + Sync + 'static {
    /// Appends a message and returns its offset; a message whose id was published before
    /// (within the de-duplication window) is not appended again and answers the offset of
    /// the first one.
    async fn publish(&self, message: StreamMessage) -> Result<u64, StreamError>;

    /// Joins the durable consumer `consumer` (created at the oldest kept message when it is
    /// new). Subscriptions to one name share its messages; see the crate documentation.
    async fn subscribe(&self, consumer: &str) -> Result<Box<dyn Subscription>, StreamError>;

    /// An ordered read from offset `from` (0 reads like 1) through the newest message at
    /// the time of the call, without acks and without touching any consumer. Fails with
    /// [`StreamError::Truncated`] when `from` is older than the oldest message kept.
    async fn read_from(&self, from: u64) -> Result<Box<dyn Replay>, StreamError>;

    /// The offset of the newest message; 0 while the stream is empty.
    async fn last_offset(&self) -> Result<u64, StreamError>;

    /// Whether published messages survive a restart of this process.
    fn durable(&self) -> bool;

    /// Checks that the stream's backend answers (`/readyz`): by default a read of the
    /// newest offset, one round trip to the broker.
    async fn ping(&self) -> Result<(), StreamError> {
        self.last_offset().await.map(|_| ())
    }
}

/// One member of a durable consumer.
#[async_trait]
pub trait Subscription: Send {
    /// Up to `max` messages for this member: first those whose ack wait ran out, then new
    /// ones. Waits up to `wait` for the first one; an empty answer means none came in time.
    async fn next_batch(&mut self, max: usize, wait: Duration) -> Result<Vec<Delivery>, StreamError>;

    /// Marks a delivery handled, so that it is not delivered again. An error means the
    /// acknowledgement may be lost: the message can come again, to be handled idempotently.
    async fn ack(&mut self, delivery: &Delivery) -> Result<(), StreamError>;
}

/// An ordered read made by [`TicketStream::read_from`].
#[async_trait]
pub trait Replay: Send {
    /// The next messages with their offsets, in order; empty once the read has passed
    /// [`Replay::through`].
    async fn next_batch(&mut self, max: usize) -> Result<Vec<(u64, StreamMessage)>, StreamError>;

    /// The last offset this read covers (the newest message when it was made).
    fn through(&self) -> u64;
}
