//! One load test from start to end: [`setup`](crate::setup) (readiness, the event and its
//! seat labels, one token per user), the measured run on the worker threads with a live
//! progress line, then, for `holds` and `hot-seats`, the oversell audit and the release
//! of holds the run left open ([`inspect`](crate::inspect)).
//!
//! Threads: connection `c` of `--connections` runs on thread `c mod --threads`; each
//! thread is a single-threaded tokio runtime with one [`Shard`] of measurements. All
//! connections open before the clock starts.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use parking_lot::Mutex;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::audit::{AuditLog, AuditReport};
use crate::inspect::{release_leftovers, run_audit};
use crate::pipeline;
use crate::report::{GeneratorCpu, ProgressSample, Report, Timeline};
use crate::setup::prepare;
use crate::stats::{OpSummary, Shard, human_us, window_histogram};
use crate::worker::{Plan, Worker};
use crate::{Args, LoadError, Scenario};

/// Longest wait for all connections to open before the clock starts anyway.
const CONNECT_GATE: Duration = Duration::from_secs(10);

/// What the measured part produced.
struct Measured {
    shard: Shard,
    elapsed: Duration,
    /// The process's CPU seconds over the measured run.
    cpu_s: Option<f64>,
    progress: Vec<ProgressSample>,
}

/// Runs the workers on their threads, shows progress, and merges their shards.
async fn drive(plan: Arc<Plan>, quiet: bool) -> Result<Measured, LoadError> {
    let (start_tx, start_rx) = watch::channel::<Option<Instant>>(None);
    let connected = Arc::new(AtomicU32::new(0));
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Result<(), String>>();
    let audit_seats = if plan.audited { plan.seat_count() } else { 0 };
    let mut shards = Vec::new();
    let mut handles = Vec::new();
    for t in 0..plan.threads {
        let shard = Arc::new(Mutex::new(Shard::new(plan.ops.len(), AuditLog::for_seats(audit_seats))));
        shards.push(shard.clone());
        let plan = plan.clone();
        let connected = connected.clone();
        let start_rx = start_rx.clone();
        let done_tx = done_tx.clone();
        let workers: Vec<u32> = (t..plan.connections).step_by(plan.threads as usize).collect();
        let handle = std::thread::Builder::new()
            .name(format!("loadgen-{t}"))
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        connected.fetch_add(workers.len() as u32, Ordering::Release);
                        let _ = done_tx.send(Err(format!("cannot start a worker runtime: {e}")));
                        return;
                    }
                };
                let outcome = runtime.block_on(async move {
                    let mut tasks = tokio::task::JoinSet::new();
                    for index in workers {
                        if plan.pipeline > 1 {
                            tasks.spawn(pipeline::run(
                                plan.clone(),
                                shard.clone(),
                                connected.clone(),
                                start_rx.clone(),
                                index,
                            ));
                        } else {
                            let worker = Worker::new(plan.clone(), shard.clone(), index);
                            tasks.spawn(worker.run(connected.clone(), start_rx.clone()));
                        }
                    }
                    let mut failure = Ok(());
                    while let Some(joined) = tasks.join_next().await {
                        if let Err(e) = joined {
                            failure = Err(format!("a worker failed: {e}"));
                        }
                    }
                    failure
                });
                let _ = done_tx.send(outcome);
            })
            .map_err(|e| LoadError::Internal(format!("cannot start a worker thread: {e}")))?;
        handles.push(handle);
    }
    drop(done_tx);

    let gate = Instant::now();
    while connected.load(Ordering::Acquire) < plan.connections && gate.elapsed() < CONNECT_GATE {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let cpu_before = crate::sys::process_cpu_seconds();
    let start = Instant::now();
    let _ = start_tx.send(Some(start));

    let mut progress = Progress::new(plan.duration, quiet);
    let mut ticker = tokio::time::interval_at(start + Duration::from_secs(1), Duration::from_secs(1));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_tick = start;
    let mut finished = 0;
    let mut failure: Option<String> = None;
    while finished < plan.threads {
        tokio::select! {
            _ = ticker.tick() => {
                let now = Instant::now();
                progress.tick(&shards, now - start, now - last_tick);
                last_tick = now;
            }
            outcome = done_rx.recv() => match outcome {
                Some(Ok(())) => finished += 1,
                Some(Err(e)) => {
                    finished += 1;
                    failure = Some(e);
                }
                None => break,
            },
        }
    }
    let elapsed = start.elapsed();
    let cpu_s = cpu_before.zip(crate::sys::process_cpu_seconds()).map(|(before, after)| after - before);
    progress.tick(&shards, elapsed, Instant::now() - last_tick);
    progress.finish();
    for handle in handles {
        if handle.join().is_err() {
            failure = Some("a worker thread panicked".into());
        }
    }
    if let Some(e) = failure {
        return Err(LoadError::Internal(e));
    }
    let mut total = Shard::new(plan.ops.len(), AuditLog::for_seats(audit_seats));
    for shard in &shards {
        total.merge(&shard.lock());
    }
    Ok(Measured { shard: total, elapsed, cpu_s, progress: progress.samples })
}

/// The live progress line: a bar on a terminal, a plain line per second otherwise.
struct Progress {
    bar: Option<ProgressBar>,
    plain: bool,
    duration: Duration,
    samples: Vec<ProgressSample>,
}

