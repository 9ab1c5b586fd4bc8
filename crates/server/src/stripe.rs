//! The Stripe adapter: [`StripeGateway`] implements [`PaymentGateway`] with a few calls of
//! Stripe's PaymentIntents API, by a small hand-written client (form-encoded requests, a
//! bearer secret key, a pinned `Stripe-Version`, bounded timeouts), and
//! [`verify_signature`] checks the `Stripe-Signature` of webhook deliveries.
//!
//! - authorize = create and confirm a PaymentIntent with `capture_method=manual`, under the
//!   attempt's gateway key as `Idempotency-Key` and in `metadata[boxoffice_key]`;
//! - capture, void (= cancel) and refund act on the intent; a refund carries its refund key
//!   as `Idempotency-Key`, so a resent refund returns money once;
//! - retrieve finds the intent of a key. Intents authorized by this process are
//!   remembered (bounded); any other key is looked up with the Search API on the metadata.
//!   Search is eventually consistent (Stripe indexes an intent within about a minute), so
//!   "not found" is not proof that Stripe never saw the key. A void of a key that search
//!   does not find therefore burns the key at Stripe: it creates an unconfirmed placeholder
//!   intent under that `Idempotency-Key` (and cancels it). If the key was already used,
//!   Stripe refuses the placeholder (`idempotency_error`): the void fails and the reconciler
//!   retries it once search finds the real intent. If it was not, the placeholder now owns
//!   the key, and an authorization still on its way with it is refused by Stripe. So a
//!   crash mid-authorize never leaves an authorization that nobody cancels.
//!
//! Errors: 402 card errors and other 4xx refusals are declines (Stripe did nothing);
//! 401, 403, 409, 429, 5xx, timeouts and connection failures are `Unavailable`, which the
//! checkout treats as an unknown outcome (void, or leave it to the reconciler).

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use boxoffice_core::Money;
use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use serde::Deserialize;
use sha2::Sha256;

use crate::payments::{Authorization, LedgerState, PaymentError, PaymentGateway, PaymentRequest};

/// The API version every request asks for, so that Stripe's answers keep their shape.
pub const STRIPE_API_VERSION: &str = "2024-06-20";
/// The metadata field holding our gateway key on every intent (and refund) we create.
pub const KEY_METADATA: &str = "boxoffice_key";
/// Metadata marking a placeholder intent that burns a key (see the module doc).
const BURN_METADATA: &str = "boxoffice_burn";
/// The form fields of the two metadata entries.
const KEY_FIELD: &str = "metadata[boxoffice_key]";
const BURN_FIELD: &str = "metadata[boxoffice_burn]";
/// Keys whose intent id this process remembers (older ones are found by search).
const REMEMBERED_INTENTS: u64 = 100_000;
/// Time to open a connection to Stripe.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The amount of a burn placeholder: Stripe's minimum charge in USD (never confirmed).
const BURN_AMOUNT_MINOR_UNITS: i64 = 50;

/// A PaymentIntent, as far as we read it.
#[derive(Debug, Clone, Deserialize)]
pub struct PaymentIntent {
    pub id: String,
    pub status: String,
    #[serde(default)]
    pub metadata: HashMap<String, String>,
    #[serde(default)]
    pub last_payment_error: Option<StripeError>,
}

impl PaymentIntent {
    /// Our gateway key, when the intent is ours.
    pub fn key(&self) -> Option<&str> {
        self.metadata.get(KEY_METADATA).map(String::as_str)
    }

    fn is_burn(&self) -> bool {
        self.metadata.contains_key(BURN_METADATA)
    }

    /// What the intent's status means to the reconciler.
    pub fn ledger_state(&self) -> LedgerState {
        match self.status.as_str() {
            "requires_capture" => LedgerState::Authorized,
            "succeeded" => LedgerState::Captured,
            "canceled" => LedgerState::Voided,
            // Confirmed and refused: the card was declined. Unconfirmed: not decided.
            "requires_payment_method" if self.last_payment_error.is_some() => LedgerState::Declined,
            _ => LedgerState::Pending,
        }
    }
}

/// Stripe's error object (`{"error":{"type","code","decline_code","message"}}`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct StripeError {
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub decline_code: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
    /// The intent the failed request was about (card errors on confirm carry it).
    #[serde(default)]
    pub payment_intent: Option<Box<PaymentIntent>>,
}

