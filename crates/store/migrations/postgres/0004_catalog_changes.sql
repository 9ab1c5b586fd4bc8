-- The catalog's change feed (as SQLite's 0004): one row per change of an event or a venue,
-- written in the same transaction as the change, read in `seq` order by the search
-- indexer and any other follower. `seq` comes from the `catalog_changes` counter row (see
-- `seq_counters` in 0003), so a follower reading `seq > last` never skips a late commit.
CREATE TABLE catalog_changes (
    seq BIGINT PRIMARY KEY,
    entity TEXT NOT NULL CHECK (entity IN ('event', 'venue')),
    entity_id BIGINT NOT NULL,
    changed_at BIGINT NOT NULL
);

-- Events created before the feed existed are announced once, so that a follower reading
-- from the beginning meets every event.
INSERT INTO catalog_changes (seq, entity, entity_id, changed_at)
    SELECT row_number() OVER (ORDER BY id), 'event', id, updated_at FROM events;
INSERT INTO seq_counters (name, value)
    SELECT 'catalog_changes', COALESCE(MAX(seq), 0) FROM catalog_changes;
