-- Webhooks for integrators: endpoints and their delivery log (as SQLite's 0010).
--
-- The secret is kept because every delivery is signed with it; the API never shows it
-- back. `events` is a JSON array of the event types the endpoint subscribed to. A deleted
-- endpoint is disabled, not removed, so that its delivery log stays readable.
CREATE TABLE webhooks (
    id BIGSERIAL PRIMARY KEY,
    url TEXT NOT NULL,
    secret TEXT NOT NULL,
    events TEXT NOT NULL,
    enabled BOOLEAN NOT NULL DEFAULT TRUE,
    created_at BIGINT NOT NULL,
    disabled_at BIGINT
);

-- One row per endpoint per outbox row it subscribed to, made by the dispatcher, which
-- reads the outbox by position under a lock on its cursor (the meta row
-- `webhooks.outbox-seq`), so nodes fan out each row once. `event_key` is the ticketing
-- event the message is about: an endpoint's deliveries of one event are attempted in `id`
-- order, none while an older one is still pending. Nodes claim due deliveries with
-- `FOR UPDATE SKIP LOCKED`; `lease` (a random token, with `next_attempt_at` as the
-- lease's end) fences the result of a claim that another node has since taken over.
CREATE TABLE webhook_deliveries (
    id BIGSERIAL PRIMARY KEY,
    webhook_id BIGINT NOT NULL REFERENCES webhooks (id),
    outbox_seq BIGINT NOT NULL,
    type TEXT NOT NULL,
    event_key TEXT NOT NULL,
    payload TEXT NOT NULL,
    message_created_at BIGINT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at BIGINT NOT NULL,
    first_attempt_at BIGINT,
    last_attempt_at BIGINT,
    last_status_code INTEGER,
    last_error TEXT,
    lease TEXT,
    created_at BIGINT NOT NULL,
    delivered_at BIGINT,
    UNIQUE (webhook_id, outbox_seq)
);

CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_in_order ON webhook_deliveries (webhook_id, event_key, id)
    WHERE status = 'pending';

-- Events whose sell-out has been announced (`event.sold_out`), so it is announced once.
CREATE TABLE sold_out_announced (
    event_id BIGINT PRIMARY KEY,
    at BIGINT NOT NULL
);

INSERT INTO meta (key, value) VALUES ('webhooks.outbox-seq', '0') ON CONFLICT DO NOTHING;