impl StripeError {
    fn describe(&self) -> String {
        let mut text = self.message.clone().unwrap_or_else(|| "the payment was refused".into());
        if let Some(code) = self.decline_code.as_ref().or(self.code.as_ref()) {
            text.push_str(&format!(" ({code})"));
        }
        text
    }
}

#[derive(Debug, Deserialize)]
struct ErrorEnvelope {
    error: StripeError,
}

#[derive(Debug, Deserialize)]
struct SearchPage {
    data: Vec<PaymentIntent>,
}

/// A Stripe answer: the object, or an error with its HTTP status.
enum Answer<T> {
    Ok(T),
    Refused(StatusCode, StripeError),
}

/// Talks to Stripe's PaymentIntents API.
pub struct StripeGateway {
    http: reqwest::Client,
    base_url: String,
    secret_key: String,
    /// Intent ids of keys this process has seen, so that most calls need no search.
    intents: moka::sync::Cache<String, String>,
}

impl std::fmt::Debug for StripeGateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StripeGateway").field("base_url", &self.base_url).finish_non_exhaustive()
    }
}

impl StripeGateway {
    /// A gateway for `base_url` (`https://api.stripe.com`, or a mock) with each call bounded
    /// by `timeout`.
    pub fn new(base_url: &str, secret_key: &str, timeout: Duration) -> Result<Self, String> {
        if secret_key.trim().is_empty() {
            return Err("the Stripe secret key is empty".into());
        }
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(CONNECT_TIMEOUT.min(timeout))
            .build()
            .map_err(|e| format!("cannot build the Stripe HTTP client: {e}"))?;
        Ok(StripeGateway {
            http,
            base_url: base_url.trim_end_matches('/').to_owned(),
            secret_key: secret_key.to_owned(),
            intents: moka::sync::Cache::new(REMEMBERED_INTENTS),
        })
    }

    /// The gateway that `--payment-gateway stripe` asks for.
    pub fn from_config(config: &crate::Config) -> Result<Self, String> {
        let Some(key) = config.stripe_secret_key.as_deref() else {
            return Err(
                "--payment-gateway stripe needs --stripe-secret-key (or BOXOFFICE_STRIPE_SECRET_KEY)".into(),
            );
        };
        if config.stripe_webhook_secret.is_none() {
            tracing::warn!(
                "no --stripe-webhook-secret: POST /v1/payments/webhook refuses every delivery, so payments that \
                 Stripe decides later (3-D Secure, processing) are settled only by the reconciler"
            );
        }
        Self::new(&config.stripe_base_url, key, Duration::from_secs(config.payment_timeout))
            .map_err(|e| format!("--stripe-base-url {}: {e}", config.stripe_base_url))
    }

    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<Answer<T>, PaymentError> {
        let response = request
            .bearer_auth(&self.secret_key)
            .header("Stripe-Version", STRIPE_API_VERSION)
            .send()
            .await
            .map_err(|e| {
                PaymentError::Unavailable(if e.is_timeout() {
                    "Stripe did not answer in time".to_owned()
                } else {
                    format!("cannot reach Stripe: {e}")
                })
            })?;
        let status = response.status();
        let body = response.bytes().await.map_err(|e| PaymentError::Unavailable(format!("Stripe: {e}")))?;
        if status.is_success() {
            return serde_json::from_slice(&body)
                .map(Answer::Ok)
                .map_err(|e| PaymentError::Unavailable(format!("unexpected answer from Stripe: {e}")));
        }
        let error = serde_json::from_slice::<ErrorEnvelope>(&body).map(|e| e.error).unwrap_or_default();
        match status {
            // Our key or account is wrong, a request with this key is running, or we are
            // rate limited: nothing is decided, try later.
            StatusCode::UNAUTHORIZED
            | StatusCode::FORBIDDEN
            | StatusCode::CONFLICT
            | StatusCode::TOO_MANY_REQUESTS => {
                Err(PaymentError::Unavailable(format!("Stripe answered {status}: {}", error.describe())))
            }
            s if s.is_client_error() => Ok(Answer::Refused(status, error)),
            _ => Err(PaymentError::Unavailable(format!("Stripe answered {status}: {}", error.describe()))),
        }
    }

    fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.post(format!("{}{path}", self.base_url))
    }

    fn remember(&self, key: &str, intent: &PaymentIntent) {
        if !intent.is_burn() {
            self.intents.insert(key.to_owned(), intent.id.clone());
        }
    }

    /// The intent of a key: remembered, else found by search (`None`: not indexed, or
    /// never created).
    pub async fn find_intent(&self, key: &str) -> Result<Option<PaymentIntent>, PaymentError> {
        if let Some(id) = self.intents.get(key) {
            let request = self.http.get(format!("{}/v1/payment_intents/{id}", self.base_url));
            return match self.call::<PaymentIntent>(request).await? {
                Answer::Ok(intent) => Ok(Some(intent)),
                Answer::Refused(status, error) => {
                    Err(PaymentError::Unavailable(format!("Stripe answered {status}: {}", error.describe())))
                }
            };
        }
        let query =
            format!("metadata['{KEY_METADATA}']:'{}'", key.replace('\\', "\\\\").replace('\'', "\\'"));
        let request = self
            .http
            .get(format!("{}/v1/payment_intents/search", self.base_url))
            .query(&[("query", query.as_str()), ("limit", "10")]);
        let page = match self.call::<SearchPage>(request).await? {
            Answer::Ok(page) => page,
            Answer::Refused(status, error) => {
                return Err(PaymentError::Unavailable(format!(
                    "Stripe search answered {status}: {}",
                    error.describe()
                )));
            }
        };
        // The real intent wins over a burn placeholder (there is at most one of each).
        let mut found: Vec<PaymentIntent> = page.data.into_iter().filter(|i| i.key() == Some(key)).collect();
        found.sort_by_key(PaymentIntent::is_burn);
        let intent = found.into_iter().next();
        if let Some(intent) = &intent {
            self.remember(key, intent);
        }
        Ok(intent)
    }

    /// The intent id behind an authorization (an intent id, or our key when the id was
    /// not recorded).
    async fn intent_id(&self, authorization_or_key: &str) -> Result<String, PaymentError> {
        if authorization_or_key.starts_with("pi_") {
            return Ok(authorization_or_key.to_owned());
        }
        match self.find_intent(authorization_or_key).await? {
            Some(intent) => Ok(intent.id),
            None => Err(PaymentError::Unavailable(format!(
                "no Stripe payment intent found for {authorization_or_key} (yet)"
            ))),
        }
    }

    async fn cancel(&self, intent: &str) -> Result<(), PaymentError> {
        let request = self.post(&format!("/v1/payment_intents/{intent}/cancel"));
        match self.call::<PaymentIntent>(request).await? {
            Answer::Ok(_) => Ok(()),
            Answer::Refused(_, error) => match error.payment_intent.as_deref().map(|i| i.status.as_str()) {
                Some("canceled") => Ok(()),
                Some("succeeded") => {
                    Err(PaymentError::Declined("the payment is captured; refund it instead".into()))
                }
                _ => Err(PaymentError::Declined(error.describe())),
            },
        }
    }

    /// Takes a key that Stripe has not (visibly) used: see the module doc.
    async fn burn(&self, key: &str) -> Result<(), PaymentError> {
        let form = [
            ("amount", BURN_AMOUNT_MINOR_UNITS.to_string()),
            ("currency", "usd".to_owned()),
            ("payment_method_types[]", "card".to_owned()),
            (KEY_FIELD, key.to_owned()),
            (BURN_FIELD, "true".to_owned()),
        ];
        let request = self.post("/v1/payment_intents").header("Idempotency-Key", key).form(&form);
        match self.call::<PaymentIntent>(request).await? {
            Answer::Ok(placeholder) => self.cancel(&placeholder.id).await,
            Answer::Refused(status, error) => Err(PaymentError::Unavailable(format!(
                "the key {key} was used at Stripe but its intent is not searchable yet ({status}: {})",
                error.describe()
            ))),
        }
    }
}

