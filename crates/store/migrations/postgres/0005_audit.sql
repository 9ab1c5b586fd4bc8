-- The audit history (as SQLite's 0005): one row per seat per change, in a gap-free
-- sequence per event. Hash-partitioned by `event_id` like `tickets` (the primary key
-- `(event_id, seq)` contains the partition key).
--
-- Order-side rows (PAYMENT_INITIATED, PAYMENT_FAILED, SEAT_CONFIRMED, SEAT_REFUNDED) are
-- written in the transaction of the change they record; hold-side rows (SEAT_HELD,
-- SEAT_RELEASED) by the one writer that follows the inventory's change history. Rows are
-- never updated or deleted.
CREATE TABLE audit (
    event_id BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    type TEXT NOT NULL CHECK (type IN ('SEAT_HELD', 'SEAT_RELEASED', 'PAYMENT_INITIATED',
        'PAYMENT_FAILED', 'SEAT_CONFIRMED', 'SEAT_REFUNDED', 'TICKET_TRANSFERRED')),
    at BIGINT NOT NULL,
    seat BIGINT NOT NULL CHECK (seat >= 0),
    hold_id TEXT,
    order_id TEXT,
    user_id TEXT NOT NULL,
    reason TEXT,
    PRIMARY KEY (event_id, seq)
) PARTITION BY HASH (event_id);

DO $$
BEGIN
    FOR n IN 0..7 LOOP
        EXECUTE format(
            'CREATE TABLE audit_p%s PARTITION OF audit FOR VALUES WITH (MODULUS 8, REMAINDER %s)',
            n, n);
    END LOOP;
END
$$;

CREATE INDEX audit_by_hold ON audit (hold_id, type) WHERE hold_id IS NOT NULL;

-- The last sequence number given out per event. A writer bumps its event's row in the
-- appending transaction and keeps it locked until the commit, so the records of one event
-- commit in `seq` order: a reader of `seq > last` never skips one that commits late.
CREATE TABLE audit_heads (
    event_id BIGINT PRIMARY KEY,
    seq BIGINT NOT NULL
);

CREATE FUNCTION audit_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit rows are never changed or deleted';
END
$$;

CREATE TRIGGER audit_is_append_only BEFORE UPDATE OR DELETE ON audit
    FOR EACH ROW EXECUTE FUNCTION audit_is_append_only();
