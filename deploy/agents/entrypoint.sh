#!/bin/sh
# Entrypoint of the sample agent image: the first argument is the agent type.
type="${1:-}"
case "$type" in
    lineage-plus|external-monitors|datahealth) shift; exec /bin/sh "/agents/$type.sh" "$@" ;;
    *) echo "sample-agent: first argument must be lineage-plus, external-monitors or datahealth (got '$type')" >&2; exit 64 ;;
esac
