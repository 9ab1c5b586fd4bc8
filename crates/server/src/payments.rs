//! Payment gateways. The flow is authorize -> (order commit) -> capture; a checkout that
//! cannot commit voids its authorization, so an undone checkout needs no refund. Every
//! call about one payment carries the same idempotency key (the attempt's), so that a
//! retry — by the checkout, the reconciler after a crash, or anyone — never charges twice,
//! and [`PaymentGateway::retrieve`] tells a restarted node what happened to a key.
//!
//! [`SimulatedGateway`] is the default: test tokens decide the outcome (`tok_visa`
//! approves, `tok_declined` declines, `tok_random` declines at the configured rate,
//! `tok_timeout` never answers), after a configurable latency. Its ledger is kept in a
//! file of the data dir (one JSON line per change, `fsync`ed in groups), like a real gateway's
//! records that outlive our process.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use boxoffice_core::{Currency, Money};
use parking_lot::Mutex;
use rand::Rng;
use serde::{Deserialize, Serialize};

/// The simulated gateway's ledger file in the data dir.
pub const LEDGER_FILE: &str = "gateway_ledger.jsonl";

#[derive(Debug, Clone)]
pub struct PaymentRequest {
    /// The gateway's idempotency key: one per payment attempt.
    pub idempotency_key: String,
    pub amount: Money,
    pub token: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    /// The gateway's id of the authorization (the simulated gateway uses the key).
    pub id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PaymentError {
    #[error("payment declined: {0}")]
    Declined(String),
    #[error("payment gateway unavailable: {0}")]
    Unavailable(String),
    /// The gateway took the request but has not decided (the card's holder must
    /// authenticate, or the payment is processing); the outcome arrives by webhook. Holds
    /// the gateway's id of the payment.
    #[error("payment pending at the gateway: {0}")]
    Pending(String),
}

/// What the gateway knows of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LedgerState {
    Authorized,
    Captured,
    /// Cancelled before capture, or voided before it was ever authorized (the key is
    /// then burnt: a late authorization with it is refused).
    Voided,
    Declined,
    /// A refund key: the refund went through.
    Refunded,
    /// Known to the gateway but not decided yet (e.g. waiting for the card's holder).
    Pending,
}

#[async_trait]
pub trait PaymentGateway: Send + Sync + 'static {
    /// The gateway's name, recorded with each payment attempt.
    fn name(&self) -> &'static str;
    async fn authorize(&self, request: &PaymentRequest) -> Result<Authorization, PaymentError>;
    async fn capture(&self, authorization: &Authorization) -> Result<(), PaymentError>;
    /// Cancels an authorization (or a request whose outcome is unknown) by its key.
    /// Voiding a captured payment fails: refund it instead.
    async fn void(&self, idempotency_key: &str) -> Result<(), PaymentError>;
    /// Returns `amount` of the payment `payment_key`; idempotent on `refund_key`.
    async fn refund(&self, refund_key: &str, payment_key: &str, amount: Money) -> Result<(), PaymentError>;
    /// What the gateway recorded for a key, if anything.
    async fn retrieve(&self, idempotency_key: &str) -> Result<Option<LedgerState>, PaymentError>;
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct LedgerEntry {
    key: String,
    state: LedgerState,
    amount: i64,
    currency: String,
    /// Refunded so far (payments), or the payment a refund belongs to (refunds).
    #[serde(default)]
    refunded: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    of: Option<String>,
}

/// The ledger's durable form: an append-only file of entry snapshots, the last line of a
/// key winning. Rewritten compactly when opened.
struct LedgerFile {
    path: PathBuf,
    file: File,
}

