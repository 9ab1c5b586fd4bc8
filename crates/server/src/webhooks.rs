//! Signed webhooks for integrators: the endpoint rules (URL, secret, event types), and the
//! dispatcher that feeds deliveries from the outbox and sends them.
//!
//! Each step the dispatcher (1) fans out the outbox rows past its cursor into one pending
//! delivery per subscribed endpoint (`Store::webhook_fan_out`, which also announces
//! sell-outs), then (2) claims due deliveries (`Store::webhook_claim`: per endpoint and
//! ticketing event, oldest first, none while an older one is pending) up to the free
//! sending slots, and (3) sends each one in a task of its own: `POST url` with the body
//! `{"id","type","created_at","data"}` and `Boxoffice-Signature: t=<unix s>,v1=<hex
//! HMAC-SHA256(secret, "<t>.<body>")>` (the scheme of incoming payment webhooks,
//! [`crate::stripe::sign`]). A 2xx answer delivers it; anything else is retried with
//! exponential backoff (doubling from `--webhook-retry-base-ms`, capped, jittered) until
//! `--webhook-retry-window-seconds` after its first attempt, then it is `failed`.
//!
//! Delivery is at least once: a node that dies after sending but before recording the
//! result sends again once its claim's lease runs out. Every node of a cluster runs the
//! dispatcher; the store makes fan-out and claims safe between them.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use boxoffice_core::UnixMs;
use boxoffice_store::{ClaimedDelivery, DeliveryAttempt, DeliveryOutcome, WEBHOOK_EVENT_TYPES};
use rand::Rng;
use tokio::sync::{Semaphore, watch};

use crate::AppState;
use crate::workers::now_ms;

/// Enabled endpoints at once.
pub const MAX_WEBHOOKS: u32 = 100;
/// Longest endpoint URL, in bytes.
pub const MAX_URL_BYTES: usize = 2048;
/// Secret length bounds, in bytes: long enough to be a key, short enough to be sane.
pub const MIN_SECRET_BYTES: usize = 16;
pub const MAX_SECRET_BYTES: usize = 256;
/// How often the dispatcher looks for outbox rows and due deliveries.
pub const DISPATCH_INTERVAL: Duration = Duration::from_millis(200);
/// Outbox rows fanned out per step.
pub const FAN_OUT_BATCH: u32 = 500;
/// Characters of an endpoint's answer or error kept in the delivery log.
pub const MAX_ERROR_CHARS: usize = 200;
/// How long a claim outlives the request's timeout before another node may take it over.
pub const LEASE_MARGIN_MS: u64 = 30_000;
/// The signature header of every delivery.
pub const SIGNATURE_HEADER: &str = "Boxoffice-Signature";

/// Delivery settings (`--webhook-*`).
#[derive(Debug, Clone, clap::Args)]
pub struct WebhookConfig {
    /// First retry delay of a failed delivery, in milliseconds; it doubles with each
    /// attempt up to `--webhook-retry-max-ms` (each delay jittered by up to +-20%).
    #[arg(long, env = "BOXOFFICE_WEBHOOK_RETRY_BASE_MS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    pub webhook_retry_base_ms: u64,
    /// Longest retry delay, in milliseconds.
    #[arg(long, env = "BOXOFFICE_WEBHOOK_RETRY_MAX_MS", default_value_t = 3_600_000,
          value_parser = clap::value_parser!(u64).range(1..=86_400_000))]
    pub webhook_retry_max_ms: u64,
    /// How long after its first attempt a delivery is retried before it is `failed`.
    #[arg(long, env = "BOXOFFICE_WEBHOOK_RETRY_WINDOW_SECONDS", default_value_t = 86_400,
          value_parser = clap::value_parser!(u64).range(1..=604_800))]
    pub webhook_retry_window_seconds: u64,
    /// Time limit of one delivery request (connect and answer), in milliseconds.
    #[arg(long, env = "BOXOFFICE_WEBHOOK_TIMEOUT_MS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(100..=60_000))]
    pub webhook_timeout_ms: u64,
    /// Deliveries this node sends at once.
    #[arg(long, env = "BOXOFFICE_WEBHOOK_MAX_CONCURRENT", default_value_t = 32,
          value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub webhook_max_concurrent: u32,
    /// Refuse endpoints on loopback, private, link-local and other non-public addresses
    /// (at registration for addresses, at each delivery for the addresses a name resolves to).
    #[arg(long, env = "BOXOFFICE_WEBHOOK_FORBID_PRIVATE")]
    pub webhook_forbid_private: bool,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            webhook_retry_base_ms: 10_000,
            webhook_retry_max_ms: 3_600_000,
            webhook_retry_window_seconds: 86_400,
            webhook_timeout_ms: 10_000,
            webhook_max_concurrent: 32,
            webhook_forbid_private: false,
        }
    }
}

