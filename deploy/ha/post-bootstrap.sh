#!/bin/sh
# Run once by Patroni (bootstrap.post_bootstrap in deploy/ha/patroni.yml) on
# the node that initialises the cluster, as the PostgreSQL OS user:
#   post-bootstrap.sh DB_INIT_SQL PASSWORD_FILE CONNINFO
# CONNINFO (appended by Patroni) reaches the new primary as the superuser.
# Creates the `crebito` database and its non-superuser owner exactly as the
# single-node topology does (deploy/db-init.sql), then gives the role the
# password in PASSWORD_FILE: here the API connects over TCP, with SCRAM.
# The schema is the API's own migrations, applied when an instance starts.
set -eu
init_sql=$1
password_file=$2
conninfo=$3
password=$(cat "$password_file")
psql -X -q -v ON_ERROR_STOP=1 -d "$conninfo" -c 'CREATE DATABASE crebito'
psql -X -q -v ON_ERROR_STOP=1 -d "$conninfo dbname=crebito" -f "$init_sql"
# The password travels as a psql variable, quoted by psql (:'name').
psql -X -q -v ON_ERROR_STOP=1 -d "$conninfo dbname=crebito" -v password="$password" <<'SQL'
SET password_encryption = 'scram-sha-256';
ALTER ROLE crebito PASSWORD :'password';
SQL
