//! Configuration: one `Config`, from flags or `BOXOFFICE_*` environment variables.

use std::net::SocketAddr;
use std::path::PathBuf;

use boxoffice_core::Limits;
use boxoffice_engine::journal::SyncMode;

#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    /// Address to listen on; port 0 picks a free port (printed at start-up).
    #[arg(long, env = "BOXOFFICE_ADDR", default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
    /// Directory for the database, hold journal, secrets and mail.
    #[arg(long, env = "BOXOFFICE_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// Seed demo venues and events (once) and turn on --dev-auth.
    #[arg(long, env = "BOXOFFICE_DEMO")]
    pub demo: bool,
    /// Let anyone mint tokens at POST /v1/auth/token. For demos and tests only.
    #[arg(long, env = "BOXOFFICE_DEV_AUTH")]
    pub dev_auth: bool,
    /// Hold lifetime in whole seconds.
    #[arg(long, env = "BOXOFFICE_HOLD_TTL", default_value_t = Limits::DEFAULT_HOLD_TTL_MS / 1000,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub hold_ttl: u64,
    /// Seats one hold may contain.
    #[arg(long, env = "BOXOFFICE_MAX_SEATS_PER_HOLD", default_value_t = Limits::DEFAULT_MAX_SEATS_PER_HOLD,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub max_seats_per_hold: u32,
    /// Seats one user may have per event, held plus bought.
    #[arg(long, env = "BOXOFFICE_MAX_SEATS_PER_USER", default_value_t = Limits::DEFAULT_MAX_SEATS_PER_USER_PER_EVENT,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub max_seats_per_user: u32,
    /// HS256 secret for tokens; when absent one is generated and kept in the data dir.
    #[arg(long, env = "BOXOFFICE_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// When a hold is answered: after `fsync` of its journal record (survives power loss)
    /// or after `write` (survives a killed process).
    #[arg(long, env = "BOXOFFICE_JOURNAL_SYNC", default_value = "fsync", value_parser = ["fsync", "write"])]
    pub journal_sync: String,
    /// Simulated gateway latency: `MS` or `MIN-MAX` milliseconds.
    #[arg(long, env = "BOXOFFICE_PAYMENT_LATENCY_MS", default_value = "200-500", value_parser = parse_latency)]
    pub payment_latency_ms: (u64, u64),
    /// Share of `tok_random` payments the simulated gateway declines.
    #[arg(long, env = "BOXOFFICE_PAYMENT_FAILURE_RATE", default_value_t = 0.03, value_parser = parse_rate)]
    pub payment_failure_rate: f64,
    /// Seconds a gateway call may take before the checkout gives up on it.
    #[arg(long, env = "BOXOFFICE_PAYMENT_TIMEOUT", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=120))]
    pub payment_timeout: u64,
    /// Distributed mode: the Redis that holds seat states, holds and the change feeds,
    /// shared by every node (`redis://host:port/db`), or a Redis Cluster named by some of
    /// its nodes (`redis+cluster://host:port,host:port,...`; `user:password@` before the
    /// first applies to all). Without it holds live in this process.
    #[arg(long, env = "BOXOFFICE_REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,
    /// Put before every Redis key (several deployments on one Redis).
    #[arg(long, env = "BOXOFFICE_REDIS_KEY_PREFIX", default_value = "bo:")]
    pub redis_key_prefix: String,
    /// Distributed mode: the PostgreSQL that holds the catalog, orders, audit history and
    /// outbox, shared by every node. Without it the store is SQLite in the data dir.
    #[arg(long, env = "BOXOFFICE_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Connections to PostgreSQL per node.
    #[arg(long, env = "BOXOFFICE_DATABASE_POOL_SIZE", default_value_t = 16,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub database_pool_size: u32,
    /// Seconds to keep retrying an unreachable Redis or PostgreSQL at start-up.
    #[arg(long, env = "BOXOFFICE_BACKEND_CONNECT_TIMEOUT", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub backend_connect_timeout: u64,
    /// Whether this node writes the hold-side audit history from the inventory's change
    /// feed: exactly one node of a distributed deployment must. Default: yes when embedded,
    /// no in distributed mode (name the one writer explicitly with `true`).
    #[arg(long, env = "BOXOFFICE_AUDIT_WRITER", action = clap::ArgAction::Set)]
    pub audit_writer: Option<bool>,
    /// Orders refunded per second by the job that refunds a cancelled event.
    #[arg(long, env = "BOXOFFICE_CANCEL_REFUNDS_PER_SECOND", default_value_t = 20,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub cancel_refunds_per_second: u32,
    /// The payment gateway: `simulated` (test card tokens, no money moves) or `stripe`.
    #[arg(long, env = "BOXOFFICE_PAYMENT_GATEWAY", default_value = "simulated",
          value_parser = ["simulated", "stripe"])]
    pub payment_gateway: String,
    /// Stripe secret API key (`sk_live_...` or `sk_test_...`); required with `--payment-gateway stripe`.
    #[arg(long, env = "BOXOFFICE_STRIPE_SECRET_KEY", hide_env_values = true)]
    pub stripe_secret_key: Option<String>,
    /// Stripe API base URL (a mock's address in tests).
    #[arg(long, env = "BOXOFFICE_STRIPE_BASE_URL", default_value = "https://api.stripe.com")]
    pub stripe_base_url: String,
    /// Signing secret of the Stripe webhook endpoint (`whsec_...`); without it
    /// `POST /v1/payments/webhook` refuses every delivery.
    #[arg(long, env = "BOXOFFICE_STRIPE_WEBHOOK_SECRET", hide_env_values = true)]
    pub stripe_webhook_secret: Option<String>,
    /// Largest age (and clock skew) of a webhook signature's timestamp, in seconds.
    #[arg(long, env = "BOXOFFICE_STRIPE_WEBHOOK_TOLERANCE", default_value_t = 300,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub stripe_webhook_tolerance: u64,
    /// Interval of the live seat map's deltas, in milliseconds.
    #[arg(long, env = "BOXOFFICE_SSE_INTERVAL_MS", default_value_t = 100,
          value_parser = clap::value_parser!(u64).range(10..=10_000))]
    pub sse_interval_ms: u64,
    /// Live seat map streams this server follows at once.
    #[arg(long, env = "BOXOFFICE_SSE_MAX_CLIENTS", default_value_t = 100_000)]
    pub sse_max_clients: usize,
    /// Live seat map streams per client address.
    #[arg(long, env = "BOXOFFICE_SSE_MAX_CLIENTS_PER_IP", default_value_t = 1_000)]
    pub sse_max_clients_per_ip: u32,
    /// Seat changes remembered per event for deltas and resumes (older: a snapshot).
    #[arg(long, env = "BOXOFFICE_CHANGE_RING_SEATS", default_value_t = 65_536)]
    pub change_ring_seats: usize,
    /// Requests per second (and burst) one user may make to `POST .../holds` and
    /// `POST .../checkout`; 0 turns the limit off.
    #[arg(long, env = "BOXOFFICE_RATE_LIMIT_PER_USER", default_value_t = 10)]
    pub rate_limit_per_user: u32,
    /// Requests per second (and burst) one client address may make to any API route;
    /// 0 (the default) turns the limit off.
    #[arg(long, env = "BOXOFFICE_RATE_LIMIT_PER_IP", default_value_t = 0)]
    pub rate_limit_per_ip: u32,
    /// Hold and checkout requests served at once; one more is answered 503 OVERLOADED.
    #[arg(long, env = "BOXOFFICE_MAX_INFLIGHT_HOLDS", default_value_t = 4096,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_inflight_holds: u32,
    /// The ticket stream: in process, or NATS JetStream with `--nats-url`.
    #[command(flatten)]
    pub stream: crate::stream::StreamConfig,
    /// Webhook deliveries: retry schedule, time limit, concurrency, address rules.
    #[command(flatten)]
    pub webhooks: crate::webhooks::WebhookConfig,
    /// The sold-out waitlist: offer TTL, entries per event.
    #[command(flatten)]
    pub waitlist: crate::waitlist::WaitlistConfig,
    /// Log filter (tracing `EnvFilter` syntax).
    #[arg(long, env = "BOXOFFICE_LOG", default_value = "info")]
    pub log: String,
}

