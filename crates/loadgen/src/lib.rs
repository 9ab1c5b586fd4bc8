//! `boxoffice loadtest`: the boxoffice load generator and oversell audit.
//!
//! A black-box HTTP client: it knows the server only through the public API. Workers run
//! on `--threads` single-threaded tokio runtimes (default 1, so the whole generator can be
//! pinned to one core), one keep-alive hyper HTTP/1.1 connection per worker
//! ([`client`]). Load is closed (each connection sends its next request when the
//! previous one answered) or, with `--rate`, open: a fixed arrival rate spread over the
//! connections, latency measured from each request's intended start ([`schedule`]).
//! Every run is bounded by `--duration` (and optionally `--requests`) and targets only
//! loopback addresses unless `--allow-remote`.
//!
//! Scenarios ([`run`]): `holds`, `hot-seats`, `browse`, `bare`, and two with runners of
//! their own: [`viewers`] (a fleet of live seat map viewers over SSE, [`sse`], measuring
//! staleness while a writer changes seats) and [`onsale`] (simulated fans arriving at an
//! open rate: waiting room, seat map, holds, payment). Results: a live progress line,
//! per-operation HDR percentiles and status counts ([`stats`]), the oversell [`audit`] for
//! `holds`, `hot-seats` and `onsale`, JSON and a self-contained HTML report ([`report`],
//! [`html`]).
//!
//! Exit status of [`main`]: 0 success (or a skipped scenario), 1 the audit found an
//! anomaly or no request got an answer, 2 a usage or set-up error.

pub mod api;
pub mod audit;
pub mod bench_table;
pub mod client;
pub mod html;
pub mod inspect;
pub mod onsale;
pub mod pipeline;
pub mod report;
pub mod run;
pub mod schedule;
pub mod setup;
pub mod sse;
pub mod stats;
pub mod sys;
pub mod target;
pub mod viewers;
pub mod worker;
pub mod zipf;

use std::path::PathBuf;
use std::process::ExitCode;

pub use report::Report;

/// Why a load test could not run (or finish).
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A flag or the target is wrong.
    #[error("{0}")]
    Usage(String),
    /// The server is not in a state the scenario can run against.
    #[error("{0}")]
    Setup(String),
    /// A set-up or audit call got no answer.
    #[error("{what}: {source}")]
    Transport { what: String, source: client::TransportError },
    /// The server answered something the load generator cannot interpret.
    #[error("{0}")]
    Protocol(String),
    #[error("cannot write {path}: {source}")]
    Write { path: String, source: std::io::Error },
    #[error("internal error: {0}")]
    Internal(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// Single-seat holds on uniform or Zipf-distributed seats, each released or bought.
    Holds,
    /// Many users racing for a few seats.
    HotSeats,
    /// Event detail, seat map and availability, revalidated with ETags.
    Browse,
    /// One GET path in a loop, to compare the generator with wrk.
    Bare,
    /// The full onsale story per fan: waiting room, seat map, live map, hold, payment.
    Onsale,
    /// A fleet of live seat map viewers (SSE) measuring staleness under a seat writer.
    Viewers,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Holds => "holds",
            Scenario::HotSeats => "hot-seats",
            Scenario::Browse => "browse",
            Scenario::Bare => "bare",
            Scenario::Onsale => "onsale",
            Scenario::Viewers => "viewers",
        }
    }

    /// Why the scenario cannot run, if it cannot (every scenario runs today).
    pub fn skipped_because(self) -> Option<&'static str> {
        None
    }
}

/// What follows a successful hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mix {
    /// `DELETE` the hold.
    HoldRelease,
    /// Buy the hold with `tok_visa`.
    HoldCheckout,
}

impl Mix {
    pub fn name(self) -> &'static str {
        match self {
            Mix::HoldRelease => "hold-release",
            Mix::HoldCheckout => "hold-checkout",
        }
    }
}

/// How onsale fans choose their seats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Pick {
    /// The server's best available (`best_available`).
    Best,
    /// Adjacent available seats in one row, from a random place in the live map's bitmap.
    Random,
    /// Half of the fans one way, half the other.
    Mixed,
}

