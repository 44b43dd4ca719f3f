#!/bin/sh
# Sample lineage-plus / external-monitors agent (busybox sh). Usage:
#   --connector-type TYPE [--connector-type TYPE ...] [--connection-name NAME]
# Each connector type is one connection; it writes <connection>.log into $AGENTJOBS_LOG_DIR.
# A connector type starting with "fail-" fails: its log gets repeated error lines (some differing
# only in timestamps and ids) and the agent exits 1. "sleep-N" sleeps N seconds first.
set -u
logdir="${AGENTJOBS_LOG_DIR:-.}"
types=""
name=""
while [ $# -gt 0 ]; do
    case "$1" in
        --connector-type) types="$types $2"; shift 2 ;;
        --connection-name) name="$2"; shift 2 ;;
        *) echo "ERROR unknown option $1" >&2; exit 64 ;;
    esac
done
[ -n "$types" ] || { echo "ERROR at least one --connector-type is required" >&2; exit 64; }
failed=0
for type in $types; do
    connection="${name:-$type}"
    [ "$connection" = "$type" ] || connection="$name-$type"
    log="$logdir/$connection.log"
    echo "$(date -u +%FT%TZ) INFO connecting to $type" >>"$log"
    case "$type" in
        sleep-*) sleep "${type#sleep-}" ;;
    esac
    case "$type" in
        fail-*)
            for i in 1 2 3; do
                echo "$(date -u +%FT%T.$i%NZ) ERROR connection refused by $type (request id $i$$)" >>"$log"
            done
            echo "$(date -u +%FT%TZ) ERROR authentication failed for user agentjobs" >>"$log"
            failed=$((failed + 1))
            ;;
        *) echo "$(date -u +%FT%TZ) INFO extracted lineage from $type" >>"$log" ;;
    esac
done
echo "processed connections:$types"
if [ "$failed" -gt 0 ]; then
    echo "ERROR $failed connection(s) failed; see the connection logs" >&2
    exit 1
fi
