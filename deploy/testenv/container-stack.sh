#!/usr/bin/env bash
# Builds the agentjobs image with deploy/Dockerfile from this checkout and runs the containerised
# stack end to end: serve, aggregate and orchestrate in their own containers (the image's user,
# uid 10001), on the test broker and a fresh database of the test PostgreSQL; a host registered
# from a container runs a job that must succeed, and every role's /readyz must answer 200.
#
# No registry is reachable here, so two images are made locally first:
#   - the Debian 12 base (RUNTIME_IMAGE): a debootstrap minbase, cached as a tarball in
#     ~/.cache/agentjobs, with this machine's apt sources (the Dockerfile's apt-get runs on them);
#   - the build (BUILD): the debug binary built again with the Swift runtime inside it
#     (--static-swift-stdlib, as the builder stage does), in a build directory of its own, and
#     librdkafka's path in its rpath.
# The runtime stage of deploy/Dockerfile is then built as it is, by BuildKit (Debian's docker.io
# 20.10 client, which needs no buildx plugin).
#
# Usage: container-stack.sh            (run by run-tests.sh)
# Needs: AGENTJOBS_TEST_DOCKER_SOCKET, AGENTJOBS_TEST_KAFKA_BROKERS, AGENTJOBS_TEST_POSTGRES_URL
# (and postgres.sh's password next to it: AGENTJOBS_TEST_POSTGRES_PASSWORD_FILE).
set -euo pipefail
cd "$(dirname "$0")/../.."

: "${AGENTJOBS_TEST_DOCKER_SOCKET:?}" "${AGENTJOBS_TEST_KAFKA_BROKERS:?}" "${AGENTJOBS_TEST_POSTGRES_URL:?}"
: "${AGENTJOBS_TEST_POSTGRES_PASSWORD_FILE:?}"
export DOCKER_HOST="unix://$AGENTJOBS_TEST_DOCKER_SOCKET"
docker=/usr/bin/docker # Debian's docker.io client: BuildKit built in
log() { echo "[container-stack] $*"; }

CACHE_ROOT="${AGENTJOBS_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/agentjobs}"
RDKAFKA_IN_IMAGE=/opt/agentjobs/librdkafka-2.14.2/lib
eval "$(deploy/testenv/librdkafka.sh --print-env)"

work="$(mktemp -d /tmp/agentjobs-container-stack.XXXXXX)"
containers=()
database=""
cleanup() {
    local status=$?
    if [[ $status -ne 0 ]]; then
        for name in "${containers[@]}"; do
            echo "---- logs of $name ----"
            "$docker" logs --tail 60 "$name" 2>&1 || true
        done
    fi
    for name in "${containers[@]}"; do "$docker" rm -f "$name" >/dev/null 2>&1 || true; done
    if [[ -n "$database" ]]; then
        PGPASSWORD="$(cat "$AGENTJOBS_TEST_POSTGRES_PASSWORD_FILE")" psql -q "$server_url" \
            -c "DROP DATABASE IF EXISTS $database WITH (FORCE)" >/dev/null 2>&1 || true
    fi
    rm -rf "$work"
    exit "$status"
}
trap cleanup EXIT

# ---- the Debian base ---------------------------------------------------------------------------
base_tar="$CACHE_ROOT/debian-bookworm-minbase.tar"
if [[ ! -f "$base_tar" ]]; then
    log "making a Debian 12 base with debootstrap (once; cached in $base_tar)"
    rootfs="$work/rootfs"
    debootstrap --variant=minbase bookworm "$rootfs" http://deb.debian.org/debian >"$work/debootstrap.log" 2>&1 || {
        tail -20 "$work/debootstrap.log"
        exit 1
    }
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    mkdir -p "$CACHE_ROOT"
    tar -C "$rootfs" -cf "$base_tar.tmp" .
    mv "$base_tar.tmp" "$base_tar"
    rm -rf "$rootfs"
