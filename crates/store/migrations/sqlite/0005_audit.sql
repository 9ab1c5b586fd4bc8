-- The audit history: one row per seat per change, in a gap-free sequence per event.
--
-- Order-side rows (PAYMENT_INITIATED, PAYMENT_FAILED, SEAT_CONFIRMED, SEAT_REFUNDED) are
-- written in the transaction of the change they record; hold-side rows (SEAT_HELD,
-- SEAT_RELEASED) by the one writer that follows the inventory's change history. Rows are
-- never updated or deleted.
CREATE TABLE audit (
    event_id INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    type TEXT NOT NULL CHECK (type IN ('SEAT_HELD', 'SEAT_RELEASED', 'PAYMENT_INITIATED',
        'PAYMENT_FAILED', 'SEAT_CONFIRMED', 'SEAT_REFUNDED', 'TICKET_TRANSFERRED')),
    at INTEGER NOT NULL,
    seat INTEGER NOT NULL CHECK (seat >= 0),
    hold_id TEXT,
    order_id TEXT,
    user_id TEXT NOT NULL,
    reason TEXT,
    PRIMARY KEY (event_id, seq)
) STRICT, WITHOUT ROWID;

CREATE INDEX audit_by_hold ON audit (hold_id, type) WHERE hold_id IS NOT NULL;

-- The last sequence number given out per event; bumped in the appending transaction.
CREATE TABLE audit_heads (
    event_id INTEGER PRIMARY KEY,
    seq INTEGER NOT NULL
) STRICT;

CREATE TRIGGER audit_is_append_only_update BEFORE UPDATE ON audit
BEGIN
    SELECT RAISE(ABORT, 'audit rows are never changed');
END;

CREATE TRIGGER audit_is_append_only_delete BEFORE DELETE ON audit
BEGIN
    SELECT RAISE(ABORT, 'audit rows are never deleted');
END;
