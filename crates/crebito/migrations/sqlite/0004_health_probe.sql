-- One row that GET /health rewrites: a committed write proves that the file
-- can still take postings (not read-only, not on a full disk).
CREATE TABLE health_probe (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    checked_at_us INTEGER NOT NULL
);
