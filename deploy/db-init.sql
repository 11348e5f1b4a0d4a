-- Runs once, as the superuser, connected to the freshly created `crebito`
-- database: by the postgres image (docker-entrypoint-initdb.d) and by
-- scripts/stack after its initdb.
--
-- The role, and WAL segments made ahead of need. The schema and the seeded
-- accounts are the API's embedded migrations
-- (crates/crebito/migrations/postgres), applied by the API at start; owning
-- the database lets this role create them (PostgreSQL 15+ gives CREATE on
-- schema public to the database owner). Not a superuser. No password: the
-- server only accepts unix-socket connections, trusted.
CREATE ROLE crebito LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE;
ALTER DATABASE crebito OWNER TO crebito;

-- A new cluster has a single 16 MB WAL segment. The commit that fills it
-- creates the next one itself, zero-filled and flushed, while every other
-- commit waits: 13-18 ms here (docs/benchmark.md, "WAL segments made ahead
-- of need"), once in each full run of the official load test. Five switches
-- to a new segment (each needs a WAL record since the last one) and then a
-- checkpoint leaves the old segments renamed as the next ones (PostgreSQL
-- keeps min_wal_size, 80 MB by default, for reuse), so no commit of the
-- first 64 MB of WAL creates one; after that, each checkpoint recycles
-- segments the same way. Durability is unchanged; it takes a fraction of a
-- second, once.
DO $$
BEGIN
    FOR i IN 1 .. 5 LOOP
        PERFORM pg_logical_emit_message(false, 'crebito', 'WAL segment made ahead of need');
        PERFORM pg_switch_wal();
    END LOOP;
END
$$;
CHECKPOINT;
