-- Accounts and their posted transactions (docs/contract.md §1-§3), SQLite flavour of
-- migrations/postgres/0001_schema.sql. Timestamps are integer microseconds
-- since the Unix epoch, UTC.

CREATE TABLE accounts (
    id           INTEGER PRIMARY KEY CHECK (id > 0),
    credit_limit INTEGER NOT NULL CHECK (credit_limit >= 0),
    balance      INTEGER NOT NULL DEFAULT 0,
    CONSTRAINT balance_within_limit CHECK (balance >= -credit_limit)
) STRICT;

CREATE TABLE transactions (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id  INTEGER NOT NULL REFERENCES accounts (id),
    amount      INTEGER NOT NULL CHECK (amount > 0),
    kind        TEXT    NOT NULL CHECK (kind IN ('c', 'd')),
    description TEXT    NOT NULL CHECK (length(description) BETWEEN 1 AND 10),
    posted_at_us INTEGER NOT NULL
) STRICT;

CREATE INDEX transactions_account_latest ON transactions (account_id, id DESC);
