# shellcheck shell=bash
# scripts/lib.sh — helpers shared by scripts/stack, e2e, faults, bench, deps,
# check-compose and .ci/run. Sourced, never run:
#
#   LIB_NAME=stack                      # prefix of messages (default: $0's name)
#   source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#
# Defines ROOT (the repository root), messages (say, die), process identity
# checks (a pid together with its start time, so that a recycled pid is never
# taken for one of ours), where the PostgreSQL binaries are, "build the
# release binary unless one is given", and installing a missing Debian
# package. Process control itself stays in each script.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LIB_NAME=${LIB_NAME:-$(basename "$0")}

# --- messages (stderr) -------------------------------------------------------
say() { printf '%s: %s\n' "$LIB_NAME" "$*" >&2; }
die() { printf '%s: error: %s\n' "$LIB_NAME" "$*" >&2; exit 1; }

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

# --- processes ---------------------------------------------------------------
# proc_start_time PID -> the process's start time (clock ticks since boot,
# field 22 of /proc/PID/stat); fails when there is no such process. The
# command name (field 2) may hold spaces and parentheses, so the fields are
# counted from the last ')'.
proc_start_time() {
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    [[ -n $stat ]] || return 1
    stat=${stat##*) }
    local -a fields
    read -r -a fields <<< "$stat"
    [[ -n ${fields[19]:-} ]] || return 1
    echo "${fields[19]}"
}

# pid_is PID START: true when PID is running and started at START.
pid_is() {
    [[ -n $1 && -n $2 && -d /proc/$1 ]] || return 1
    [[ $(proc_start_time "$1") == "$2" ]]
}

# pid_record PID -> "PID START", the line a pid file holds.
pid_record() {
    local start
    start=$(proc_start_time "$1") || return 1
    echo "$1 $start"
}

# pidfile_pid FILE -> the pid recorded in FILE ("PID START") when that very
# process still runs; fails otherwise.
pidfile_pid() {
    local pid start
    [[ -f $1 ]] || return 1
    read -r pid start < "$1" || return 1
    pid_is "$pid" "$start" || return 1
    echo "$pid"
}

# port_in_use PORT: true when something accepts connections on 127.0.0.1:PORT.
port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# --- PostgreSQL binaries -------------------------------------------------------
# pg_bindir -> the directory of the PostgreSQL server binaries (initdb,
# postgres): $PG_BINDIR, else the one on PATH, else the newest
# /usr/lib/postgresql/*/bin (Debian keeps them off PATH). Fails when none.
pg_bindir() {
    if [[ -n ${PG_BINDIR:-} ]]; then
        [[ -x $PG_BINDIR/postgres ]] || return 1
        echo "$PG_BINDIR"
        return 0
    fi
    if command -v initdb >/dev/null 2>&1 && command -v postgres >/dev/null 2>&1; then
        dirname "$(command -v postgres)"
        return 0
    fi
    local dir
    dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    [[ -n $dir && -x $dir/postgres && -x $dir/initdb ]] || return 1
    echo "$dir"
}

# pg_tool NAME -> the path of a PostgreSQL program (psql, pg_isready, ...):
# PATH first, then pg_bindir. Fails when neither has it.
pg_tool() {
    local dir
    if command -v "$1" >/dev/null 2>&1; then command -v "$1"; return 0; fi
    dir=$(pg_bindir) || return 1
    [[ -x $dir/$1 ]] || return 1
    echo "$dir/$1"
}

# --- binaries of this workspace --------------------------------------------------
# bin_of PACKAGE VARIABLE -> the binary to run: $VARIABLE when set, else
# target/release/PACKAGE.
bin_of() {
    local var=$2
    echo "${!var:-$ROOT/target/release/$1}"
}

# build_unless_given PACKAGE=VARIABLE...: one `cargo build --release` of
# every PACKAGE whose VARIABLE (the path of a binary to use instead) is unset;
# a given binary must be executable.
build_unless_given() {
    local spec package var
    local -a names=() args=()
    for spec in "$@"; do
        package=${spec%%=*}
        var=${spec#*=}
        if [[ -n ${!var:-} ]]; then
            [[ -x ${!var} ]] || die "$var=${!var} is not an executable file"
        else
            names+=("$package")
            args+=(-p "$package")
        fi
    done
    (( ${#names[@]} )) || return 0
    say "building ${names[*]} (cargo build --release)"
    (cd "$ROOT" && cargo build --release --quiet "${args[@]}") || die "cargo build failed"
}

# --- Debian packages -----------------------------------------------------------
LIB_APT_UPDATED=0
# apt_install PACKAGE...: apt-get install, as root or through sudo.
apt_install() {
    command -v apt-get >/dev/null 2>&1 || { say "missing packages ($*) and no apt-get to install them"; return 1; }
    local -a sudo=()
    if [[ $(id -u) != 0 ]]; then
        command -v sudo >/dev/null 2>&1 || { say "installing $* needs root"; return 1; }
        sudo=(sudo)
    fi
    if (( ! LIB_APT_UPDATED )); then
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq || return 1
        LIB_APT_UPDATED=1
    fi
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# has_command NAME: on PATH, or in /usr/sbin (off a non-root user's PATH).
has_command() { command -v "$1" >/dev/null 2>&1 || [[ -x /usr/sbin/$1 ]]; }

# ensure_command NAME PACKAGE: installs the Debian PACKAGE when NAME is missing.
ensure_command() {
    has_command "$1" && return 0
    say "$1 is not installed; installing $2 with apt-get"
    apt_install "$2" || die "could not install $2 (apt-get install -y $2)"
}
