//! Row types and helpers that the SQLite and PostgreSQL backends share (sqlx's `FromRow`
//! derive works for both).

use std::fmt;

use boxoffice_core::TicketId;
use sqlx::FromRow;

use crate::{Result, Revocation, StoreError};

#[derive(FromRow)]
pub(crate) struct RevocationRow {
    pub(crate) seq: i64,
    pub(crate) ticket_id: String,
    pub(crate) revision: i64,
    pub(crate) reason: String,
    pub(crate) revoked_at: i64,
}

impl RevocationRow {
    pub(crate) fn into_revocation(self) -> Result<Revocation> {
        Ok(Revocation {
            seq: from_db(self.seq, "revocation seq")?,
            ticket: TicketId::parse(&self.ticket_id)
                .map_err(|_| corrupt(format!("ticket id {:?}", self.ticket_id)))?,
            revision: u32::try_from(self.revision)
                .map_err(|_| corrupt(format!("revision {}", self.revision)))?,
            reason: crate::RevocationReason::parse(&self.reason)
                .ok_or_else(|| corrupt(format!("revocation reason {:?}", self.reason)))?,
            revoked_at: from_db(self.revoked_at, "revoked_at")?,
        })
    }
}

/// Position after which the next page of a user's tickets starts: `"<created_at>:<id>"`.
pub(crate) struct TicketCursor {
    pub(crate) created_at: i64,
    pub(crate) id: String,
}

impl TicketCursor {
    pub(crate) fn parse(s: &str) -> Result<Self> {
        let (created_at, id) = s.split_once(':').ok_or(StoreError::BadCursor)?;
        let id = TicketId::parse(id).map_err(|_| StoreError::BadCursor)?;
        Ok(TicketCursor { created_at: cursor_int(created_at)?, id: id.as_str().to_owned() })
    }
}

impl fmt::Display for TicketCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.created_at, self.id)
    }
}

/// A non-negative decimal integer, digits only (`str::parse` would also take a `+`).
pub(crate) fn cursor_int(s: &str) -> Result<i64> {
    if s.is_empty() || s.len() > 19 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(StoreError::BadCursor);
    }
    s.parse().map_err(|_| StoreError::BadCursor)
}

pub(crate) fn corrupt(what: impl Into<String>) -> StoreError {
    StoreError::Corrupt(what.into())
}

pub(crate) fn from_db(value: i64, what: &str) -> Result<u64> {
    u64::try_from(value).map_err(|_| corrupt(format!("negative {what}: {value}")))
}
