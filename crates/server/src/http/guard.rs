//! Admission control in front of the handlers, on every matched route: a per-IP rate
//! limit (all routes but health and metrics; off unless `--rate-limit-per-ip`), a
//! per-user rate limit on `POST .../holds` and `POST .../checkout` (`--rate-limit-per-user`,
//! 10/s with a burst of 10 by default) and load shedding on those two routes: at most
//! `--max-inflight-holds` of them run at once, and one more is answered
//! `503 OVERLOADED` at once instead of waiting in a queue that would only grow.
//!
//! The per-user limit is checked right after authentication and before the body is read
//! (401 -> 429 -> 400): the bearer token is verified here (the verification is cached)
//! and the verified caller is handed to the handler's extractor, so it is not verified
//! twice. A request whose token does not verify passes on and is answered 401 by the
//! handler.
//!
//! Embedded, limits are keyed governor limiters (GCRA, a few dozen bytes per key); a
//! periodic `retain_recent()` ([`purge_step`]) forgets keys that are back to a full
//! burst, so memory follows the active users, not every user ever seen. In distributed
//! mode the per-user and per-IP limits hold cluster-wide: each check is one GCRA script
//! in Redis ([`SharedLimit`], one round trip, the Redis server's clock), keys
//! `<prefix>rl:<scope>:<key>` expiring once back to a full burst. When Redis does not
//! answer (an error, or no answer within [`SHARED_CHECK_TIMEOUT`]) a check falls back to
//! this node's own limiter of the same rate, never to no limit and never to refusing
//! everyone; Redis is tried again after [`SHARED_RETRY_AFTER`] and the shared limit
//! resumes when it answers (`boxoffice_rate_limit_shared{scope}` says which is in force).
//! Refusals are `429 RATE_LIMITED` with `Retry-After` in whole seconds (at least 1).

use std::convert::Infallible;
use std::future::Future;
use std::hash::Hash;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, MatchedPath, Request};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use boxoffice_core::UserId;
use boxoffice_engine::RedisConnection;
use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use parking_lot::Mutex;
use redis::Script;
use tower::{Layer, Service};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::{AppState, Config};

/// How often limiters forget keys that are back to a full burst.
pub const PURGE_INTERVAL: Duration = Duration::from_secs(10);
/// Routes the per-user limit and the shedding apply to (with `POST`).
pub const HOLD_ROUTE: &str = "/v1/events/{event_id}/holds";
pub const CHECKOUT_ROUTE: &str = "/v1/holds/{hold_id}/checkout";
/// Routes no per-IP limit applies to: probes and scrapers come from few addresses.
const IP_EXEMPT_ROUTES: [&str; 3] = ["/healthz", "/readyz", "/metrics"];

/// A keyed rate limit of `n` requests per second with a burst of `n`.
pub struct KeyedLimit<K: Hash + Eq + Clone, C: Clock = DefaultClock> {
    limiter: RateLimiter<K, DefaultKeyedStateStore<K>, C, NoOpMiddleware<C::Instant>>,
}

impl<K: Hash + Eq + Clone> KeyedLimit<K> {
    pub fn per_second(n: NonZeroU32) -> Self {
        KeyedLimit::with_clock(n, DefaultClock::default())
    }

    /// A burst of `burst`, then one more every `interval`.
    pub fn with_interval(burst: NonZeroU32, interval: Duration) -> Self {
        let quota = Quota::with_period(interval).expect("a non-zero interval").allow_burst(burst);
        KeyedLimit { limiter: RateLimiter::dashmap_with_clock(quota, DefaultClock::default()) }
    }
}

impl<K: Hash + Eq + Clone, C: Clock> KeyedLimit<K, C> {
    pub fn with_clock(n: NonZeroU32, clock: C) -> Self {
        KeyedLimit { limiter: RateLimiter::dashmap_with_clock(Quota::per_second(n).allow_burst(n), clock) }
    }

    /// Counts one request of `key`: `Err(seconds to wait)` when it is over the limit.
    pub fn check(&self, key: &K) -> Result<(), u64> {
        self.limiter.check_key(key).map_err(|not_until| {
            let wait = not_until.wait_time_from(self.limiter.clock().now());
            retry_after_seconds(wait)
        })
    }

    /// Forgets keys that are back to a full burst.
    pub fn purge(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }

    /// Keys remembered.
    pub fn len(&self) -> usize {
        self.limiter.len()
    }

    pub fn is_empty(&self) -> bool {
        self.limiter.is_empty()
    }
}

