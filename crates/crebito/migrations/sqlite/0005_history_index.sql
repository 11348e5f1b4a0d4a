-- SQLite flavour of migrations/postgres/0005_history_index.sql: every
-- column a history page lists is in the index (SQLite has no INCLUDE), so
-- a page is read from the index alone ("USING COVERING INDEX").
CREATE INDEX transactions_account_history
    ON transactions (account_id, id DESC, amount, kind, description, posted_at_us);
DROP INDEX transactions_account_latest;