fn parse_latency(s: &str) -> Result<(u64, u64), String> {
    let parse = |p: &str| p.trim().parse::<u64>().map_err(|_| format!("{p:?} is not a whole number of ms"));
    let (min, max) = match s.split_once('-') {
        Some((a, b)) => (parse(a)?, parse(b)?),
        None => {
            let v = parse(s)?;
            (v, v)
        }
    };
    if min > max || max > 60_000 {
        return Err("latency must be MIN-MAX with MIN <= MAX <= 60000".into());
    }
    Ok((min, max))
}

fn parse_rate(s: &str) -> Result<f64, String> {
    let rate: f64 = s.parse().map_err(|_| format!("{s:?} is not a number"))?;
    if !(0.0..=1.0).contains(&rate) {
        return Err("the failure rate is between 0 and 1".into());
    }
    Ok(rate)
}

impl Config {
    /// A config for tests: port 0, the given data dir, dev auth, no payment latency.
    pub fn for_tests(data_dir: PathBuf) -> Self {
        Config {
            addr: "127.0.0.1:0".parse().expect("a literal address"),
            data_dir,
            demo: false,
            dev_auth: true,
            hold_ttl: Limits::DEFAULT_HOLD_TTL_MS / 1000,
            max_seats_per_hold: Limits::DEFAULT_MAX_SEATS_PER_HOLD,
            max_seats_per_user: Limits::DEFAULT_MAX_SEATS_PER_USER_PER_EVENT,
            jwt_secret: None,
            journal_sync: "fsync".into(),
            payment_latency_ms: (0, 0),
            payment_failure_rate: 0.03,
            payment_timeout: 10,
            cancel_refunds_per_second: 20,
            redis_url: None,
            redis_key_prefix: "bo:".into(),
            database_url: None,
            database_pool_size: 16,
            backend_connect_timeout: 30,
            audit_writer: None,
            payment_gateway: "simulated".into(),
            stripe_secret_key: None,
            stripe_base_url: "https://api.stripe.com".into(),
            stripe_webhook_secret: None,
            stripe_webhook_tolerance: 300,
            sse_interval_ms: 100,
            sse_max_clients: 100_000,
            sse_max_clients_per_ip: 1_000,
            change_ring_seats: 65_536,
            // Off: API tests make quick series of holds as one user; the limit has its own
            // tests (tests/api/queue.rs), with it on.
            rate_limit_per_user: 0,
            rate_limit_per_ip: 0,
            max_inflight_holds: 4096,
            stream: crate::stream::StreamConfig::default(),
            webhooks: crate::webhooks::WebhookConfig::default(),
            waitlist: crate::waitlist::WaitlistConfig::default(),
            log: "warn".into(),
        }
    }