/// Whole seconds, rounded up, at least 1: what `Retry-After` says.
pub fn retry_after_seconds(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

/// How long a shared check waits for Redis before this node's own limiter answers.
pub const SHARED_CHECK_TIMEOUT: Duration = Duration::from_millis(100);
/// After Redis failed to answer, checks stay on this node's limiter this long.
pub const SHARED_RETRY_AFTER: Duration = Duration::from_secs(1);

/// One rate-limit check, GCRA: KEYS the limited key; ARGV the emission interval in
/// microseconds (1 s / rate) and the burst. 0 when allowed, else the microseconds to
/// wait. Time is the Redis server's, one clock for every node.
const GCRA_SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - burst * interval
if allow_at > now then return allow_at - now end
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.max(1, math.ceil((new_tat - now) / 1000)))
return 0
";

/// A rate limit of `n` per second with a burst of `n` shared by every node through
/// Redis, with this node's own limit of the same rate while Redis does not answer.
pub struct SharedLimit<K: Hash + Eq + Clone + std::fmt::Display> {
    conn: RedisConnection,
    /// `<prefix>rl:<scope>:`
    key_prefix: String,
    scope: &'static str,
    interval_us: u64,
    burst: u32,
    script: Script,
    local: KeyedLimit<K>,
    /// While set and in the future, checks use `local` without asking Redis.
    retry_at: Mutex<Option<Instant>>,
    degraded: AtomicBool,
}

impl<K: Hash + Eq + Clone + std::fmt::Display> SharedLimit<K> {
    pub fn new(conn: RedisConnection, prefix: &str, scope: &'static str, n: NonZeroU32) -> Self {
        metrics::gauge!("boxoffice_rate_limit_shared", "scope" => scope).set(1.0);
        SharedLimit {
            conn,
            key_prefix: format!("{prefix}rl:{scope}:"),
            scope,
            interval_us: (1_000_000 / u64::from(n.get())).max(1),
            burst: n.get(),
            script: Script::new(GCRA_SCRIPT),
            local: KeyedLimit::per_second(n),
            retry_at: Mutex::new(None),
            degraded: AtomicBool::new(false),
        }
    }

    /// A shared limit of a burst of `burst`, then one more every `interval`.
    pub fn with_interval(
        conn: RedisConnection,
        prefix: &str,
        scope: &'static str,
        burst: NonZeroU32,
        interval: Duration,
    ) -> Self {
        metrics::gauge!("boxoffice_rate_limit_shared", "scope" => scope).set(1.0);
        SharedLimit {
            conn,
            key_prefix: format!("{prefix}rl:{scope}:"),
            scope,
            interval_us: (interval.as_micros() as u64).max(1),
            burst: burst.get(),
            script: Script::new(GCRA_SCRIPT),
            local: KeyedLimit::with_interval(burst, interval),
            retry_at: Mutex::new(None),
            degraded: AtomicBool::new(false),
        }
    }

    /// Whether checks are on this node's own limiter now (Redis did not answer).
    pub fn is_degraded(&self) -> bool {
        self.degraded.load(Ordering::Acquire)
    }

    /// Counts one request of `key` cluster-wide: `Err(seconds to wait)` over the limit.
    pub async fn check(&self, key: &K) -> Result<(), u64> {
        let skip = matches!(*self.retry_at.lock(), Some(at) if Instant::now() < at);
        if !skip {
            let mut invocation = self.script.prepare_invoke();
            invocation.key(format!("{}{key}", self.key_prefix)).arg(self.interval_us).arg(self.burst);
            let mut conn = self.conn.clone();
            let answer =
                tokio::time::timeout(SHARED_CHECK_TIMEOUT, invocation.invoke_async::<u64>(&mut conn)).await;
            match answer {
                Ok(Ok(wait_us)) => {
                    self.recovered();
                    return if wait_us == 0 {
                        Ok(())
                    } else {
                        Err(retry_after_seconds(Duration::from_micros(wait_us)))
                    };
                }
                Ok(Err(e)) => self.degrade(&e.to_string()),
                Err(_) => self.degrade("no answer in time"),
            }
        }
        metrics::counter!("boxoffice_rate_limit_local_checks_total", "scope" => self.scope).increment(1);
        self.local.check(key)
    }

    fn degrade(&self, why: &str) {
        *self.retry_at.lock() = Some(Instant::now() + SHARED_RETRY_AFTER);
        if !self.degraded.swap(true, Ordering::AcqRel) {
            tracing::warn!(
                scope = self.scope,
                error = why,
                "rate limit: Redis unreachable; this node limits alone"
            );
            metrics::gauge!("boxoffice_rate_limit_shared", "scope" => self.scope).set(0.0);
        }
    }

    fn recovered(&self) {
        if self.degraded.swap(false, Ordering::AcqRel) {
            *self.retry_at.lock() = None;
            tracing::info!(scope = self.scope, "rate limit: Redis is back; the limit is shared again");
            metrics::gauge!("boxoffice_rate_limit_shared", "scope" => self.scope).set(1.0);
        }
    }
}

