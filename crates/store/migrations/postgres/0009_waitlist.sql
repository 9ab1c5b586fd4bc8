-- The sold-out waitlist, as SQLite's 0009 (docs/waitlist.md).
CREATE TABLE waitlist_entries (
    id TEXT PRIMARY KEY,
    event_id BIGINT NOT NULL REFERENCES events(id),
    user_id TEXT NOT NULL,
    email TEXT,
    seq BIGINT NOT NULL,
    group_size BIGINT NOT NULL CHECK (group_size >= 1),
    sections TEXT NOT NULL,
    max_price BIGINT,
    adjacent BOOLEAN NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('waiting', 'offered', 'expired', 'done', 'left')),
    hold_id TEXT,
    offer_expires_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (event_id, seq)
);

CREATE UNIQUE INDEX waitlist_one_active_per_user ON waitlist_entries (event_id, user_id)
    WHERE state IN ('waiting', 'offered');
CREATE INDEX waitlist_active_by_event ON waitlist_entries (event_id, seq)
    WHERE state IN ('waiting', 'offered');
