-- Payments, refunds, signed tickets and the transactional outbox (as SQLite's 0003).
--
-- A payment attempt is committed before the gateway is called, so that whatever happens
-- next leaves a row that the reconciler can ask the gateway about. An order names the
-- attempt that paid for it, at most once.

CREATE TABLE payment_attempts (
    id TEXT PRIMARY KEY,
    hold_id TEXT NOT NULL,
    event_id BIGINT NOT NULL REFERENCES events (id),
    user_id TEXT NOT NULL,
    -- Seat indexes of the hold, a JSON array.
    seats TEXT NOT NULL,
    amount BIGINT NOT NULL,
    currency TEXT NOT NULL,
    gateway TEXT NOT NULL,
    gateway_key TEXT NOT NULL UNIQUE,
    authorization_id TEXT,
    state TEXT NOT NULL CHECK (state IN
        ('initiated', 'authorized', 'declined', 'voided', 'captured', 'refunded', 'unknown')),
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    -- No order commits for this attempt at or after this time; only then may the
    -- reconciler act on it.
    pin_deadline BIGINT NOT NULL
);

-- The reconciler's work list: attempts whose outcome is still open.
CREATE INDEX payment_attempts_open ON payment_attempts (pin_deadline)
    WHERE state IN ('initiated', 'authorized', 'unknown');
CREATE INDEX payment_attempts_by_hold ON payment_attempts (hold_id);

-- One order per attempt: the response path, a webhook and the reconciler may all try to
-- complete one attempt; the second finds the first order instead (NULLs are distinct).
ALTER TABLE orders ADD COLUMN payment_attempt_id TEXT REFERENCES payment_attempts (id);
ALTER TABLE orders ADD CONSTRAINT orders_one_per_attempt UNIQUE (payment_attempt_id);

-- Signed QR payload; the revision grows when a ticket is reissued (transfer), so an old
-- payload stops verifying. Added to the partitioned table, so to every partition.
ALTER TABLE tickets ADD COLUMN qr_payload TEXT;
ALTER TABLE tickets ADD COLUMN revision BIGINT NOT NULL DEFAULT 1;
ALTER TABLE tickets ADD COLUMN updated_at BIGINT;

CREATE TABLE refunds (
    id TEXT PRIMARY KEY,
    order_id TEXT NOT NULL REFERENCES orders (id),
    payment_attempt_id TEXT REFERENCES payment_attempts (id),
    -- `refund:{attempt_id}` for an attempt's first refund, `refund:{attempt_id}:{n}` after.
    gateway_key TEXT NOT NULL UNIQUE,
    amount BIGINT NOT NULL,
    currency TEXT NOT NULL,
    -- Ticket ids voided by this refund, a JSON array.
    ticket_ids TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'succeeded')),
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE INDEX refunds_by_order ON refunds (order_id);
CREATE INDEX refunds_pending ON refunds (created_at) WHERE state = 'pending';

-- Counters of the feeds that are read by position (`seq > last`). A writer takes the next
-- value with `UPDATE seq_counters SET value = value + 1 ... RETURNING value` inside its
-- transaction, so the counter row stays locked until that transaction ends: the writers
-- of one feed commit one after another, in the order of their values, and a reader that
-- has seen value N can never later meet a committed row below N. (A SEQUENCE would hand
-- out values outside the transactions, and a row that commits late with a lower value
-- would be skipped by a reader already past it.) An aborted writer's increment is rolled
-- back with it, so the values also have no gaps.
CREATE TABLE seq_counters (
    name TEXT PRIMARY KEY,
    value BIGINT NOT NULL CHECK (value >= 0)
);
INSERT INTO seq_counters (name, value) VALUES ('outbox', 0);

-- Rows written in the same transaction as the change they announce; a relay moves them,
-- in `seq` order, to the ticket stream and marks them sent (at least once).
CREATE TABLE outbox (
    seq BIGINT PRIMARY KEY,
    topic TEXT NOT NULL,
    key TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    sent_at BIGINT
);

CREATE INDEX outbox_unsent ON outbox (seq) WHERE sent_at IS NULL;
