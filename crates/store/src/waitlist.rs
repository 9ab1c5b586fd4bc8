//! The sold-out waitlist's entries (`0009_waitlist.sql`), the statements both backends run.
//! The backends call these with their own connection inside their own write transaction
//! (SQLite's `BEGIN IMMEDIATE`, PostgreSQL's row lock on the event), which makes a join's
//! checks (the user's active entry, the event's entry limit) and its insert one step.

use boxoffice_core::{EventId, HoldId, UnixMs, UserId};
use sqlx::{PgConnection, SqliteConnection};

use crate::rows::{corrupt, from_db};
use crate::{Result, StoreError};

/// Where an entry is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WaitlistState {
    Waiting,
    /// Seats are held for the entry's user (`hold`, until `offer_expires_at`).
    Offered,
    /// The offer was not taken.
    Expired,
    /// The offer was checked out.
    Done,
    /// The user left the waitlist.
    Left,
}

impl WaitlistState {
    pub const ALL: [WaitlistState; 5] = [Self::Waiting, Self::Offered, Self::Expired, Self::Done, Self::Left];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Waiting => "waiting",
            Self::Offered => "offered",
            Self::Expired => "expired",
            Self::Done => "done",
            Self::Left => "left",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// Waiting or offered.
    pub fn is_active(self) -> bool {
        matches!(self, Self::Waiting | Self::Offered)
    }
}

/// An entry to add (validated by the caller).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewWaitlistEntry {
    /// `wl_` and 26 hex digits.
    pub id: String,
    pub event: EventId,
    pub user: UserId,
    /// Where offers are mailed.
    pub email: Option<String>,
    pub group_size: u32,
    /// Section names; empty = any section.
    pub sections: Vec<String>,
    /// Highest seat price, in the event currency's minor units.
    pub max_price: Option<i64>,
    /// The group's seats must be adjacent in one row.
    pub adjacent: bool,
    pub now: UnixMs,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitlistEntry {
    pub id: String,
    pub event: EventId,
    pub user: UserId,
    pub email: Option<String>,
    /// Join order within the event, from 1.
    pub seq: u64,
    pub group_size: u32,
    pub sections: Vec<String>,
    pub max_price: Option<i64>,
    pub adjacent: bool,
    pub state: WaitlistState,
    pub hold: Option<HoldId>,
    pub offer_expires_at: Option<UnixMs>,
    pub created_at: UnixMs,
    pub updated_at: UnixMs,
}

/// The answer to a join.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WaitlistJoin {
    /// A new waiting entry.
    Joined(WaitlistEntry),
    /// The user's active entry of the event (joining again returns it).
    Existing(WaitlistEntry),
    /// The event already has this many active entries.
    Full(u32),
}

/// A state change of an entry (compare-and-set on its current state).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitlistChange {
    pub state: WaitlistState,
    pub hold: Option<HoldId>,
    pub offer_expires_at: Option<UnixMs>,
    pub now: UnixMs,
}

#[derive(sqlx::FromRow)]
struct EntryRow {
    id: String,
    event_id: i64,
    user_id: String,
    email: Option<String>,
    seq: i64,
    group_size: i64,
    sections: String,
    max_price: Option<i64>,
    adjacent: bool,
    state: String,
    hold_id: Option<String>,
    offer_expires_at: Option<i64>,
    created_at: i64,
    updated_at: i64,
}

