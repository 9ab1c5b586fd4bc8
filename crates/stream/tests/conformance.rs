//! The ticket stream's contract, run against every backend: the in-process stream, NATS
//! JetStream (the machine's server at 127.0.0.1:4222, a fresh stream per test) and a
//! Kafka-protocol broker (a `tansu` of the test's own, a fresh topic per test; these are
//! ignored unless asked for, since the broker is not on every machine).

mod common;

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

use boxoffice_stream::{
    DEFAULT_ACK_WAIT, Delivery, JetStreamConfig, JetStreamStream, StreamError, Subscription,
};
use common::{Backend, Fixture, message};
use parking_lot::Mutex;

/// Takes deliveries until `count` arrived (acknowledging each when `ack`), or panics after
/// a while.
async fn take(subscription: &mut Box<dyn Subscription>, count: usize, ack: bool) -> Vec<Delivery> {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while got.len() < count {
        assert!(tokio::time::Instant::now() < deadline, "only {} of {count} messages came", got.len());
        for delivery in subscription.next_batch(count - got.len(), Duration::from_millis(500)).await.unwrap()
        {
            if ack {
                subscription.ack(&delivery).await.unwrap();
            }
            got.push(delivery);
        }
    }
    got
}

async fn messages_come_in_publish_order_with_growing_offsets(backend: Backend) {
    let fixture = Fixture::new(backend, DEFAULT_ACK_WAIT).await;
    let mut offsets = Vec::new();
    for id in 1..=20 {
        offsets.push(fixture.stream.publish(message(id)).await.unwrap());
    }
    assert_eq!(offsets, (1..=20).collect::<Vec<u64>>(), "offsets are stream sequence numbers from 1");
    assert_eq!(fixture.stream.last_offset().await.unwrap(), 20);
    let mut worker = fixture.stream.subscribe("worker").await.unwrap();
    let got = take(&mut worker, 20, true).await;
    assert_eq!(
        got.iter().map(|d| d.message.clone()).collect::<Vec<_>>(),
        (1..=20).map(message).collect::<Vec<_>>()
    );
    assert_eq!(got.iter().map(|d| d.offset).collect::<Vec<_>>(), offsets);
    assert!(got.iter().all(|d| d.attempt == 1 && !d.is_redelivery()));
    assert!(worker.next_batch(10, Duration::from_millis(300)).await.unwrap().is_empty());
}

async fn an_unacknowledged_message_is_delivered_again_and_an_acknowledged_one_is_not(backend: Backend) {
    let fixture = Fixture::new(backend, Duration::from_secs(1)).await;
    for id in 1..=3 {
        fixture.stream.publish(message(id)).await.unwrap();
    }
    {
        // A worker that handles #2 and then dies before acknowledging #1 and #3.
        let mut crashed = fixture.stream.subscribe("worker").await.unwrap();
        let got = take(&mut crashed, 3, false).await;
        let second = got.iter().find(|d| d.message.id == 2).unwrap();
        crashed.ack(second).await.unwrap();
    }
    let mut next = fixture.stream.subscribe("worker").await.unwrap();
    let again = take(&mut next, 2, true).await;
    let ids: BTreeSet<u64> = again.iter().map(|d| d.message.id).collect();
    assert_eq!(ids, [1, 3].into(), "exactly the unacknowledged messages come again");
    assert!(again.iter().all(|d| d.attempt == 2 && d.is_redelivery()), "{again:?}");
    // Acknowledged now: nothing comes a third time, even after the ack wait.
    assert!(next.next_batch(10, Duration::from_millis(2500)).await.unwrap().is_empty());
}

async fn a_republished_id_is_stored_once(backend: Backend) {
    let fixture = Fixture::new(backend, DEFAULT_ACK_WAIT).await;
    let first = fixture.stream.publish(message(7)).await.unwrap();
    let other = fixture.stream.publish(message(8)).await.unwrap();
    // The relay crashed after publishing #7 and before marking it sent: it publishes again.
    assert_eq!(fixture.stream.publish(message(7)).await.unwrap(), first, "the first copy's offset");
    assert_eq!(fixture.stream.last_offset().await.unwrap(), other);
    let mut worker = fixture.stream.subscribe("worker").await.unwrap();
    let ids: Vec<u64> = take(&mut worker, 2, true).await.iter().map(|d| d.message.id).collect();
    assert_eq!(ids, [7, 8]);
    assert!(worker.next_batch(10, Duration::from_millis(300)).await.unwrap().is_empty());
}

