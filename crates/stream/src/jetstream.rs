//! The distributed stream: NATS JetStream.
//!
//! - One stream (file storage, limits retention) over the subjects `<prefix>.>`; a message
//!   of topic `order.created` goes to `<prefix>.order.created`, its body the JSON of the
//!   [`StreamMessage`].
//! - Publishing sets `Nats-Msg-Id` to the message id (the outbox row's sequence number), so
//!   the server drops a second publish of one row within the duplicate window, and waits
//!   for the publish ack: a row is marked sent only once JetStream has stored it.
//! - Consumers are durable pull consumers with explicit acks; every node's subscription to
//!   one name pulls from the same consumer, so each message is handled by one node, and
//!   the server redelivers it when its ack does not come within the ack wait. Acks are
//!   confirmed by the server (double ack), so an ack that returns `Ok` is recorded.
//! - [`TicketStream::read_from`] (replay) is an ordered consumer (ephemeral, no acks) from
//!   the requested stream sequence. Replay deliberately does not move the durable
//!   consumer's start: a durable consumer reset to a later sequence would skip the
//!   messages it still owes (delivered, not yet acknowledged), and one reset to an
//!   earlier sequence would have to be deleted and recreated while every node pulls from
//!   it. A separate ordered read costs the handler a second look at messages it already
//!   handled, which it tolerates anyway (it is idempotent).
//! - Connecting at start-up retries with backoff for [`JetStreamConfig::connect_timeout`]
//!   and then fails naming the URL. Once connected, the client reconnects by itself for as
//!   long as it takes; publishes and acks made meanwhile fail (and are retried by the
//!   caller) or time out.

use std::time::Duration;

use async_nats::jetstream::consumer::pull;
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy};
use async_nats::jetstream::message::AckKind;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::{self, stream};
use async_trait::async_trait;
use futures_util::{FutureExt, StreamExt};
use tokio::time::Instant;

use crate::{
    AckToken, DEFAULT_ACK_WAIT, Delivery, Replay, StreamError, StreamMessage, Subscription, TicketStream,
};

/// The default stream name.
pub const DEFAULT_STREAM_NAME: &str = "BOXOFFICE_TICKETS";
/// The default subjects of the stream.
pub const DEFAULT_SUBJECTS: &str = "boxoffice.tickets.>";
/// How long start-up keeps trying to reach NATS.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// The window in which JetStream drops a second publish of one message id.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);
/// How long the stream keeps messages (the outbox keeps sent rows as long).
pub const MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);
/// Messages a durable consumer may have delivered and unacknowledged at once.
pub const MAX_ACK_PENDING: i64 = 10_000;
/// The longest wait between two start-up connection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How long one request to the server (publish ack, consumer info, ack) may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Heartbeat of a pull request: a quiet connection is noticed after two missed beats.
const PULL_HEARTBEAT: Duration = Duration::from_secs(5);
/// Lifetime of one pull request; the client renews it.
const PULL_EXPIRES: Duration = Duration::from_secs(30);
/// How long a replay waits for the next message it knows exists.
const REPLAY_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Where and how to reach JetStream.
#[derive(Debug, Clone)]
pub struct JetStreamConfig {
    /// `nats://host:port` (credentials in the URL are used).
    pub url: String,
    /// The stream's name (created when missing).
    pub stream: String,
    /// The stream's subjects: a prefix ending in `.>`.
    pub subjects: String,
    /// How long a delivered message may stay unacknowledged before it is delivered again;
    /// applies when the durable consumer is created.
    pub ack_wait: Duration,
    /// How long start-up keeps trying to reach the server.
    pub connect_timeout: Duration,
}

impl JetStreamConfig {
    /// The defaults for `url`.
    pub fn new(url: impl Into<String>) -> Self {
        JetStreamConfig {
            url: url.into(),
            stream: DEFAULT_STREAM_NAME.into(),
            subjects: DEFAULT_SUBJECTS.into(),
            ack_wait: DEFAULT_ACK_WAIT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
        }
    }
}

