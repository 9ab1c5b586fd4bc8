-- The sold-out waitlist (`POST /v1/events/{id}/waitlist`, docs/waitlist.md).
--
-- One row per entry. `seq` is the join order within the event (handed out in the inserting
-- transaction); `sections` is a JSON array of section names (empty: any section);
-- `max_price` is in the event currency's minor units (NULL: any price); `email` is where
-- offers are announced (from the joining token; NULL: not mailed). An entry is
-- `waiting`, then `offered` (with the hold and its expiry), then `done` (bought) or
-- `expired` (the offer was not taken); `left` when its owner left. State changes are
-- compare-and-set, so two matchers never both offer to one entry.
CREATE TABLE waitlist_entries (
    id TEXT PRIMARY KEY,
    event_id INTEGER NOT NULL REFERENCES events(id),
    user_id TEXT NOT NULL,
    email TEXT,
    seq INTEGER NOT NULL,
    group_size INTEGER NOT NULL CHECK (group_size >= 1),
    sections TEXT NOT NULL,
    max_price INTEGER,
    adjacent INTEGER NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('waiting', 'offered', 'expired', 'done', 'left')),
    hold_id TEXT,
    offer_expires_at INTEGER,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    UNIQUE (event_id, seq)
);

-- One active (waiting or offered) entry per user per event.
CREATE UNIQUE INDEX waitlist_one_active_per_user ON waitlist_entries (event_id, user_id)
    WHERE state IN ('waiting', 'offered');
CREATE INDEX waitlist_active_by_event ON waitlist_entries (event_id, seq)
    WHERE state IN ('waiting', 'offered');
