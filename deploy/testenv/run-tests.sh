#!/usr/bin/env bash
# Runs the whole test suite with the services it uses, and stops what it started.
#  - librdkafka >= 2.2 (built once into ~/.cache/agentjobs by librdkafka.sh; Debian 12 ships 2.0.2)
#  - a Tansu Kafka-protocol broker on 127.0.0.1 (memory storage), for the integration tier
#  - a private Docker daemon (its own containerd, no bridge) with the sample agent image, for the
#    docker driver cases of the driver conformance suite
#  - a throw-away PostgreSQL cluster on 127.0.0.1 (postgres.sh), for the store conformance suite
#  - schemathesis (PyPI, installed once into ~/.cache/agentjobs), for the API against its document
#  - prometheus_client (PyPI, likewise), the parser every role's /metrics is checked with
#  - kubernetes-validate (PyPI, likewise), for deploy/kubernetes/
#  - debootstrap's Debian 12 base (cached in ~/.cache/agentjobs), for the image built from
#    deploy/Dockerfile and the containerised stack run last (container-stack.sh)
# Extra arguments go to `swift test` (e.g. --filter Scheduler).
set -euo pipefail
cd "$(dirname "$0")/../.."

deploy/testenv/librdkafka.sh
eval "$(deploy/testenv/librdkafka.sh --print-env)"
rpath=(-Xlinker -rpath -Xlinker "$AGENTJOBS_LIBRDKAFKA_PREFIX/lib")

state_dir=$(mktemp -d /tmp/agentjobs-tansu.XXXXXX)
# Short path: the Docker daemon's unix sockets live in it (at most 107 bytes).
docker_dir=$(mktemp -d /tmp/agentjobs-docker.XXXXXX)
postgres_dir=$(mktemp -d /tmp/agentjobs-postgres.XXXXXX)
cleanup() {
    deploy/testenv/tansu.sh stop "$state_dir" >/dev/null 2>&1 || true
    deploy/testenv/docker.sh stop "$docker_dir" >/dev/null 2>&1 || true
    deploy/testenv/postgres.sh stop "$postgres_dir" >/dev/null 2>&1 || true
    rm -rf "$state_dir" "$docker_dir" "$postgres_dir"
}
trap cleanup EXIT INT TERM
AGENTJOBS_TEST_KAFKA_BROKERS="$(deploy/testenv/tansu.sh start "$state_dir")"
export AGENTJOBS_TEST_KAFKA_BROKERS
echo "test broker: Tansu at $AGENTJOBS_TEST_KAFKA_BROKERS"
AGENTJOBS_TEST_DOCKER_SOCKET="$(deploy/testenv/docker.sh start "$docker_dir")"
export AGENTJOBS_TEST_DOCKER_SOCKET
echo "test Docker daemon: $AGENTJOBS_TEST_DOCKER_SOCKET"
AGENTJOBS_TEST_POSTGRES_URL="$(deploy/testenv/postgres.sh start "$postgres_dir")"
export AGENTJOBS_TEST_POSTGRES_URL
export AGENTJOBS_TEST_POSTGRES_PASSWORD_FILE="$postgres_dir/password"
echo "test PostgreSQL: ${AGENTJOBS_TEST_POSTGRES_URL#*@} (user agentjobs, password in $postgres_dir/password)"
AGENTJOBS_TEST_PROMETHEUS_CLIENT="$(PIP_ROOT_USER_ACTION=ignore deploy/testenv/prometheus-client.sh)"
export AGENTJOBS_TEST_PROMETHEUS_CLIENT
echo "Prometheus text parser: prometheus_client in $AGENTJOBS_TEST_PROMETHEUS_CLIENT"

# Every module declares the packages it imports (none compiles through a dependency's dependency).
deploy/testenv/check-imports.sh
# The tree is formatted (`make fmt`; configuration in .swift-format): a lint finding fails the run.
echo "checking the format (swift format lint --strict)…"
swift format lint --strict --recursive --parallel Sources Tests Package.swift
echo "building (warnings are errors for our targets)…"
swift build -j "${JOBS:-2}" --build-tests "${rpath[@]}"
# deploy/: the compose file parses, every flag and setting it uses exists in this binary and docs.
deploy/check.sh "$(swift build --show-bin-path)/agentjobs"
# deploy/kubernetes/: valid against the Kubernetes schemas (kubernetes-validate, strict).
deploy/testenv/kubernetes-validate.sh
# The build leaves gigabytes of dirty pages: written back now, not during the first tier, whose
# journals and databases would wait behind them in every fsync.
sync

