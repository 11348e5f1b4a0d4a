-- The history (docs/contract.md §2.8) reads an account's transactions by
-- posting id, newest first, page by page. This index carries every column
-- a page (and a statement) lists, so deep pages are index-only scans: no
-- heap page is read for rows whose heap page is all-visible (vacuumed). It
-- replaces the plain (account_id, id DESC) index, which it serves as well,
-- so a posting still updates one index besides the primary key. Measured
-- with scripts/history-cost (docs/benchmark.md).
CREATE INDEX transactions_account_history ON transactions (account_id, id DESC)
    INCLUDE (amount, kind, description, posted_at);
DROP INDEX transactions_account_latest;