/// A limit of this node alone (embedded) or of every node (distributed).
pub enum Limit<K: Hash + Eq + Clone + std::fmt::Display> {
    Local(KeyedLimit<K>),
    Shared(SharedLimit<K>),
}

impl<K: Hash + Eq + Clone + std::fmt::Display> Limit<K> {
    pub async fn check(&self, key: &K) -> Result<(), u64> {
        match self {
            Limit::Local(limit) => limit.check(key),
            Limit::Shared(limit) => limit.check(key).await,
        }
    }

    pub fn purge(&self) {
        match self {
            Limit::Local(limit) => limit.purge(),
            Limit::Shared(limit) => limit.local.purge(),
        }
    }
}

/// The limits of one server.
pub struct Guard {
    per_user: Option<Limit<UserId>>,
    per_ip: Option<Limit<IpAddr>>,
    /// Wrong presale codes per user.
    pub presale_codes: crate::allocations::CodeAttempts,
    inflight: Arc<AtomicUsize>,
    max_inflight: usize,
}

impl Guard {
    pub fn new(config: &Config) -> Self {
        metrics::gauge!("boxoffice_limit", "name" => "rate_limit_per_user")
            .set(f64::from(config.rate_limit_per_user));
        metrics::gauge!("boxoffice_limit", "name" => "rate_limit_per_ip")
            .set(f64::from(config.rate_limit_per_ip));
        metrics::gauge!("boxoffice_limit", "name" => "max_inflight_holds")
            .set(f64::from(config.max_inflight_holds));
        Guard {
            per_user: NonZeroU32::new(config.rate_limit_per_user)
                .map(|n| Limit::Local(KeyedLimit::per_second(n))),
            per_ip: NonZeroU32::new(config.rate_limit_per_ip)
                .map(|n| Limit::Local(KeyedLimit::per_second(n))),
            presale_codes: crate::allocations::CodeAttempts::new(Limit::Local(KeyedLimit::with_interval(
                crate::allocations::CODE_FAILURE_BURST,
                crate::allocations::CODE_FAILURE_INTERVAL,
            ))),
            inflight: Arc::new(AtomicUsize::new(0)),
            max_inflight: config.max_inflight_holds as usize,
        }
    }

    /// The limits of a node in distributed mode: per user and per IP shared by every
    /// node through Redis (`conn`, keys under `--redis-key-prefix`).
    pub fn shared(config: &Config, conn: RedisConnection) -> Self {
        let prefix = &config.redis_key_prefix;
        Guard {
            per_user: NonZeroU32::new(config.rate_limit_per_user)
                .map(|n| Limit::Shared(SharedLimit::new(conn.clone(), prefix, "user", n))),
            per_ip: NonZeroU32::new(config.rate_limit_per_ip)
                .map(|n| Limit::Shared(SharedLimit::new(conn.clone(), prefix, "ip", n))),
            presale_codes: crate::allocations::CodeAttempts::new(Limit::Shared(SharedLimit::with_interval(
                conn,
                prefix,
                "presale-code",
                crate::allocations::CODE_FAILURE_BURST,
                crate::allocations::CODE_FAILURE_INTERVAL,
            ))),
            ..Guard::new(config)
        }
    }

