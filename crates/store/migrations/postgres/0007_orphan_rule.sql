-- The orphan-seat rule (`PATCH /v1/events/{id}` `orphan_rule`), as on SQLite: on unless an
-- admin turns it off; an event without an `event_settings` row has it on.
ALTER TABLE event_settings ADD COLUMN orphan_rule BOOLEAN NOT NULL DEFAULT TRUE;
