//! Measurements: per-operation HDR histograms of latency (microseconds, 3 significant
//! digits, 1 µs to 1 h), status code counts (with the API's error code for 4xx/5xx),
//! transport failures, a per-second timeline of completions, and a small "window"
//! histogram that the live progress line drains every second for the current p99.
//!
//! Each worker thread owns one [`Shard`] behind an uncontended mutex; shards are merged
//! into one [`Shard`] at the end and summarised into serialisable [`OpSummary`]s.

use std::collections::{BTreeMap, HashMap};

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::audit::AuditLog;

/// Highest latency a histogram holds; slower answers are recorded as this.
pub const MAX_LATENCY_US: u64 = 3_600_000_000;
/// Percentiles drawn in the report's latency chart.
pub const CURVE_PERCENTILES: [f64; 11] = [0.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.95, 99.99, 100.0];

fn histogram(sigfig: u8) -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, sigfig).expect("valid histogram bounds")
}

/// How one request ended.
#[derive(Debug, Clone, Copy)]
pub enum Outcome<'a> {
    /// An HTTP answer; `code` is the API error code of an error body, when there is one.
    Status { status: u16, code: Option<&'a str> },
    /// No HTTP answer (connect failure, reset, malformed answer) or none in time.
    Transport { timeout: bool },
}

/// Whether an answer counts as an error: transport failures, 5xx, and 4xx other than the
/// contention outcomes a ticketing load test expects (409 conflict, 410 gone, and 422
/// ORPHAN_SEAT: a random seat next to a row end or a taken seat would leave one alone).
pub fn is_error(outcome: Outcome<'_>) -> bool {
    match outcome {
        Outcome::Transport { .. } => true,
        Outcome::Status { status: 422, code: Some("ORPHAN_SEAT") } => false,
        Outcome::Status { status, .. } => status >= 500 || (status >= 400 && status != 409 && status != 410),
    }
}

/// The counts of one operation.
pub struct OpStats {
    pub latency: Histogram<u64>,
    /// Answers by status code (index = status).
    statuses: Vec<u64>,
    /// Error answers by status and API error code.
    codes: HashMap<u16, HashMap<String, u64>>,
    pub transport_errors: u64,
    pub timeouts: u64,
    pub errors: u64,
}

impl OpStats {
    fn new() -> OpStats {
        OpStats {
            latency: histogram(3),
            statuses: vec![0; 1000],
            codes: HashMap::new(),
            transport_errors: 0,
            timeouts: 0,
            errors: 0,
        }
    }

    pub fn responses(&self) -> u64 {
        self.statuses.iter().sum()
    }

    fn merge(&mut self, other: &OpStats) {
        // Same bounds on both sides: adding cannot fail.
        let _ = self.latency.add(&other.latency);
        for (a, b) in self.statuses.iter_mut().zip(&other.statuses) {
            *a += b;
        }
        for (status, codes) in &other.codes {
            let mine = self.codes.entry(*status).or_default();
            for (code, n) in codes {
                *mine.entry(code.clone()).or_default() += n;
            }
        }
        self.transport_errors += other.transport_errors;
        self.timeouts += other.timeouts;
        self.errors += other.errors;
    }

    /// Counts by `"STATUS"` or `"STATUS CODE"`, plus `"transport"` and `"timeout"`.
    pub fn status_counts(&self) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for (status, &n) in self.statuses.iter().enumerate() {
            if n == 0 {
                continue;
            }
            let coded = self.codes.get(&(status as u16));
            let coded_total: u64 = coded.map_or(0, |c| c.values().sum());
            if let Some(coded) = coded {
                for (code, &m) in coded {
                    out.insert(format!("{status} {code}"), m);
                }
            }
            if n > coded_total {
                out.insert(status.to_string(), n - coded_total);
            }
        }
        if self.transport_errors > self.timeouts {
            out.insert("transport".into(), self.transport_errors - self.timeouts);
        }
        if self.timeouts > 0 {
            out.insert("timeout".into(), self.timeouts);
        }
        out
    }

    pub fn status(&self, status: u16) -> u64 {
        self.statuses.get(status as usize).copied().unwrap_or(0)
    }
}

/// What one worker thread measured (or, after [`Shard::merge`], the whole run).
pub struct Shard {
    pub ops: Vec<OpStats>,
    window: Histogram<u64>,
    window_requests: u64,
    pub requests: u64,
    pub errors: u64,
    /// Connections that could not be (re)opened; counted in `errors` too.
    pub connect_errors: u64,
    /// Completions per second per operation, then errors: `[sec * (ops + 1) + op]`.
    timeline: Vec<u64>,
    pub audit: AuditLog,
}

impl Shard {
    pub fn new(ops: usize, audit: AuditLog) -> Shard {
        Shard {
            ops: (0..ops).map(|_| OpStats::new()).collect(),
            window: histogram(2),
            window_requests: 0,
            requests: 0,
            errors: 0,
            connect_errors: 0,
            timeline: Vec::new(),
            audit,
        }
    }