    /// A slot on the hold path, or `None` when all are taken.
    fn enter(&self) -> Option<InFlight> {
        if self.inflight.fetch_add(1, Ordering::AcqRel) >= self.max_inflight {
            self.inflight.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(InFlight(self.inflight.clone()))
    }

    /// Requests on the hold path now.
    pub fn inflight(&self) -> usize {
        self.inflight.load(Ordering::Acquire)
    }

    pub fn purge(&self) {
        if let Some(limit) = &self.per_user {
            limit.purge();
        }
        if let Some(limit) = &self.per_ip {
            limit.purge();
        }
        self.presale_codes.purge(boxoffice_engine::Clock::now_ms(&boxoffice_engine::SystemClock));
    }
}

/// A request on the hold path; its slot frees when the response is ready.
struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

pub async fn purge_step(state: AppState) -> Result<(), String> {
    state.guard.purge();
    Ok(())
}

fn rate_limited(scope: &'static str, retry_after_s: u64) -> Response {
    metrics::counter!("boxoffice_rate_limited_total", "scope" => scope).increment(1);
    let message = match scope {
        "user" => "too many requests from this user; slow down",
        _ => "too many requests from this address; slow down",
    };
    ApiError::new(StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED", message)
        .with("scope", scope)
        .retry_after(retry_after_s)
        .into_response()
}

fn shed(route: &'static str) -> Response {
    metrics::counter!("boxoffice_shed_total", "route" => route).increment(1);
    ApiError::unavailable("OVERLOADED", "the server is at its limit of requests in flight; retry shortly")
        .into_response()
}

/// The verified caller of a request with a valid bearer token.
fn authenticate(state: &AppState, headers: &HeaderMap) -> Option<Arc<Caller>> {
    let token = headers.get(header::AUTHORIZATION)?.to_str().ok()?.strip_prefix("Bearer ")?;
    state.auth.verify(token.trim()).ok()
}

#[derive(Clone)]
pub struct GuardLayer {
    state: AppState,
}

impl GuardLayer {
    pub fn new(state: AppState) -> Self {
        GuardLayer { state }
    }
}

impl<S> Layer<S> for GuardLayer {
    type Service = GuardService<S>;
    fn layer(&self, inner: S) -> GuardService<S> {
        GuardService { inner, state: self.state.clone() }
    }
}

#[derive(Clone)]
pub struct GuardService<S> {
    inner: S,
    state: AppState,
}

impl<S> Service<Request> for GuardService<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        let state = self.state.clone();
        // The clone that was polled ready serves this request.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let route = request.extensions().get::<MatchedPath>().map(|p| p.as_str()).unwrap_or("");
        let hot = match (request.method() == Method::POST, route) {
            (true, HOLD_ROUTE) => Some("holds"),
            (true, CHECKOUT_ROUTE) => Some("checkout"),
            _ => None,
        };
        let ip = (!IP_EXEMPT_ROUTES.contains(&route))
            .then(|| request.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip()))
            .flatten();
        Box::pin(async move {
            let guard = &state.guard;
            if let Some(limit) = &guard.per_ip
                && let Some(ip) = ip
                && let Err(wait) = limit.check(&ip).await
            {
                return Ok(rate_limited("ip", wait));
            }
            let mut slot = None;
            if let Some(route) = hot {
                if let Some(limit) = &guard.per_user
                    && let Some(caller) = authenticate(&state, request.headers())
                {
                    if let Err(wait) = limit.check(&caller.user).await {
                        return Ok(rate_limited("user", wait));
                    }
                    request.extensions_mut().insert(caller);
                }
                match guard.enter() {
                    Some(entered) => slot = Some(entered),
                    None => return Ok(shed(route)),
                }
            }
            let response = inner.call(request).await;
            drop(slot);
            response
        })
    }
}

#[cfg(test)]
mod tests {
    use governor::clock::FakeRelativeClock;

    use super::*;

    #[test]
    fn a_key_gets_its_burst_then_waits_for_the_rate() {
        let clock = FakeRelativeClock::default();
        let limit: KeyedLimit<&str, _> = KeyedLimit::with_clock(NonZeroU32::new(10).unwrap(), clock.clone());
        for i in 0..10 {
            assert_eq!(limit.check(&"alice"), Ok(()), "request {i} of the burst");
        }
        assert_eq!(limit.check(&"alice"), Err(1), "the 11th waits (100 ms, said as 1 s)");
        assert_eq!(limit.check(&"bob"), Ok(()), "keys are limited apart");
        clock.advance(Duration::from_millis(100));
        assert_eq!(limit.check(&"alice"), Ok(()), "one more after a tenth of a second");
        assert_eq!(limit.check(&"alice"), Err(1));
    }

    #[test]
    fn retry_after_is_whole_seconds_rounded_up_and_at_least_one() {
        let clock = FakeRelativeClock::default();
        let limit: KeyedLimit<u8, _> = KeyedLimit::with_clock(NonZeroU32::new(1).unwrap(), clock.clone());
        assert_eq!(limit.check(&1), Ok(()));
        assert_eq!(limit.check(&1), Err(1));
        assert_eq!(retry_after_seconds(Duration::ZERO), 1);
        assert_eq!(retry_after_seconds(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_seconds(Duration::from_millis(1_001)), 2);
        assert_eq!(retry_after_seconds(Duration::from_secs(3)), 3);
    }

    #[test]
    fn purging_forgets_keys_back_to_a_full_burst() {
        let clock = FakeRelativeClock::default();
        let limit: KeyedLimit<u32, _> = KeyedLimit::with_clock(NonZeroU32::new(10).unwrap(), clock.clone());
        for key in 0..1_000 {
            limit.check(&key).unwrap();
        }
        assert_eq!(limit.len(), 1_000);
        clock.advance(Duration::from_secs(2));
        limit.purge();
        assert!(limit.is_empty(), "{} keys left", limit.len());
    }

    #[test]
    fn in_flight_slots_are_bounded_and_freed_on_drop() {
        let mut config = Config::for_tests(std::path::PathBuf::from("unused"));
        config.max_inflight_holds = 2;
        let guard = Guard::new(&config);
        let a = guard.enter().expect("first");
        let b = guard.enter().expect("second");
        assert!(guard.enter().is_none(), "a third is shed");
        assert_eq!(guard.inflight(), 2);
        drop(a);
        let c = guard.enter().expect("a freed slot is reused");
        drop((b, c));
        assert_eq!(guard.inflight(), 0);
    }
}
