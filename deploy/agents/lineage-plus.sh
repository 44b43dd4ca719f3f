#!/bin/sh
# Sample lineage-plus agent (see README.md): --connector-type T (repeated), [--connection-name N].
#   connector type fail-*   that connection fails: its log <logdir>/<connection>.log gets repeated
#                           error lines (differing only in timestamps and ids); the agent exits 1
#   connector type sleep-N  that connection takes N seconds
#   any other               that connection succeeds
# A connection is named by --connection-name, else "<connector type>-connection"; every connection
# writes its log <logdir>/<connection>.log, as the real agent does.
set -u
types=""
connection=""
while [ $# -gt 0 ]; do
    case "$1" in
        --connector-type) types="$types $2"; shift 2 ;;
        --connection-name) connection="$2"; shift 2 ;;
        *) echo "lineage-plus: unknown argument '$1'" >&2; exit 64 ;;
    esac
done
[ -n "$types" ] || { echo "lineage-plus: at least one --connector-type is required" >&2; exit 64; }
logdir="${AGENTJOBS_LOG_DIR:-.}"
failed=0
for type in $types; do
    name="${connection:-$type-connection}"
    log="$logdir/$name.log"
    case "$type" in
        fail-*)
            echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) INFO connecting to $name ($type)" >> "$log"
            for attempt in 1 2 3; do
                echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) ERROR query 7f3a9c$attempt$attempt$attempt$attempt failed: relation \"orders\" does not exist" >> "$log"
            done
            echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) ERROR connection $name: authentication failed for user \"lineage\"" >> "$log"
            echo "lineage-plus: connection $name failed (log: $log)" >&2
            failed=$((failed + 1))
            ;;
        sleep-*)
            echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) INFO connecting to $name ($type)" >> "$log"
            sleep "${type#sleep-}"
            echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) INFO extracted lineage" >> "$log"
            echo "lineage-plus: connection $name ($type) extracted"
            ;;
        *)
            echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) INFO extracted lineage from $name ($type)" >> "$log"
            echo "lineage-plus: connection $name ($type) extracted"
            ;;
    esac
done
if [ "$failed" -gt 0 ]; then
    echo "lineage-plus: $failed connection(s) failed" >&2
    exit 1
fi
echo "lineage-plus: done"
