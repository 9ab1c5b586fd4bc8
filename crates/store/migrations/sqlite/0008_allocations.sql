-- Allocations (channels) and presale codes (`POST /v1/events/{id}/allocations`,
-- `POST /v1/events/{id}/presale-codes`, docs/allocations.md).
--
-- An allocation reserves seats of an event for entitled buyers until `release_at`; after
-- it the unsold seats are general sale. Whether an allocation is in force is decided by
-- comparing `release_at` with the time of each request, so no job has to run at the
-- release. `seats` is a JSON array of seat indexes; a seat belongs to at most one
-- allocation of its event (checked by the store in the inserting transaction).
CREATE TABLE allocations (
    id INTEGER PRIMARY KEY,
    event_id INTEGER NOT NULL REFERENCES events(id),
    name TEXT NOT NULL,
    seats TEXT NOT NULL,
    seat_count INTEGER NOT NULL CHECK (seat_count >= 1),
    release_at INTEGER NOT NULL,
    roles TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    UNIQUE (event_id, name)
);

-- Presale codes are kept only as HMAC-SHA256 digests under a server key (hex), so a
-- copy of the database does not reveal them. `uses` counts the holds made with the code
-- and `seats_used` their seats; both move in one conditional UPDATE, so concurrent holds
-- never pass the limits.
CREATE TABLE presale_codes (
    code_hash TEXT PRIMARY KEY,
    event_id INTEGER NOT NULL REFERENCES events(id),
    allocation_id INTEGER NOT NULL REFERENCES allocations(id),
    max_seats INTEGER NOT NULL CHECK (max_seats >= 1),
    max_uses INTEGER NOT NULL CHECK (max_uses >= 1),
    uses INTEGER NOT NULL DEFAULT 0 CHECK (uses >= 0 AND uses <= max_uses),
    seats_used INTEGER NOT NULL DEFAULT 0 CHECK (seats_used >= 0 AND seats_used <= max_seats),
    expires_at INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE INDEX presale_codes_by_allocation ON presale_codes (allocation_id);
