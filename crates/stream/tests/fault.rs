//! A NATS server that dies mid-stream: this test runs its own `nats-server` (JetStream, a
//! free port, a temp store dir), kills it while a publisher keeps publishing and an
//! idempotent consumer keeps consuming, and starts it again on the same port and store.
//! Nothing published may be lost, none may be stored twice, and no message may have its
//! effect twice. The machine's shared NATS is never touched.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use boxoffice_stream::{JetStreamStream, TicketStream};
use common::{fresh_config, message};
use parking_lot::Mutex;

const NATS_SERVER: &str = "/usr/sbin/nats-server";
const MESSAGES: u64 = 400;

/// A `nats-server` of this test's own, killed when dropped.
struct OwnServer(Child);

impl OwnServer {
    fn start(port: u16, store: &Path) -> OwnServer {
        let child = Command::new(NATS_SERVER)
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(store)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server is installed at /usr/sbin/nats-server");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "nats-server did not come up on port {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        OwnServer(child)
    }

    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        self.kill();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_and_restarted_nats_loses_nothing_and_duplicates_no_effect() {
    let store = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut server = OwnServer::start(port, store.path());
    let config = fresh_config(&format!("nats://127.0.0.1:{port}"), Duration::from_secs(2));
    let stream: Arc<dyn TicketStream> = Arc::new(JetStreamStream::connect(config).await.unwrap());

    // The relay: publishes each id until it is acknowledged, like an outbox row that stays
    // unsent until the publish ack.
    let published = Arc::new(AtomicU64::new(0));
    let publish_failures = Arc::new(AtomicU64::new(0));
    let publisher = {
        let (stream, published, failures) = (stream.clone(), published.clone(), publish_failures.clone());
        tokio::spawn(async move {
            for id in 1..=MESSAGES {
                while stream.publish(message(id)).await.is_err() {
                    failures.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                published.store(id, Ordering::Release);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };

    // The worker: its effect is keyed by message id (as a mail file is named by order id),
    // so a redelivery finds the effect done and does nothing.
    let effects: Arc<Mutex<BTreeMap<u64, u64>>> = Arc::default();
    let deliveries = Arc::new(AtomicU64::new(0));
    let consumer = {
        let (stream, effects, deliveries) = (stream.clone(), effects.clone(), deliveries.clone());
        tokio::spawn(async move {
            let mut subscription = loop {
                match stream.subscribe("worker").await {
                    Ok(subscription) => break subscription,
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            };
            while effects.lock().len() < MESSAGES as usize {
                let batch = match subscription.next_batch(32, Duration::from_millis(500)).await {
                    Ok(batch) => batch,
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                for delivery in batch {
                    deliveries.fetch_add(1, Ordering::Relaxed);
                    // Done once: a redelivery finds the effect and leaves it.
                    effects.lock().entry(delivery.message.id).or_insert(delivery.offset);
                    // A lost ack only means a redelivery.
                    let _ = subscription.ack(&delivery).await;
                }
            }
        })
    };

    // Kill the server a third of the way in, keep it down a while, start it again.
    while published.load(Ordering::Acquire) < MESSAGES / 3 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.kill();
    let at_kill = published.load(Ordering::Acquire);
    // Down longer than a publish waits for its ack: the publisher's retries overlap with
    // the copies the client buffered while disconnected.
    tokio::time::sleep(Duration::from_secs(7)).await;
    let mut server = OwnServer::start(port, store.path());

    tokio::time::timeout(Duration::from_secs(90), publisher).await.expect("the publisher finishes").unwrap();
    tokio::time::timeout(Duration::from_secs(90), consumer)
        .await
        .expect("the consumer gets everything")
        .unwrap();

    let effects = effects.lock().clone();
    assert_eq!(
        effects.keys().copied().collect::<Vec<_>>(),
        (1..=MESSAGES).collect::<Vec<_>>(),
        "nothing lost"
    );
    // Stored once each: the retried publishes were de-duplicated by their message id.
    assert_eq!(stream.last_offset().await.unwrap(), MESSAGES, "no message stored twice");
    let mut replay = stream.read_from(1).await.unwrap();
    let mut stored = Vec::new();
    loop {
        let batch = replay.next_batch(100).await.unwrap();
        if batch.is_empty() {
            break;
        }
        stored.extend(batch.into_iter().map(|(_, m)| m.id));
    }
    assert_eq!(stored, (1..=MESSAGES).collect::<Vec<_>>());
    let deliveries = deliveries.load(Ordering::Relaxed);
    assert!(deliveries >= MESSAGES);
    assert!(at_kill < MESSAGES, "the server was killed mid-stream");
    eprintln!(
        "killed after {at_kill} publishes; {} publish attempts failed while it was down; {deliveries} deliveries \
         for {MESSAGES} messages ({} redelivered)",
        publish_failures.load(Ordering::Relaxed),
        deliveries - MESSAGES
    );
    server.kill();
}
