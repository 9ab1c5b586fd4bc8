//! Allocations (channels) and presale codes (`0008_allocations.sql`), the statements both
//! backends run. An allocation reserves seats of an event for entitled buyers until its
//! release time; a presale code entitles its holder to one allocation within a seat and a
//! use limit until it expires. Codes are stored only as digests (the server computes them
//! with its key), so this crate never sees a code.
//!
//! The backends call these with their own connection inside their own write transaction
//! (SQLite's `BEGIN IMMEDIATE`, PostgreSQL's row lock on the event), which makes the
//! checks below (name free, seats in no other allocation) and the insert one step.

use boxoffice_core::{EventId, UnixMs};
use sqlx::{PgConnection, SqliteConnection};

use crate::rows::{corrupt, from_db};
use crate::{Result, StoreError};

/// An allocation to create (already validated by the caller: a non-empty name, seats of
/// the event's map, each once).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAllocation {
    pub event: EventId,
    pub name: String,
    /// Seat indexes, ascending.
    pub seats: Vec<u32>,
    /// From this time on the allocation's unsold seats are general sale.
    pub release_at: UnixMs,
    /// Roles entitled to the allocation without a code (admins always are).
    pub roles: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocation {
    pub event: EventId,
    pub name: String,
    /// Seat indexes, ascending.
    pub seats: Vec<u32>,
    pub release_at: UnixMs,
    pub roles: Vec<String>,
    pub created_at: UnixMs,
}

/// A batch of presale codes for one allocation, as digests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPresaleCodes {
    pub event: EventId,
    pub allocation: String,
    /// Lower-case hex digests of the codes (the server's keyed hash), distinct.
    pub code_hashes: Vec<String>,
    /// Seats that holds made with one code may take in total.
    pub max_seats_per_code: u32,
    /// Holds that one code may make.
    pub max_uses: u32,
    pub expires_at: UnixMs,
}

/// A presale code as stored (its digest, limits and what has been used).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresaleCode {
    pub event: EventId,
    pub allocation: String,
    pub code_hash: String,
    pub max_seats: u32,
    pub max_uses: u32,
    pub uses: u32,
    pub seats_used: u32,
    pub expires_at: UnixMs,
}

impl PresaleCode {
    /// Whether a hold of `seats` more seats may use the code at `now`.
    pub fn admits(&self, seats: u32, now: UnixMs) -> bool {
        now < self.expires_at
            && self.uses < self.max_uses
            && self.seats_used.saturating_add(seats) <= self.max_seats
    }
}

#[derive(sqlx::FromRow)]
struct AllocationRow {
    event_id: i64,
    name: String,
    seats: String,
    release_at: i64,
    roles: String,
    created_at: i64,
}

impl AllocationRow {
    fn into_allocation(self) -> Result<Allocation> {
        Ok(Allocation {
            event: EventId(from_db(self.event_id, "allocation event id")?),
            seats: serde_json::from_str(&self.seats)
                .map_err(|e| corrupt(format!("allocation {:?} seats: {e}", self.name)))?,
            roles: serde_json::from_str(&self.roles)
                .map_err(|e| corrupt(format!("allocation {:?} roles: {e}", self.name)))?,
            name: self.name,
            release_at: from_db(self.release_at, "release_at")?,
            created_at: from_db(self.created_at, "allocation created_at")?,
        })
    }
}

#[derive(sqlx::FromRow)]
struct PresaleCodeRow {
    event_id: i64,
    allocation: String,
    code_hash: String,
    max_seats: i64,
    max_uses: i64,
    uses: i64,
    seats_used: i64,
    expires_at: i64,
}

impl PresaleCodeRow {
    fn into_code(self) -> Result<PresaleCode> {
        let small =
            |v: i64, what: &str| u32::try_from(v).map_err(|_| corrupt(format!("presale code {what} {v}")));
        Ok(PresaleCode {
            event: EventId(from_db(self.event_id, "presale code event id")?),
            allocation: self.allocation,
            code_hash: self.code_hash,
            max_seats: small(self.max_seats, "max_seats")?,
            max_uses: small(self.max_uses, "max_uses")?,
            uses: small(self.uses, "uses")?,
            seats_used: small(self.seats_used, "seats_used")?,
            expires_at: from_db(self.expires_at, "presale code expires_at")?,
        })
    }
}

fn db(value: u64, what: &str) -> Result<i64> {
    i64::try_from(value).map_err(|_| StoreError::Invalid(format!("{what} is out of range")))
}

