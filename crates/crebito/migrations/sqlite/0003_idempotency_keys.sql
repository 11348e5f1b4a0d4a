-- SQLite flavour of migrations/postgres/0003_idempotency_keys.sql;
-- created_at_us is integer microseconds since the Unix epoch, UTC.

CREATE TABLE idempotency_keys (
    account_id    INTEGER NOT NULL REFERENCES accounts (id),
    key           TEXT    NOT NULL CHECK (length(key) BETWEEN 1 AND 64),
    fingerprint   TEXT    NOT NULL,
    outcome       TEXT    NOT NULL CHECK (outcome IN ('posted', 'limit_exceeded')),
    balance       INTEGER,
    credit_limit  INTEGER NOT NULL,
    created_at_us INTEGER NOT NULL,
    PRIMARY KEY (account_id, key)
) STRICT;

CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at_us);
