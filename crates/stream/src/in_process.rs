//! The embedded stream: a bounded log in memory, with the durable consumers' state beside
//! it (the next offset to hand out and the deliveries waiting for an ack). Everything sits
//! behind one mutex that is never held across an `.await`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::{
    AckToken, DEFAULT_ACK_WAIT, Delivery, Replay, StreamError, StreamMessage, Subscription, TicketStream,
};

/// Messages the in-process stream keeps; a consumer further behind loses the oldest.
pub const STREAM_RETENTION_MESSAGES: usize = 100_000;

/// The embedded stream: a bounded log in memory.
pub struct InProcessStream {
    shared: Arc<Shared>,
}

struct Shared {
    log: Mutex<Log>,
    /// Wakes waiting subscriptions when a message is appended.
    arrived: Notify,
    retention: usize,
    ack_wait: Duration,
}

struct Log {
    /// Offset of `messages[0]`.
    first: u64,
    messages: VecDeque<StreamMessage>,
    /// Offset of each kept message by id: the publish de-duplication window.
    offsets_by_id: HashMap<u64, u64>,
    consumers: HashMap<String, ConsumerState>,
}

struct ConsumerState {
    /// The next offset never delivered.
    next: u64,
    /// Delivered, not yet acknowledged: offset -> (redelivery due, deliveries so far).
    unacked: BTreeMap<u64, (Instant, u64)>,
}

impl Default for InProcessStream {
    fn default() -> Self {
        Self::new(STREAM_RETENTION_MESSAGES, DEFAULT_ACK_WAIT)
    }
}

impl InProcessStream {
    /// A stream that keeps the newest `retention` messages and delivers a message again
    /// when it was not acknowledged within `ack_wait`.
    pub fn new(retention: usize, ack_wait: Duration) -> Self {
        InProcessStream {
            shared: Arc::new(Shared {
                log: Mutex::new(Log {
                    first: 1,
                    messages: VecDeque::new(),
                    offsets_by_id: HashMap::new(),
                    consumers: HashMap::new(),
                }),
                arrived: Notify::new(),
                retention: retention.max(1),
                ack_wait,
            }),
        }
    }
}

impl Log {
    fn end(&self) -> u64 {
        self.first + self.messages.len() as u64
    }

    fn get(&self, offset: u64) -> Option<&StreamMessage> {
        let index = usize::try_from(offset.checked_sub(self.first)?).ok()?;
        self.messages.get(index)
    }
}

impl Shared {
    /// Hands out up to `max` deliveries of `consumer` at `now`: redeliveries due first, then
    /// new messages. Also returns when the earliest unacknowledged delivery falls due.
    fn take(&self, consumer: &str, max: usize, now: Instant) -> (Vec<Delivery>, Option<Instant>) {
        let mut log = self.log.lock();
        let first = log.first;
        let end = log.end();
        let mut state =
            log.consumers.remove(consumer).unwrap_or(ConsumerState { next: first, unacked: BTreeMap::new() });
        let lost = state.unacked.range(..first).count();
        if lost > 0 {
            tracing::error!(
                consumer,
                lost,
                "unacknowledged ticket stream messages fell out of the retention"
            );
            state.unacked = state.unacked.split_off(&first);
        }
        let mut batch = Vec::new();
        for (&offset, (due, attempts)) in state.unacked.iter_mut() {
            if batch.len() >= max {
                break;
            }
            if *due > now {
                continue;
            }
            let message = log.get(offset).expect("unacknowledged offsets are kept").clone();
            *due = now + self.ack_wait;
            *attempts += 1;
            batch.push(Delivery { offset, attempt: *attempts, message, ack: AckToken::Offset });
        }
        if state.next < first {
            tracing::error!(
                consumer,
                requested = state.next,
                oldest = first,
                "ticket stream consumer fell behind the retention; skipping to the oldest kept"
            );
            state.next = first;
        }
        while batch.len() < max && state.next < end {
            let offset = state.next;
            let message = log.get(offset).expect("offsets below the end are kept").clone();
            state.unacked.insert(offset, (now + self.ack_wait, 1));
            batch.push(Delivery { offset, attempt: 1, message, ack: AckToken::Offset });
            state.next += 1;
        }
        let next_due = state.unacked.values().map(|(due, _)| *due).min();
        log.consumers.insert(consumer.to_owned(), state);
        (batch, next_due)
    }
}

#[async_trait]
impl TicketStream for InProcessStream {
    async fn publish(&self, message: StreamMessage) -> Result<u64, StreamError> {
        let offset = {
            let mut log = self.shared.log.lock();
            if let Some(&offset) = log.offsets_by_id.get(&message.id) {
                return Ok(offset);
            }
            if log.messages.len() >= self.shared.retention
                && let Some(oldest) = log.messages.pop_front()
            {
                let first = log.first;
                if log.offsets_by_id.get(&oldest.id) == Some(&first) {
                    log.offsets_by_id.remove(&oldest.id);
                }
                log.first += 1;
            }
            let offset = log.end();
            log.offsets_by_id.insert(message.id, offset);
            log.messages.push_back(message);
            offset
        };
        self.shared.arrived.notify_waiters();
        Ok(offset)
    }

