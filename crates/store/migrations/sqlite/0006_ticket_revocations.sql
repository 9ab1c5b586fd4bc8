-- Rotating tickets, transfers and the revocation list.
--
-- `static_tickets_allowed`: whether door scanners accept an event's static (printable)
-- QR payload; off, only the rotating payload of the ticket page admits. An event without
-- an `event_settings` row allows them (Rust's default).
ALTER TABLE event_settings ADD COLUMN static_tickets_allowed INTEGER NOT NULL DEFAULT 1
    CHECK (static_tickets_allowed IN (0, 1));

-- Ticket revisions that no longer admit anyone, for offline scanners
-- (`GET /v1/events/{id}/revocations?since=`). `seq` is the sequence number of the audit
-- record written in the same transaction (SEAT_REFUNDED or TICKET_TRANSFERRED), so the
-- list is read by position like the audit history and commits in its order.
CREATE TABLE ticket_revocations (
    event_id INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    ticket_id TEXT NOT NULL,
    revision INTEGER NOT NULL CHECK (revision >= 1),
    reason TEXT NOT NULL CHECK (reason IN ('refunded', 'transferred')),
    revoked_at INTEGER NOT NULL,
    PRIMARY KEY (event_id, seq)
) STRICT, WITHOUT ROWID;

-- Tickets voided before this migration, from their SEAT_REFUNDED records (before
-- transfers existed, an order had one ticket per seat).
INSERT INTO ticket_revocations (event_id, seq, ticket_id, revision, reason, revoked_at)
SELECT a.event_id, a.seq, t.id, t.revision, 'refunded', a.at
FROM audit a JOIN tickets t
    ON t.event_id = a.event_id AND t.seat_index = a.seat AND t.order_id = a.order_id
WHERE a.type = 'SEAT_REFUNDED' AND t.status = 'voided';

-- A user's tickets, newest first (`GET /v1/me/tickets`), transferred ones included.
CREATE INDEX tickets_by_user ON tickets (user_id, created_at, id);