/// The ticket stream on NATS JetStream.
pub struct JetStreamStream {
    context: jetstream::Context,
    config: JetStreamConfig,
    /// `subjects` without the trailing `>`.
    subject_prefix: String,
}

fn backend(what: &str) -> impl Fn(&dyn std::fmt::Display) -> StreamError + '_ {
    move |e| StreamError::Backend(format!("{what}: {e}"))
}

/// A token of a NATS name (stream, consumer, subject part): no separators or wildcards.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

impl JetStreamStream {
    /// Connects (retrying with backoff for `config.connect_timeout`) and makes sure the
    /// stream exists.
    pub async fn connect(config: JetStreamConfig) -> Result<Self, StreamError> {
        if !valid_name(&config.stream) {
            return Err(StreamError::Invalid(format!(
                "stream name {:?}: letters, digits, '-' and '_' only",
                config.stream
            )));
        }
        let subject_prefix = match config.subjects.strip_suffix('>') {
            Some(prefix)
                if prefix.ends_with('.')
                    && prefix.len() > 1
                    && prefix.split('.').filter(|t| !t.is_empty()).all(valid_name) =>
            {
                prefix.to_owned()
            }
            _ => {
                return Err(StreamError::Invalid(format!(
                    "stream subjects {:?}: a prefix ending in \".>\", such as {DEFAULT_SUBJECTS:?}",
                    config.subjects
                )));
            }
        };
        let started = Instant::now();
        let mut backoff = Duration::from_millis(100);
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let left = config.connect_timeout.saturating_sub(started.elapsed());
            let attempt = tokio::time::timeout(
                left.min(REQUEST_TIMEOUT * 2).max(Duration::from_millis(100)),
                Self::connect_once(&config),
            )
            .await
            .unwrap_or_else(|_| Err("timed out".into()));
            match attempt {
                Ok(context) => {
                    tracing::info!(url = %config.url, stream = %config.stream, attempts, "ticket stream on NATS JetStream");
                    return Ok(JetStreamStream { context, config, subject_prefix });
                }
                Err(reason) => {
                    let waited = started.elapsed();
                    let left = config.connect_timeout.saturating_sub(waited);
                    if left.is_zero() {
                        return Err(StreamError::Unreachable {
                            url: config.url.clone(),
                            waited_ms: waited.as_millis() as u64,
                            reason,
                        });
                    }
                    let pause = backoff.min(left);
                    tracing::warn!(url = %config.url, error = %reason, retry_in_ms = pause.as_millis() as u64,
                        "NATS not reachable yet; retrying");
                    tokio::time::sleep(pause).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    async fn connect_once(config: &JetStreamConfig) -> Result<jetstream::Context, String> {
        let client = async_nats::ConnectOptions::new()
            .name("boxoffice")
            .connection_timeout(REQUEST_TIMEOUT)
            .request_timeout(Some(REQUEST_TIMEOUT))
            .max_reconnects(None)
            .connect(config.url.as_str())
            .await
            .map_err(|e| e.to_string())?;
        let mut context = jetstream::new(client);
        context.set_timeout(REQUEST_TIMEOUT);
        context
            .get_or_create_stream(stream::Config {
                name: config.stream.clone(),
                subjects: vec![config.subjects.clone()],
                storage: stream::StorageType::File,
                retention: stream::RetentionPolicy::Limits,
                duplicate_window: DUPLICATE_WINDOW,
                max_age: MAX_AGE,
                ..Default::default()
            })
            .await
            .map_err(|e| format!("stream {}: {e}", config.stream))?;
        Ok(context)
    }

    /// Deletes the stream with its messages and consumers (tests and operators).
    pub async fn delete_stream(&self) -> Result<(), StreamError> {
        self.context.delete_stream(&self.config.stream).await.map_err(|e| backend("delete stream")(&e))?;
        Ok(())
    }

    async fn stream(&self) -> Result<stream::Stream, StreamError> {
        self.context.get_stream(&self.config.stream).await.map_err(|e| backend("stream")(&e))
    }
}

fn decode(message: &async_nats::jetstream::Message) -> Result<(u64, u64, StreamMessage), String> {
    let info = message.info().map_err(|e| format!("not a JetStream message: {e}"))?;
    let (offset, attempt) = (info.stream_sequence, info.delivered.max(1) as u64);
    let body = serde_json::from_slice(&message.payload)
        .map_err(|e| format!("message at offset {offset} is not a ticket stream message: {e}"))?;
    Ok((offset, attempt, body))
}

#[async_trait]
impl TicketStream for JetStreamStream {
    async fn publish(&self, message: StreamMessage) -> Result<u64, StreamError> {
        if !message.topic.split('.').all(valid_name) {
            return Err(StreamError::Invalid(format!("topic {:?} is not a subject", message.topic)));
        }
        let subject = format!("{}{}", self.subject_prefix, message.topic);
        let body = serde_json::to_vec(&message).map_err(|e| backend("encode")(&e))?;
        let publish = PublishMessage::build().payload(body.into()).message_id(message.id.to_string());
        let ack = self
            .context
            .send_publish(subject, publish)
            .await
            .map_err(|e| backend("publish")(&e))?
            .await
            .map_err(|e| backend("publish ack")(&e))?;
        Ok(ack.sequence)
    }

    async fn subscribe(&self, consumer: &str) -> Result<Box<dyn Subscription>, StreamError> {
        if !valid_name(consumer) {
            return Err(StreamError::Invalid(format!(
                "consumer name {consumer:?}: letters, digits, '-' and '_' only"
            )));
        }
        let consumer = self
            .stream()
            .await?
            .get_or_create_consumer(
                consumer,
                pull::Config {
                    durable_name: Some(consumer.to_owned()),
                    ack_policy: AckPolicy::Explicit,
                    ack_wait: self.config.ack_wait,
                    deliver_policy: DeliverPolicy::All,
                    max_deliver: -1,
                    max_ack_pending: MAX_ACK_PENDING,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| backend("consumer")(&e))?;
        Ok(Box::new(JetStreamSubscription { consumer, messages: None }))
    }

    async fn read_from(&self, from: u64) -> Result<Box<dyn Replay>, StreamError> {
        let from = from.max(1);
        let mut stream = self.stream().await?;
        let state = stream.info().await.map_err(|e| backend("stream info")(&e))?.state.clone();
        if state.messages > 0 && from < state.first_sequence {
            return Err(StreamError::Truncated { requested: from, oldest: state.first_sequence });
        }
        let through = state.last_sequence;
        let messages = if from <= through {
            let consumer = stream
                .create_consumer(pull::OrderedConfig {
                    deliver_policy: DeliverPolicy::ByStartSequence { start_sequence: from },
                    ..Default::default()
                })
                .await
                .map_err(|e| backend("replay consumer")(&e))?;
            Some(consumer.messages().await.map_err(|e| backend("replay")(&e))?)
        } else {
            None
        };
        Ok(Box::new(JetStreamReplay { messages, through, done: from > through }))
    }

    async fn last_offset(&self) -> Result<u64, StreamError> {
        let mut stream = self.stream().await?;
        Ok(stream.info().await.map_err(|e| backend("stream info")(&e))?.state.last_sequence)
    }

    fn durable(&self) -> bool {
        true
    }
}

struct JetStreamSubscription {
    consumer: jetstream::consumer::Consumer<pull::Config>,
    /// The running pull (renewed by the client); made again after it failed.
    messages: Option<pull::Stream>,
}

impl JetStreamSubscription {
    /// Takes one pulled message into `batch`; a message that is not ours is terminated
    /// (never delivered again) and skipped.
    async fn accept(batch: &mut Vec<Delivery>, message: async_nats::jetstream::Message) {
        match decode(&message) {
            Ok((offset, attempt, body)) => batch.push(Delivery {
                offset,
                attempt,
                message: body,
                ack: AckToken::JetStream(Box::new(message)),
            }),
            Err(e) => {
                tracing::error!(error = %e, "unreadable ticket stream message; terminated");
                let _ = message.ack_with(AckKind::Term).await;
            }
        }
    }
}

#[async_trait]
impl Subscription for JetStreamSubscription {
    async fn next_batch(&mut self, max: usize, wait: Duration) -> Result<Vec<Delivery>, StreamError> {
        let max = max.max(1);
        if self.messages.is_none() {
            let pull = self
                .consumer
                .stream()
                .max_messages_per_batch(max)
                .heartbeat(PULL_HEARTBEAT)
                .expires(PULL_EXPIRES)
                .messages()
                .await
                .map_err(|e| backend("pull")(&e))?;
            self.messages = Some(pull);
        }
        let messages = self.messages.as_mut().expect("made just above");
        let deadline = Instant::now() + wait;
        let mut batch = Vec::new();
        while batch.is_empty() {
            let next = match tokio::time::timeout_at(deadline, messages.next()).await {
                Err(_) => return Ok(batch),
                Ok(next) => next,
            };
            match next {
                Some(Ok(message)) => Self::accept(&mut batch, message).await,
                Some(Err(e)) if e.kind() == pull::MessagesErrorKind::MissingHeartbeat => {
                    // The pull goes on: the client renews it once the connection is back.
                    return Err(backend("pull")(&e));
                }
                Some(Err(e)) => {
                    self.messages = None;
                    return Err(backend("pull")(&e));
                }
                None => {
                    self.messages = None;
                    return Err(StreamError::Backend("pull ended".into()));
                }
            }
        }
        // Whatever else has already arrived, without waiting.
        while batch.len() < max {
            match messages.next().now_or_never() {
                Some(Some(Ok(message))) => Self::accept(&mut batch, message).await,
                Some(Some(Err(e))) => {
                    tracing::debug!(error = %e, "ticket stream pull error after a message");
                    break;
                }
                Some(None) => {
                    self.messages = None;
                    break;
                }
                None => break,
            }
        }
        Ok(batch)
    }

    async fn ack(&mut self, delivery: &Delivery) -> Result<(), StreamError> {
        match &delivery.ack {
            AckToken::JetStream(message) => message.double_ack().await.map_err(|e| backend("ack")(&e)),
            AckToken::Offset => Err(StreamError::Invalid("a delivery of another stream".into())),
        }
    }
}

struct JetStreamReplay {
    messages: Option<pull::Ordered>,
    through: u64,
    done: bool,
}

#[async_trait]
impl Replay for JetStreamReplay {
    async fn next_batch(&mut self, max: usize) -> Result<Vec<(u64, StreamMessage)>, StreamError> {
        let mut batch = Vec::new();
        let Some(messages) = self.messages.as_mut().filter(|_| !self.done) else { return Ok(batch) };
        while batch.len() < max.max(1) {
            let next = tokio::time::timeout(REPLAY_READ_TIMEOUT, messages.next())
                .await
                .map_err(|_| StreamError::Backend("replay: no message in time".into()))?;
            let message = match next {
                Some(Ok(message)) => message,
                Some(Err(e)) => return Err(backend("replay")(&e)),
                None => return Err(StreamError::Backend("replay ended early".into())),
            };
            let (offset, _, body) = decode(&message).map_err(StreamError::Backend)?;
            if offset <= self.through {
                batch.push((offset, body));
            }
            if offset >= self.through {
                self.done = true;
                self.messages = None;
                break;
            }
        }
        Ok(batch)
    }

    fn through(&self) -> u64 {
        self.through
    }
}
