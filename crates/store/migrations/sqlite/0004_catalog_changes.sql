-- The catalog's change feed: one row per change of an event or a venue, written in the
-- same transaction as the change, read in `seq` order by the search indexer (and any other
-- follower of the catalog). A row names what changed, not how: a follower reads the
-- current state, so applying a row twice, or a newer state early, is harmless.
CREATE TABLE catalog_changes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    entity TEXT NOT NULL CHECK (entity IN ('event', 'venue')),
    entity_id INTEGER NOT NULL,
    changed_at INTEGER NOT NULL
) STRICT;

-- Events created before the feed existed are announced once, so that a follower reading
-- from the beginning meets every event.
INSERT INTO catalog_changes (entity, entity_id, changed_at)
    SELECT 'event', id, updated_at FROM events ORDER BY id;
