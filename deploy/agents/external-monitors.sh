#!/bin/sh
# Sample external-monitors agent (see README.md): --connector-type T (repeated), [--connection-name N].
#   connector type fail-*   prints an error line to stderr and exits 1
#   connector type sleep-N  sleeps N seconds
#   any other               succeeds
set -u
types=""
connection=""
while [ $# -gt 0 ]; do
    case "$1" in
        --connector-type) types="$types $2"; shift 2 ;;
        --connection-name) connection="$2"; shift 2 ;;
        *) echo "external-monitors: unknown argument '$1'" >&2; exit 64 ;;
    esac
done
[ -n "$types" ] || { echo "external-monitors: at least one --connector-type is required" >&2; exit 64; }
for type in $types; do
    case "$type" in
        fail-*) echo "ERROR external-monitors: monitor sync for $type failed${connection:+ on $connection}" >&2; exit 1 ;;
        sleep-*) sleep "${type#sleep-}" ;;
    esac
    echo "external-monitors: monitors of $type synced${connection:+ for $connection}"
done