    async fn subscribe(&self, consumer: &str) -> Result<Box<dyn Subscription>, StreamError> {
        if consumer.is_empty() {
            return Err(StreamError::Invalid("a consumer needs a name".into()));
        }
        {
            let mut log = self.shared.log.lock();
            let first = log.first;
            log.consumers
                .entry(consumer.to_owned())
                .or_insert(ConsumerState { next: first, unacked: BTreeMap::new() });
        }
        Ok(Box::new(InProcessSubscription { shared: self.shared.clone(), consumer: consumer.to_owned() }))
    }

    async fn read_from(&self, from: u64) -> Result<Box<dyn Replay>, StreamError> {
        let from = from.max(1);
        let log = self.shared.log.lock();
        if from < log.first {
            return Err(StreamError::Truncated { requested: from, oldest: log.first });
        }
        Ok(Box::new(InProcessReplay { shared: self.shared.clone(), next: from, through: log.end() - 1 }))
    }

    async fn last_offset(&self) -> Result<u64, StreamError> {
        Ok(self.shared.log.lock().end() - 1)
    }

    fn durable(&self) -> bool {
        false
    }
}

struct InProcessSubscription {
    shared: Arc<Shared>,
    consumer: String,
}

#[async_trait]
impl Subscription for InProcessSubscription {
    async fn next_batch(&mut self, max: usize, wait: Duration) -> Result<Vec<Delivery>, StreamError> {
        let deadline = Instant::now() + wait;
        loop {
            let arrived = self.shared.arrived.notified();
            tokio::pin!(arrived);
            // Registered before looking, so that a publish in between is not missed.
            arrived.as_mut().enable();
            let now = Instant::now();
            let (batch, next_due) = self.shared.take(&self.consumer, max.max(1), now);
            if !batch.is_empty() || now >= deadline {
                return Ok(batch);
            }
            let until = next_due.map_or(deadline, |due| due.min(deadline));
            let _ = tokio::time::timeout_at(until, arrived).await;
        }
    }

    async fn ack(&mut self, delivery: &Delivery) -> Result<(), StreamError> {
        let mut log = self.shared.log.lock();
        if let Some(state) = log.consumers.get_mut(&self.consumer) {
            state.unacked.remove(&delivery.offset);
        }
        Ok(())
    }
}

struct InProcessReplay {
    shared: Arc<Shared>,
    next: u64,
    through: u64,
}

#[async_trait]
impl Replay for InProcessReplay {
    async fn next_batch(&mut self, max: usize) -> Result<Vec<(u64, StreamMessage)>, StreamError> {
        let log = self.shared.log.lock();
        if self.next < log.first && self.next <= self.through {
            return Err(StreamError::Truncated { requested: self.next, oldest: log.first });
        }
        let mut batch = Vec::new();
        while batch.len() < max.max(1) && self.next <= self.through {
            let message = log.get(self.next).expect("offsets between first and the end are kept").clone();
            batch.push((self.next, message));
            self.next += 1;
        }
        Ok(batch)
    }

    fn through(&self) -> u64 {
        self.through
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
    async fn a_consumer_behind_the_retention_skips_to_the_oldest_kept() {
        let stream = InProcessStream::new(2, DEFAULT_ACK_WAIT);
        let mut early = stream.subscribe("worker").await.unwrap();
        for id in 1..=4 {
            stream.publish(message(id)).await.unwrap();
        }
        let batch = early.next_batch(10, Duration::ZERO).await.unwrap();
        let ids: Vec<u64> = batch.iter().map(|d| d.message.id).collect();
        assert_eq!(ids, [3, 4]);
        assert_eq!(batch[0].offset, 3);
        assert!(matches!(stream.read_from(1).await, Err(StreamError::Truncated { requested: 1, oldest: 3 })));
    }

    #[tokio::test]
    async fn a_waiting_subscription_wakes_on_publish() {
        let stream = Arc::new(InProcessStream::default());
        let mut subscription = stream.subscribe("worker").await.unwrap();
        let reader = tokio::spawn(async move { subscription.next_batch(10, Duration::from_secs(30)).await });
        tokio::task::yield_now().await;
        stream.publish(message(9)).await.unwrap();
        let got = tokio::time::timeout(Duration::from_secs(5), reader).await.unwrap().unwrap().unwrap();
        assert_eq!(got[0].message.id, 9);
    }

    #[tokio::test(start_paused = true)]
    async fn an_unacknowledged_message_falls_due_after_the_ack_wait() {
        let stream = InProcessStream::new(10, Duration::from_secs(30));
        let mut worker = stream.subscribe("worker").await.unwrap();
        stream.publish(message(1)).await.unwrap();
        assert_eq!(worker.next_batch(10, Duration::ZERO).await.unwrap().len(), 1);
        assert!(worker.next_batch(10, Duration::from_secs(29)).await.unwrap().is_empty());
        let again = worker.next_batch(10, Duration::from_secs(2)).await.unwrap();
        assert_eq!((again[0].offset, again[0].attempt), (1, 2));
        worker.ack(&again[0]).await.unwrap();
        assert!(worker.next_batch(10, Duration::from_secs(60)).await.unwrap().is_empty());
    }
}