async fn two_members_of_one_consumer_never_both_get_a_message(backend: Backend) {
    const MESSAGES: u64 = 300;
    let fixture = Fixture::new(backend, DEFAULT_ACK_WAIT).await;
    for id in 1..=MESSAGES {
        fixture.stream.publish(message(id)).await.unwrap();
    }
    let handled: Arc<Mutex<Vec<(usize, u64)>>> = Arc::default();
    let mut nodes = Vec::new();
    for node in 0..2 {
        let mut subscription = fixture.stream.subscribe("worker").await.unwrap();
        let handled = handled.clone();
        nodes.push(tokio::spawn(async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
            while handled.lock().len() < MESSAGES as usize && tokio::time::Instant::now() < deadline {
                for delivery in subscription.next_batch(10, Duration::from_millis(200)).await.unwrap() {
                    handled.lock().push((node, delivery.message.id));
                    tokio::task::yield_now().await;
                    subscription.ack(&delivery).await.unwrap();
                }
            }
        }));
    }
    for node in nodes {
        node.await.unwrap();
    }
    let handled = handled.lock().clone();
    let ids: HashSet<u64> = handled.iter().map(|(_, id)| *id).collect();
    assert_eq!(handled.len(), MESSAGES as usize, "no message handled twice");
    assert_eq!(ids, (1..=MESSAGES).collect(), "every message handled");
}

async fn replay_reads_in_order_from_an_offset_and_leaves_the_consumer_alone(backend: Backend) {
    let fixture = Fixture::new(backend, DEFAULT_ACK_WAIT).await;
    let mut offsets = Vec::new();
    for id in 101..=110 {
        offsets.push(fixture.stream.publish(message(id)).await.unwrap());
    }
    let mut worker = fixture.stream.subscribe("worker").await.unwrap();
    take(&mut worker, 10, true).await;

    let mut replay = fixture.stream.read_from(offsets[3]).await.unwrap();
    assert_eq!(replay.through(), offsets[9]);
    // Published after the replay began: not part of it.
    let late = fixture.stream.publish(message(111)).await.unwrap();
    let mut read = Vec::new();
    loop {
        let batch = replay.next_batch(3).await.unwrap();
        if batch.is_empty() {
            break;
        }
        assert!(batch.len() <= 3);
        read.extend(batch);
    }
    assert_eq!(read.iter().map(|(offset, _)| *offset).collect::<Vec<_>>(), offsets[3..].to_vec());
    assert_eq!(read.iter().map(|(_, m)| m.id).collect::<Vec<_>>(), (104..=110).collect::<Vec<_>>());
    assert!(replay.next_batch(10).await.unwrap().is_empty(), "a finished replay stays finished");

    // The consumer only sees what is new to it.
    let got = take(&mut worker, 1, true).await;
    assert_eq!((got[0].offset, got[0].message.id), (late, 111));
    assert!(worker.next_batch(10, Duration::from_millis(300)).await.unwrap().is_empty());

    // From 0 reads like from 1; from past the end reads nothing.
    let mut all = fixture.stream.read_from(0).await.unwrap();
    assert_eq!(all.next_batch(100).await.unwrap().len(), 11);
    let mut none = fixture.stream.read_from(late + 1).await.unwrap();
    assert!(none.next_batch(100).await.unwrap().is_empty());
}

macro_rules! conformance {
    ($($test:ident),* $(,)?) => {
        mod in_process {
            $(
                #[tokio::test]
                async fn $test() {
                    super::$test(super::Backend::InProcess).await;
                }
            )*
        }
        mod jetstream {
            $(
                #[tokio::test]
                async fn $test() {
                    super::$test(super::Backend::JetStream).await;
                }
            )*
        }
        mod kafka {
            $(
                #[tokio::test]
                #[ignore = "needs the tansu broker: scripts/install-tansu.sh, then `cargo test -p boxoffice-stream --test conformance -- --ignored kafka` (.ci/run does when it is installed)"]
                async fn $test() {
                    super::$test(super::Backend::Kafka).await;
                }
            )*
        }
    };
}

conformance!(
    messages_come_in_publish_order_with_growing_offsets,
    an_unacknowledged_message_is_delivered_again_and_an_acknowledged_one_is_not,
    a_republished_id_is_stored_once,
    two_members_of_one_consumer_never_both_get_a_message,
    replay_reads_in_order_from_an_offset_and_leaves_the_consumer_alone,
);

#[tokio::test]
async fn an_unreachable_nats_fails_after_the_connect_timeout_naming_the_url() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("nats://127.0.0.1:{port}");
    let started = std::time::Instant::now();
    let result = JetStreamStream::connect(JetStreamConfig {
        connect_timeout: Duration::from_secs(2),
        ..JetStreamConfig::new(url.clone())
    })
    .await;
    let elapsed = started.elapsed();
    let Err(error) = result else { panic!("connected to nothing") };
    assert!(matches!(error, StreamError::Unreachable { .. }), "{error:?}");
    assert!(error.to_string().contains(&url), "{error}");
    assert!(elapsed >= Duration::from_secs(2), "it kept trying for the whole timeout: {elapsed:?}");
    assert!(elapsed < Duration::from_secs(5), "and gave up in time: {elapsed:?}");
}

#[tokio::test]
async fn bad_names_are_refused_before_connecting() {
    for (stream, subjects) in [("has.dot", "a.>"), ("OK", "no-wildcard"), ("OK", ">"), ("OK", "a.*.>")] {
        let config = JetStreamConfig {
            stream: stream.into(),
            subjects: subjects.into(),
            ..JetStreamConfig::new(common::NATS_URL)
        };
        assert!(
            matches!(JetStreamStream::connect(config).await, Err(StreamError::Invalid(_))),
            "{stream} {subjects}"
        );
    }
}
