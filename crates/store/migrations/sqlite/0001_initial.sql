-- The whole boxoffice schema for SQLite. Times are Unix milliseconds; money is integer
-- minor units. Tables are STRICT so that a wrongly typed bind fails instead of being
-- silently stored as another type.
--
-- The seat maps (up to a few MB of JSON) are the last column of their rows: SQLite keeps
-- them in overflow pages, and a query that reads only the columns before them never
-- walks those pages.

CREATE TABLE venues (
    -- AUTOINCREMENT: ids are never reused, even if the newest row were ever deleted.
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    city TEXT NOT NULL,
    -- Lower-cased in Rust: SQLite's lower() and NOCASE only fold ASCII.
    city_folded TEXT NOT NULL,
    lat REAL NOT NULL,
    lon REAL NOT NULL,
    address TEXT,
    seat_count INTEGER NOT NULL CHECK (seat_count > 0),
    tiers TEXT NOT NULL,
    seat_map TEXT NOT NULL
) STRICT;

CREATE TABLE performers (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    genre TEXT
) STRICT;

CREATE TABLE events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    venue_id INTEGER NOT NULL REFERENCES venues (id),
    category TEXT NOT NULL,
    category_folded TEXT NOT NULL,
    starts_at INTEGER NOT NULL,
    onsale_at INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('published', 'cancelled')),
    prices TEXT NOT NULL,
    description TEXT,
    seat_count INTEGER NOT NULL CHECK (seat_count > 0),
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    -- A copy of the venue's map at creation, so that seat indexes never shift.
    seat_map TEXT NOT NULL
) STRICT;

CREATE INDEX events_by_start ON events (starts_at, id);
CREATE INDEX events_by_venue ON events (venue_id);

CREATE TABLE event_performers (
    event_id INTEGER NOT NULL REFERENCES events (id),
    performer_id INTEGER NOT NULL REFERENCES performers (id),
    position INTEGER NOT NULL,
    PRIMARY KEY (event_id, performer_id)
) STRICT, WITHOUT ROWID;

CREATE INDEX event_performers_by_performer ON event_performers (performer_id);

CREATE TABLE orders (
    id TEXT PRIMARY KEY,
    event_id INTEGER NOT NULL REFERENCES events (id),
    user_id TEXT NOT NULL,
    -- One order per hold: a retried checkout finds the first order instead of selling twice.
    hold_id TEXT NOT NULL UNIQUE,
    status TEXT NOT NULL CHECK (status IN ('confirmed', 'partially_refunded', 'refunded')),
    email TEXT,
    total_amount INTEGER NOT NULL,
    currency TEXT NOT NULL,
    created_at INTEGER NOT NULL
) STRICT;

-- `id` closes the index so that the keyset pagination of a user's orders is index-only.
CREATE INDEX orders_by_user ON orders (user_id, created_at, id);

CREATE TABLE tickets (
    id TEXT PRIMARY KEY,
    order_id TEXT NOT NULL REFERENCES orders (id),
    event_id INTEGER NOT NULL REFERENCES events (id),
    seat_index INTEGER NOT NULL CHECK (seat_index >= 0),
    seat_label TEXT NOT NULL,
    price_amount INTEGER NOT NULL,
    currency TEXT NOT NULL,
    user_id TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('valid', 'scanned', 'voided', 'transferred')),
    created_at INTEGER NOT NULL
) STRICT;

-- The last guard against selling a seat twice, whatever the inventory in memory believes.
CREATE UNIQUE INDEX tickets_one_valid_per_seat ON tickets (event_id, seat_index)
    WHERE status IN ('valid', 'scanned');
CREATE INDEX tickets_by_order ON tickets (order_id);

CREATE TABLE idempotency_keys (
    user_id TEXT NOT NULL,
    route TEXT NOT NULL,
    key TEXT NOT NULL,
    body_sha256 BLOB NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('in_progress', 'done')),
    status INTEGER,
    body BLOB,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (user_id, route, key)
) STRICT;

CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_at);

CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
) STRICT;
