#!/usr/bin/env bash
# Runs agentjobs-bench (already built in release) with a throw-away Tansu broker for its Kafka cases,
# and stops the broker afterwards. Arguments go to agentjobs-bench (e.g. --only relay).
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
swift run -c release --skip-build "${rpath[@]}" agentjobs-bench "$@"
