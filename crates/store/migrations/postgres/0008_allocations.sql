-- Allocations (channels) and presale codes, as SQLite's 0008 (docs/allocations.md).
CREATE TABLE allocations (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id BIGINT NOT NULL REFERENCES events(id),
    name TEXT NOT NULL,
    seats TEXT NOT NULL,
    seat_count BIGINT NOT NULL CHECK (seat_count >= 1),
    release_at BIGINT NOT NULL,
    roles TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (event_id, name)
);

CREATE TABLE presale_codes (
    code_hash TEXT PRIMARY KEY,
    event_id BIGINT NOT NULL REFERENCES events(id),
    allocation_id BIGINT NOT NULL REFERENCES allocations(id),
    max_seats BIGINT NOT NULL CHECK (max_seats >= 1),
    max_uses BIGINT NOT NULL CHECK (max_uses >= 1),
    uses BIGINT NOT NULL DEFAULT 0 CHECK (uses >= 0 AND uses <= max_uses),
    seats_used BIGINT NOT NULL DEFAULT 0 CHECK (seats_used >= 0 AND seats_used <= max_seats),
    expires_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE INDEX presale_codes_by_allocation ON presale_codes (allocation_id);
