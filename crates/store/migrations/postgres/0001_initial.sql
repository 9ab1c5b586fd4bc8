-- The boxoffice schema for PostgreSQL, one migration per SQLite migration of the same
-- number (so both backends speak of the same versions). Times are Unix milliseconds and
-- money is integer minor units, both BIGINT: the store decodes every integer as i64.
-- Lists (tiers, prices, seat indexes, ticket ids) and seat maps are JSON text, parsed in
-- Rust as on SQLite.
--
-- `tickets` is hash-partitioned by `event_id` (8 partitions): an onsale writes the
-- tickets of one event, and every unique index of a partitioned table must contain the
-- partition key, which the one that matters, one valid ticket per seat of an event, does.
-- `orders` is not partitioned: its UNIQUE hold and payment attempt must hold across
-- events.

CREATE TABLE venues (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name TEXT NOT NULL,
    city TEXT NOT NULL,
    -- Lower-cased in Rust, as on SQLite, so that both backends fold alike.
    city_folded TEXT NOT NULL,
    lat DOUBLE PRECISION NOT NULL,
    lon DOUBLE PRECISION NOT NULL,
    address TEXT,
    seat_count BIGINT NOT NULL CHECK (seat_count > 0),
    tiers TEXT NOT NULL,
    seat_map TEXT NOT NULL
);

CREATE TABLE performers (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name TEXT NOT NULL,
    genre TEXT
);

CREATE TABLE events (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name TEXT NOT NULL,
    venue_id BIGINT NOT NULL REFERENCES venues (id),
    category TEXT NOT NULL,
    category_folded TEXT NOT NULL,
    starts_at BIGINT NOT NULL,
    onsale_at BIGINT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('published', 'cancelled')),
    prices TEXT NOT NULL,
    description TEXT,
    seat_count BIGINT NOT NULL CHECK (seat_count > 0),
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    -- A copy of the venue's map at creation, so that seat indexes never shift.
    seat_map TEXT NOT NULL
);

CREATE INDEX events_by_start ON events (starts_at, id);
CREATE INDEX events_by_venue ON events (venue_id);

CREATE TABLE event_performers (
    event_id BIGINT NOT NULL REFERENCES events (id),
    performer_id BIGINT NOT NULL REFERENCES performers (id),
    position BIGINT NOT NULL,
    PRIMARY KEY (event_id, performer_id)
);

CREATE INDEX event_performers_by_performer ON event_performers (performer_id);

CREATE TABLE orders (
    id TEXT PRIMARY KEY,
    event_id BIGINT NOT NULL REFERENCES events (id),
    user_id TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('confirmed', 'partially_refunded', 'refunded')),
    email TEXT,
    total_amount BIGINT NOT NULL,
    currency TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    hold_id TEXT NOT NULL,
    -- One order per hold: a retried checkout finds the first order instead of selling
    -- twice. Named, because the store maps this constraint to `HoldAlreadyOrdered`.
    CONSTRAINT orders_one_per_hold UNIQUE (hold_id)
);

-- `id` closes the index so that the keyset pagination of a user's orders is index-only.
CREATE INDEX orders_by_user ON orders (user_id, created_at, id);

CREATE TABLE tickets (
    id TEXT NOT NULL,
    order_id TEXT NOT NULL REFERENCES orders (id),
    event_id BIGINT NOT NULL REFERENCES events (id),
    seat_index BIGINT NOT NULL CHECK (seat_index >= 0),
    seat_label TEXT NOT NULL,
    price_amount BIGINT NOT NULL,
    currency TEXT NOT NULL,
    user_id TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('valid', 'scanned', 'voided', 'transferred')),
    created_at BIGINT NOT NULL,
    -- The partition key must be part of the key. Ticket ids are 104 random bits, so the id
    -- alone is unique in practice; only its index below is not a unique one.
    PRIMARY KEY (event_id, id)
) PARTITION BY HASH (event_id);

-- The partitions, and on each the guard against selling a seat twice under a name the
-- store recognises (`tickets_pN_one_valid_per_seat`): a unique violation names the
-- partition's index, not the parent's. The parent index created after them adopts them.
DO $$
BEGIN
    FOR n IN 0..7 LOOP
        EXECUTE format(
            'CREATE TABLE tickets_p%s PARTITION OF tickets FOR VALUES WITH (MODULUS 8, REMAINDER %s)',
            n, n);
        EXECUTE format(
            'CREATE UNIQUE INDEX tickets_p%s_one_valid_per_seat ON tickets_p%s (event_id, seat_index) '
            'WHERE status IN (''valid'', ''scanned'')',
            n, n);
    END LOOP;
END
$$;

-- The last guard against selling a seat twice, whatever the inventory in memory believes.
CREATE UNIQUE INDEX tickets_one_valid_per_seat ON tickets (event_id, seat_index)
    WHERE status IN ('valid', 'scanned');
CREATE INDEX tickets_by_order ON tickets (order_id);
CREATE INDEX tickets_by_id ON tickets (id);

CREATE TABLE idempotency_keys (
    user_id TEXT NOT NULL,
    route TEXT NOT NULL,
    key TEXT NOT NULL,
    body_sha256 BYTEA NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('in_progress', 'done')),
    status BIGINT,
    body BYTEA,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, route, key)
);

CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_at);

CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