# run_tests MINUTES ARGS…: `swift test` with line-buffered output, stopped after MINUTES. A hang then
# fails in time and says where: the tests that started and never ended are listed.
run_tests() {
    local minutes=$1
    shift
    local log status=0
    log=$(mktemp /tmp/agentjobs-test-output.XXXXXX)
    # SIGINT: SwiftPM passes it on to the test process, which runs in a process group of its own.
    timeout --signal=INT --kill-after=30 "${minutes}m" stdbuf -oL -eL swift test --skip-build "${rpath[@]}" "$@" 2>&1 |
        tee "$log" || status=$?
    if [[ $status -ne 0 ]]; then
        # A test process that crashed or was stopped leaves the roles and agents it started
        # running: stop whatever of this build (and its sample agents) still runs.
        pkill -KILL -f "$PWD/.build/" || true
        pkill -KILL -f "$PWD/deploy/agents/" || true
        # PostgreSQL servers of single tests (PrivatePostgresServer) left by a crashed test process.
        for dir in /tmp/agentjobs-private-postgres-*; do
            if [[ -d "$dir" ]]; then
                deploy/testenv/postgres.sh stop "$dir" >/dev/null 2>&1 || true
                rm -rf "$dir"
            fi
        done
    fi
    if [[ $status -eq 124 || $status -eq 137 ]]; then
        echo "✘ the tests were stopped after ${minutes} minutes; started and never ended:"
        python3 - "$log" <<'PY' || echo "  (could not read the test output)"
import re, sys
started, ended = [], set()
for line in open(sys.argv[1], errors="replace"):
    if m := re.search(r'Test "(.*)" started\.$', line):
        started.append(m.group(1))
    elif m := re.search(r'Test "(.*?)" (?:with \d+ test cases? )?(?:passed|failed|skipped)', line):
        ended.add(m.group(1))
for name in started:
    if name not in ended:
        print("  " + name)
PY
    fi
    rm -f "$log"
    return "$status"
}

if [[ $# -gt 0 ]]; then
    run_tests "${AGENTJOBS_TEST_TIME_LIMIT_MINUTES:-100}" "$@"
else
    # The chaos soak runs alone after the rest: its three orchestrators, two aggregators and dozens
    # of agents would otherwise load the machine and the shared test topics while the other
    # end-to-end tests time host tracking in seconds. Each normally takes about 8 minutes here.
    run_tests 30 --skip ChaosSoakTests --skip HostTrackerTests --skip PostgresEndToEndTests
    # Host tracking's component tests measure how soon it decides: on a quiet machine.
    run_tests 5 --filter HostTrackerTests
    # The API against its OpenAPI document: at least 10,000 requests generated by schemathesis.
    deploy/testenv/schemathesis.sh "$(swift build --show-bin-path)/agentjobs"
    # The distributed end-to-end tests once more, every role on PostgreSQL instead of SQLite, with
    # the PostgreSQL replica tests (several serve replicas, kill -9, a database restart). On an
    # empty broker: every cluster's host trackers read host-events from the start, and the earlier
    # clusters' heartbeats would only be a backlog to dead-letter first.
    AGENTJOBS_TEST_KAFKA_BROKERS="$(deploy/testenv/tansu.sh restart "$state_dir")"
    # (Not the metrics, readiness and tracing tests: what they check does not depend on the store, and
    # the store conformance suite covers the queries behind the metrics on both stores.)
    AGENTJOBS_TEST_CLUSTER_DATABASE=postgres run_tests 20 --filter AgentJobsEndToEndTests \
        --skip ChaosSoakTests --skip StartupErrorTests --skip ObservabilityTests --skip TracingTests
    run_tests 20 --filter ChaosSoakTests
    # Last, because it relinks the binary with the Swift runtime inside (as the image's builder
    # does): the image from deploy/Dockerfile, and serve, aggregate and orchestrate in containers of
    # it running a job end to end.
    deploy/testenv/container-stack.sh
fi
