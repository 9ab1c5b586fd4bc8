//! The ticket stream: the outbox relay publishes each committed outbox row here, in order;
//! consumers (the ticket worker) read from an offset. Delivery is at least once, so every
//! consumer is idempotent.
//!
//! [`TicketStream`] is the seam for distributed backends (NATS JetStream, a Kafka-protocol
//! log); [`InProcessStream`] is the embedded one: a bounded in-memory log. It does not
//! survive a restart ([`TicketStream::durable`] is false), so at start-up the relay marks
//! the outbox rows after the ticket worker's last processed row unsent again and they are
//! published anew.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use boxoffice_core::UnixMs;
use boxoffice_store::OutboxMessage;
use parking_lot::Mutex;
use tokio::sync::Notify;

/// Messages the in-process stream keeps; a reader further behind loses the oldest.
pub const STREAM_RETENTION_MESSAGES: usize = 100_000;

/// One message: an outbox row as published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamMessage {
    /// The outbox row's sequence number: unique and growing, the consumers' dedup key.
    pub id: u64,
    pub topic: String,
    pub key: String,
    /// JSON.
    pub payload: String,
    pub created_at: UnixMs,
}

impl From<OutboxMessage> for StreamMessage {
    fn from(row: OutboxMessage) -> Self {
        StreamMessage {
            id: row.seq,
            topic: row.topic,
            key: row.key,
            payload: row.payload,
            created_at: row.created_at,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    /// The reader asked for messages the stream no longer keeps.
    #[error("offset {requested} is no longer kept; the oldest is {oldest}")]
    Truncated { requested: u64, oldest: u64 },
    #[error("stream backend: {0}")]
    Backend(String),
}

#[async_trait]
pub trait TicketStream: Send + Sync + 'static {
    /// Appends a message; returns its offset.
    async fn publish(&self, message: StreamMessage) -> Result<u64, StreamError>;
    /// Up to `max` messages from offset `from` on, waiting up to `wait` for the first one;
    /// an empty answer means none arrived in time.
    async fn read(
        &self,
        from: u64,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<(u64, StreamMessage)>, StreamError>;
    /// The offset the next message will get.
    fn end_offset(&self) -> u64;
    /// Whether published messages survive a restart of this process.
    fn durable(&self) -> bool;
}

/// A consumer's position in a stream.
pub struct Subscription {
    stream: Arc<dyn TicketStream>,
    next: u64,
}

impl Subscription {
    pub fn new(stream: Arc<dyn TicketStream>, from: u64) -> Self {
        Subscription { stream, next: from }
    }

    /// The next messages; a reader that fell behind the retention skips to the oldest kept
    /// (and says so).
    pub async fn next_batch(
        &mut self,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<StreamMessage>, StreamError> {
        let batch = match self.stream.read(self.next, max, wait).await {
            Err(StreamError::Truncated { requested, oldest }) => {
                tracing::error!(
                    requested,
                    oldest,
                    "ticket stream reader fell behind; skipping to the oldest kept"
                );
                self.next = oldest;
                self.stream.read(self.next, max, wait).await?
            }
            other => other?,
        };
        if let Some((offset, _)) = batch.last() {
            self.next = offset + 1;
        }
        Ok(batch.into_iter().map(|(_, m)| m).collect())
    }

    pub fn position(&self) -> u64 {
        self.next
    }
}

struct Log {
    /// Offset of `messages[0]`.
    first: u64,
    messages: VecDeque<StreamMessage>,
}

/// The embedded stream: a bounded log in memory.
pub struct InProcessStream {
    log: Mutex<Log>,
    arrived: Notify,
    retention: usize,
}

impl Default for InProcessStream {
    fn default() -> Self {
        Self::with_retention(STREAM_RETENTION_MESSAGES)
    }
}

impl InProcessStream {
    pub fn with_retention(retention: usize) -> Self {
        InProcessStream {
            log: Mutex::new(Log { first: 0, messages: VecDeque::new() }),
            arrived: Notify::new(),
            retention: retention.max(1),
        }
    }

    fn take(&self, from: u64, max: usize) -> Result<Vec<(u64, StreamMessage)>, StreamError> {
        let log = self.log.lock();
        if from < log.first {
            return Err(StreamError::Truncated { requested: from, oldest: log.first });
        }
        let start = usize::try_from(from - log.first).unwrap_or(usize::MAX);
        Ok(log
            .messages
            .iter()
            .skip(start)
            .take(max)
            .enumerate()
            .map(|(i, m)| (from + i as u64, m.clone()))
            .collect())
    }
}

#[async_trait]
impl TicketStream for InProcessStream {
    async fn publish(&self, message: StreamMessage) -> Result<u64, StreamError> {
        let offset = {
            let mut log = self.log.lock();
            if log.messages.len() >= self.retention {
                log.messages.pop_front();
                log.first += 1;
            }
            log.messages.push_back(message);
            log.first + log.messages.len() as u64 - 1
        };
        self.arrived.notify_waiters();
        Ok(offset)
    }

    async fn read(
        &self,
        from: u64,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<(u64, StreamMessage)>, StreamError> {
        let arrived = self.arrived.notified();
        tokio::pin!(arrived);
        // Registered before looking, so that a publish in between is not missed.
        arrived.as_mut().enable();
        let batch = self.take(from, max)?;
        if !batch.is_empty() {
            return Ok(batch);
        }
        let _ = tokio::time::timeout(wait, arrived).await;
        self.take(from, max)
    }

    fn end_offset(&self) -> u64 {
        let log = self.log.lock();
        log.first + log.messages.len() as u64
    }

    fn durable(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(id: u64) -> StreamMessage {
        StreamMessage {
            id,
            topic: "order.created".into(),
            key: format!("or_{id}"),
            payload: "{}".into(),
            created_at: 0,
        }
    }

    #[tokio::test]
    async fn subscribers_read_in_order_from_their_offset() {
        let stream: Arc<dyn TicketStream> = Arc::new(InProcessStream::default());
        for id in 1..=5 {
            stream.publish(message(id)).await.unwrap();
        }
        let mut all = Subscription::new(stream.clone(), 0);
        let ids: Vec<u64> = all.next_batch(3, Duration::ZERO).await.unwrap().iter().map(|m| m.id).collect();
        assert_eq!(ids, [1, 2, 3]);
        let ids: Vec<u64> = all.next_batch(10, Duration::ZERO).await.unwrap().iter().map(|m| m.id).collect();
        assert_eq!(ids, [4, 5]);
        assert!(all.next_batch(10, Duration::from_millis(10)).await.unwrap().is_empty());
        let mut late = Subscription::new(stream.clone(), 3);
        assert_eq!(late.next_batch(10, Duration::ZERO).await.unwrap()[0].id, 4);
        assert_eq!(stream.end_offset(), 5);
    }

    #[tokio::test]
    async fn a_waiting_reader_wakes_on_publish() {
        let stream = Arc::new(InProcessStream::default());
        let reader = {
            let stream = stream.clone();
            tokio::spawn(async move { stream.read(0, 10, Duration::from_secs(30)).await })
        };
        tokio::task::yield_now().await;
        stream.publish(message(9)).await.unwrap();
        let got = reader.await.unwrap().unwrap();
        assert_eq!(got[0].1.id, 9);
    }

    #[tokio::test]
    async fn a_reader_behind_the_retention_skips_to_the_oldest_kept() {
        let stream: Arc<dyn TicketStream> = Arc::new(InProcessStream::with_retention(2));
        for id in 1..=4 {
            stream.publish(message(id)).await.unwrap();
        }
        assert_eq!(
            stream.read(0, 10, Duration::ZERO).await,
            Err(StreamError::Truncated { requested: 0, oldest: 2 })
        );
        let mut sub = Subscription::new(stream, 0);
        let ids: Vec<u64> = sub.next_batch(10, Duration::ZERO).await.unwrap().iter().map(|m| m.id).collect();
        assert_eq!(ids, [3, 4]);
    }
}
