//! The open model's pacing. A run at `rate` requests/s over `n` connections gives
//! connection `c` the intended start times `(c + k * n) / rate` seconds after the start,
//! k = 0, 1, 2, ...: together the connections send at exactly `rate`, evenly spread. A
//! request is sent at its intended time, or at once when the connection is still busy
//! with earlier ones; its latency is measured from the intended time, so time spent
//! queued behind a slow answer counts (no coordinated omission). The schedule never
//! shifts to make up for a late request.

use std::time::Duration;

use tokio::time::Instant;

/// One connection's intended start times.
#[derive(Debug, Clone)]
pub struct Pacer {
    start: Instant,
    rate: f64,
    connections: u64,
    index: u64,
    next: u64,
}

impl Pacer {
    /// Connection `index` of `connections`, sharing `rate` requests/s from `start`.
    pub fn new(start: Instant, rate: f64, connections: u32, index: u32) -> Pacer {
        Pacer {
            start,
            rate: rate.max(f64::MIN_POSITIVE),
            connections: u64::from(connections.max(1)),
            index: u64::from(index),
            next: 0,
        }
    }

    /// The intended start of the next request, without waiting.
    pub fn peek(&self) -> Instant {
        // Computed from the slot number each time (no accumulated rounding), in whole ns.
        let slot = (self.index + self.next * self.connections) as f64;
        let nanos = (slot * 1e9 / self.rate).round();
        self.start + Duration::from_nanos(if nanos < 1e19 { nanos as u64 } else { u64::MAX })
    }

    /// Waits until the next request's intended start (not at all when that is past) and
    /// returns it.
    pub async fn next_slot(&mut self) -> Instant {
        let slot = self.peek();
        self.next += 1;
        tokio::time::sleep_until(slot).await;
        slot
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn connections_share_the_rate_evenly() {
        let start = Instant::now();
        let mut all = Vec::new();
        for c in 0..4 {
            let mut pacer = Pacer::new(start, 1000.0, 4, c);
            for _ in 0..5 {
                all.push(pacer.peek() - start);
                pacer.next += 1;
            }
        }
        all.sort();
        let expected: Vec<Duration> = (0..20).map(Duration::from_millis).collect();
        assert_eq!(all, expected, "1000/s over 4 connections: one request every ms");
    }

    #[tokio::test(start_paused = true)]
    async fn the_schedule_holds_when_a_request_is_slow() {
        let start = Instant::now();
        // 100/s on one connection: intended starts every 10 ms.
        let mut pacer = Pacer::new(start, 100.0, 1, 0);
        let mut slots = Vec::new();
        let mut latencies = Vec::new();
        for k in 0..8u64 {
            let slot = pacer.next_slot().await;
            let sent = Instant::now();
            assert!(sent >= slot, "never sent early");
            // The third answer takes 45 ms; the others 1 ms.
            let service = if k == 2 { 45 } else { 1 };
            tokio::time::sleep(Duration::from_millis(service)).await;
            slots.push(slot - start);
            latencies.push((Instant::now() - slot).as_millis());
        }
        let expected: Vec<Duration> = (0..8).map(|k| Duration::from_millis(10 * k)).collect();
        assert_eq!(slots, expected, "intended times stay on the grid");
        // Requests 3..=6 were due while request 2 ran: they queued, and their latency says so.
        assert_eq!(latencies, vec![1, 1, 45, 36, 27, 18, 9, 1]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_pacer_waits_for_its_first_slot() {
        let start = Instant::now();
        let mut pacer = Pacer::new(start, 10.0, 2, 1);
        let first = pacer.next_slot().await;
        assert_eq!(first - start, Duration::from_millis(100));
        assert_eq!(Instant::now(), first);
        let second = pacer.next_slot().await;
        assert_eq!(second - start, Duration::from_millis(300));
    }
}
