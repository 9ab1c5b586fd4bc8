-- The orphan-seat rule (`PATCH /v1/events/{id}` `orphan_rule`): a hold may not leave an
-- available seat alone in its row. On unless an admin turns it off; an event without an
-- `event_settings` row has it on (Rust's default).
ALTER TABLE event_settings ADD COLUMN orphan_rule INTEGER NOT NULL DEFAULT 1
    CHECK (orphan_rule IN (0, 1));