impl EntryRow {
    fn into_entry(self) -> Result<WaitlistEntry> {
        let what = |field: &str| format!("waitlist entry {} {field}", self.id);
        Ok(WaitlistEntry {
            event: EventId(from_db(self.event_id, "waitlist event id")?),
            user: UserId::parse(&self.user_id).map_err(|_| corrupt(what("user")))?,
            seq: from_db(self.seq, "waitlist seq")?,
            email: self.email,
            group_size: u32::try_from(self.group_size).map_err(|_| corrupt(what("group_size")))?,
            sections: serde_json::from_str(&self.sections).map_err(|_| corrupt(what("sections")))?,
            max_price: self.max_price,
            adjacent: self.adjacent,
            state: WaitlistState::parse(&self.state).ok_or_else(|| corrupt(what("state")))?,
            hold: match &self.hold_id {
                Some(h) => Some(HoldId::parse(h).map_err(|_| corrupt(what("hold_id")))?),
                None => None,
            },
            offer_expires_at: self.offer_expires_at.map(|v| from_db(v, "offer_expires_at")).transpose()?,
            created_at: from_db(self.created_at, "waitlist created_at")?,
            updated_at: from_db(self.updated_at, "waitlist updated_at")?,
            id: self.id,
        })
    }
}

fn db(value: u64, what: &str) -> Result<i64> {
    i64::try_from(value).map_err(|_| StoreError::Invalid(format!("{what} is out of range")))
}

const COLUMNS: &str = "id, event_id, user_id, email, seq, group_size, sections, max_price, adjacent, state, hold_id, \
     offer_expires_at, created_at, updated_at";
const ACTIVE: &str = "state IN ('waiting', 'offered')";

