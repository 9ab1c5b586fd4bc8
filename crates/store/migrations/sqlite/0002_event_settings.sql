-- Settings of an event that an admin changes after creation (`PATCH /v1/events/{id}`), in
-- a table beside `events` rather than as new columns of it: the seat map is the last
-- column of an event row so that reading the other columns never walks its overflow
-- pages, and columns added to that table would come after it.
--
-- An event without a row here has the defaults, which live in one place: Rust's
-- `QueueSettings::default()`. A change writes every column.
CREATE TABLE event_settings (
    event_id INTEGER PRIMARY KEY REFERENCES events (id),
    queue_enabled INTEGER NOT NULL CHECK (queue_enabled IN (0, 1)),
    queue_admit_rate_per_second INTEGER NOT NULL CHECK (queue_admit_rate_per_second >= 1),
    queue_token_ttl_seconds INTEGER NOT NULL CHECK (queue_token_ttl_seconds >= 1),
    queue_max_length INTEGER NOT NULL CHECK (queue_max_length >= 1),
    queue_proof_of_work_bits INTEGER NOT NULL CHECK (queue_proof_of_work_bits BETWEEN 0 AND 32)
) STRICT;
