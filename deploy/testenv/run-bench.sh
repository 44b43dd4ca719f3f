#!/usr/bin/env bash
# Runs agentjobs-bench (already built in release) with a throw-away Tansu broker for its Kafka cases
# (and a throw-away PostgreSQL server for the postgres phase, see below), and stops them afterwards.
# Arguments go to agentjobs-bench (e.g. --only relay).
# A broker named by AGENTJOBS_BENCH_KAFKA_BROKERS is used as is; AGENTJOBS_BENCH_KAFKA=0 runs without
# one (the Kafka cases are then skipped with a printed reason).
set -euo pipefail
cd "$(dirname "$0")/../.."

eval "$(deploy/testenv/librdkafka.sh --print-env)"
rpath=(-Xlinker -rpath -Xlinker "$AGENTJOBS_LIBRDKAFKA_PREFIX/lib")

if [[ -z "${AGENTJOBS_BENCH_KAFKA_BROKERS:-}" && "${AGENTJOBS_BENCH_KAFKA:-1}" != "0" ]]; then
    state_dir=$(mktemp -d /tmp/agentjobs-bench-tansu.XXXXXX)
    cleanup() {
        deploy/testenv/tansu.sh stop "$state_dir" >/dev/null 2>&1 || true
        rm -rf "$state_dir"
    }
    trap cleanup EXIT INT TERM
    AGENTJOBS_BENCH_KAFKA_BROKERS="$(deploy/testenv/tansu.sh start "$state_dir")"
    export AGENTJOBS_BENCH_KAFKA_BROKERS
    echo "bench broker: Tansu at $AGENTJOBS_BENCH_KAFKA_BROKERS" >&2
fi
# The launch phase's Docker case: a private Docker daemon, when Debian's docker.io is installed.
if [[ -z "${AGENTJOBS_BENCH_DOCKER_SOCKET:-}" ]] && command -v dockerd >/dev/null; then
    docker_dir=$(mktemp -d /tmp/agentjobs-bench-docker.XXXXXX)
    previous_trap=$(trap -p EXIT | sed -E "s/^trap -- '(.*)' EXIT$/\1/")
    # shellcheck disable=SC2064
    trap "deploy/testenv/docker.sh stop '$docker_dir' >/dev/null 2>&1 || true; rm -rf '$docker_dir'; ${previous_trap:-true}" EXIT INT TERM
    AGENTJOBS_BENCH_DOCKER_SOCKET="$(deploy/testenv/docker.sh start "$docker_dir")"
    export AGENTJOBS_BENCH_DOCKER_SOCKET
    echo "bench Docker daemon: $AGENTJOBS_BENCH_DOCKER_SOCKET" >&2
fi
# The postgres phase: a throw-away PostgreSQL cluster (deploy/testenv/postgres.sh: 127.0.0.1 only,
# fsync on, the server's defaults otherwise), when Debian's PostgreSQL is installed and the phase is
# selected. Without one the phase is skipped with a printed reason.
selects_postgres_phase() {
    local previous="" argument only=""
    for argument in "$@"; do
        if [[ "$previous" == "--only" ]]; then only=$argument; fi
        if [[ "$argument" == --only=* ]]; then only=${argument#--only=}; fi
        previous=$argument
    done
    [[ -z "$only" || ",${only// /}," == *",postgres,"* ]]
}
if [[ -z "${AGENTJOBS_BENCH_POSTGRES_URL:-}" ]] && compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null &&
    selects_postgres_phase "$@"; then
    postgres_dir=$(mktemp -d /tmp/agentjobs-bench-postgres.XXXXXX)
    # The trap already set (the broker's, the Docker daemon's) runs after this one. Its text is read
    # back through `set --` in a subshell, which undoes trap -p's quoting exactly.
    postgres_previous_trap=""
    if [[ -n "$(trap -p EXIT)" ]]; then
        postgres_previous_trap=$(eval "set -- $(trap -p EXIT)" && printf '%s' "$3")
    fi
    stop_bench_postgres() {
        deploy/testenv/postgres.sh stop "$postgres_dir" >/dev/null 2>&1 || true
        rm -rf "$postgres_dir"
        eval "${postgres_previous_trap:-true}"
    }
    trap stop_bench_postgres EXIT INT TERM
    if AGENTJOBS_BENCH_POSTGRES_URL="$(deploy/testenv/postgres.sh start "$postgres_dir")"; then
        export AGENTJOBS_BENCH_POSTGRES_URL
        echo "bench PostgreSQL: $(sed -E 's#(://[^:/@]+):[^@]*@#\1:***@#' <<<"$AGENTJOBS_BENCH_POSTGRES_URL")" >&2
    else
        unset AGENTJOBS_BENCH_POSTGRES_URL
        echo "bench PostgreSQL: could not be started (see above); the postgres phase will be skipped" >&2
    fi
fi
swift run -c release --skip-build "${rpath[@]}" agentjobs-bench "$@"
