# shellcheck shell=bash
# A throwaway PostgreSQL server for one test run, started from the installed
# binaries (initdb, postgres) on a free loopback port. Needs
# tests/lib/common.sh sourced first.
#
#   pg_start DIR          start it in the empty directory DIR; sets PG_URL
#   pg_create_database N  create database N on it; prints its URL
#   pg_stop               stop it and delete DIR (safe to call more than
#                         once, or before pg_start)
#
# initdb and postgres refuse to run as root, so as root they run as the
# `postgres` user through runuser, on DIR chowned to that user (so DIR's
# parents must be searchable by it: use a directory right under /tmp).

PG_DIR=""
PG_DATA=""
PG_URL=""
PG_LAUNCHER_PID=""

pg_error() {
    printf 'error: %s\n' "$*" >&2
}

# Returns non-zero (after saying why on stderr) if the server cannot start.
pg_start() {
    PG_DIR=$1
    PG_DATA="$PG_DIR/data"
    local log="$PG_DIR/postgres.log"
    local initdb postgres
    if ! initdb=$(command -v initdb) || ! postgres=$(command -v postgres); then
        pg_error "initdb or postgres not found on PATH (PostgreSQL 15 server binaries are needed)"
        return 1
    fi
    if ! command -v psql >/dev/null; then
        pg_error "psql not found on PATH"
        return 1
    fi

    local as_owner=()
    if [[ $(id -u) == 0 ]]; then
        if ! id -u postgres >/dev/null 2>&1; then
            pg_error "running as root, but there is no 'postgres' user to run PostgreSQL as"
            return 1
        fi
        chown -R postgres: "$PG_DIR" || return 1
        as_owner=(runuser -u postgres --)
    fi

    # cd into the directory: the postgres user may not be allowed to read the
    # caller's working directory, and initdb fails when it cannot.
    (cd "$PG_DIR" && "${as_owner[@]}" "$initdb" -A trust -U postgres -E UTF8 --no-locale \
        -D "$PG_DATA" >"$PG_DIR/initdb.log" 2>&1) || {
        tail -n 50 "$PG_DIR/initdb.log" >&2
        pg_error "initdb failed"
        return 1
    }

    local port
    port=$(free_port) || return 1
    # Durability is pointless for a throwaway server; the tests open many
    # connections at once.
    (cd "$PG_DIR" && exec "${as_owner[@]}" "$postgres" -D "$PG_DATA" \
        -h 127.0.0.1 -p "$port" -k "$PG_DIR" \
        -c fsync=off -c synchronous_commit=off -c full_page_writes=off \
        -c max_connections=300) >"$log" 2>&1 &
    PG_LAUNCHER_PID=$!
    PG_URL="postgres://postgres@127.0.0.1:$port/postgres"

    local deadline=$(($(date +%s) + 60))
    until psql "$PG_URL" -Atqc 'SELECT 1' >/dev/null 2>&1; do
        if ! kill -0 "$PG_LAUNCHER_PID" 2>/dev/null; then
            tail -n 50 "$log" >&2
            pg_error "postgres exited during startup"
            return 1
        fi
        if (($(date +%s) > deadline)); then
            tail -n 50 "$log" >&2
            pg_error "postgres did not accept connections within 60s"
            return 1
        fi
        sleep 0.2
    done
}

pg_create_database() {
    local name=$1
    psql "$PG_URL" -v ON_ERROR_STOP=1 -qc "CREATE DATABASE $name" >/dev/null ||
        die "CREATE DATABASE $name failed"
    printf '%s\n' "${PG_URL%/*}/$name"
}

# Fast shutdown through the postmaster's pid (the launcher pid may be
# runuser's, which does not own the server), then removal of its directory.
pg_stop() {
    [[ -n $PG_DIR ]] || return 0
    local pid=""
    if [[ -f $PG_DATA/postmaster.pid ]]; then
        pid=$(head -n 1 "$PG_DATA/postmaster.pid")
    fi
    if [[ -z $pid ]] && [[ -n $PG_LAUNCHER_PID ]] && kill -0 "$PG_LAUNCHER_PID" 2>/dev/null; then
        # Stopped while starting up, before the pid file existed.
        pid=$PG_LAUNCHER_PID
    fi
    if [[ -n $pid ]] && kill -INT "$pid" 2>/dev/null; then
        local waited=0
        while kill -0 "$pid" 2>/dev/null && ((waited < 150)); do
            sleep 0.1
            waited=$((waited + 1))
        done
        if kill -0 "$pid" 2>/dev/null; then
            printf 'postgres (pid %s) did not stop in 15s; killing it\n' "$pid" >&2
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    if [[ -n $PG_LAUNCHER_PID ]]; then
        wait "$PG_LAUNCHER_PID" 2>/dev/null || true
    fi
    rm -rf "$PG_DIR"
    PG_DIR=""
    PG_DATA=""
    PG_LAUNCHER_PID=""
}