fi
# This machine's apt sources and settings (a mirror, a snapshot), so that the image's apt-get
# reaches what this machine's does.
"$docker" import --change 'CMD ["/bin/bash"]' "$base_tar" agentjobs-test/debian-minbase:bookworm >/dev/null
mkdir -p "$work/base"
cp -r /etc/apt "$work/base/apt"
printf 'FROM agentjobs-test/debian-minbase:bookworm\nCOPY apt /etc/apt\n' >"$work/base/Dockerfile"
DOCKER_BUILDKIT=0 "$docker" build --quiet -t agentjobs-test/debian:bookworm "$work/base" >/dev/null
log "base image: agentjobs-test/debian:bookworm"

# ---- the build ---------------------------------------------------------------------------------
# A build directory of its own: objects compiled for a static link import the static Foundation
# and name its libraries for the linker, and SwiftPM does not recompile them when the next build
# links dynamically, so sharing .build broke the next `make test` (cannot find -lCoreFoundation),
# and reusing the test run's objects here lacked the static ICU library. The first run compiles
# everything again (about 5 minutes on 2 cores); later runs of the same checkout only what changed.
scratch=.build/container-static
log "building agentjobs with the Swift runtime inside (--static-swift-stdlib) in $scratch (the first time: about 5 minutes)"
swift build -j "${JOBS:-2}" --scratch-path "$scratch" --product agentjobs --static-swift-stdlib \
    -Xlinker -rpath -Xlinker "$RDKAFKA_IN_IMAGE" -Xlinker -rpath -Xlinker "$AGENTJOBS_LIBRDKAFKA_PREFIX/lib" \
    >"$work/build.log" 2>&1 || {
    tail -30 "$work/build.log"
    exit 1
}
bin="$(swift build --scratch-path "$scratch" --show-bin-path)"
mkdir -p "$work/build/out" "$work/build$RDKAFKA_IN_IMAGE"
cp "$bin/agentjobs" "$work/build/out/agentjobs"
cp -R "$bin/agentjobs_AgentJobsControlPlane.resources" "$work/build/out/"
cp -P "$AGENTJOBS_LIBRDKAFKA_PREFIX"/lib/librdkafka.so* "$work/build$RDKAFKA_IN_IMAGE/"
tar -C "$work/build" -cf "$work/build.tar" out opt
"$docker" import "$work/build.tar" agentjobs-test/build:local >/dev/null

# ---- the image ---------------------------------------------------------------------------------
log "building the image with deploy/Dockerfile (runtime stage, BuildKit)"
started=$(date +%s)
DOCKER_BUILDKIT=1 "$docker" build --progress=plain --network host \
    --build-arg BUILD=agentjobs-test/build:local --build-arg RUNTIME_IMAGE=agentjobs-test/debian:bookworm \
    -f deploy/Dockerfile -t agentjobs-test/agentjobs:ci . >"$work/image.log" 2>&1 || {
    tail -40 "$work/image.log"
    exit 1
}
log "image built in $(($(date +%s) - started)) s"
image=agentjobs-test/agentjobs:ci

# ---- the stack ---------------------------------------------------------------------------------
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'; }
server_url="$AGENTJOBS_TEST_POSTGRES_URL"
database="agentjobs_stack_$(head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n')"
PGPASSWORD="$(cat "$AGENTJOBS_TEST_POSTGRES_PASSWORD_FILE")" psql -q "$server_url" -c "CREATE DATABASE $database" >/dev/null
# The same server and user, this database, without the password (it is a file, as in production).
database_url="$(python3 - "$server_url" "$database" <<'PY'
import sys, urllib.parse
url = urllib.parse.urlsplit(sys.argv[1])
netloc = f"{url.username}@{url.hostname}:{url.port}"
print(urllib.parse.urlunsplit((url.scheme, netloc, "/" + sys.argv[2], url.query, "")))
PY
)"
install -d -m 0755 "$work/secrets"
install -m 0440 -g 10001 "$AGENTJOBS_TEST_POSTGRES_PASSWORD_FILE" "$work/secrets/postgres-password"
install -d -o 10001 -g 10001 -m 0750 "$work/host"
http_port=$(free_port)
aggregate_port=$(free_port)
orchestrate_port=$(free_port)
common=(--network host --user 10001:10001 -e AGENTJOBS_KAFKA_BROKERS="$AGENTJOBS_TEST_KAFKA_BROKERS")
database_settings=(-v "$work/secrets:/run/agentjobs:ro" -e AGENTJOBS_DATABASE_URL="$database_url"
    -e AGENTJOBS_DATABASE_PASSWORD_FILE=/run/agentjobs/postgres-password)