/// The allocation `new` as inserted at `now` (both backends answer it without a read).
fn created(new: &NewAllocation, now: i64) -> Result<Allocation> {
    Ok(Allocation {
        event: new.event,
        name: new.name.clone(),
        seats: new.seats.clone(),
        release_at: new.release_at,
        roles: new.roles.clone(),
        created_at: from_db(now, "allocation created_at")?,
    })
}

fn taken(existing: &[Allocation], new: &NewAllocation) -> Result<()> {
    if existing.iter().any(|a| a.name == new.name) {
        return Err(StoreError::Invalid(format!("allocation {:?} already exists", new.name)));
    }
    // Seats are ascending in both, so a merge finds a shared seat in one pass each.
    for other in existing {
        let (mut i, mut j) = (0, 0);
        while i < other.seats.len() && j < new.seats.len() {
            match other.seats[i].cmp(&new.seats[j]) {
                std::cmp::Ordering::Less => i += 1,
                std::cmp::Ordering::Greater => j += 1,
                std::cmp::Ordering::Equal => {
                    return Err(StoreError::Invalid(format!(
                        "seat {} is already in allocation {:?}",
                        new.seats[j], other.name
                    )));
                }
            }
        }
    }
    Ok(())
}

const ALLOCATION_COLUMNS: &str = "event_id, name, seats, release_at, roles, created_at";
const CODE_COLUMNS: &str = "c.event_id, a.name AS allocation, c.code_hash, c.max_seats, c.max_uses, c.uses, \
     c.seats_used, c.expires_at FROM presale_codes c JOIN allocations a ON a.id = c.allocation_id";

pub(crate) mod sqlite {
    use super::*;

    pub(crate) async fn allocations(conn: &mut SqliteConnection, event: i64) -> Result<Vec<Allocation>> {
        let rows: Vec<AllocationRow> = sqlx::query_as(&format!(
            "SELECT {ALLOCATION_COLUMNS} FROM allocations WHERE event_id = ? ORDER BY id"
        ))
        .bind(event)
        .fetch_all(&mut *conn)
        .await?;
        rows.into_iter().map(AllocationRow::into_allocation).collect()
    }

    /// Inserts the allocation after checking its name and seats against the event's
    /// others; the caller's transaction must be a writing one.
    pub(crate) async fn create_allocation(
        conn: &mut SqliteConnection,
        event: i64,
        new: &NewAllocation,
        now: i64,
    ) -> Result<Allocation> {
        let existing = allocations(conn, event).await?;
        taken(&existing, new)?;
        sqlx::query(
            "INSERT INTO allocations (event_id, name, seats, seat_count, release_at, roles, created_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(event)
        .bind(&new.name)
        .bind(serde_json::to_string(&new.seats).expect("seat indexes serialize"))
        .bind(new.seats.len() as i64)
        .bind(db(new.release_at, "release_at")?)
        .bind(serde_json::to_string(&new.roles).expect("roles serialize"))
        .bind(now)
        .execute(&mut *conn)
        .await?;
        created(new, now)
    }

    pub(crate) async fn create_codes(
        conn: &mut SqliteConnection,
        event: i64,
        new: &NewPresaleCodes,
        now: i64,
    ) -> Result<()> {
        let allocation: Option<i64> =
            sqlx::query_scalar("SELECT id FROM allocations WHERE event_id = ? AND name = ?")
                .bind(event)
                .bind(&new.allocation)
                .fetch_optional(&mut *conn)
                .await?;
        let allocation = allocation.ok_or(StoreError::NotFound)?;
        for hash in &new.code_hashes {
            sqlx::query(
                "INSERT INTO presale_codes (code_hash, event_id, allocation_id, max_seats, max_uses, \
                 expires_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(hash)
            .bind(event)
            .bind(allocation)
            .bind(i64::from(new.max_seats_per_code))
            .bind(i64::from(new.max_uses))
            .bind(db(new.expires_at, "expires_at")?)
            .bind(now)
            .execute(&mut *conn)
            .await?;
        }
        Ok(())
    }

    pub(crate) async fn code(
        conn: &mut SqliteConnection,
        event: i64,
        hash: &str,
    ) -> Result<Option<PresaleCode>> {
        let row: Option<PresaleCodeRow> =
            sqlx::query_as(&format!("SELECT {CODE_COLUMNS} WHERE c.code_hash = ? AND c.event_id = ?"))
                .bind(hash)
                .bind(event)
                .fetch_optional(&mut *conn)
                .await?;
        row.map(PresaleCodeRow::into_code).transpose()
    }

    pub(crate) async fn use_code(
        conn: &mut SqliteConnection,
        event: i64,
        hash: &str,
        seats: u32,
        now: i64,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE presale_codes SET uses = uses + 1, seats_used = seats_used + ?1 \
             WHERE code_hash = ?2 AND event_id = ?3 AND expires_at > ?4 AND uses < max_uses \
             AND seats_used + ?1 <= max_seats",
        )
        .bind(i64::from(seats))
        .bind(hash)
        .bind(event)
        .bind(now)
        .execute(&mut *conn)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub(crate) async fn return_use(
        conn: &mut SqliteConnection,
        event: i64,
        hash: &str,
        seats: u32,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE presale_codes SET uses = MAX(uses - 1, 0), seats_used = MAX(seats_used - ?1, 0) \
             WHERE code_hash = ?2 AND event_id = ?3",
        )
        .bind(i64::from(seats))
        .bind(hash)
        .bind(event)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }
}

pub(crate) mod postgres {
    use super::*;

