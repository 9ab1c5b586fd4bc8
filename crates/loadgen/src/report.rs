//! The results of one run: what was asked, what was measured, what the audit proved.
//! Serialised as the `--json` file, rendered as the terminal summary ([`Report::text`])
//! and as the HTML report ([`crate::html`]). [`Report::verdict`] decides the exit status.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Duration;

use serde::Serialize;

use crate::audit::AuditReport;
use crate::stats::{OpSummary, Shard, human_us};
use crate::worker::Plan;
use crate::{Args, Mix, Scenario};

/// Completions per second of the run, per operation, and errors per second.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Timeline {
    pub seconds: usize,
    /// `(operation, completions in each second)`, in operation order.
    pub operations: Vec<(String, Vec<u64>)>,
    pub errors: Vec<u64>,
}

/// One second of the live progress line.
#[derive(Debug, Clone, Serialize)]
pub struct ProgressSample {
    /// Seconds since the start.
    pub second: f64,
    /// Answers per second since the previous sample.
    pub rate: f64,
    /// p99 of the answers since the previous sample, µs.
    pub p99_us: u64,
    /// Errors so far.
    pub errors: u64,
}

/// Holds the run left open, released after the audit.
#[derive(Debug, Clone, Serialize)]
pub struct Cleanup {
    pub released: u64,
    pub not_released: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub tool: &'static str,
    pub version: &'static str,
    pub started_at: String,
    pub target: String,
    pub scenario: Scenario,
    /// Set when the scenario did not run, with the reason.
    pub skipped: Option<String>,
    pub mix: Option<Mix>,
    /// `closed` or `open`.
    pub model: &'static str,
    /// Open model: intended requests per second.
    pub rate: Option<f64>,
    pub connections: u32,
    pub threads: u32,
    /// The asked duration, seconds.
    pub duration_s: f64,
    /// From the start of the clock to the last answer, seconds.
    pub elapsed_s: f64,
    pub request_cap: Option<u64>,
    pub event: Option<String>,
    pub seat_count: Option<u32>,
    pub users: Option<u32>,
    /// The run's users are named `{user_prefix}{i}`.
    pub user_prefix: Option<String>,
    pub zipf: Option<f64>,
    pub hot_seats: Option<u32>,
    pub path: Option<String>,
    /// Bare: requests in flight per connection, when pipelined (`--pipeline`).
    pub pipeline: Option<u32>,
    pub seed: u64,
    /// Requests sent (answered or not).
    pub requests: u64,
    /// Requests that got an HTTP answer.
    pub responses: u64,
    pub errors: u64,
    pub connect_errors: u64,
    /// Answers per second over `elapsed_s`.
    pub throughput: f64,
    pub operations: Vec<OpSummary>,
    pub timeline: Timeline,
    pub progress: Vec<ProgressSample>,
    pub audit: Option<AuditReport>,
    pub cleanup: Option<Cleanup>,
    /// The `viewers` scenario's fleet and staleness.
    pub viewers: Option<crate::viewers::ViewersReport>,
    /// The `onsale` scenario's conversion.
    pub onsale: Option<crate::onsale::OnsaleReport>,
    /// What the load generator itself used while it measured.
    pub generator_cpu: Option<GeneratorCpu>,
    pub notes: Vec<String>,
}

/// The load generator's own CPU time (user + system, all its threads) over the measured
/// run: close to one core means the generator, not the server, may have set the pace.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct GeneratorCpu {
    pub seconds: f64,
    /// CPU seconds per elapsed second.
    pub cores: f64,
    /// CPU microseconds per answer.
    pub us_per_answer: f64,
}

impl GeneratorCpu {
    /// From CPU seconds spent over `elapsed_s` for `answers` answers; `None` without a
    /// measured interval.
    pub fn of(seconds: f64, elapsed_s: f64, answers: u64) -> Option<GeneratorCpu> {
        if elapsed_s <= 0.0 || seconds < 0.0 {
            return None;
        }
        let round = |v: f64, places: i32| (v * 10f64.powi(places)).round() / 10f64.powi(places);
        Some(GeneratorCpu {
            seconds: round(seconds, 3),
            cores: round(seconds / elapsed_s, 2),
            us_per_answer: if answers == 0 { 0.0 } else { round(seconds * 1e6 / answers as f64, 2) },
        })
    }
}