    /// Records one request of operation `op` that ended `second` seconds into the run.
    pub fn record(&mut self, op: usize, outcome: Outcome<'_>, latency_us: u64, second: usize) {
        let width = self.ops.len() + 1;
        let slot = second * width;
        if self.timeline.len() < slot + width {
            self.timeline.resize(slot + width, 0);
        }
        self.requests += 1;
        self.window_requests += 1;
        let error = is_error(outcome);
        let stats = &mut self.ops[op];
        match outcome {
            Outcome::Status { status, code } => {
                let latency = latency_us.clamp(1, MAX_LATENCY_US);
                stats.latency.saturating_record(latency);
                self.window.saturating_record(latency);
                if let Some(n) = stats.statuses.get_mut(status as usize) {
                    *n += 1;
                }
                if let Some(code) = code {
                    let codes = stats.codes.entry(status).or_default();
                    match codes.get_mut(code) {
                        Some(n) => *n += 1,
                        None => {
                            codes.insert(code.to_owned(), 1);
                        }
                    }
                }
                self.timeline[slot + op] += 1;
            }
            Outcome::Transport { timeout } => {
                stats.transport_errors += 1;
                if timeout {
                    stats.timeouts += 1;
                }
            }
        }
        if error {
            stats.errors += 1;
            self.errors += 1;
            self.timeline[slot + width - 1] += 1;
        }
    }

    /// Records a failed (re)connect `second` seconds into the run: no request was sent.
    pub fn record_connect_error(&mut self, second: usize) {
        let width = self.ops.len() + 1;
        let slot = second * width;
        if self.timeline.len() < slot + width {
            self.timeline.resize(slot + width, 0);
        }
        self.connect_errors += 1;
        self.errors += 1;
        self.timeline[slot + width - 1] += 1;
    }

    /// Moves the window (answers since the last call) into `into`; returns how many
    /// requests it held.
    pub fn drain_window(&mut self, into: &mut Histogram<u64>) -> u64 {
        let _ = into.add(&self.window);
        self.window.reset();
        std::mem::take(&mut self.window_requests)
    }

    /// Adds another shard's counts to this one.
    pub fn merge(&mut self, other: &Shard) {
        for (a, b) in self.ops.iter_mut().zip(&other.ops) {
            a.merge(b);
        }
        self.requests += other.requests;
        self.errors += other.errors;
        self.connect_errors += other.connect_errors;
        if self.timeline.len() < other.timeline.len() {
            self.timeline.resize(other.timeline.len(), 0);
        }
        for (a, b) in self.timeline.iter_mut().zip(&other.timeline) {
            *a += b;
        }
        self.audit.merge(&other.audit);
    }

    /// Completions per second for operation `op` (or errors when `op == ops.len()`),
    /// one entry per second of the run (`seconds` long).
    pub fn series(&self, op: usize, seconds: usize) -> Vec<u64> {
        let width = self.ops.len() + 1;
        (0..seconds).map(|s| self.timeline.get(s * width + op).copied().unwrap_or(0)).collect()
    }
}