    pub(crate) async fn allocations(conn: &mut PgConnection, event: i64) -> Result<Vec<Allocation>> {
        let rows: Vec<AllocationRow> = sqlx::query_as(&format!(
            "SELECT {ALLOCATION_COLUMNS} FROM allocations WHERE event_id = $1 ORDER BY id"
        ))
        .bind(event)
        .fetch_all(&mut *conn)
        .await?;
        rows.into_iter().map(AllocationRow::into_allocation).collect()
    }

    /// Inserts the allocation after checking its name and seats against the event's
    /// others; the caller holds the event row's lock (`FOR UPDATE`).
    pub(crate) async fn create_allocation(
        conn: &mut PgConnection,
        event: i64,
        new: &NewAllocation,
        now: i64,
    ) -> Result<Allocation> {
        let existing = allocations(conn, event).await?;
        taken(&existing, new)?;
        sqlx::query(
            "INSERT INTO allocations (event_id, name, seats, seat_count, release_at, roles, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(event)
        .bind(&new.name)
        .bind(serde_json::to_string(&new.seats).expect("seat indexes serialize"))
        .bind(new.seats.len() as i64)
        .bind(db(new.release_at, "release_at")?)
        .bind(serde_json::to_string(&new.roles).expect("roles serialize"))
        .bind(now)
        .execute(&mut *conn)
        .await?;
        created(new, now)
    }

    pub(crate) async fn create_codes(
        conn: &mut PgConnection,
        event: i64,
        new: &NewPresaleCodes,
        now: i64,
    ) -> Result<()> {
        let allocation: Option<i64> =
            sqlx::query_scalar("SELECT id FROM allocations WHERE event_id = $1 AND name = $2")
                .bind(event)
                .bind(&new.allocation)
                .fetch_optional(&mut *conn)
                .await?;
        let allocation = allocation.ok_or(StoreError::NotFound)?;
        sqlx::query(
            "INSERT INTO presale_codes (code_hash, event_id, allocation_id, max_seats, max_uses, \
             expires_at, created_at) SELECT h, $2, $3, $4, $5, $6, $7 FROM UNNEST($1::text[]) AS h",
        )
        .bind(&new.code_hashes)
        .bind(event)
        .bind(allocation)
        .bind(i64::from(new.max_seats_per_code))
        .bind(i64::from(new.max_uses))
        .bind(db(new.expires_at, "expires_at")?)
        .bind(now)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    pub(crate) async fn code(conn: &mut PgConnection, event: i64, hash: &str) -> Result<Option<PresaleCode>> {
        let row: Option<PresaleCodeRow> =
            sqlx::query_as(&format!("SELECT {CODE_COLUMNS} WHERE c.code_hash = $1 AND c.event_id = $2"))
                .bind(hash)
                .bind(event)
                .fetch_optional(&mut *conn)
                .await?;
        row.map(PresaleCodeRow::into_code).transpose()
    }

    pub(crate) async fn use_code(
        conn: &mut PgConnection,
        event: i64,
        hash: &str,
        seats: u32,
        now: i64,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE presale_codes SET uses = uses + 1, seats_used = seats_used + $1 \
             WHERE code_hash = $2 AND event_id = $3 AND expires_at > $4 AND uses < max_uses \
             AND seats_used + $1 <= max_seats",
        )
        .bind(i64::from(seats))
        .bind(hash)
        .bind(event)
        .bind(now)
        .execute(&mut *conn)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub(crate) async fn return_use(
        conn: &mut PgConnection,
        event: i64,
        hash: &str,
        seats: u32,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE presale_codes SET uses = GREATEST(uses - 1, 0), \
             seats_used = GREATEST(seats_used - $1, 0) WHERE code_hash = $2 AND event_id = $3",
        )
        .bind(i64::from(seats))
        .bind(hash)
        .bind(event)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }
}