/// `1234567` as `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

impl Report {
    /// A report for a scenario that did not run.
    pub fn skipped(args: &Args, why: &str) -> Report {
        Report {
            tool: "boxoffice loadtest",
            version: env!("CARGO_PKG_VERSION"),
            started_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            target: args.target.clone(),
            scenario: args.scenario,
            skipped: Some(why.to_owned()),
            mix: None,
            model: if args.rate.is_some() { "open" } else { "closed" },
            rate: args.rate,
            connections: args.connections,
            threads: args.threads,
            duration_s: args.duration,
            elapsed_s: 0.0,
            request_cap: args.requests,
            event: None,
            seat_count: None,
            users: None,
            user_prefix: None,
            zipf: None,
            hot_seats: None,
            path: None,
            pipeline: None,
            seed: args.seed.unwrap_or(0),
            requests: 0,
            responses: 0,
            errors: 0,
            connect_errors: 0,
            throughput: 0.0,
            operations: Vec::new(),
            timeline: Timeline::default(),
            progress: Vec::new(),
            audit: None,
            cleanup: None,
            viewers: None,
            onsale: None,
            generator_cpu: None,
            notes: Vec::new(),
        }
    }

    /// The common part of a report for a scenario with a runner of its own; the runner
    /// fills in the rest.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn of_scenario(
        args: &Args,
        target: &str,
        started_at: chrono::DateTime<chrono::Utc>,
        elapsed: Duration,
        shard: &Shard,
        operations: Vec<OpSummary>,
        timeline: Timeline,
        notes: Vec<String>,
    ) -> Report {
        let responses: u64 = operations.iter().map(|o| o.responses).sum();
        let elapsed_s = elapsed.as_secs_f64();
        let mut report = Report::skipped(args, "");
        report.skipped = None;
        report.started_at = started_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        report.target = target.to_owned();
        report.elapsed_s = (elapsed_s * 1000.0).round() / 1000.0;
        report.requests = shard.requests;
        report.responses = responses;
        report.errors = shard.errors;
        report.connect_errors = shard.connect_errors;
        report.throughput =
            if elapsed_s > 0.0 { (responses as f64 / elapsed_s * 10.0).round() / 10.0 } else { 0.0 };
        report.operations = operations;
        report.timeline = timeline;
        report.notes = notes;
        report
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        args: &Args,
        plan: &Plan,
        started_at: chrono::DateTime<chrono::Utc>,
        elapsed: Duration,
        shard: &Shard,
        operations: Vec<OpSummary>,
        timeline: Timeline,
        progress: Vec<ProgressSample>,
        audit: Option<AuditReport>,
        cleanup: Option<Cleanup>,
        notes: Vec<String>,
    ) -> Report {
        let holds = matches!(plan.scenario, Scenario::Holds | Scenario::HotSeats);
        let responses: u64 = operations.iter().map(|o| o.responses).sum();
        let elapsed_s = elapsed.as_secs_f64();
        Report {
            tool: "boxoffice loadtest",
            version: env!("CARGO_PKG_VERSION"),
            started_at: started_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            target: plan.targets.iter().map(|t| t.url.as_str()).collect::<Vec<_>>().join(","),
            scenario: plan.scenario,
            skipped: None,
            mix: holds.then_some(plan.mix),
            model: if plan.rate.is_some() { "open" } else { "closed" },
            rate: plan.rate,
            connections: plan.connections,
            threads: plan.threads,
            duration_s: plan.duration.as_secs_f64(),
            elapsed_s: (elapsed_s * 1000.0).round() / 1000.0,
            request_cap: plan.cap,
            event: (plan.scenario != Scenario::Bare).then(|| plan.event.clone()),
            seat_count: holds.then_some(plan.labels.len() as u32),
            users: holds.then_some(plan.users.len() as u32),
            user_prefix: holds.then(|| plan.user_prefix.clone()),
            zipf: if holds { args.zipf } else { None },
            hot_seats: (plan.scenario == Scenario::HotSeats)
                .then(|| args.seats.min(plan.labels.len() as u32)),
            path: (plan.scenario == Scenario::Bare).then(|| args.path.clone()),
            pipeline: (plan.pipeline > 1).then_some(plan.pipeline),
            seed: plan.seed,
            requests: shard.requests,
            responses,
            errors: shard.errors,
            connect_errors: shard.connect_errors,
            throughput: if elapsed_s > 0.0 {
                (responses as f64 / elapsed_s * 10.0).round() / 10.0
            } else {
                0.0
            },
            operations,
            timeline,
            progress,
            audit,
            cleanup,
            viewers: None,
            onsale: None,
            generator_cpu: None,
            notes,
        }
    }

    /// `Ok` when the run is clean: the audit (if any) passed and some request got an answer.
    pub fn verdict(&self) -> Result<(), String> {
        if self.skipped.is_some() {
            return Ok(());
        }
        if let Some(audit) = &self.audit
            && !audit.passed
        {
            let first = audit
                .checks
                .iter()
                .filter(|c| !c.passed)
                .map(|c| format!("{} ({})", c.name, c.examples.first().map(String::as_str).unwrap_or("")))
                .collect::<Vec<_>>()
                .join("; ");
            return Err(format!("the oversell audit found {} anomalies: {first}", audit.anomalies()));
        }
        if self.responses == 0 {
            return Err(format!("no request got an HTTP answer from {}", self.target));
        }
        if let Some(v) = &self.viewers {
            if v.connected == 0 {
                return Err("no viewer received a frame".into());
            }
            if v.gaps > 0 {
                return Err(format!(
                    "{} deltas did not continue from the viewer's version (the live map promises none)",
                    v.gaps
                ));
            }
        }
        Ok(())
    }

    /// A one-line description of the run's set-up.
    pub fn headline(&self) -> String {
        let mut s = format!("scenario {}", self.scenario.name());
        if let Some(mix) = self.mix {
            let _ = write!(s, " ({})", mix.name());
        }
        if let Some(event) = &self.event {
            let _ = write!(s, " on {event}");
        }
        if let Some(path) = &self.path {
            let _ = write!(s, " GET {path}");
        }
        if let Some(depth) = self.pipeline {
            let _ = write!(s, ", pipelined {depth} deep");
        }
        if let Some(v) = &self.viewers {
            let _ = write!(s, ", {} viewers", thousands(u64::from(v.fleet)));
        }
        let unit = match self.scenario {
            Scenario::Viewers => " changes",
            Scenario::Onsale => " fans",
            _ => "",
        };
        match self.rate {
            Some(rate) => {
                let _ = write!(s, ", open model at {}{unit}/s", thousands(rate.round() as u64));
            }
            None => s.push_str(", closed model"),
        }
        let _ = write!(
            s,
            ", {} connections, {} thread{}, {} s against {}",
            self.connections,
            self.threads,
            if self.threads == 1 { "" } else { "s" },
            self.duration_s,
            self.target
        );
        s
    }

    /// The terminal summary.
    pub fn text(&self) -> String {
        let mut out = String::new();
        if let Some(why) = &self.skipped {
            let _ = writeln!(out, "scenario {}: skipped: {why}", self.scenario.name());
            return out;
        }
        let _ = writeln!(out, "boxoffice loadtest: {}", self.headline());
        let _ = writeln!(
            out,
            "requests {} in {:.2} s: {} answers/s; errors {}{}",
            thousands(self.requests),
            self.elapsed_s,
            thousands(self.throughput.round() as u64),
            thousands(self.errors),
            if self.connect_errors > 0 {
                format!(" ({} failed connects)", self.connect_errors)
            } else {
                String::new()
            }
        );
        let _ = writeln!(
            out,
            "\n{:<14}{:>11}{:>11}{:>11}{:>11}{:>11}{:>11}{:>11}{:>9}",
            "operation", "answers", "per s", "p50", "p90", "p99", "p99.9", "max", "errors"
        );
        for op in &self.operations {
            let l = &op.latency_us;
            let _ = writeln!(
                out,
                "{:<14}{:>11}{:>11}{:>11}{:>11}{:>11}{:>11}{:>11}{:>9}",
                op.name,
                thousands(op.responses),
                thousands(op.rate.round() as u64),
                human_us(l.p50),
                human_us(l.p90),
                human_us(l.p99),
                human_us(l.p999),
                human_us(l.max),
                thousands(op.errors)
            );
        }
        let _ = writeln!(out, "\nstatus codes:");
        for op in &self.operations {
            let codes: Vec<String> =
                op.statuses.iter().map(|(k, v)| format!("{k}: {}", thousands(*v))).collect();
            let _ = writeln!(
                out,
                "  {:<12} {}",
                op.name,
                if codes.is_empty() { "-".into() } else { codes.join(", ") }
            );
        }
        if let Some(audit) = &self.audit {
            let f = &audit.facts;
            let _ = writeln!(
                out,
                "\noversell audit: {} ({} holds answered 201: {} released, {} bought, {} expired, {} left open of \
                 which {} still held; {} orders, {} valid tickets; {} of {} seats available; {} seats uncertain)",
                if audit.passed { "PASSED" } else { "FAILED" },
                thousands(f.holds_created),
                thousands(f.holds_released),
                thousands(f.holds_bought),
                thousands(f.holds_expired),
                thousands(f.holds_open),
                thousands(f.open_holds_still_held),
                thousands(f.orders),
                thousands(f.valid_tickets),
                thousands(f.available_seats),
                thousands(u64::from(f.seat_count)),
                thousands(f.uncertain_seats)
            );
            for check in &audit.checks {
                let _ = writeln!(
                    out,
                    "  [{}] {} ({} checked{})",
                    if check.passed { "ok" } else { "FAIL" },
                    check.name,
                    thousands(check.checked),
                    if check.passed { String::new() } else { format!(", {} anomalies", check.anomalies) }
                );
                for example in &check.examples {
                    let _ = writeln!(out, "        {example}");
                }
            }
        }
        if let Some(cleanup) = &self.cleanup {
            let _ = writeln!(
                out,
                "clean-up: released {} hold(s) the run left open{}",
                cleanup.released,
                if cleanup.not_released > 0 {
                    format!(", {} could not be released", cleanup.not_released)
                } else {
                    String::new()
                }
            );
        }
        if let Some(v) = &self.viewers {
            v.text(&mut out);
        }
        if let Some(o) = &self.onsale {
            o.text(&mut out);
        }
        if let Some(cpu) = &self.generator_cpu {
            let _ = writeln!(
                out,
                "load generator: {:.2} CPU-s, {:.0}% of a core, {:.2} us per answer",
                cpu.seconds,
                cpu.cores * 100.0,
                cpu.us_per_answer
            );
        }
        for note in &self.notes {
            let _ = writeln!(out, "note: {note}");
        }
        out
    }

    /// Answers by status across operations, e.g. for quick assertions.
    pub fn status_totals(&self) -> BTreeMap<String, u64> {
        let mut totals = BTreeMap::new();
        for op in &self.operations {
            for (k, v) in &op.statuses {
                *totals.entry(format!("{} {k}", op.name)).or_default() += v;
            }
        }
        totals
    }

    pub fn operation(&self, name: &str) -> Option<&OpSummary> {
        self.operations.iter().find(|o| o.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }

    #[test]
    fn generator_cpu_is_per_elapsed_second_and_per_answer() {
        let cpu = GeneratorCpu::of(4.0, 10.0, 2_000_000).expect("a measured interval");
        assert_eq!(cpu, GeneratorCpu { seconds: 4.0, cores: 0.4, us_per_answer: 2.0 });
        assert_eq!(GeneratorCpu::of(1.0, 2.0, 0).map(|c| c.us_per_answer), Some(0.0));
        assert_eq!(GeneratorCpu::of(1.0, 0.0, 10), None);
    }
}
