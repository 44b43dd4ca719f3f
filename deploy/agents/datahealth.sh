#!/bin/sh
# Sample datahealth agent (busybox sh). Usage: --file NAME
# NAME picks the behaviour: "sleep-N" sleeps N seconds then succeeds; "ignore-term" ignores SIGTERM
# and sleeps (only SIGKILL stops it); a name containing "fail" prints an error and exits 2;
# anything else succeeds at once.
set -u
file=""
while [ $# -gt 0 ]; do
    case "$1" in
        --file) file="$2"; shift 2 ;;
        *) echo "ERROR unknown option $1" >&2; exit 64 ;;
    esac
done
[ -n "$file" ] || { echo "ERROR --file is required" >&2; exit 64; }
echo "datahealth: checking $file"
case "$file" in
    sleep-*) sleep "${file#sleep-}" ;;
    ignore-term)
        trap '' TERM
        # A child ignores TERM too (the trap is inherited as ignored), so only SIGKILL ends it.
        sleep 300 &
        wait $! 2>/dev/null || wait $!
        ;;
    *fail*) echo "ERROR check file $file: 3 of 12 checks failed" >&2; exit 2 ;;
esac
echo "datahealth: all checks passed"