// --- validation ---

/// Checks an endpoint URL: http or https, a host, no credentials, bounded; with
/// `forbid_private`, no non-public address literal (or `localhost`).
pub fn validate_url(raw: &str, forbid_private: bool) -> Result<reqwest::Url, String> {
    if raw.len() > MAX_URL_BYTES {
        return Err(format!("url is longer than {MAX_URL_BYTES} bytes"));
    }
    let url = reqwest::Url::parse(raw).map_err(|e| format!("url is not a valid URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("url must be http or https".into());
    }
    let Some(host) = url.host_str().map(str::to_owned) else { return Err("url has no host".into()) };
    if !url.username().is_empty() || url.password().is_some() {
        return Err("url must not carry credentials".into());
    }
    if url.fragment().is_some() {
        return Err("url must not have a fragment".into());
    }
    if forbid_private {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let refused = match bare.parse::<IpAddr>() {
            Ok(ip) => !is_public(ip),
            Err(_) => {
                let name = bare.trim_end_matches('.').to_ascii_lowercase();
                name == "localhost" || name.ends_with(".localhost")
            }
        };
        if refused {
            return Err("url points to a private address, which this deployment forbids".into());
        }
    }
    Ok(url)
}

/// Whether an address is reachable on the public internet (not loopback, private,
/// link-local, unspecified, multicast, documentation or shared address space).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(ip) => {
            let [a, b, ..] = ip.octets();
            !(ip.is_loopback()
                || ip.is_private()
                || ip.is_link_local()
                || ip.is_unspecified()
                || ip.is_broadcast()
                || ip.is_multicast()
                || ip.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b)))
        }
        IpAddr::V6(ip) => {
            if let Some(v4) = ip.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = ip.segments()[0];
            !(ip.is_loopback()
                || ip.is_unspecified()
                || ip.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80)
        }
    }
}

pub fn validate_secret(secret: &str) -> Result<(), String> {
    if !(MIN_SECRET_BYTES..=MAX_SECRET_BYTES).contains(&secret.len()) {
        return Err(format!("secret must be {MIN_SECRET_BYTES} to {MAX_SECRET_BYTES} bytes"));
    }
    if secret.chars().any(|c| c.is_control()) {
        return Err("secret must not contain control characters".into());
    }
    Ok(())
}

/// Checks the event types (known, at least one) and returns them without duplicates, in
/// the order given.
pub fn validate_events(events: &[String]) -> Result<Vec<String>, String> {
    if events.is_empty() {
        return Err("events must name at least one event type".into());
    }
    if events.len() > WEBHOOK_EVENT_TYPES.len() * 2 {
        return Err("events names too many event types".into());
    }
    let mut chosen: Vec<String> = Vec::new();
    for event in events {
        if !WEBHOOK_EVENT_TYPES.contains(&event.as_str()) {
            return Err(format!(
                "unknown event type {event:?}; known types: {}",
                WEBHOOK_EVENT_TYPES.join(", ")
            ));
        }
        if !chosen.contains(event) {
            chosen.push(event.clone());
        }
    }
    Ok(chosen)
}

/// What the API shows of a secret: its last 4 characters.
pub fn secret_hint(secret: &str) -> String {
    let tail: String = secret.chars().rev().take(4).collect::<Vec<_>>().into_iter().rev().collect();
    format!("...{tail}")
}

// --- the delivery ---

/// The body of a delivery: the message's id (`evt_<outbox seq>`, the same for every
/// endpoint and every attempt, so receivers can drop duplicates), type, time and data.
pub fn delivery_body(delivery: &boxoffice_store::WebhookDelivery) -> String {
    // The stored payload is JSON already: it is embedded as it is, not parsed again.
    format!(
        r#"{{"id":"evt_{}","type":{},"created_at":"{}","data":{}}}"#,
        delivery.outbox_seq,
        serde_json::Value::from(delivery.kind.as_str()),
        crate::http::dto::rfc3339(delivery.message_created_at),
        delivery.payload
    )
}

/// `t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
pub fn signature_header(secret: &str, timestamp_s: i64, body: &[u8]) -> String {
    format!("t={timestamp_s},v1={}", crate::stripe::sign(secret, timestamp_s, body))
}