impl Progress {
    fn new(duration: Duration, quiet: bool) -> Progress {
        let terminal = std::io::stderr().is_terminal();
        let bar = (!quiet && terminal).then(|| {
            let bar = ProgressBar::with_draw_target(
                Some(duration.as_millis() as u64),
                ProgressDrawTarget::stderr_with_hz(4),
            );
            if let Ok(style) = ProgressStyle::with_template("[{bar:24.cyan/blue}] {msg}") {
                bar.set_style(style.progress_chars("=> "));
            }
            bar
        });
        Progress { bar, plain: !quiet && !terminal, duration, samples: Vec::new() }
    }

    fn tick(&mut self, shards: &[Arc<Mutex<Shard>>], elapsed: Duration, since_last: Duration) {
        let mut window = window_histogram();
        let (mut requests, mut errors, mut in_window) = (0, 0, 0);
        for shard in shards {
            let mut shard = shard.lock();
            in_window += shard.drain_window(&mut window);
            requests += shard.requests;
            errors += shard.errors;
        }
        let p99 = if window.is_empty() { 0 } else { window.value_at_quantile(0.99) };
        let seconds = since_last.as_secs_f64();
        // The tail after the last whole second (in-flight answers) is too short to say
        // anything about rate or p99.
        if seconds < 0.5 {
            return;
        }
        let rate = in_window as f64 / seconds;
        self.samples.push(ProgressSample {
            second: (elapsed.as_secs_f64() * 10.0).round() / 10.0,
            rate: rate.round(),
            p99_us: p99,
            errors,
        });
        let line = format!(
            "{:>6.1}s/{}s  requests {}  rate {}/s  errors {}  p99 {}",
            elapsed.as_secs_f64(),
            self.duration.as_secs_f64(),
            crate::report::thousands(requests),
            crate::report::thousands(rate.round() as u64),
            crate::report::thousands(errors),
            human_us(p99)
        );
        if let Some(bar) = &self.bar {
            bar.set_position(elapsed.as_millis() as u64);
            bar.set_message(line);
        } else if self.plain {
            eprintln!("{line}");
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// Runs a whole load test (set-up, measured run, audit, clean-up) and reports on it.
pub async fn run(args: &Args) -> Result<Report, LoadError> {
    if let Some(why) = args.scenario.skipped_because() {
        return Ok(Report::skipped(args, why));
    }
    match args.scenario {
        Scenario::Viewers => return crate::viewers::run(args).await,
        Scenario::Onsale => return crate::onsale::run(args).await,
        _ => {}
    }
    let started_at = chrono::Utc::now();
    let (api, plan) = prepare(args).await?;
    let plan = Arc::new(plan);
    let measured = drive(plan.clone(), args.quiet).await?;
    let log = &measured.shard.audit;
    let mut notes = Vec::new();
    let (audit, statuses) = if plan.audited {
        match run_audit(&api, &plan, log).await {
            Ok((report, statuses)) => (Some(report), Some(statuses)),
            // An audit that cannot read the server's state fails: nothing was proven.
            Err(e) => (Some(AuditReport::unreadable(e.to_string())), None),
        }
    } else {
        (None, None)
    };
    let cleanup = if matches!(plan.scenario, Scenario::Holds | Scenario::HotSeats) && !log.open.is_empty() {
        match release_leftovers(&api, &plan, log, statuses.as_deref()).await {
            Ok(cleanup) => Some(cleanup),
            Err(e) => {
                notes.push(format!("releasing the holds left open failed: {e}"));
                None
            }
        }
    } else {
        None
    };
    let seconds = measured.elapsed.as_secs_f64();
    let operations: Vec<OpSummary> = plan
        .ops
        .iter()
        .enumerate()
        .map(|(i, name)| OpSummary::of(name, &measured.shard.ops[i], seconds))
        .collect();
    let timeline_len = plan.seconds();
    let timeline = Timeline {
        seconds: timeline_len,
        operations: plan
            .ops
            .iter()
            .enumerate()
            .map(|(i, name)| ((*name).to_owned(), measured.shard.series(i, timeline_len)))
            .collect(),
        errors: measured.shard.series(plan.ops.len(), timeline_len),
    };
    if audit.as_ref().is_some_and(|a| a.facts.holds_created == 0) {
        notes.push(
            "no hold answered 201 (were the seats in play taken before the run, or is the event not on sale?): \
             the audit had no hold to check"
                .into(),
        );
    }
    let limited: u64 =
        operations.iter().map(|o| o.statuses.get("429 RATE_LIMITED").copied().unwrap_or(0)).sum();
    if limited > 0 {
        notes.push(format!(
            "the server rate-limited {limited} requests (429): spread the load over more --users, or raise the \
             server's per-user limit for a capacity test"
        ));
    }
    if plan.rate.is_none() && plan.scenario != Scenario::Bare {
        notes.push(
            "closed model: latencies are at the load the connections produce, not at a fixed rate".into(),
        );
    }
    let mut report = Report::new(
        args,
        &plan,
        started_at,
        measured.elapsed,
        &measured.shard,
        operations,
        timeline,
        measured.progress,
        audit,
        cleanup,
        notes,
    );
    report.generator_cpu =
        measured.cpu_s.and_then(|cpu_s| GeneratorCpu::of(cpu_s, report.elapsed_s, report.responses));
    Ok(report)
}
