#!/bin/sh
# Sample datahealth agent (see README.md): --file NAME.
#   sleep-N       sleeps N seconds, then succeeds
#   ignore-term   ignores SIGTERM and runs until killed; creates <logdir>/ignoring-term once it does
#   wait-for-X    runs until the file <logdir>/X exists, then succeeds
#   *fail*        prints an error line to stderr and exits 2
#   anything else succeeds at once
set -u
file=""
while [ $# -gt 0 ]; do
    case "$1" in
        --file) file="$2"; shift 2 ;;
        *) echo "datahealth: unknown argument '$1'" >&2; exit 64 ;;
    esac
done
[ -n "$file" ] || { echo "datahealth: --file is required" >&2; exit 64; }
case "$file" in
    sleep-*)
        echo "datahealth: checking $file"
        sleep "${file#sleep-}"
        ;;
    ignore-term)
        trap '' TERM
        echo "datahealth: ignoring SIGTERM"
        : > "${AGENTJOBS_LOG_DIR:-.}/ignoring-term"
        while :; do sleep 1; done
        ;;
    wait-for-*)
        echo "datahealth: waiting for ${AGENTJOBS_LOG_DIR:-.}/${file#wait-for-}"
        while [ ! -e "${AGENTJOBS_LOG_DIR:-.}/${file#wait-for-}" ]; do sleep 0.2; done
        ;;
    *fail*)
        echo "ERROR datahealth: check of $file failed: 3 rows violate rule not_null(customer_id)" >&2
        exit 2
        ;;
esac
echo "datahealth: checked $file: ok"
