#!/usr/bin/env bash
# Entrypoint of the postgres stand-in image (scripts/compose): the part of the
# official image's docker-entrypoint.sh (docker-library/postgres) that
# deploy/docker-compose.yml relies on, in the same order:
#   - as root: create PGDATA (0700) and /var/run/postgresql owned by postgres,
#     then re-run itself as postgres (gosu);
#   - on an empty data directory only: initdb with POSTGRES_USER as the
#     superuser and POSTGRES_PASSWORD as its password (required, as in the
#     official image), local connections trusted (initdb's default) and
#     `host all all all scram-sha-256` appended to pg_hba.conf; a temporary
#     server on the unix socket only, with the container's own arguments
#     (so config_file=... applies to it too); CREATE DATABASE POSTGRES_DB;
#     /docker-entrypoint-initdb.d/* in sorted order (*.sh sourced or run when
#     executable, *.sql through psql into POSTGRES_DB, ON_ERROR_STOP); the
#     temporary server stopped (fast);
#   - then the given command as PID 1 (exec).
# Not reproduced: POSTGRES_INITDB_ARGS/WALDIR, POSTGRES_HOST_AUTH_METHOD,
# *.sql.gz/xz/zst init files, the *_FILE secrets, running as a non-root user.
set -Eeuo pipefail

if [[ ${1:-} == -* ]]; then set -- postgres "$@"; fi

if [[ ${1:-} == postgres && $(id -u) == 0 ]]; then
    mkdir -p "$PGDATA" /var/run/postgresql
    chown postgres:postgres "$PGDATA"
    chmod 0700 "$PGDATA"
    chown postgres:postgres /var/run/postgresql
    chmod 3777 /var/run/postgresql || :
    exec gosu postgres "${BASH_SOURCE[0]}" "$@"
fi

if [[ ${1:-} == postgres && ! -s $PGDATA/PG_VERSION ]]; then
    : "${POSTGRES_USER:=postgres}"
    : "${POSTGRES_DB:=$POSTGRES_USER}"
    if [[ -z ${POSTGRES_PASSWORD:-} ]]; then
        echo "docker-entrypoint.sh: error: the database is uninitialized and POSTGRES_PASSWORD is not set" >&2
        exit 1
    fi
    initdb --username="$POSTGRES_USER" --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD")
    printf '\nhost all all all scram-sha-256\n' >> "$PGDATA/pg_hba.conf"

    shift
    # The temporary server: the container's arguments, no TCP listener.
    pg_ctl -D "$PGDATA" -w start \
        -o "$(printf '%q ' "$@") -c listen_addresses='' -p ${PGPORT:-5432}"
    export PGUSER=$POSTGRES_USER PGPASSWORD=$POSTGRES_PASSWORD
    psql=(psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --no-password --no-psqlrc)
    if [[ $POSTGRES_DB != postgres ]]; then
        "${psql[@]}" --dbname postgres --set db="$POSTGRES_DB" <<< 'CREATE DATABASE :"db" ;'
    fi
    shopt -s nullglob
    for f in /docker-entrypoint-initdb.d/*; do
        case $f in
            *.sh)
                if [[ -x $f ]]; then echo "docker-entrypoint.sh: running $f"; "$f"
                else echo "docker-entrypoint.sh: sourcing $f"; # shellcheck disable=SC1090
                    . "$f"; fi ;;
            *.sql) echo "docker-entrypoint.sh: running $f"; "${psql[@]}" --dbname "$POSTGRES_DB" -f "$f"; echo ;;
            *) echo "docker-entrypoint.sh: ignoring $f" ;;
        esac
    done
    shopt -u nullglob
    unset PGPASSWORD
    pg_ctl -D "$PGDATA" -m fast -w stop
    set -- postgres "$@"
    echo "docker-entrypoint.sh: PostgreSQL init process complete; ready for start up."
fi

exec "$@"
