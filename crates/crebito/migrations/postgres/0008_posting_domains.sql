-- The rules on a posting's own values and on an account's limit move from
-- table CHECK constraints to domains. The rules themselves do not change
-- (docs/contract.md §2.1); where PostgreSQL checks them does.
--
-- A table's CHECK constraints are kept in the catalog as text. Every
-- INSERT or UPDATE of the table parses each of them again (stringToNode)
-- and plans it (expression_planner) when the statement starts, whichever
-- columns it writes: a posting paid that for six constraints, three on
-- `accounts` and three on `transactions`, 11 % of PostgreSQL's CPU samples
-- under the official load. With the domains a posting costs its backend
-- 110-114 us of CPU instead of 119-122 (docs/benchmark-log.md, "Where
-- each service's CPU goes"). A domain's check is parsed and planned once
-- per connection (the type cache) and runs only where a value is converted
-- to the domain: an INSERT of a transaction, never the UPDATE of a
-- balance, which does not write `credit_limit`.
--
-- `balance_within_limit` stays a table CHECK: it compares two columns, and
-- it is the second line of defence behind every posting's conditional
-- UPDATE (its violation is reported by that name). `accounts.id > 0` stays
-- one too: the column is the key the transactions reference.
--
-- Changing a column to a domain with a check rewrites the table once, under
-- an exclusive lock, and checks every row; on a ledger with many
-- transactions plan the upgrade like any table rewrite (docs/operations.md).

CREATE DOMAIN posting_amount AS bigint CHECK (VALUE > 0);
CREATE DOMAIN posting_kind AS text CHECK (VALUE IN ('c', 'd'));
CREATE DOMAIN posting_description AS text CHECK (char_length(VALUE) BETWEEN 1 AND 10);
CREATE DOMAIN credit_limit_cents AS bigint CHECK (VALUE >= 0);

ALTER TABLE transactions
    DROP CONSTRAINT transactions_amount_check,
    DROP CONSTRAINT transactions_kind_check,
    DROP CONSTRAINT transactions_description_check,
    ALTER COLUMN amount TYPE posting_amount,
    ALTER COLUMN kind TYPE posting_kind,
    ALTER COLUMN description TYPE posting_description;

ALTER TABLE accounts
    DROP CONSTRAINT accounts_credit_limit_check,
    ALTER COLUMN credit_limit TYPE credit_limit_cents;