/// The statements, with `?` (SQLite) or `$n` (PostgreSQL) placeholders.
macro_rules! backend {
    ($name:ident, $conn:ty, $p:expr) => {
        pub(crate) mod $name {
            use super::*;

            fn sql(text: &str) -> String {
                let mut n = 0;
                text.chars()
                    .map(|c| {
                        if c == '?' && $p {
                            n += 1;
                            format!("${n}")
                        } else {
                            c.to_string()
                        }
                    })
                    .collect()
            }

            /// Call inside a write transaction that serialises the event's joins.
            pub(crate) async fn join(
                conn: &mut $conn,
                event: i64,
                entry: &NewWaitlistEntry,
                max_entries: u32,
            ) -> Result<WaitlistJoin> {
                let existing: Option<EntryRow> = sqlx::query_as(&sql(&format!(
                    "SELECT {COLUMNS} FROM waitlist_entries WHERE event_id = ? AND user_id = ? AND {ACTIVE}"
                )))
                .bind(event)
                .bind(entry.user.as_str())
                .fetch_optional(&mut *conn)
                .await?;
                if let Some(row) = existing {
                    return Ok(WaitlistJoin::Existing(row.into_entry()?));
                }
                let active: i64 = sqlx::query_scalar(&sql(&format!(
                    "SELECT COUNT(*) FROM waitlist_entries WHERE event_id = ? AND {ACTIVE}"
                )))
                .bind(event)
                .fetch_one(&mut *conn)
                .await?;
                if active >= i64::from(max_entries) {
                    return Ok(WaitlistJoin::Full(max_entries));
                }
                let seq: i64 = sqlx::query_scalar(&sql(
                    "SELECT COALESCE(MAX(seq), 0) + 1 FROM waitlist_entries WHERE event_id = ?",
                ))
                .bind(event)
                .fetch_one(&mut *conn)
                .await?;
                let now = db(entry.now, "now")?;
                let sections = serde_json::to_string(&entry.sections).expect("a list of strings serializes");
                sqlx::query(&sql(&format!(
                    "INSERT INTO waitlist_entries ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'waiting', NULL, NULL, ?, ?)"
                )))
                .bind(&entry.id)
                .bind(event)
                .bind(entry.user.as_str())
                .bind(entry.email.as_deref())
                .bind(seq)
                .bind(i64::from(entry.group_size))
                .bind(&sections)
                .bind(entry.max_price)
                .bind(entry.adjacent)
                .bind(now)
                .bind(now)
                .execute(&mut *conn)
                .await?;
                Ok(WaitlistJoin::Joined(WaitlistEntry {
                    id: entry.id.clone(),
                    event: entry.event,
                    user: entry.user.clone(),
                    email: entry.email.clone(),
                    seq: from_db(seq, "waitlist seq")?,
                    group_size: entry.group_size,
                    sections: entry.sections.clone(),
                    max_price: entry.max_price,
                    adjacent: entry.adjacent,
                    state: WaitlistState::Waiting,
                    hold: None,
                    offer_expires_at: None,
                    created_at: entry.now,
                    updated_at: entry.now,
                }))
            }

            /// The user's active entry of the event.
            pub(crate) async fn active_of(
                conn: &mut $conn,
                event: i64,
                user: &UserId,
            ) -> Result<Option<WaitlistEntry>> {
                let row: Option<EntryRow> = sqlx::query_as(&sql(&format!(
                    "SELECT {COLUMNS} FROM waitlist_entries WHERE event_id = ? AND user_id = ? AND {ACTIVE}"
                )))
                .bind(event)
                .bind(user.as_str())
                .fetch_optional(&mut *conn)
                .await?;
                row.map(EntryRow::into_entry).transpose()
            }

            pub(crate) async fn entry(conn: &mut $conn, id: &str) -> Result<Option<WaitlistEntry>> {
                let row: Option<EntryRow> =
                    sqlx::query_as(&sql(&format!("SELECT {COLUMNS} FROM waitlist_entries WHERE id = ?")))
                        .bind(id)
                        .fetch_optional(&mut *conn)
                        .await?;
                row.map(EntryRow::into_entry).transpose()
            }

            /// Active entries of one event (or of every event), in join order.
            pub(crate) async fn active(conn: &mut $conn, event: Option<i64>) -> Result<Vec<WaitlistEntry>> {
                let rows: Vec<EntryRow> = match event {
                    Some(event) => sqlx::query_as(&sql(&format!(
                        "SELECT {COLUMNS} FROM waitlist_entries WHERE event_id = ? AND {ACTIVE} ORDER BY seq"
                    )))
                    .bind(event)
                    .fetch_all(&mut *conn)
                    .await?,
                    None => sqlx::query_as(&format!(
                        "SELECT {COLUMNS} FROM waitlist_entries WHERE {ACTIVE} ORDER BY event_id, seq"
                    ))
                    .fetch_all(&mut *conn)
                    .await?,
                };
                rows.into_iter().map(EntryRow::into_entry).collect()
            }

            /// Waiting entries of the event joined at or before `seq`.
            pub(crate) async fn position(conn: &mut $conn, event: i64, seq: u64) -> Result<u64> {
                let n: i64 = sqlx::query_scalar(&sql(
                    "SELECT COUNT(*) FROM waitlist_entries WHERE event_id = ? AND state = 'waiting' AND seq <= ?",
                ))
                .bind(event)
                .bind(db(seq, "seq")?)
                .fetch_one(&mut *conn)
                .await?;
                from_db(n, "waitlist position")
            }

            /// Moves the entry from `from` to the change's state; false when it was not in `from`.
            pub(crate) async fn update(
                conn: &mut $conn,
                id: &str,
                from: WaitlistState,
                change: &WaitlistChange,
            ) -> Result<bool> {
                let expires = change.offer_expires_at.map(|v| db(v, "offer_expires_at")).transpose()?;
                let done = sqlx::query(&sql(
                    "UPDATE waitlist_entries SET state = ?, hold_id = COALESCE(?, hold_id), \
                     offer_expires_at = COALESCE(?, offer_expires_at), updated_at = ? WHERE id = ? AND state = ?",
                ))
                .bind(change.state.as_str())
                .bind(change.hold.map(|h| h.to_string()))
                .bind(expires)
                .bind(db(change.now, "now")?)
                .bind(id)
                .bind(from.as_str())
                .execute(&mut *conn)
                .await?;
                Ok(done.rows_affected() == 1)
            }
        }
    };
}

backend!(sqlite, SqliteConnection, false);
backend!(postgres, PgConnection, true);
