#!/usr/bin/env bash
# Builds the sample agent image (one image for all three agent types) into the Docker daemon that
# DOCKER_HOST names (or the default one), FROM scratch with Debian's busybox-static: no registry
# is needed.
#
# Usage: deploy/agents/build-image.sh [TAG]      (default tag: agentjobs/sample-agent:dev)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
tag="${1:-agentjobs/sample-agent:dev}"
busybox="${BUSYBOX:-/bin/busybox}"
# The image has no C library, so busybox must be the static build (package busybox-static).
if [[ ! -x "$busybox" ]] || ldd "$busybox" >/dev/null 2>&1; then
    echo "build-image.sh: $busybox is missing or not statically linked; install Debian's busybox-static" >&2
    exit 1
fi
context="$(mktemp -d "${TMPDIR:-/tmp}/agentjobs-agent-image.XXXXXX")"
trap 'rm -rf "$context"' EXIT
mkdir -p "$context/bin" "$context/agents" "$context/tmp"
cp "$busybox" "$context/bin/busybox"
# One symlink per applet, so the scripts find sh, sleep, date, … in /bin.
for applet in $("$busybox" --list); do
    [[ "$applet" == busybox ]] || ln -s busybox "$context/bin/$applet"
done
cp "$here"/entrypoint.sh "$here"/lineage-plus.sh "$here"/external-monitors.sh "$here"/datahealth.sh "$context/agents/"
cat > "$context/Dockerfile" <<'DOCKERFILE'
FROM scratch
COPY bin /bin
COPY agents /agents
COPY tmp /tmp
ENV PATH=/bin
ENTRYPOINT ["/bin/sh", "/agents/entrypoint.sh"]
DOCKERFILE
# The classic builder needs no buildx plugin and nothing from a registry for FROM scratch.
DOCKER_BUILDKIT=0 docker build --quiet --tag "$tag" "$context" >&2
echo "$tag"
