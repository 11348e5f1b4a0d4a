# shellcheck shell=bash
# scripts/pg-temp.sh — sourced by scripts that need a throwaway PostgreSQL
# server: pg_temp_start DIR starts one in DIR (unix socket only, the
# deployment's deploy/postgresql.conf, run as the postgres user when root)
# with an empty database `crebito`, and prints its DATABASE_URL;
# pg_temp_stop DIR stops it. DIR must be readable by the postgres user.

pg_temp_bindir() {
    local found
    found=$(command -v initdb 2>/dev/null) || found=$(printf "%s\n" /usr/lib/postgresql/*/bin/initdb | sort -V | tail -n 1)
    dirname "$found"
}

pg_temp_as_server_user() {
    if [[ $(id -u) == 0 ]]; then setpriv --reuid=postgres --regid=postgres --init-groups -- "$@"; else "$@"; fi
}

pg_temp_start() { # DIR -> DATABASE_URL on stdout
    local dir=$1 bindir
    bindir=$(pg_temp_bindir)
    [[ -x $bindir/postgres ]] || { echo "PostgreSQL server binaries not found" >&2; return 1; }
    mkdir -p "$dir/sock"
    [[ $(id -u) == 0 ]] && chown -R postgres: "$dir"
    pg_temp_as_server_user "$bindir/initdb" -D "$dir/data" -U postgres --auth-local=trust \
        --encoding=UTF8 --no-locale >"$dir/initdb.log" 2>&1 \
        || { echo "initdb failed: $dir/initdb.log" >&2; return 1; }
    pg_temp_as_server_user cp "$(dirname "${BASH_SOURCE[0]}")/../deploy/postgresql.conf" "$dir/postgresql.conf"
    pg_temp_as_server_user "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w \
        -o "-c config_file=$dir/postgresql.conf -c unix_socket_directories=$dir/sock" start >/dev/null \
        || { echo "PostgreSQL did not start: $dir/server.log" >&2; return 1; }
    psql -X -q -v ON_ERROR_STOP=1 -h "$dir/sock" -U postgres -d postgres -c 'CREATE DATABASE crebito' >/dev/null
    echo "postgres://postgres@/crebito?host=$dir/sock"
}

pg_temp_stop() { # DIR
    [[ -d $1/data ]] || return 0
    pg_temp_as_server_user "$(pg_temp_bindir)/pg_ctl" -D "$1/data" -m fast stop >/dev/null 2>&1 || true
}
