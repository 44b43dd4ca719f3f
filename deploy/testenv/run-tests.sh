#!/usr/bin/env bash
# Runs the whole test suite with the services it uses, and stops what it started.
#  - librdkafka >= 2.2 (built once into ~/.cache/agentjobs by librdkafka.sh; Debian 12 ships 2.0.2)
#  - a Tansu Kafka-protocol broker on 127.0.0.1 (memory storage), for the integration tier
# Extra arguments go to `swift test` (e.g. --filter Scheduler).
set -euo pipefail
cd "$(dirname "$0")/../.."

deploy/testenv/librdkafka.sh
eval "$(deploy/testenv/librdkafka.sh --print-env)"
rpath=(-Xlinker -rpath -Xlinker "$AGENTJOBS_LIBRDKAFKA_PREFIX/lib")

state_dir=$(mktemp -d /tmp/agentjobs-tansu.XXXXXX)
cleanup() {
    deploy/testenv/tansu.sh stop "$state_dir" >/dev/null 2>&1 || true
    rm -rf "$state_dir"
}
trap cleanup EXIT INT TERM
AGENTJOBS_TEST_KAFKA_BROKERS="$(deploy/testenv/tansu.sh start "$state_dir")"
export AGENTJOBS_TEST_KAFKA_BROKERS
echo "test broker: Tansu at $AGENTJOBS_TEST_KAFKA_BROKERS"

echo "building (warnings are errors for our targets)…"
swift build -j "${JOBS:-2}" --build-tests "${rpath[@]}"
swift test --skip-build "${rpath[@]}" "$@"