#[async_trait]
impl PaymentGateway for StripeGateway {
    fn name(&self) -> &'static str {
        "stripe"
    }

    async fn authorize(&self, request: &PaymentRequest) -> Result<Authorization, PaymentError> {
        let form = [
            ("amount", request.amount.amount.to_string()),
            ("currency", request.amount.currency.as_str().to_ascii_lowercase()),
            ("payment_method", request.token.clone()),
            ("payment_method_types[]", "card".to_owned()),
            ("confirm", "true".to_owned()),
            ("capture_method", "manual".to_owned()),
            (KEY_FIELD, request.idempotency_key.clone()),
        ];
        let call =
            self.post("/v1/payment_intents").header("Idempotency-Key", &request.idempotency_key).form(&form);
        let intent = match self.call::<PaymentIntent>(call).await? {
            Answer::Ok(intent) => intent,
            Answer::Refused(_, error) => {
                if let Some(intent) = &error.payment_intent {
                    self.remember(&request.idempotency_key, intent);
                }
                if error.kind.as_deref() == Some("idempotency_error") {
                    // The key was burnt by a void (or used with other parameters).
                    return Err(PaymentError::Declined("this payment was cancelled".into()));
                }
                return Err(PaymentError::Declined(error.describe()));
            }
        };
        self.remember(&request.idempotency_key, &intent);
        match intent.ledger_state() {
            LedgerState::Authorized | LedgerState::Captured => Ok(Authorization { id: intent.id }),
            LedgerState::Pending => Err(PaymentError::Pending(intent.id)),
            LedgerState::Voided => Err(PaymentError::Declined("this payment was cancelled".into())),
            LedgerState::Declined | LedgerState::Refunded => Err(PaymentError::Declined(
                intent.last_payment_error.map_or_else(|| "card declined".into(), |e| e.describe()),
            )),
        }
    }

    async fn capture(&self, authorization: &Authorization) -> Result<(), PaymentError> {
        let intent = self.intent_id(&authorization.id).await?;
        let request = self
            .post(&format!("/v1/payment_intents/{intent}/capture"))
            .header("Idempotency-Key", format!("capture:{intent}"));
        match self.call::<PaymentIntent>(request).await? {
            Answer::Ok(_) => Ok(()),
            // Captured already (by an earlier try): done.
            Answer::Refused(_, error)
                if error.payment_intent.as_deref().is_some_and(|i| i.status == "succeeded") =>
            {
                Ok(())
            }
            Answer::Refused(_, error) => Err(PaymentError::Declined(error.describe())),
        }
    }

    async fn void(&self, idempotency_key: &str) -> Result<(), PaymentError> {
        match self.find_intent(idempotency_key).await? {
            Some(intent) if intent.status == "canceled" => Ok(()),
            Some(intent) => self.cancel(&intent.id).await,
            None => self.burn(idempotency_key).await,
        }
    }

    async fn refund(&self, refund_key: &str, payment_key: &str, amount: Money) -> Result<(), PaymentError> {
        let intent = self.intent_id(payment_key).await?;
        let form = [
            ("payment_intent", intent),
            ("amount", amount.amount.to_string()),
            (KEY_FIELD, refund_key.to_owned()),
        ];
        let request = self.post("/v1/refunds").header("Idempotency-Key", refund_key).form(&form);
        match self.call::<serde_json::Value>(request).await? {
            Answer::Ok(_) => Ok(()),
            Answer::Refused(_, error) => Err(PaymentError::Declined(error.describe())),
        }
    }

    async fn retrieve(&self, idempotency_key: &str) -> Result<Option<LedgerState>, PaymentError> {
        Ok(self.find_intent(idempotency_key).await?.map(|intent| intent.ledger_state()))
    }
}

// --- webhooks ---

/// Why a webhook's `Stripe-Signature` was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the Stripe-Signature header is missing or malformed")]
    Malformed,
    #[error("no v1 signature matches the body")]
    Mismatch,
    #[error("the signature's timestamp is outside the tolerance")]
    Stale,
}

/// `v1` of a webhook signature: hex HMAC-SHA256 of `"{t}.{body}"` under the endpoint secret.
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    hex::encode(mac(secret, timestamp, body).finalize().into_bytes())
}

