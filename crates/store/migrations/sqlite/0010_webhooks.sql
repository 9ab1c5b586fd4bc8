-- Webhooks for integrators: endpoints (`POST /v1/webhooks`) and their delivery log.
--
-- The secret is kept because every delivery is signed with it; the API never shows it
-- back. `events` is a JSON array of the event types the endpoint subscribed to. A deleted
-- endpoint is disabled, not removed, so that its delivery log stays readable.
CREATE TABLE webhooks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    url TEXT NOT NULL,
    secret TEXT NOT NULL,
    events TEXT NOT NULL,
    enabled INTEGER NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
    created_at INTEGER NOT NULL,
    disabled_at INTEGER
) STRICT;

-- One row per endpoint per outbox row it subscribed to, made by the dispatcher, which
-- reads the outbox by position (its cursor is the meta row `webhooks.outbox-seq`).
-- `event_key` is the ticketing event the message is about: an endpoint's deliveries of
-- one event are attempted in `id` order, none while an older one is still pending.
-- `lease` is the claim of the node sending it (a random token, with `next_attempt_at` as
-- the lease's end): a result is recorded only under the claim it was sent under.
CREATE TABLE webhook_deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    webhook_id INTEGER NOT NULL REFERENCES webhooks (id),
    outbox_seq INTEGER NOT NULL,
    type TEXT NOT NULL,
    event_key TEXT NOT NULL,
    payload TEXT NOT NULL,
    message_created_at INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at INTEGER NOT NULL,
    first_attempt_at INTEGER,
    last_attempt_at INTEGER,
    last_status_code INTEGER,
    last_error TEXT,
    lease TEXT,
    created_at INTEGER NOT NULL,
    delivered_at INTEGER,
    UNIQUE (webhook_id, outbox_seq)
) STRICT;

CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_in_order ON webhook_deliveries (webhook_id, event_key, id)
    WHERE status = 'pending';

-- Events whose sell-out has been announced (`event.sold_out`), so it is announced once.
CREATE TABLE sold_out_announced (
    event_id INTEGER PRIMARY KEY,
    at INTEGER NOT NULL
) STRICT;

INSERT INTO meta (key, value) VALUES ('webhooks.outbox-seq', '0') ON CONFLICT DO NOTHING;
