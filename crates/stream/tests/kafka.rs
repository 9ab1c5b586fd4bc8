//! What only the Kafka-protocol backend has: its bookkeeping in PostgreSQL beside the
//! broker's log. Each test starts its own `tansu` broker (ignored unless asked for: see
//! `tests/conformance.rs`); the unreachable-broker test needs none.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use boxoffice_stream::{KafkaConfig, KafkaStream, StreamError, StreamMessage, TicketStream};
use common::{Broker, POSTGRES_URL, fresh_kafka_config, message};
use rskafka::client::ClientBuilder;
use rskafka::client::partition::{Compression, UnknownTopicHandling};
use rskafka::record::Record;

/// An order message of `event`.
fn order_of(id: u64, event: &str) -> StreamMessage {
    StreamMessage { payload: format!(r#"{{"event_id":"{event}","order_id":"or_{id}"}}"#), ..message(id) }
}

/// Cleans the topic's rows up however the test ends.
struct Cleanup(KafkaConfig);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let (url, topic) = (self.0.database_url.clone(), self.0.topic.clone());
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime.block_on(KafkaStream::delete_bookkeeping(&url, &topic)).map_err(std::io::Error::other)
        })
        .join();
    }
}

#[tokio::test]
#[ignore = "needs the tansu broker: scripts/install-tansu.sh"]
async fn kafka_records_no_log_row_names_are_never_delivered() {
    let broker = Broker::start();
    let config = fresh_kafka_config(&broker, Duration::from_secs(30));
    let _cleanup = Cleanup(config.clone());
    let stream = KafkaStream::connect(config.clone()).await.expect("the broker answers");
    stream.publish(order_of(1, "ev_1")).await.unwrap();
    // What a node that died after producing and before committing leaves behind: a record
    // on the topic that no log row names (here written straight to every partition).
    let client = ClientBuilder::new(vec![broker.address.clone()]).build().await.unwrap();
    for partition in 0..i32::from(config.partitions) {
        let pc = client
            .partition_client(config.topic.clone(), partition, UnknownTopicHandling::Retry)
            .await
            .unwrap();
        let orphan = Record {
            key: Some(b"ev_1".to_vec()),
            value: Some(serde_json::to_vec(&order_of(2, "ev_1")).unwrap()),
            headers: BTreeMap::new(),
            timestamp: chrono::Utc::now(),
        };
        pc.produce(vec![orphan], Compression::NoCompression).await.unwrap();
    }
    // The retried publish of #2 gets the next offset; the consumer sees #1 and #2 once.
    assert_eq!(stream.publish(order_of(2, "ev_1")).await.unwrap(), 2);
    assert_eq!(stream.publish(order_of(3, "ev_2")).await.unwrap(), 3);
    let mut worker = stream.subscribe("worker").await.unwrap();
    let mut got = Vec::new();
    for _ in 0..40 {
        for delivery in worker.next_batch(10, Duration::from_millis(250)).await.unwrap() {
            worker.ack(&delivery).await.unwrap();
            got.push((delivery.offset, delivery.message.id));
        }
        if got.len() >= 3 {
            break;
        }
    }
    assert_eq!(got, vec![(1, 1), (2, 2), (3, 3)]);
    assert!(worker.next_batch(10, Duration::from_millis(300)).await.unwrap().is_empty());
    let mut replay = stream.read_from(1).await.unwrap();
    let read: Vec<u64> = replay.next_batch(10).await.unwrap().into_iter().map(|(_, m)| m.id).collect();
    assert_eq!(read, vec![1, 2, 3]);
}

#[tokio::test]
#[ignore = "needs the tansu broker: scripts/install-tansu.sh"]
async fn kafka_one_events_messages_share_a_partition_and_nodes_share_a_consumer() {
    let broker = Broker::start();
    let mut config = fresh_kafka_config(&broker, Duration::from_secs(30));
    config.partitions = 4;
    let _cleanup = Cleanup(config.clone());
    // Two nodes: two connections, one topic, one consumer name.
    let a = KafkaStream::connect(config.clone()).await.expect("the broker answers");
    let b = KafkaStream::connect(config.clone()).await.expect("the broker answers");
    for id in 1..=40u64 {
        let node = if id % 2 == 0 { &a } else { &b };
        assert_eq!(node.publish(order_of(id, &format!("ev_{}", id % 5))).await.unwrap(), id);
    }
    let pool = sqlx::PgPool::connect(POSTGRES_URL).await.unwrap();
    let rows: Vec<(i64, i32)> = sqlx::query_as(
        "SELECT message_id, kafka_partition FROM stream_kafka_log WHERE topic = $1 ORDER BY message_id",
    )
    .bind(&config.topic)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(rows.len(), 40);
    let mut partition_of_event: BTreeMap<u64, i32> = BTreeMap::new();
    for (id, partition) in &rows {
        let before = partition_of_event.insert(*id as u64 % 5, *partition);
        assert!(before.is_none_or(|p| p == *partition), "event ev_{} on two partitions", id % 5);
    }
    let used: HashSet<i32> = partition_of_event.values().copied().collect();
    assert!(used.len() > 1, "five events on one partition of four: {partition_of_event:?}");

    let mut on_a = a.subscribe("worker").await.unwrap();
    let mut on_b = b.subscribe("worker").await.unwrap();
    let mut seen = HashSet::new();
    for round in 0..100 {
        let member = if round % 2 == 0 { &mut on_a } else { &mut on_b };
        for delivery in member.next_batch(7, Duration::from_millis(100)).await.unwrap() {
            assert!(seen.insert(delivery.message.id), "message {} handled twice", delivery.message.id);
            member.ack(&delivery).await.unwrap();
        }
        if seen.len() == 40 {
            break;
        }
    }
    assert_eq!(seen.len(), 40, "every message handled once by one of the two nodes");
}

#[tokio::test]
async fn kafka_an_unreachable_broker_fails_after_the_connect_timeout_naming_it() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut config = KafkaConfig::new(vec![format!("127.0.0.1:{port}")], POSTGRES_URL);
    config.topic = format!("boxoffice.test-{:016x}", rand::random::<u64>());
    config.connect_timeout = Duration::from_secs(2);
    let _cleanup = Cleanup(config.clone());
    let started = std::time::Instant::now();
    let error = KafkaStream::connect(config).await.err().expect("nothing listens there");
    assert!(matches!(error, StreamError::Unreachable { .. }), "{error:?}");
    assert!(error.to_string().contains(&format!("kafka://127.0.0.1:{port}")), "{error}");
    assert!(started.elapsed() >= Duration::from_secs(2), "it kept trying for the whole timeout");

    let bad = KafkaConfig {
        topic: "no spaces".into(),
        ..KafkaConfig::new(vec!["127.0.0.1:1".into()], POSTGRES_URL)
    };
    assert!(matches!(KafkaStream::connect(bad).await.err(), Some(StreamError::Invalid(_))));
    let none = KafkaConfig { partitions: 0, ..KafkaConfig::new(vec!["127.0.0.1:1".into()], POSTGRES_URL) };
    assert!(matches!(KafkaStream::connect(none).await.err(), Some(StreamError::Invalid(_))));
}