/// An empty window histogram for [`Shard::drain_window`].
pub fn window_histogram() -> Histogram<u64> {
    histogram(2)
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Latency {
    pub min: u64,
    pub mean: f64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

impl Latency {
    pub fn of(h: &Histogram<u64>) -> Latency {
        if h.is_empty() {
            return Latency { min: 0, mean: 0.0, p50: 0, p90: 0, p99: 0, p999: 0, max: 0 };
        }
        Latency {
            min: h.min(),
            mean: (h.mean() * 10.0).round() / 10.0,
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
        }
    }
}

/// One operation's figures, as reported.
#[derive(Debug, Clone, Serialize)]
pub struct OpSummary {
    pub name: String,
    /// Requests that got an HTTP answer.
    pub responses: u64,
    /// Answers per second over the measured time.
    pub rate: f64,
    pub errors: u64,
    pub transport_errors: u64,
    pub timeouts: u64,
    pub statuses: BTreeMap<String, u64>,
    pub latency_us: Latency,
    /// `[percentile, µs]` points for the latency chart.
    pub curve: Vec<(f64, u64)>,
}

impl OpSummary {
    pub fn of(name: &str, stats: &OpStats, seconds: f64) -> OpSummary {
        let responses = stats.responses();
        let curve = if stats.latency.is_empty() {
            Vec::new()
        } else {
            CURVE_PERCENTILES.iter().map(|&p| (p, stats.latency.value_at_percentile(p))).collect()
        };
        OpSummary {
            name: name.to_owned(),
            responses,
            rate: if seconds > 0.0 { (responses as f64 / seconds * 10.0).round() / 10.0 } else { 0.0 },
            errors: stats.errors,
            transport_errors: stats.transport_errors,
            timeouts: stats.timeouts,
            statuses: stats.status_counts(),
            latency_us: Latency::of(&stats.latency),
            curve,
        }
    }
}

/// `1234` µs as `1.23 ms`, `850` µs as `850 µs`, `2500000` as `2.50 s`.
pub fn human_us(us: u64) -> String {
    if us < 1_000 {
        format!("{us} µs")
    } else if us < 1_000_000 {
        format!("{:.2} ms", us as f64 / 1e3)
    } else {
        format!("{:.2} s", us as f64 / 1e6)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(status: u16) -> Outcome<'static> {
        Outcome::Status { status, code: None }
    }

    #[test]
    fn percentiles_of_a_known_distribution() {
        let mut shard = Shard::new(1, AuditLog::default());
        // 1..=10_000 µs, one each: p50 = 5000, p90 = 9000, p99 = 9900, p99.9 = 9990.
        for v in 1..=10_000u64 {
            shard.record(0, ok(200), v, 0);
        }
        let s = OpSummary::of("get", &shard.ops[0], 2.0);
        let within = |got: u64, want: u64| got.abs_diff(want) <= want / 500 + 1;
        assert!(within(s.latency_us.p50, 5_000), "{:?}", s.latency_us);
        assert!(within(s.latency_us.p90, 9_000), "{:?}", s.latency_us);
        assert!(within(s.latency_us.p99, 9_900), "{:?}", s.latency_us);
        assert!(within(s.latency_us.p999, 9_990), "{:?}", s.latency_us);
        assert!(within(s.latency_us.max, 10_000), "{:?}", s.latency_us);
        assert_eq!(s.latency_us.min, 1);
        assert_eq!(s.responses, 10_000);
        assert_eq!(s.rate, 5_000.0);
        assert_eq!(s.curve.len(), CURVE_PERCENTILES.len());
        assert!(s.curve.windows(2).all(|w| w[0].1 <= w[1].1), "the curve never goes down");
    }

    #[test]
    fn statuses_codes_errors_and_timeline() {
        let mut shard = Shard::new(2, AuditLog::default());
        shard.record(0, ok(201), 100, 0);
        shard.record(0, Outcome::Status { status: 409, code: Some("SEATS_UNAVAILABLE") }, 100, 0);
        shard.record(0, Outcome::Status { status: 422, code: Some("HOLD_LIMIT") }, 100, 1);
        shard.record(1, ok(204), 50, 1);
        shard.record(1, Outcome::Transport { timeout: true }, 0, 2);
        shard.record(1, Outcome::Transport { timeout: false }, 0, 2);
        let hold = OpSummary::of("hold", &shard.ops[0], 3.0);
        assert_eq!(hold.statuses.get("201"), Some(&1));
        assert_eq!(hold.statuses.get("409 SEATS_UNAVAILABLE"), Some(&1));
        assert_eq!(hold.statuses.get("422 HOLD_LIMIT"), Some(&1));
        assert_eq!(hold.errors, 1, "a 409 is contention, a 422 is an error");
        let release = OpSummary::of("release", &shard.ops[1], 3.0);
        assert_eq!(release.statuses.get("timeout"), Some(&1));
        assert_eq!(release.statuses.get("transport"), Some(&1));
        assert_eq!(release.responses, 1);
        assert_eq!(shard.requests, 6);
        assert_eq!(shard.errors, 3);
        assert_eq!(shard.series(0, 3), vec![2, 1, 0]);
        assert_eq!(shard.series(1, 3), vec![0, 1, 0]);
        assert_eq!(shard.series(2, 4), vec![0, 1, 2, 0], "errors per second");

        let mut merged = Shard::new(2, AuditLog::default());
        merged.merge(&shard);
        merged.merge(&shard);
        assert_eq!(merged.requests, 12);
        assert_eq!(merged.ops[0].status(201), 2);
        assert_eq!(merged.series(0, 3), vec![4, 2, 0]);
        assert_eq!(
            OpSummary::of("hold", &merged.ops[0], 1.0).statuses.get("409 SEATS_UNAVAILABLE"),
            Some(&2)
        );
    }

    #[test]
    fn the_window_drains() {
        let mut shard = Shard::new(1, AuditLog::default());
        for v in [100, 200, 300, 40_000] {
            shard.record(0, ok(200), v, 0);
        }
        let mut window = window_histogram();
        assert_eq!(shard.drain_window(&mut window), 4);
        assert_eq!(window.len(), 4);
        assert!(window.value_at_quantile(0.99) >= 39_000);
        let mut again = window_histogram();
        assert_eq!(shard.drain_window(&mut again), 0);
        assert!(again.is_empty());
        assert_eq!(shard.ops[0].latency.len(), 4, "the run's histogram keeps everything");
    }

    #[test]
    fn human_units() {
        assert_eq!(human_us(850), "850 µs");
        assert_eq!(human_us(1_234), "1.23 ms");
        assert_eq!(human_us(2_500_000), "2.50 s");
    }
}
