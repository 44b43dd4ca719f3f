#!/usr/bin/env bash
# Starts/stops a throw-away PostgreSQL cluster for the tests: Debian's PostgreSQL binaries, a new
# cluster in STATE_DIR (initdb as the unprivileged user `postgres`: initdb refuses root), listening
# ONLY on 127.0.0.1 on a free port, fsync on (the default), password authentication.
#
# Usage: deploy/testenv/postgres.sh start|stop|resume|status STATE_DIR
#   `start` creates the cluster, starts it and prints the superuser's URL on stdout (only that line), e.g.
#     export AGENTJOBS_TEST_POSTGRES_URL="$(deploy/testenv/postgres.sh start "$dir")"
#   giving postgres://agentjobs:PASSWORD@127.0.0.1:PORT/postgres?sslmode=disable. Tests create a
#   database of their own per test through it. STATE_DIR receives data/, server.log, url and port.
#   `stop` stops the server (fast shutdown); `resume` starts a stopped cluster again on its port
#   (tests of a database outage).
set -euo pipefail

CMD="${1:-}"
STATE_DIR="${2:-}"
log() { echo "[postgres.sh] $*" >&2; }

if [[ -z "$CMD" || -z "$STATE_DIR" ]]; then
    echo "usage: $0 start|stop|resume|status STATE_DIR" >&2
    exit 2
fi

bin_dir() {
    local dir
    dir="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)"
    if [[ -z "$dir" || ! -x "$dir/initdb" ]]; then
        log "ERROR: PostgreSQL is not installed (apt-get install postgresql; make test installs it)"
        exit 1
    fi
    echo "$dir"
}

as_postgres() { runuser -u postgres -- "$@"; }

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# run_server BIN PORT: starts the cluster in STATE_DIR/data on 127.0.0.1:PORT and waits for it.
# The server keeps no descriptor of this script's but 0-2 (redirected by pg_ctl): a caller that
# watches an inherited descriptor to learn that the script ended (Foundation's Process does) would
# otherwise wait for the server to stop.
run_server() {
    local fd
    for fd in $(ls /proc/$BASHPID/fd); do
        if [[ $fd -gt 2 ]]; then eval "exec $fd>&-" 2>/dev/null || true; fi
    done
    # The unix socket goes into the state directory, not /var/run/postgresql.
    if ! as_postgres "$1/pg_ctl" --pgdata="$STATE_DIR/data" --log="$STATE_DIR/server.log" --wait --timeout=60 \
        -o "-c listen_addresses=127.0.0.1 -c port=$2 -c unix_socket_directories=$STATE_DIR -c fsync=on -c max_connections=200" \
        start >&2; then
        tail -20 "$STATE_DIR/server.log" >&2 || true
        exit 1
    fi
}

case "$CMD" in
start)
    BIN="$(bin_dir)"
    mkdir -p "$STATE_DIR"
    chown postgres: "$STATE_DIR"
    chmod 0700 "$STATE_DIR"
    password="$(head -c 18 /dev/urandom | base64 | tr -d '/+=')"
    printf '%s\n' "$password" >"$STATE_DIR/password"
    chown postgres: "$STATE_DIR/password"
    as_postgres "$BIN/initdb" --pgdata="$STATE_DIR/data" --username=agentjobs --pwfile="$STATE_DIR/password" \
        --auth-local=trust --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 >"$STATE_DIR/initdb.log" 2>&1 || {
        cat "$STATE_DIR/initdb.log" >&2
        exit 1
    }
    port="${POSTGRES_PORT:-$(free_port)}"
    printf '%s\n' "$port" >"$STATE_DIR/port"
    run_server "$BIN" "$port"
    url="postgres://agentjobs:$password@127.0.0.1:$port/postgres?sslmode=disable"
    printf '%s\n' "$url" >"$STATE_DIR/url"
    log "PostgreSQL $("$BIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$port (data in $STATE_DIR/data)"
    echo "$url"
    ;;
stop)
    BIN="$(bin_dir)"
    if [[ -f "$STATE_DIR/data/postmaster.pid" ]]; then
        as_postgres "$BIN/pg_ctl" --pgdata="$STATE_DIR/data" --mode=fast --wait --timeout=60 stop >&2 ||
            as_postgres "$BIN/pg_ctl" --pgdata="$STATE_DIR/data" --mode=immediate stop >&2 || true
    fi
    ;;
resume)
    BIN="$(bin_dir)"
    run_server "$BIN" "$(cat "$STATE_DIR/port")"
    ;;
status)
    BIN="$(bin_dir)"
    as_postgres "$BIN/pg_ctl" --pgdata="$STATE_DIR/data" status
    ;;
*)
    echo "usage: $0 start|stop|resume|status STATE_DIR" >&2
    exit 2
    ;;
esac
