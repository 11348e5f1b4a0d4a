-- Runs once, as the superuser, connected to the freshly created `crebito`
-- database: by the postgres image (docker-entrypoint-initdb.d) and by
-- scripts/stack after its initdb.
--
-- Only the role lives here. The schema and the seeded accounts are the API's
-- embedded migrations (crates/crebito/migrations/postgres), applied by the API
-- at start; owning the database lets this role create them (PostgreSQL 15+
-- gives CREATE on schema public to the database owner). Not a superuser.
-- No password: the server only accepts unix-socket connections, trusted.
CREATE ROLE crebito LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE;
ALTER DATABASE crebito OWNER TO crebito;
