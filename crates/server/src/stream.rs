//! The ticket stream as the server uses it. The stream itself (the [`TicketStream`] trait,
//! its in-process and NATS JetStream backends, their semantics) is the `boxoffice-stream`
//! crate, re-exported here; this module adds what ties it to the server: its settings,
//! building the backend at start-up, the outbox row -> message mapping, and replay.

use std::sync::Arc;
use std::time::Duration;

use boxoffice_store::OutboxMessage;
pub use boxoffice_stream::{
    DEFAULT_ACK_WAIT, Delivery, InProcessStream, JetStreamConfig, JetStreamStream, KafkaConfig, KafkaStream,
    Replay, STREAM_RETENTION_MESSAGES, StreamError, StreamMessage, Subscription, TicketStream,
};

use crate::AppState;

/// Messages a replay hands to the ticket worker's handler at a time.
pub const REPLAY_BATCH: usize = 256;

/// Where the ticket stream lives: in process (the default), on NATS JetStream, or on a
/// Kafka-protocol broker.
#[derive(Debug, Clone, clap::Args)]
pub struct StreamConfig {
    /// NATS server of the ticket stream (`nats://host:4222`). When set, the outbox relay
    /// publishes to JetStream and the ticket worker is a durable consumer shared with every
    /// other server on that stream; otherwise the stream is in process.
    #[arg(long, env = "BOXOFFICE_NATS_URL")]
    pub nats_url: Option<String>,
    /// JetStream stream name of the ticket stream (created when missing).
    #[arg(long, env = "BOXOFFICE_NATS_STREAM", default_value = boxoffice_stream::DEFAULT_STREAM_NAME)]
    pub nats_stream: String,
    /// Subjects of the ticket stream: a prefix ending in `.>`.
    #[arg(long, env = "BOXOFFICE_NATS_SUBJECTS", default_value = boxoffice_stream::DEFAULT_SUBJECTS)]
    pub nats_subjects: String,
    /// Seconds a delivered ticket message may stay unacknowledged before JetStream delivers
    /// it again (to any server); applies when the durable consumer is created.
    #[arg(long, env = "BOXOFFICE_NATS_ACK_WAIT", default_value_t = DEFAULT_ACK_WAIT.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub nats_ack_wait: u64,
    /// Seconds start-up keeps trying to reach NATS before it gives up.
    #[arg(long, env = "BOXOFFICE_NATS_CONNECT_TIMEOUT", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=600))]
    pub nats_connect_timeout: u64,
    /// Kafka-protocol brokers of the ticket stream (`host:9092`, several separated by
    /// commas), instead of NATS. Needs --database-url: the stream's offsets, publish
    /// de-duplication and durable consumers are kept in PostgreSQL. The ack wait and the
    /// connect timeout are the --nats-* ones.
    #[arg(long, env = "BOXOFFICE_KAFKA_BROKERS", conflicts_with = "nats_url", value_delimiter = ',')]
    pub kafka_brokers: Vec<String>,
    /// Kafka topic of the ticket stream (created when missing).
    #[arg(long, env = "BOXOFFICE_KAFKA_TOPIC", default_value = boxoffice_stream::DEFAULT_KAFKA_TOPIC)]
    pub kafka_topic: String,
    /// Partitions of the topic when this node creates it; messages are keyed by event.
    #[arg(long, env = "BOXOFFICE_KAFKA_PARTITIONS", default_value_t = boxoffice_stream::DEFAULT_KAFKA_PARTITIONS,
          value_parser = clap::value_parser!(u16).range(1..=i64::from(boxoffice_stream::MAX_KAFKA_PARTITIONS)))]
    pub kafka_partitions: u16,
}

impl Default for StreamConfig {
    fn default() -> Self {
        StreamConfig {
            nats_url: None,
            nats_stream: boxoffice_stream::DEFAULT_STREAM_NAME.into(),
            nats_subjects: boxoffice_stream::DEFAULT_SUBJECTS.into(),
            nats_ack_wait: DEFAULT_ACK_WAIT.as_secs(),
            nats_connect_timeout: 30,
            kafka_brokers: Vec::new(),
            kafka_topic: boxoffice_stream::DEFAULT_KAFKA_TOPIC.into(),
            kafka_partitions: boxoffice_stream::DEFAULT_KAFKA_PARTITIONS,
        }
    }
}

