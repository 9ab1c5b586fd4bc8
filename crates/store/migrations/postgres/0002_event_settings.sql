-- Settings of an event that an admin changes after creation (`PATCH /v1/events/{id}`), in
-- a table beside `events`, as on SQLite. An event without a row here has the defaults of
-- Rust's `QueueSettings::default()`. A change writes every column.
CREATE TABLE event_settings (
    event_id BIGINT PRIMARY KEY REFERENCES events (id),
    queue_enabled BOOLEAN NOT NULL,
    queue_admit_rate_per_second BIGINT NOT NULL CHECK (queue_admit_rate_per_second >= 1),
    queue_token_ttl_seconds BIGINT NOT NULL CHECK (queue_token_ttl_seconds >= 1),
    queue_max_length BIGINT NOT NULL CHECK (queue_max_length >= 1),
    queue_proof_of_work_bits BIGINT NOT NULL CHECK (queue_proof_of_work_bits BETWEEN 0 AND 32)
);
