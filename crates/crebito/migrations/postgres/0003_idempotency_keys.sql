-- Idempotency keys: the outcome of the first request with a key, stored in
-- the same statement as its posting, so that a retry returns it instead of
-- posting again. Purged after the retention period (docs/contract.md §2.6).

CREATE TABLE idempotency_keys (
    account_id   integer     NOT NULL REFERENCES accounts (id),
    key          text        NOT NULL CHECK (length(key) BETWEEN 1 AND 64),
    -- "<amount>:<c|d>:<description>" of the first request.
    fingerprint  text        NOT NULL,
    -- 'posted' (200) or 'limit_exceeded' (422).
    outcome      text        NOT NULL CHECK (outcome IN ('posted', 'limit_exceeded')),
    -- The response of a 'posted' outcome, cents.
    balance      bigint,
    credit_limit bigint      NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, key)
);

CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);