impl StreamConfig {
    /// The settings as logged: a password in the NATS URL is hidden.
    pub fn redacted(&self) -> Self {
        let mut shown = self.clone();
        if let Some(url) = shown.nats_url.as_mut()
            && let Some((scheme, rest)) = url.split_once("://")
            && let Some((credentials, host)) = rest.rsplit_once('@')
        {
            let user = credentials.split_once(':').map_or(credentials, |(user, _)| user);
            *url = format!("{scheme}://{user}:<redacted>@{host}");
        }
        shown
    }

    /// The backend's name, as `/readyz` reports it.
    pub fn kind(&self) -> &'static str {
        if self.nats_url.is_some() {
            "jetstream"
        } else if !self.kafka_brokers.is_empty() {
            "kafka"
        } else {
            "in-process"
        }
    }

    /// The ticket stream these settings name; a broker is reached with retries for
    /// `nats_connect_timeout` seconds. The Kafka backend keeps its bookkeeping in the
    /// PostgreSQL of `database_url`.
    pub async fn open(&self, database_url: Option<&str>) -> Result<Arc<dyn TicketStream>, StreamError> {
        if !self.kafka_brokers.is_empty() {
            let Some(database_url) = database_url else {
                return Err(StreamError::Invalid(
                    "--kafka-brokers needs --database-url: the stream's offsets and consumers are kept in PostgreSQL"
                        .into(),
                ));
            };
            let stream = KafkaStream::connect(KafkaConfig {
                brokers: self.kafka_brokers.clone(),
                topic: self.kafka_topic.clone(),
                partitions: self.kafka_partitions,
                database_url: database_url.to_owned(),
                ack_wait: Duration::from_secs(self.nats_ack_wait),
                connect_timeout: Duration::from_secs(self.nats_connect_timeout),
            })
            .await?;
            return Ok(Arc::new(stream));
        }
        let Some(url) = &self.nats_url else { return Ok(Arc::new(InProcessStream::default())) };
        let stream = JetStreamStream::connect(JetStreamConfig {
            url: url.clone(),
            stream: self.nats_stream.clone(),
            subjects: self.nats_subjects.clone(),
            ack_wait: Duration::from_secs(self.nats_ack_wait),
            connect_timeout: Duration::from_secs(self.nats_connect_timeout),
        })
        .await
        .map_err(|e| match e {
            StreamError::Unreachable { reason, waited_ms, .. } => {
                // The error names the URL as the operator gave it, password hidden.
                let url = self.redacted().nats_url.unwrap_or_default();
                StreamError::Unreachable { url, waited_ms, reason }
            }
            other => other,
        })?;
        Ok(Arc::new(stream))
    }
}

/// The stream message of an outbox row: its id is the row's sequence number.
pub fn from_outbox(row: OutboxMessage) -> StreamMessage {
    StreamMessage {
        id: row.seq,
        topic: row.topic,
        key: row.key,
        payload: row.payload,
        created_at: row.created_at,
    }
}

/// What a replay did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Replayed {
    pub from: u64,
    /// The newest offset when the replay began: the last one it covers.
    pub through: u64,
    /// Messages handed to the ticket worker's handler.
    pub messages: u64,
    /// Mails written (the rest were written before, or are not ticket mail).
    pub mails_written: u64,
}

/// Re-drives the ticket worker from offset `from`: an ordered read of the stream from
/// there through its newest message, each message handled as the worker handles it. The
/// durable consumer is left as it is (see `boxoffice_stream`'s JetStream module for why);
/// the handler is idempotent (one mail per order), so messages handled before are harmless.
/// Runs in a task of its own, so that a caller that goes away does not cut it short.
pub async fn replay_tickets(state: &AppState, from: u64) -> Result<Replayed, StreamError> {
    let state = state.clone();
    tokio::spawn(async move {
        let mut replay = state.stream.read_from(from).await?;
        let mut done = Replayed { from: from.max(1), through: replay.through(), ..Replayed::default() };
        loop {
            let batch = replay.next_batch(REPLAY_BATCH).await?;
            if batch.is_empty() {
                break;
            }
            for (offset, message) in &batch {
                let written = crate::workers::deliver_tickets(&state, message)
                    .await
                    .map_err(|e| StreamError::Backend(format!("ticket delivery of offset {offset}: {e}")))?;
                done.messages += 1;
                done.mails_written += u64::from(written);
            }
        }
        tracing::info!(?done, "ticket stream replayed");
        Ok(done)
    })
    .await
    .map_err(|e| StreamError::Backend(format!("replay task: {e}")))?
}