impl LedgerFile {
    fn open(path: &Path) -> std::io::Result<(LedgerFile, HashMap<String, LedgerEntry>)> {
        let mut entries = HashMap::new();
        match File::open(path) {
            Ok(file) => {
                for line in BufReader::new(file).lines() {
                    let line = line?;
                    // A torn last line (a crash mid-write) is ignored: its change was
                    // never acknowledged to anyone.
                    if let Ok(entry) = serde_json::from_str::<LedgerEntry>(&line) {
                        entries.insert(entry.key.clone(), entry);
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let tmp = path.with_extension("jsonl.tmp");
        {
            let mut out = std::io::BufWriter::new(File::create(&tmp)?);
            for entry in entries.values() {
                serde_json::to_writer(&mut out, entry)?;
                out.write_all(b"\n")?;
            }
            out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        }
        std::fs::rename(&tmp, path)?;
        let file = OpenOptions::new().append(true).open(path)?;
        Ok((LedgerFile { path: path.to_owned(), file }, entries))
    }

    /// Appends an entry (not yet synced: see `SimulatedGateway::record`).
    fn append(&mut self, entry: &LedgerEntry) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(entry).expect("ledger entries serialize");
        line.push(b'\n');
        self.file.write_all(&line)
    }
}

/// An in-process gateway for demos, tests and load tests.
pub struct SimulatedGateway {
    latency_ms: (u64, u64),
    failure_rate: f64,
    ledger: Mutex<HashMap<String, LedgerEntry>>,
    /// `None`: the ledger lives in memory only.
    file: Option<Arc<std::sync::Mutex<LedgerFile>>>,
    /// Group commit of the ledger file (`None` without `fsync`: a killed process loses
    /// nothing written, only power loss could).
    sync: Option<boxoffice_store::GroupSync>,
}

impl SimulatedGateway {
    /// A gateway whose ledger lives in memory only.
    pub fn new(latency_ms: (u64, u64), failure_rate: f64) -> Self {
        SimulatedGateway {
            latency_ms,
            failure_rate,
            ledger: Mutex::new(HashMap::new()),
            file: None,
            sync: None,
        }
    }

    /// A gateway whose ledger is kept in `<data_dir>/gateway_ledger.jsonl`; `fsync` makes
    /// each change survive power loss (else only a killed process).
    pub fn open(
        data_dir: &Path,
        latency_ms: (u64, u64),
        failure_rate: f64,
        fsync: bool,
    ) -> std::io::Result<Self> {
        let path = data_dir.join(LEDGER_FILE);
        let (file, entries) = LedgerFile::open(&path)?;
        Ok(SimulatedGateway {
            latency_ms,
            failure_rate,
            ledger: Mutex::new(entries),
            file: Some(Arc::new(std::sync::Mutex::new(file))),
            sync: fsync.then(|| boxoffice_store::GroupSync::new(path)),
        })
    }

    /// What the gateway recorded for a key.
    pub fn state(&self, idempotency_key: &str) -> Option<LedgerState> {
        self.ledger.lock().get(idempotency_key).map(|e| e.state)
    }

    /// Amount refunded so far of a payment.
    pub fn refunded(&self, payment_key: &str) -> i64 {
        self.ledger.lock().get(payment_key).map_or(0, |e| e.refunded)
    }

    async fn delay(&self) {
        let (min, max) = self.latency_ms;
        if max > 0 {
            let ms = rand::rng().random_range(min..=max);
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
    }

    /// Makes an entry durable, then visible.
    async fn record(&self, entries: Vec<LedgerEntry>) -> Result<(), PaymentError> {
        if let Some(file) = &self.file {
            let file = file.clone();
            let to_write = entries.clone();
            tokio::task::spawn_blocking(move || {
                let mut file = file.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                for entry in &to_write {
                    file.append(entry)?;
                }
                Ok::<(), std::io::Error>(())
            })
            .await
            .map_err(|e| PaymentError::Unavailable(format!("ledger writer failed: {e}")))?
            .map_err(|e| PaymentError::Unavailable(format!("ledger write failed: {e}")))?;
            if let Some(sync) = &self.sync {
                sync.durable()
                    .await
                    .map_err(|e| PaymentError::Unavailable(format!("ledger sync failed: {e}")))?;
            }
        }
        let mut ledger = self.ledger.lock();
        for entry in entries {
            ledger.insert(entry.key.clone(), entry);
        }
        Ok(())
    }

    fn entry(&self, key: &str) -> Option<LedgerEntry> {
        self.ledger.lock().get(key).cloned()
    }
}

impl std::fmt::Debug for SimulatedGateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let path = self.file.as_ref().map(|f| f.lock().map(|f| f.path.clone()).ok());
        f.debug_struct("SimulatedGateway").field("ledger", &path).finish_non_exhaustive()
    }
}

fn declined(state: LedgerState) -> PaymentError {
    PaymentError::Declined(match state {
        LedgerState::Voided => "this payment was cancelled".into(),
        _ => "card declined".into(),
    })
}

#[async_trait]
impl PaymentGateway for SimulatedGateway {
    fn name(&self) -> &'static str {
        "simulated"
    }

    async fn authorize(&self, request: &PaymentRequest) -> Result<Authorization, PaymentError> {
        self.delay().await;
        if let Some(entry) = self.entry(&request.idempotency_key) {
            // The same key gets the same answer.
            return match entry.state {
                LedgerState::Authorized | LedgerState::Captured => {
                    Ok(Authorization { id: request.idempotency_key.clone() })
                }
                other => Err(declined(other)),
            };
        }
        let approve = match request.token.as_str() {
            "tok_visa" => true,
            "tok_declined" => false,
            "tok_random" => !rand::rng().random_bool(self.failure_rate),
            "tok_timeout" => return std::future::pending().await,
            other => {
                return Err(PaymentError::Declined(format!("unknown test card token {other:?}")));
            }
        };
        let state = if approve { LedgerState::Authorized } else { LedgerState::Declined };
        self.record(vec![LedgerEntry {
            key: request.idempotency_key.clone(),
            state,
            amount: request.amount.amount,
            currency: request.amount.currency.to_string(),
            refunded: 0,
            of: None,
        }])
        .await?;
        if approve { Ok(Authorization { id: request.idempotency_key.clone() }) } else { Err(declined(state)) }
    }

    async fn capture(&self, authorization: &Authorization) -> Result<(), PaymentError> {
        match self.entry(&authorization.id) {
            Some(entry) if entry.state == LedgerState::Captured => Ok(()),
            Some(mut entry) if entry.state == LedgerState::Authorized => {
                entry.state = LedgerState::Captured;
                self.record(vec![entry]).await
            }
            _ => Err(PaymentError::Declined("no such authorization".into())),
        }
    }

    async fn void(&self, idempotency_key: &str) -> Result<(), PaymentError> {
        match self.entry(idempotency_key) {
            Some(mut entry) if entry.state == LedgerState::Authorized => {
                entry.state = LedgerState::Voided;
                self.record(vec![entry]).await
            }
            Some(entry) if entry.state == LedgerState::Captured => {
                Err(PaymentError::Declined("the payment is captured; refund it instead".into()))
            }
            Some(_) => Ok(()),
            // Never seen: burn the key, so that an authorization still on its way with it
            // is refused when it arrives.
            None => {
                self.record(vec![LedgerEntry {
                    key: idempotency_key.to_owned(),
                    state: LedgerState::Voided,
                    amount: 0,
                    currency: Currency::USD.to_string(),
                    refunded: 0,
                    of: None,
                }])
                .await
            }
        }
    }

    async fn refund(&self, refund_key: &str, payment_key: &str, amount: Money) -> Result<(), PaymentError> {
        if let Some(done) = self.entry(refund_key) {
            return if done.of.as_deref() == Some(payment_key) && done.amount == amount.amount {
                Ok(())
            } else {
                Err(PaymentError::Declined("this refund key was used for another refund".into()))
            };
        }
        let Some(mut payment) = self.entry(payment_key) else {
            return Err(PaymentError::Declined("no such payment".into()));
        };
        if !matches!(payment.state, LedgerState::Authorized | LedgerState::Captured) {
            return Err(PaymentError::Declined("the payment was not taken".into()));
        }
        if payment.currency != amount.currency.as_str() || payment.refunded + amount.amount > payment.amount {
            return Err(PaymentError::Declined("the refund exceeds what was paid".into()));
        }
        payment.refunded += amount.amount;
        let refund = LedgerEntry {
            key: refund_key.to_owned(),
            state: LedgerState::Refunded,
            amount: amount.amount,
            currency: amount.currency.to_string(),
            refunded: 0,
            of: Some(payment_key.to_owned()),
        };
        self.record(vec![payment, refund]).await
    }

    async fn retrieve(&self, idempotency_key: &str) -> Result<Option<LedgerState>, PaymentError> {
        Ok(self.state(idempotency_key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usd(amount: i64) -> Money {
        Money::new(amount, Currency::USD)
    }

    fn request(key: &str, token: &str) -> PaymentRequest {
        PaymentRequest { idempotency_key: key.into(), amount: usd(1000), token: token.into() }
    }

    #[tokio::test]
    async fn the_ledger_survives_a_reopen_and_answers_retrieve() {
        let dir = tempfile::tempdir().unwrap();
        {
            let gateway = SimulatedGateway::open(dir.path(), (0, 0), 0.0, true).unwrap();
            let auth = gateway.authorize(&request("pa_1", "tok_visa")).await.unwrap();
            gateway.capture(&auth).await.unwrap();
            gateway.authorize(&request("pa_2", "tok_visa")).await.unwrap();
            assert!(gateway.authorize(&request("pa_3", "tok_declined")).await.is_err());
            gateway.refund("refund:pa_1", "pa_1", usd(400)).await.unwrap();
        }
        let gateway = SimulatedGateway::open(dir.path(), (0, 0), 0.0, true).unwrap();
        assert_eq!(gateway.retrieve("pa_1").await.unwrap(), Some(LedgerState::Captured));
        assert_eq!(gateway.retrieve("pa_2").await.unwrap(), Some(LedgerState::Authorized));
        assert_eq!(gateway.retrieve("pa_3").await.unwrap(), Some(LedgerState::Declined));
        assert_eq!(gateway.retrieve("pa_4").await.unwrap(), None);
        assert_eq!(gateway.refunded("pa_1"), 400);
        // The same refund key again refunds nothing more; a refund past the payment fails.
        gateway.refund("refund:pa_1", "pa_1", usd(400)).await.unwrap();
        assert_eq!(gateway.refunded("pa_1"), 400);
        assert!(gateway.refund("refund:pa_1:2", "pa_1", usd(700)).await.is_err());
        gateway.refund("refund:pa_1:2", "pa_1", usd(600)).await.unwrap();
        assert_eq!(gateway.refunded("pa_1"), 1000);
    }

    #[tokio::test]
    async fn voiding_an_unknown_key_burns_it() {
        let gateway = SimulatedGateway::new((0, 0), 0.0);
        gateway.void("pa_late").await.unwrap();
        let late = gateway.authorize(&request("pa_late", "tok_visa")).await;
        assert!(matches!(late, Err(PaymentError::Declined(_))), "{late:?}");
        // Voiding an authorization cancels it; a captured payment needs a refund.
        gateway.authorize(&request("pa_a", "tok_visa")).await.unwrap();
        gateway.void("pa_a").await.unwrap();
        assert_eq!(gateway.state("pa_a"), Some(LedgerState::Voided));
        let auth = gateway.authorize(&request("pa_c", "tok_visa")).await.unwrap();
        gateway.capture(&auth).await.unwrap();
        assert!(gateway.void("pa_c").await.is_err());
    }
}
