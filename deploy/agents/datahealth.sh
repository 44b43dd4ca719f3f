#!/bin/sh
# Sample datahealth agent (see README.md): --file NAME.
#   sleep-N       sleeps N seconds, then succeeds
#   ignore-term   ignores SIGTERM and runs until killed; creates <logdir>/ignoring-term once it does
#   wait-for-X    runs until the file <logdir>/X exists, then succeeds (X ending in -fail: then fails)
#   soak-S-E      sleeps S seconds, then exits E; soak-S-E-ignore-term ignores SIGTERM meanwhile
#   plant-links   hostile: links its run directory's files to $AGENTJOBS_TEST_LINK_TARGET, then fails
#   flaky-N-KEY   fails its first N launches (counted per KEY in ${TMPDIR:-/tmp}), then succeeds:
#                 a job with retries whose agent fails once and then succeeds
#   *fail*        prints an error line to stderr and exits 2
#   anything else succeeds at once
# Every launch appends a line to <logdir>/launches, and the agent writes how it really ended to
# <logdir>/outcome ("exit N", or "terminated" on SIGTERM), so tests can check what the orchestrator
# reported against what happened.
set -u
file=""
while [ $# -gt 0 ]; do
    case "$1" in
        --file) file="$2"; shift 2 ;;
        *) echo "datahealth: unknown argument '$1'" >&2; exit 64 ;;
    esac
done
[ -n "$file" ] || { echo "datahealth: --file is required" >&2; exit 64; }
logdir="${AGENTJOBS_LOG_DIR:-.}"
echo "launch $$" >> "$logdir/launches"
finish() {
    echo "exit $1" > "$logdir/outcome"
    exit "$1"
}
case "$file" in
    sleep-*)
        echo "datahealth: checking $file"
        sleep "${file#sleep-}"
        ;;
    ignore-term)
        trap '' TERM
        echo "datahealth: ignoring SIGTERM"
        : > "$logdir/ignoring-term"
        while :; do sleep 1; done
        ;;
    wait-for-*)
        name="${file#wait-for-}"
        echo "datahealth: waiting for $logdir/$name"
        while [ ! -e "$logdir/$name" ]; do sleep 0.5; done
        case "$name" in
            *-fail)
                echo "ERROR datahealth: check of $file failed after waiting" >&2
                finish 2
                ;;
        esac
        ;;
    soak-*)
        spec="${file#soak-}"
        seconds="${spec%%-*}"
        rest="${spec#*-}"
        code="${rest%%-*}"
        case "$rest" in
            *-ignore-term) trap '' TERM ;;
            *) trap 'echo terminated > "$logdir/outcome"; exit 143' TERM ;;
        esac
        echo "datahealth: soak run of $seconds s, then exit $code"
        # `wait` returns when a trapped signal arrives, so SIGTERM is handled at once; one process
        # per agent, as many soak agents run together.
        sleep "$seconds" & wait $!
        if [ "$code" != 0 ]; then echo "ERROR datahealth: soak run failed with exit $code" >&2; fi
        finish "$code"
        ;;
    plant-links)
        # A hostile agent, for the orchestrator's hardening tests: replaces the files the orchestrator
        # reads or writes in its run directory with links to $AGENTJOBS_TEST_LINK_TARGET (a path on
        # the host), plants a FIFO, then fails. Nothing of the target may reach a summary, and the
        # target must stay untouched.
        target="${AGENTJOBS_TEST_LINK_TARGET:?plant-links needs AGENTJOBS_TEST_LINK_TARGET}"
        echo "ERROR datahealth: planting links to $target" >&2
        for name in stdout.log stderr.log stdout.log.1 exit-code "exit-code.$PPID" conn-a.log; do
            rm -f "$logdir/$name"
            ln -s "$target" "$logdir/$name"
        done
        ln "$target" "$logdir/conn-hard.log" 2>/dev/null || true
        mkfifo "$logdir/conn-fifo.log" 2>/dev/null || true
        # Output that would trigger rotation of a followed link, while the driver watches.
        i=0
        while [ $i -lt 40 ]; do echo "ERROR datahealth: filler line $i"; i=$((i + 1)); sleep 0.05; done
        exit 1
        ;;
    flaky-*)
        spec="${file#flaky-}"
        failures="${spec%%-*}"
        counter="${TMPDIR:-/tmp}/agentjobs-flaky-${spec#*-}"
        launches=$(( $(cat "$counter" 2>/dev/null || echo 0) + 1 ))
        echo "$launches" > "$counter"
        if [ "$launches" -le "$failures" ]; then
            echo "ERROR datahealth: flaky check of $file failed (launch $launches of $failures failing)" >&2
            finish 2
        fi
        ;;
    *fail*)
        echo "ERROR datahealth: check of $file failed: 3 rows violate rule not_null(customer_id)" >&2
        finish 2
        ;;
esac
echo "datahealth: checked $file: ok"
finish 0