start() { # NAME ARGS…: a detached container of the image
    local name="agentjobs-stack-$1-$$"
    shift
    containers+=("$name")
    "$docker" run -d --name "$name" "$@" >/dev/null
}
wait_ready() { # ROLE URL
    local deadline=$(($(date +%s) + 90))
    until curl -fsS --max-time 3 "$2/readyz" >/dev/null 2>&1; do
        if (($(date +%s) > deadline)); then
            log "$1 not ready after 90 s: $(curl -sS --max-time 3 "$2/readyz" 2>&1)"
            return 1
        fi
        sleep 1
    done
    log "$1 ready ($2/readyz)"
}

start serve "${common[@]}" "${database_settings[@]}" -e AGENTJOBS_HTTP_ADDRESS="127.0.0.1:$http_port" "$image" serve
api="http://127.0.0.1:$http_port"
wait_ready serve "$api"
start aggregate "${common[@]}" "${database_settings[@]}" -e AGENTJOBS_ADMIN_ADDRESS="127.0.0.1:$aggregate_port" \
    "$image" aggregate
wait_ready aggregate "http://127.0.0.1:$aggregate_port"

admin=$("$docker" exec "${containers[0]}" agentjobs tokens create --scope admin --name container-stack | tail -n 1)
registration=$(curl -fsS -X POST -H "Authorization: Bearer $admin" -H 'Content-Type: application/json' -d '{}' \
    "$api/api/v1/registration-tokens" | python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])')
host_settings=(-v "$work/host:/var/lib/agentjobs-host" -e AGENTJOBS_DATA_DIR=/var/lib/agentjobs-host)
host_id=$("$docker" run --rm "${common[@]}" "${host_settings[@]}" -e AGENTJOBS_REGISTRATION_TOKEN="$registration" \
    "$image" host register --control-plane "$api" --name container-host --agents datahealth -o json |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["hostId"])')
log "host registered from a container: $host_id"
start orchestrate "${common[@]}" "${host_settings[@]}" -e AGENTJOBS_ADMIN_ADDRESS="127.0.0.1:$orchestrate_port" \
    "$image" orchestrate
wait_ready orchestrate "http://127.0.0.1:$orchestrate_port"

job=$(curl -fsS -X POST -H "Authorization: Bearer $admin" -H 'Content-Type: application/json' \
    -d "{\"name\":\"container-stack\",\"hostId\":\"$host_id\",\"agentType\":\"datahealth\",\"parameters\":{\"fileName\":\"checks.yaml\"}}" \
    "$api/api/v1/jobs" | python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])')
run=$(curl -fsS -X POST -H "Authorization: Bearer $admin" -H 'Content-Type: application/json' -d '{"trigger":"api"}' \
    "$api/api/v1/jobs/$job/runs" | python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])')
log "triggered $run"
deadline=$(($(date +%s) + 120))
status=""
while :; do
    status=$(curl -fsS -H "Authorization: Bearer $admin" "$api/api/v1/runs/$run" |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["status"])')
    case "$status" in
    succeeded) break ;;
    failed | timed_out | canceled)
        log "✘ the run ended $status"
        curl -fsS -H "Authorization: Bearer $admin" "$api/api/v1/runs/$run"
        echo
        exit 1
        ;;
    esac
    if (($(date +%s) > deadline)); then
        log "✘ the run is still $status after 120 s"
        exit 1
    fi
    sleep 1
done
log "✔ $run succeeded on $host_id, every role in a container of the image built from deploy/Dockerfile"
for url in "$api" "http://127.0.0.1:$aggregate_port" "http://127.0.0.1:$orchestrate_port"; do
    curl -fsS --max-time 3 "$url/readyz" >/dev/null || {
        log "✘ $url/readyz: $(curl -sS --max-time 3 "$url/readyz")"
        exit 1
    }
done
for name in "${containers[@]}"; do
    user=$("$docker" exec "$name" id -u)
    [[ "$user" == 10001 ]] || {
        log "✘ $name runs as uid $user, not the image's user 10001"
        exit 1
    }
done
log "✔ every role ready, as uid 10001"
