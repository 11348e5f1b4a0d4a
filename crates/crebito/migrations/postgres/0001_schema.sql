-- Accounts and their posted transactions (docs/contract.md §1-§3).
-- Amounts and balances are bigint cents. Tables are logged: every
-- acknowledged posting is durable.

CREATE TABLE accounts (
    id           integer PRIMARY KEY CHECK (id > 0),
    -- Overdraft limit ("limite"), cents.
    credit_limit bigint  NOT NULL CHECK (credit_limit >= 0),
    -- Current balance ("saldo"), cents.
    balance      bigint  NOT NULL DEFAULT 0,
    -- Second line of defence behind the conditional UPDATE of a posting.
    CONSTRAINT balance_within_limit CHECK (balance >= -credit_limit)
);

CREATE TABLE transactions (
    -- Global insertion order: statements list rows by it, newest first.
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id  integer     NOT NULL REFERENCES accounts (id),
    amount      bigint      NOT NULL CHECK (amount > 0),
    kind        text        NOT NULL CHECK (kind IN ('c', 'd')),
    description text        NOT NULL CHECK (char_length(description) BETWEEN 1 AND 10),
    posted_at   timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- "Last 10 of an account" is a short backward index scan, no sort.
CREATE INDEX transactions_account_latest ON transactions (account_id, id DESC);