/// `boxoffice loadtest` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Base URL of the server under test (loopback only unless --allow-remote); several
    /// nodes of one deployment separated by commas, which connections (holds, hot-seats,
    /// browse, bare), fans (onsale) and viewers are spread over in turn.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub target: String,
    /// What to do: holds, hot-seats, browse, bare, onsale, viewers.
    #[arg(long, value_enum, default_value_t = Scenario::Holds)]
    pub scenario: Scenario,
    /// Concurrent keep-alive connections (one worker each), 1-10000. Onsale: the most fans
    /// in flight at once (each has its own connection).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub connections: u32,
    /// Seconds to send load (fractions allowed), at most 3600.
    #[arg(long, default_value = "10", value_parser = parse_duration)]
    pub duration: f64,
    /// Stop after this many requests (all operations together), even before --duration.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub requests: Option<u64>,
    /// Open model: this many requests per second in total, spread over the connections,
    /// latency measured from each request's intended start. Without it: closed model.
    /// Onsale: fans arriving per second [default: 20].
    #[arg(long, value_parser = parse_rate)]
    pub rate: Option<f64>,
    /// Worker threads (each a single-threaded runtime), 1-64.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub threads: u32,
    /// Event for holds, hot-seats and browse.
    #[arg(long, default_value = "ev_1")]
    pub event: String,
    /// What follows each successful hold [default: hold-release for holds, hold-checkout
    /// for hot-seats].
    #[arg(long, value_enum)]
    pub mix: Option<Mix>,
    /// Pick seats Zipf-distributed with this exponent (seat index 0 the most popular)
    /// instead of uniformly.
    #[arg(long)]
    pub zipf: Option<f64>,
    /// Users whose tokens the run uses [default: 1000; for holds with hold-checkout, one
    /// per 7 seats]. In holds, seat i belongs to user i mod users. Onsale: the most fans
    /// [default: rate x duration]; viewers: the writer's users [default: enough to stay
    /// under the per-user limits].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub users: Option<u32>,
    /// Hot-seats: how many seats (the event's first K) the users race for.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=200_000))]
    pub seats: u32,
    /// Bare: the path to GET.
    #[arg(long, default_value = "/healthz")]
    pub path: String,
    /// Bare: HTTP/1.1 pipelining, this many requests in flight per connection (closed
    /// model only). Off (1) by default: a pipelined figure measures fewer system calls
    /// per request and is not comparable with one request at a time.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=i64::from(pipeline::MAX_PIPELINE_DEPTH)))]
    pub pipeline: u32,
    /// Seconds one request may take before it counts as timed out.
    #[arg(long, default_value = "15", value_parser = parse_timeout)]
    pub timeout: f64,
    /// Write the results as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write a self-contained HTML report to this file.
    #[arg(long)]
    pub html: Option<PathBuf>,
    /// Allow a target that is not a loopback address (only servers you run).
    #[arg(long)]
    pub allow_remote: bool,
    /// Seed of the seat and user choices [default: random].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Prefix of the run's user names [default: a fresh random one per run, so the
    /// audit reads only this run's orders].
    #[arg(long)]
    pub user_prefix: Option<String>,
    /// Viewers: live seat map streams to open, 1-1000000 (capped by the open-file limit).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub viewers: u32,
    /// Viewers: seat changes per second the writer makes (holds and releases).
    #[arg(long, default_value = "1000", value_parser = parse_rate)]
    pub changes_per_second: f64,
    /// Viewers: a local server's process id, to read its memory (`/proc/PID/status`).
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Onsale: the share of fans (0-1) who hold seats and then leave without paying,
    /// letting their holds expire.
    #[arg(long, default_value = "0.1", value_parser = parse_share)]
    pub abandon_rate: f64,
    /// Onsale: seats each fan wants, 1-8.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=8))]
    pub seats_per_user: u32,
    /// Onsale: how fans pick seats.
    #[arg(long, value_enum, default_value_t = Pick::Mixed)]
    pub pick: Pick,
    /// Onsale: milliseconds each fan follows the live map before picking.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(0..=60_000))]
    pub follow_ms: u64,
    /// Skip the oversell audit (e.g. against a server others use at the same time).
    #[arg(long)]
    pub no_audit: bool,
    /// No progress line and no summary on the terminal (files are still written).
    #[arg(long)]
    pub quiet: bool,
}

impl Args {
    /// Parses flags as `boxoffice loadtest` would (the first item is not a program name).
    pub fn from_flags<I, S>(flags: I) -> Result<Args, clap::Error>
    where
        I: IntoIterator<Item = S>,
        S: Into<std::ffi::OsString> + Clone,
    {
        use clap::Parser;
        #[derive(clap::Parser)]
        #[command(name = "loadtest")]
        struct Cli {
            #[command(flatten)]
            args: Args,
        }
        let all =
            std::iter::once(std::ffi::OsString::from("loadtest")).chain(flags.into_iter().map(Into::into));
        Cli::try_parse_from(all).map(|cli| cli.args)
    }
}

fn parse_duration(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v <= 3600.0 => Ok(v),
        _ => Err("the duration is a number of seconds, more than 0 and at most 3600".into()),
    }
}

fn parse_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v <= 10_000_000.0 => Ok(v),
        _ => Err("the rate is requests per second, more than 0 and at most 10000000".into()),
    }
}

fn parse_share(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err("a share from 0 to 1".into()),
    }
}

fn parse_timeout(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v <= 600.0 => Ok(v),
        _ => Err("the timeout is a number of seconds, more than 0 and at most 600".into()),
    }
}

/// Runs the load test, then writes `--json` and `--html`. A skipped scenario gives a
/// report that says so.
pub async fn execute(args: &Args) -> Result<Report, LoadError> {
    let report = run::run(args).await?;
    if let Some(path) = &args.json {
        let json = serde_json::to_vec_pretty(&report).map_err(|e| LoadError::Internal(e.to_string()))?;
        write(path, &json)?;
    }
    if let Some(path) = &args.html {
        write(path, html::render(&report).as_bytes())?;
    }
    Ok(report)
}

fn write(path: &PathBuf, bytes: &[u8]) -> Result<(), LoadError> {
    std::fs::write(path, bytes)
        .map_err(|source| LoadError::Write { path: path.display().to_string(), source })
}

/// The `boxoffice loadtest` command: runs, prints the summary, and says by its exit
/// status whether the run was clean.
pub fn main(args: Args) -> ExitCode {
    if let Some(why) = args.scenario.skipped_because() {
        println!("scenario {}: skipped: {why}", args.scenario.name());
        return ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(execute(&args)) {
        Ok(report) => {
            if !args.quiet {
                print!("{}", report.text());
            }
            match report.verdict() {
                Ok(()) => ExitCode::SUCCESS,
                Err(why) => {
                    eprintln!("FAILED: {why}");
                    ExitCode::from(1)
                }
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
