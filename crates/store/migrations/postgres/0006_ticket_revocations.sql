-- Rotating tickets, transfers and the revocation list (as SQLite's 0006).
--
-- `static_tickets_allowed`: whether door scanners accept an event's static (printable)
-- QR payload; off, only the rotating payload of the ticket page admits. An event without
-- an `event_settings` row allows them (Rust's default).
ALTER TABLE event_settings ADD COLUMN static_tickets_allowed BOOLEAN NOT NULL DEFAULT TRUE;

-- Ticket revisions that no longer admit anyone, for offline scanners
-- (`GET /v1/events/{id}/revocations?since=`). `seq` is the sequence number of the audit
-- record written in the same transaction (SEAT_REFUNDED or TICKET_TRANSFERRED): the
-- event's `audit_heads` row is locked until that commit, so rows commit in `seq` order
-- and a reader of `seq > last` never skips one. Hash-partitioned by `event_id` like
-- `audit`.
CREATE TABLE ticket_revocations (
    event_id BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    ticket_id TEXT NOT NULL,
    revision BIGINT NOT NULL CHECK (revision >= 1),
    reason TEXT NOT NULL CHECK (reason IN ('refunded', 'transferred')),
    revoked_at BIGINT NOT NULL,
    PRIMARY KEY (event_id, seq)
) PARTITION BY HASH (event_id);

DO $$
BEGIN
    FOR n IN 0..7 LOOP
        EXECUTE format(
            'CREATE TABLE ticket_revocations_p%s PARTITION OF ticket_revocations '
            'FOR VALUES WITH (MODULUS 8, REMAINDER %s)',
            n, n);
    END LOOP;
END
$$;

-- Tickets voided before this migration, from their SEAT_REFUNDED records (before
-- transfers existed, an order had one ticket per seat).
INSERT INTO ticket_revocations (event_id, seq, ticket_id, revision, reason, revoked_at)
SELECT a.event_id, a.seq, t.id, t.revision, 'refunded', a.at
FROM audit a JOIN tickets t
    ON t.event_id = a.event_id AND t.seat_index = a.seat AND t.order_id = a.order_id
WHERE a.type = 'SEAT_REFUNDED' AND t.status = 'voided';

-- A user's tickets, newest first (`GET /v1/me/tickets`), transferred ones included.
CREATE INDEX tickets_by_user ON tickets (user_id, created_at, id);
