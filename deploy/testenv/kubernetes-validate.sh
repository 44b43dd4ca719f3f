#!/usr/bin/env bash
# Validates deploy/kubernetes/*.yaml against the Kubernetes API schemas with kubernetes-validate
# (PyPI, installed once into ~/.cache/agentjobs; the schemas ship with it, no cluster needed):
# strict, so a misspelt field fails. deploy/check.sh checks the roles' args and settings in them.
#   kubernetes-validate.sh [KUBERNETES_VERSION]     (default 1.31.0)
set -euo pipefail
cd "$(dirname "$0")/../.."

VERSION="1.31.0"
CACHE_ROOT="${AGENTJOBS_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/agentjobs}"
LIB_DIR="$CACHE_ROOT/kubernetes-validate-$VERSION"
if [[ ! -d "$LIB_DIR/kubernetes_validate" ]]; then
    echo "kubernetes-validate.sh: installing kubernetes-validate $VERSION into $LIB_DIR" >&2
    rm -rf "$LIB_DIR.tmp"
    PIP_ROOT_USER_ACTION=ignore python3 -m pip install --quiet --disable-pip-version-check --target "$LIB_DIR.tmp" \
        "kubernetes-validate==$VERSION" >&2
    mv "$LIB_DIR.tmp" "$LIB_DIR"
fi
PYTHONPATH="$LIB_DIR" python3 -m kubernetes_validate --strict --quiet -k "${1:-1.31.0}" deploy/kubernetes/*.yaml
echo "kubernetes-validate.sh: deploy/kubernetes/*.yaml valid against Kubernetes ${1:-1.31.0} (strict)"