fn mac(secret: &str, timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// Checks `Stripe-Signature: t=<unix seconds>,v1=<hex>[,v1=<hex>...]` against the raw body:
/// one `v1` must match (in constant time; several are allowed while a secret is rolled)
/// and `t` must be within `tolerance_s` of `now_s`, so that a captured delivery cannot be
/// replayed later.
pub fn verify_signature(
    header: &str,
    body: &[u8],
    secret: &str,
    tolerance_s: u64,
    now_s: i64,
) -> Result<(), SignatureError> {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => timestamp = Some(t.parse::<i64>().map_err(|_| SignatureError::Malformed)?),
            Some(("v1", v)) => signatures.push(v),
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::Malformed)?;
    if signatures.is_empty() {
        return Err(SignatureError::Malformed);
    }
    let expected = mac(secret, timestamp, body);
    let matched = signatures
        .iter()
        .filter_map(|v| hex::decode(v).ok())
        .any(|candidate| expected.clone().verify_slice(&candidate).is_ok());
    if !matched {
        return Err(SignatureError::Mismatch);
    }
    if now_s.abs_diff(timestamp) > tolerance_s {
        return Err(SignatureError::Stale);
    }
    Ok(())
}

/// A webhook event, as far as we read it.
#[derive(Debug, Clone, Deserialize)]
pub struct WebhookEvent {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub data: WebhookData,
}

#[derive(Debug, Clone, Deserialize)]
pub struct WebhookData {
    pub object: serde_json::Value,
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_test";

    #[test]
    fn a_signature_made_with_the_secret_verifies_and_any_other_does_not() {
        let body = br#"{"id":"evt_1"}"#;
        let good = sign(SECRET, 1_000, body);
        let header = format!("t=1000,v1={good}");
        assert_eq!(verify_signature(&header, body, SECRET, 300, 1_100), Ok(()));
        // Several v1 (a secret being rolled): one match is enough; v0 is ignored.
        let rolled = format!("t=1000,v1={},v1={good},v0=abc", sign("whsec_old", 1_000, body));
        assert_eq!(verify_signature(&rolled, body, SECRET, 300, 1_100), Ok(()));
        assert_eq!(
            verify_signature(&header, br#"{"id":"evt_2"}"#, SECRET, 300, 1_100),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(verify_signature(&header, body, "whsec_other", 300, 1_100), Err(SignatureError::Mismatch));
        // The timestamp is signed: moving it breaks the signature.
        let moved = format!("t=1200,v1={good}");
        assert_eq!(verify_signature(&moved, body, SECRET, 300, 1_200), Err(SignatureError::Mismatch));
    }

    #[test]
    fn an_old_or_future_timestamp_is_stale_and_a_malformed_header_is_refused() {
        let body = b"{}";
        let header = format!("t=1000,v1={}", sign(SECRET, 1_000, body));
        assert_eq!(verify_signature(&header, body, SECRET, 300, 1_301), Err(SignatureError::Stale));
        assert_eq!(verify_signature(&header, body, SECRET, 300, 699), Err(SignatureError::Stale));
        assert_eq!(verify_signature(&header, body, SECRET, 300, 1_300), Ok(()));
        for bad in ["", "t=1000", "v1=00", "t=abc,v1=00", "garbage"] {
            assert_eq!(
                verify_signature(bad, body, SECRET, 300, 1_000),
                Err(SignatureError::Malformed),
                "{bad}"
            );
        }
        assert_eq!(
            verify_signature("t=1000,v1=not-hex", body, SECRET, 300, 1_000),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn intent_statuses_map_to_ledger_states() {
        let intent = |status: &str, error: bool| PaymentIntent {
            id: "pi_1".into(),
            status: status.into(),
            metadata: HashMap::new(),
            last_payment_error: error.then(StripeError::default),
        };
        assert_eq!(intent("requires_capture", false).ledger_state(), LedgerState::Authorized);
        assert_eq!(intent("succeeded", false).ledger_state(), LedgerState::Captured);
        assert_eq!(intent("canceled", false).ledger_state(), LedgerState::Voided);
        assert_eq!(intent("requires_payment_method", true).ledger_state(), LedgerState::Declined);
        assert_eq!(intent("requires_payment_method", false).ledger_state(), LedgerState::Pending);
        assert_eq!(intent("requires_action", false).ledger_state(), LedgerState::Pending);
        assert_eq!(intent("processing", false).ledger_state(), LedgerState::Pending);
    }
}
