#!/usr/bin/env bash
# Starts/stops a private Docker daemon for the docker-driver integration tests, without touching
# the system's dockerd or containerd: its own containerd, data root, exec root and sockets, all in
# STATE_DIR; no bridge and no iptables (test containers run with NetworkMode "none").
#
# Usage: deploy/testenv/docker.sh start|stop|status STATE_DIR
#   start  installs Debian's docker.io, busybox-static and curl when missing, starts containerd and
#          dockerd, waits for /_ping, builds the sample agent image agentjobs/sample-agent:dev
#          (deploy/agents/build-image.sh), and prints the daemon's socket path (only that line):
#            export AGENTJOBS_TEST_DOCKER_SOCKET="$(deploy/testenv/docker.sh start "$dir")"
#   stop   stops dockerd, then containerd, and unmounts what they left under STATE_DIR.
# STATE_DIR receives docker.sock, dockerd.pid, containerd.sock, containerd.pid, dockerd.log,
# containerd.log and the daemons' data. Keep its path short: unix socket paths are limited to 107 bytes.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
CMD="${1:-}"
STATE_DIR="${2:-}"
[[ -n "$STATE_DIR" ]] || { echo "usage: $0 start|stop|status STATE_DIR" >&2; exit 2; }
mkdir -p "$STATE_DIR"
STATE_DIR="$(cd "$STATE_DIR" && pwd)"
SOCKET="$STATE_DIR/docker.sock"

log() { echo "[docker.sh] $*" >&2; }

ensure_packages() {
    local missing=""
    for package in docker.io busybox-static curl; do
        dpkg -s "$package" >/dev/null 2>&1 || missing="$missing $package"
    done
    if [[ -n "$missing" ]]; then
        log "installing:$missing"
        export DEBIAN_FRONTEND=noninteractive
        # policy-rc.d keeps the package's own service (the system daemon) from being started.
        apt-get update -qq >&2
        apt-get install -y -qq --no-install-recommends $missing >&2
    fi
}

# Whether a process exists and has not exited (a zombie counts as exited).
alive() {
    kill -0 "$1" 2>/dev/null && [[ "$(cut -d' ' -f3 "/proc/$1/stat" 2>/dev/null)" != "Z" ]]
}

pid_of() {
    local file="$STATE_DIR/$1.pid" pid
    [[ -f "$file" ]] || return 1
    pid="$(cat "$file")"
    [[ -n "$pid" ]] && alive "$pid" && echo "$pid"
}

ping_daemon() {
    [[ "$(curl -s --max-time 2 --unix-socket "$SOCKET" http://localhost/_ping 2>/dev/null)" == "OK" ]]
}

# Starts a daemon in its own session with every inherited descriptor above 2 closed: a caller
# waiting for EOF on a pipe it gave us (Foundation's Process does) must not wait for the daemon.
launch() {
    local name="$1"
    shift
    (
        for fd in /proc/$BASHPID/fd/*; do
            fd="${fd##*/}"
            if [[ "$fd" -gt 2 ]]; then eval "exec $fd>&-" 2>/dev/null || true; fi
        done
        exec setsid "$@" >>"$STATE_DIR/$name.log" 2>&1 </dev/null
    ) &
    echo $! >"$STATE_DIR/$name.pid"
}

wait_for() {
    local what="$1" pidname="$2" check="$3"
    for _ in $(seq 1 300); do
        if $check; then return 0; fi
        if ! pid_of "$pidname" >/dev/null; then
            log "ERROR: $what exited during start-up; last lines of $STATE_DIR/$pidname.log:"
            tail -20 "$STATE_DIR/$pidname.log" >&2
            exit 1
        fi
        sleep 0.1
    done
    log "ERROR: $what did not come up within 30 s; see $STATE_DIR/$pidname.log"
    exit 1
}

containerd_ready() { [[ -S "$STATE_DIR/containerd.sock" ]]; }

start() {
    ensure_packages
    if pid_of dockerd >/dev/null && ping_daemon; then
        log "already running"
    else
        if ! pid_of containerd >/dev/null; then
            cat >"$STATE_DIR/containerd.toml" <<TOML
version = 2
root = "$STATE_DIR/containerd/root"
state = "$STATE_DIR/containerd/state"
# The Kubernetes CRI plugin is of no use here and would want more of the host.
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$STATE_DIR/containerd.sock"
[ttrpc]
  address = "$STATE_DIR/containerd.sock.ttrpc"
[debug]
  address = "$STATE_DIR/containerd-debug.sock"
TOML
            log "starting containerd (log: $STATE_DIR/containerd.log)"
            launch containerd containerd --config "$STATE_DIR/containerd.toml"
            wait_for containerd containerd containerd_ready
        fi
        echo '{}' >"$STATE_DIR/daemon.json"
        log "starting dockerd on $SOCKET (log: $STATE_DIR/dockerd.log)"
        # --config-file: ignore the system's /etc/docker/daemon.json. dockerd writes its own pid
        # file (dockerd-own.pid); dockerd.pid holds the pid we started, which is the same process.
        launch dockerd dockerd --config-file "$STATE_DIR/daemon.json" \
            --host "unix://$SOCKET" --containerd "$STATE_DIR/containerd.sock" \
            --data-root "$STATE_DIR/root" --exec-root "$STATE_DIR/exec" --pidfile "$STATE_DIR/dockerd-own.pid" \
            --iptables=false --ip-masq=false --ip-forward=false --bridge=none
        wait_for dockerd dockerd ping_daemon
        log "ready"
    fi
    DOCKER_HOST="unix://$SOCKET" "$here/../agents/build-image.sh" >/dev/null
    log "built agentjobs/sample-agent:dev"
    echo "$SOCKET"
}

stop_one() {
    local name="$1" pid
    if ! pid="$(pid_of "$name")"; then
        rm -f "$STATE_DIR/$name.pid"
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 150); do
        alive "$pid" || break
        sleep 0.1
    done
    if alive "$pid"; then
        log "$name did not stop on SIGTERM within 15 s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        sleep 0.5
    fi
    rm -f "$STATE_DIR/$name.pid"
    log "stopped $name (pid $pid)"
}

stop() {
    stop_one dockerd
    # Shims of containers that outlived dockerd (there should be none) go with containerd.
    stop_one containerd
    # Overlay and netns mounts the daemons may leave behind would keep STATE_DIR from being removed.
    grep -F " $STATE_DIR/" /proc/mounts | cut -d' ' -f2 | sort -r | while read -r mountpoint; do
        umount -l "$mountpoint" 2>/dev/null || true
    done
}

status() {
    if pid_of dockerd >/dev/null && ping_daemon; then
        echo "running socket=$SOCKET"
    else
        echo "stopped"
        return 3
    fi
}

case "$CMD" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    *) echo "usage: $0 start|stop|status STATE_DIR" >&2; exit 2 ;;
esac