/// The delay before attempt `attempts + 1`: `base * 2^(attempts - 1)`, capped at `max`,
/// times a jitter factor in 0.8..1.2 (so endpoints that failed together do not all come
/// back together).
pub fn retry_delay_ms(config: &WebhookConfig, attempts: u32, jitter: f64) -> u64 {
    let doublings = attempts.saturating_sub(1).min(40);
    let delay =
        config.webhook_retry_base_ms.saturating_mul(1u64 << doublings).min(config.webhook_retry_max_ms);
    ((delay as f64) * jitter.clamp(0.8, 1.2)).round().max(1.0) as u64
}

/// What to do after a failed attempt made at `now`.
pub fn after_failure(
    config: &WebhookConfig,
    claimed: &ClaimedDelivery,
    now: UnixMs,
    jitter: f64,
) -> DeliveryOutcome {
    let delivery = &claimed.delivery;
    let first = delivery.first_attempt_at.unwrap_or(now);
    let window_ends = first.saturating_add(config.webhook_retry_window_seconds * 1000);
    let next = now.saturating_add(retry_delay_ms(config, delivery.attempts, jitter));
    if next > window_ends {
        DeliveryOutcome::Failed
    } else {
        DeliveryOutcome::Retry { next_attempt_at: next }
    }
}

/// The HTTP client of deliveries: a time limit, and no redirects (a redirect could lead
/// to an address the endpoint check did not see; a 3xx is a failed attempt).
pub fn client(config: &WebhookConfig) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_millis(config.webhook_timeout_ms))
        .connect_timeout(Duration::from_millis(config.webhook_timeout_ms))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent("boxoffice-webhooks/1")
        .build()
        .expect("the webhook HTTP client builds with static settings")
}

/// Sends one claimed delivery and returns the endpoint's status, or why it failed.
async fn send(
    state: &AppState,
    http: &reqwest::Client,
    claimed: &ClaimedDelivery,
) -> Result<u16, (Option<u16>, String)> {
    let forbid_private = state.config.webhooks.webhook_forbid_private;
    let url = validate_url(&claimed.url, forbid_private).map_err(|e| (None, e))?;
    if forbid_private && let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) {
        let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
        let addrs = tokio::net::lookup_host((host.as_str(), port))
            .await
            .map_err(|e| (None, format!("cannot resolve {host}: {e}")))?;
        if addrs.into_iter().any(|a| !is_public(a.ip())) {
            return Err((
                None,
                format!("{host} resolves to a private address, which this deployment forbids"),
            ));
        }
    }
    let body = delivery_body(&claimed.delivery);
    let timestamp_s = (now_ms() / 1000) as i64;
    let signature = signature_header(&claimed.secret, timestamp_s, body.as_bytes());
    let response = http
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(SIGNATURE_HEADER, signature)
        .header("Boxoffice-Delivery-Id", format!("whd_{}", claimed.delivery.id))
        .body(body)
        .send()
        .await
        .map_err(|e| (None, bounded(&format!("request failed: {e}"))))?;
    let status = response.status().as_u16();
    if response.status().is_success() {
        Ok(status)
    } else {
        Err((Some(status), format!("the endpoint answered {status}")))
    }
}

fn bounded(message: &str) -> String {
    message.chars().take(MAX_ERROR_CHARS).collect()
}

/// Sends a claimed delivery and records the result under its claim.
async fn attempt(state: AppState, http: reqwest::Client, claimed: ClaimedDelivery) {
    metrics::counter!("boxoffice_webhook_attempts_total").increment(1);
    let result = send(&state, &http, &claimed).await;
    let now = now_ms();
    let (status_code, error, outcome) = match result {
        Ok(code) => {
            metrics::counter!("boxoffice_webhook_deliveries_total", "result" => "delivered").increment(1);
            (Some(code), None, DeliveryOutcome::Delivered)
        }
        Err((code, error)) => {
            let jitter = rand::rng().random_range(0.8..1.2);
            let outcome = after_failure(&state.config.webhooks, &claimed, now, jitter);
            let result = if outcome == DeliveryOutcome::Failed { "failed" } else { "retrying" };
            metrics::counter!("boxoffice_webhook_deliveries_total", "result" => result).increment(1);
            tracing::info!(delivery = claimed.delivery.id, webhook = claimed.delivery.webhook_id,
                attempts = claimed.delivery.attempts, %error, result, "webhook delivery attempt failed");
            (code, Some(bounded(&error)), outcome)
        }
    };
    let record = DeliveryAttempt {
        delivery_id: claimed.delivery.id,
        lease: claimed.lease.clone(),
        at: now,
        status_code,
        error,
        outcome,
    };
    match state.store.webhook_record(record).await {
        Ok(true) => {}
        Ok(false) => tracing::info!(
            delivery = claimed.delivery.id,
            "webhook delivery result not recorded: the claim was redelivered or taken over"
        ),
        // The lease runs out and the delivery is sent again: at least once.
        Err(e) => {
            tracing::warn!(delivery = claimed.delivery.id, error = %e, "cannot record a webhook delivery")
        }
    }
}

