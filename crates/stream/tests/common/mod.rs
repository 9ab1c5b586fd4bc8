//! What the stream tests share: messages, and a fresh stream per test on either backend
//! (JetStream: the machine's NATS at 127.0.0.1:4222, a random stream name and subject,
//! deleted at the end even when the test fails).

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use boxoffice_stream::{
    InProcessStream, JetStreamConfig, JetStreamStream, KafkaConfig, KafkaStream, StreamMessage, TicketStream,
};

/// The NATS server the machine runs for tests.
pub const NATS_URL: &str = "nats://127.0.0.1:4222";

pub fn message(id: u64) -> StreamMessage {
    StreamMessage {
        id,
        topic: "order.created".into(),
        key: format!("or_{id}"),
        payload: format!("{{\"n\":{id}}}"),
        created_at: 1_700_000_000_000 + id,
    }
}

/// A JetStream config with a stream name and subjects no other test uses.
pub fn fresh_config(url: &str, ack_wait: Duration) -> JetStreamConfig {
    let tag: u64 = rand::random();
    JetStreamConfig {
        url: url.into(),
        stream: format!("BOXOFFICE_TEST_{tag:016x}"),
        subjects: format!("boxoffice.test{tag:016x}.>"),
        ack_wait,
        connect_timeout: Duration::from_secs(10),
    }
}

/// The PostgreSQL the machine runs for tests (the Kafka backend keeps its bookkeeping
/// there, in rows of the test's own topic).
pub const POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

#[derive(Debug, Clone, Copy)]
pub enum Backend {
    InProcess,
    JetStream,
    Kafka,
}

pub use boxoffice_stream::tansu::Broker;

/// A Kafka config with a topic no other test uses.
pub fn fresh_kafka_config(broker: &Broker, ack_wait: Duration) -> KafkaConfig {
    let tag: u64 = rand::random();
    let mut config = KafkaConfig::new(vec![broker.address.clone()], POSTGRES_URL);
    config.topic = format!("boxoffice.test-{tag:016x}");
    config.ack_wait = ack_wait;
    config.connect_timeout = Duration::from_secs(20);
    config
}

/// A fresh stream; the JetStream one is deleted when this is dropped.
pub struct Fixture {
    pub stream: Arc<dyn TicketStream>,
    jetstream: Option<JetStreamConfig>,
    kafka: Option<(Arc<KafkaStream>, Broker)>,
}

impl Fixture {
    pub async fn new(backend: Backend, ack_wait: Duration) -> Fixture {
        match backend {
            Backend::InProcess => Fixture {
                stream: Arc::new(InProcessStream::new(10_000, ack_wait)),
                jetstream: None,
                kafka: None,
            },
            Backend::JetStream => {
                let config = fresh_config(NATS_URL, ack_wait);
                let stream = JetStreamStream::connect(config.clone()).await.expect("the machine's NATS runs");
                Fixture { stream: Arc::new(stream), jetstream: Some(config), kafka: None }
            }
            Backend::Kafka => {
                let broker = Broker::start();
                let stream = Arc::new(
                    KafkaStream::connect(fresh_kafka_config(&broker, ack_wait))
                        .await
                        .expect("the test's broker and the machine's PostgreSQL answer"),
                );
                Fixture { stream: stream.clone(), jetstream: None, kafka: Some((stream, broker)) }
            }
        }
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Some((stream, broker)) = self.kafka.take() {
            // The topic's bookkeeping rows live in the shared test database: remove them
            // (the broker and its in-memory topic go with the process).
            let deleted = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
                let config = stream.config();
                runtime
                    .block_on(KafkaStream::delete_bookkeeping(&config.database_url, &config.topic))
                    .map_err(std::io::Error::other)
            })
            .join();
            drop(broker);
            if !matches!(deleted, Ok(Ok(()))) {
                eprintln!("could not delete a test topic's rows: {deleted:?}");
            }
        }
        let Some(config) = self.jetstream.take() else { return };
        // On a thread of its own: the test's runtime may be the one shutting down.
        let deleted = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime.block_on(async {
                let stream = JetStreamStream::connect(config).await.map_err(std::io::Error::other)?;
                stream.delete_stream().await.map_err(std::io::Error::other)
            })
        })
        .join();
        if !matches!(deleted, Ok(Ok(()))) {
            eprintln!("could not delete a test stream: {deleted:?}");
        }
    }
}
