-- Payments, refunds, signed tickets and the transactional outbox.
--
-- A payment attempt is committed before the gateway is called, so that whatever happens
-- next (a crash, a timeout, a lost answer) leaves a row that the reconciler can ask the
-- gateway about. An order names the attempt that paid for it, at most once.

CREATE TABLE payment_attempts (
    id TEXT PRIMARY KEY,
    hold_id TEXT NOT NULL,
    event_id INTEGER NOT NULL REFERENCES events (id),
    user_id TEXT NOT NULL,
    -- Seat indexes of the hold, a JSON array.
    seats TEXT NOT NULL,
    amount INTEGER NOT NULL,
    currency TEXT NOT NULL,
    gateway TEXT NOT NULL,
    gateway_key TEXT NOT NULL UNIQUE,
    -- The gateway's id of the authorization, once it answered.
    authorization_id TEXT,
    state TEXT NOT NULL CHECK (state IN
        ('initiated', 'authorized', 'declined', 'voided', 'captured', 'refunded', 'unknown')),
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    -- No order commits for this attempt at or after this time; only then may the
    -- reconciler act on it.
    pin_deadline INTEGER NOT NULL
) STRICT;

-- The reconciler's work list: attempts whose outcome is still open.
CREATE INDEX payment_attempts_open ON payment_attempts (pin_deadline)
    WHERE state IN ('initiated', 'authorized', 'unknown');
CREATE INDEX payment_attempts_by_hold ON payment_attempts (hold_id);

ALTER TABLE orders ADD COLUMN payment_attempt_id TEXT REFERENCES payment_attempts (id);
-- One order per attempt: the response path, a webhook and the reconciler may all try to
-- complete one attempt; the second insert finds the first order instead.
CREATE UNIQUE INDEX orders_one_per_attempt ON orders (payment_attempt_id)
    WHERE payment_attempt_id IS NOT NULL;

-- Signed QR payload (see the server's tickets module); the revision grows when a ticket
-- is reissued (transfer), so an old payload stops verifying.
ALTER TABLE tickets ADD COLUMN qr_payload TEXT;
ALTER TABLE tickets ADD COLUMN revision INTEGER NOT NULL DEFAULT 1;
ALTER TABLE tickets ADD COLUMN updated_at INTEGER;

CREATE TABLE refunds (
    id TEXT PRIMARY KEY,
    order_id TEXT NOT NULL REFERENCES orders (id),
    payment_attempt_id TEXT REFERENCES payment_attempts (id),
    -- `refund:{attempt_id}` for an attempt's first refund, `refund:{attempt_id}:{n}` after.
    gateway_key TEXT NOT NULL UNIQUE,
    amount INTEGER NOT NULL,
    currency TEXT NOT NULL,
    -- Ticket ids voided by this refund, a JSON array.
    ticket_ids TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'succeeded')),
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
) STRICT;

CREATE INDEX refunds_by_order ON refunds (order_id);
CREATE INDEX refunds_pending ON refunds (created_at) WHERE state = 'pending';

-- Rows written in the same transaction as the change they announce; a relay moves them,
-- in `seq` order, to the ticket stream and marks them sent (at least once).
CREATE TABLE outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    key TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    sent_at INTEGER
) STRICT;

CREATE INDEX outbox_unsent ON outbox (seq) WHERE sent_at IS NULL;