    pub fn dev_auth_enabled(&self) -> bool {
        self.dev_auth || self.demo
    }

    pub fn limits(&self) -> Limits {
        Limits {
            max_seats_per_hold: self.max_seats_per_hold,
            max_seats_per_user_per_event: self.max_seats_per_user,
            hold_ttl_ms: self.hold_ttl * 1000,
        }
    }

    /// Whether this node writes the hold-side audit history (see `--audit-writer`).
    pub fn writes_audit(&self) -> bool {
        self.audit_writer.unwrap_or(!self.distributed())
    }

    /// Distributed mode needs both shared backends: a shared inventory beside a private
    /// store (or the reverse) would let one node undo another's sales.
    pub fn check_backends(&self) -> Result<(), String> {
        match (&self.redis_url, &self.database_url) {
            (Some(_), None) => Err("--redis-url needs --database-url: distributed mode shares both".into()),
            (None, Some(_)) => Err("--database-url needs --redis-url: distributed mode shares both".into()),
            _ => Ok(()),
        }
    }

    /// Whether the inventory and store are shared with other nodes.
    pub fn distributed(&self) -> bool {
        self.redis_url.is_some() || self.database_url.is_some()
    }

    pub fn sync_mode(&self) -> SyncMode {
        if self.journal_sync == "write" { SyncMode::Write } else { SyncMode::Fsync }
    }

    /// The configuration as logged at start-up, secrets redacted.
    pub fn redacted(&self) -> String {
        let mut shown = self.clone();
        shown.stream = shown.stream.redacted();
        let secrets = [
            &mut shown.jwt_secret,
            &mut shown.stripe_secret_key,
            &mut shown.stripe_webhook_secret,
            &mut shown.redis_url,
        ];
        if let Some(url) = &shown.database_url {
            shown.database_url = Some(boxoffice_store::PgConfig::new(url.clone()).redacted_url());
        }
        for secret in secrets {
            if secret.is_some() {
                *secret = Some("<redacted>".into());
            }
        }
        format!("{shown:?}")
    }
}