/// Fans out the outbox rows past the cursor until it has caught up; returns how many
/// deliveries were made.
pub async fn fan_out(state: &AppState) -> Result<u64, String> {
    let mut made = 0u64;
    loop {
        let step = state.store.webhook_fan_out(FAN_OUT_BATCH, now_ms()).await.map_err(|e| e.to_string())?;
        made += u64::from(step.deliveries);
        if step.read < FAN_OUT_BATCH {
            return Ok(made);
        }
    }
}

/// The dispatcher: fan out, claim what the free slots allow, send each in its own task.
pub async fn run(state: AppState, mut stop: watch::Receiver<bool>) {
    let config = state.config.webhooks.clone();
    let http = client(&config);
    let slots = Arc::new(Semaphore::new(config.webhook_max_concurrent as usize));
    let lease_ms = config.webhook_timeout_ms + LEASE_MARGIN_MS;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(DISPATCH_INTERVAL) => {}
            _ = stop.changed() => return,
        }
        if let Err(e) = fan_out(&state).await {
            tracing::warn!(error = %e, "webhook fan-out failed; retrying");
            continue;
        }
        let free = slots.available_permits();
        if free == 0 {
            continue;
        }
        let lease = format!("{:032x}", rand::random::<u128>());
        let claimed = match state.store.webhook_claim(now_ms(), lease_ms, free as u32, &lease).await {
            Ok(claimed) => claimed,
            Err(e) => {
                tracing::warn!(error = %e, "cannot claim webhook deliveries; retrying");
                continue;
            }
        };
        for delivery in claimed {
            let permit = slots.clone().acquire_owned().await.expect("the semaphore is never closed");
            let (state, http) = (state.clone(), http.clone());
            tokio::spawn(async move {
                attempt(state, http, delivery).await;
                drop(permit);
            });
        }
    }
}

/// The outbox `seq` the dispatcher has fanned out through (the purge keeps what follows).
pub async fn position(state: &AppState) -> Result<u64, String> {
    let stored =
        state.store.meta_get(boxoffice_store::WEBHOOK_CURSOR_KEY).await.map_err(|e| e.to_string())?;
    Ok(stored.and_then(|v| v.parse().ok()).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delays_double_from_the_base_up_to_the_cap() {
        let config = WebhookConfig {
            webhook_retry_base_ms: 10_000,
            webhook_retry_max_ms: 60_000,
            ..Default::default()
        };
        let delays: Vec<u64> = (1..=5).map(|n| retry_delay_ms(&config, n, 1.0)).collect();
        assert_eq!(delays, [10_000, 20_000, 40_000, 60_000, 60_000]);
        assert_eq!(retry_delay_ms(&config, 1, 1.2), 12_000);
        assert_eq!(retry_delay_ms(&config, 1, 5.0), 12_000, "jitter is bounded");
        assert_eq!(retry_delay_ms(&config, u32::MAX, 1.0), 60_000);
    }

    #[test]
    fn urls_are_http_with_a_host_and_private_ones_can_be_forbidden() {
        assert!(validate_url("http://127.0.0.1:9000/hook", false).is_ok());
        assert!(validate_url("https://example.com/hook", true).is_ok());
        for bad in ["ftp://example.com/", "not a url", "http://user:pw@example.com/", "mailto:a@b.c"] {
            assert!(validate_url(bad, false).is_err(), "{bad}");
        }
        for private in [
            "http://127.0.0.1/",
            "http://10.1.2.3/",
            "http://[::1]/",
            "http://localhost:80/",
            "http://169.254.169.254/",
        ] {
            assert!(validate_url(private, true).is_err(), "{private}");
            assert!(validate_url(private, false).is_ok(), "{private}");
        }
        assert!(validate_url(&format!("http://a.com/{}", "x".repeat(MAX_URL_BYTES)), false).is_err());
    }

    #[test]
    fn event_types_are_checked_and_deduplicated() {
        let events = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(validate_events(&events(&["order.created", "order.created"])).unwrap(), ["order.created"]);
        assert!(validate_events(&events(&["order.shipped"])).is_err());
        assert!(validate_events(&[]).is_err());
        assert_eq!(secret_hint("whsec_abcdefgh1234"), "...1234");
    }
}
