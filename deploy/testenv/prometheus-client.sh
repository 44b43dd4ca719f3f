#!/usr/bin/env bash
# Installs Python's prometheus_client (PyPI; a real Prometheus text-format parser, for the tests
# that check every role's /metrics) once into ~/.cache/agentjobs and prints the directory to put
# on PYTHONPATH.
set -euo pipefail

VERSION="0.21.1"
CACHE_ROOT="${AGENTJOBS_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/agentjobs}"
LIB_DIR="$CACHE_ROOT/prometheus-client-$VERSION"
if [[ ! -d "$LIB_DIR/prometheus_client" ]]; then
    echo "prometheus-client.sh: installing prometheus_client $VERSION into $LIB_DIR" >&2
    rm -rf "$LIB_DIR.tmp"
    python3 -m pip install --quiet --disable-pip-version-check --no-deps --target "$LIB_DIR.tmp" \
        "prometheus_client==$VERSION" >&2
    mv "$LIB_DIR.tmp" "$LIB_DIR"
fi
echo "$LIB_DIR"
