//! Payment gateways. The flow is authorize -> (order commit) -> capture; a checkout that
//! cannot commit voids its authorization, so an undone checkout needs no refund.
//!
//! [`SimulatedGateway`] is the default: test tokens decide the outcome (`tok_visa`
//! approves, `tok_declined` declines, `tok_random` declines at the configured rate,
//! `tok_timeout` never answers), after a configurable latency.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use boxoffice_core::Money;
use parking_lot::Mutex;
use rand::Rng;

#[derive(Debug, Clone)]
pub struct PaymentRequest {
    /// The gateway's idempotency key: one per payment attempt.
    pub idempotency_key: String,
    pub amount: Money,
    pub token: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    pub id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PaymentError {
    #[error("payment declined: {0}")]
    Declined(String),
    #[error("payment gateway unavailable: {0}")]
    Unavailable(String),
}

#[async_trait]
pub trait PaymentGateway: Send + Sync + 'static {
    async fn authorize(&self, request: &PaymentRequest) -> Result<Authorization, PaymentError>;
    async fn capture(&self, authorization: &Authorization) -> Result<(), PaymentError>;
    /// Cancels an authorization (or a request whose outcome is unknown) by its key.
    async fn void(&self, idempotency_key: &str) -> Result<(), PaymentError>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LedgerState {
    Authorized,
    Captured,
    Voided,
    Declined,
}

/// An in-process gateway for demos, tests and load tests.
pub struct SimulatedGateway {
    latency_ms: (u64, u64),
    failure_rate: f64,
    ledger: Mutex<HashMap<String, (LedgerState, Money)>>,
}

impl SimulatedGateway {
    pub fn new(latency_ms: (u64, u64), failure_rate: f64) -> Self {
        SimulatedGateway { latency_ms, failure_rate, ledger: Mutex::new(HashMap::new()) }
    }

    /// What the gateway recorded for a key.
    pub fn state(&self, idempotency_key: &str) -> Option<LedgerState> {
        self.ledger.lock().get(idempotency_key).map(|(s, _)| *s)
    }

    async fn delay(&self) {
        let (min, max) = self.latency_ms;
        if max > 0 {
            let ms = rand::rng().random_range(min..=max);
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
    }
}

#[async_trait]
impl PaymentGateway for SimulatedGateway {
    async fn authorize(&self, request: &PaymentRequest) -> Result<Authorization, PaymentError> {
        self.delay().await;
        if let Some((state, _)) = self.ledger.lock().get(&request.idempotency_key) {
            // The same key gets the same answer.
            return match state {
                LedgerState::Declined => Err(PaymentError::Declined("card declined".into())),
                _ => Ok(Authorization { id: request.idempotency_key.clone() }),
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
        self.ledger.lock().insert(request.idempotency_key.clone(), (state, request.amount));
        if approve {
            Ok(Authorization { id: request.idempotency_key.clone() })
        } else {
            Err(PaymentError::Declined("card declined".into()))
        }
    }

    async fn capture(&self, authorization: &Authorization) -> Result<(), PaymentError> {
        match self.ledger.lock().get_mut(&authorization.id) {
            Some((state @ (LedgerState::Authorized | LedgerState::Captured), _)) => {
                *state = LedgerState::Captured;
                Ok(())
            }
            _ => Err(PaymentError::Declined("no such authorization".into())),
        }
    }

    async fn void(&self, idempotency_key: &str) -> Result<(), PaymentError> {
        if let Some((state, _)) = self.ledger.lock().get_mut(idempotency_key)
            && *state == LedgerState::Authorized
        {
            *state = LedgerState::Voided;
        }
        Ok(())
    }
}
