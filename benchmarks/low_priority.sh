#!/usr/bin/env bash
# Run a long benchmark at the lowest CPU priority, so that tests and CI beside it run at full speed:
#   setsid bash benchmarks/low_priority.sh bash benchmarks/acdc_semisupervised.sh selection
# With Linux's autogroup scheduling a session's CPU share is set by its autogroup's nice value, not
# by the processes' own nice; `spcl_nnunet experiment` starts every nnU-Net command in a session of its
# own (to stop it as a group), so each gets an autogroup of its own. This wrapper marks the command's
# environment (SPCL_LOW_PRIORITY_RUN) and, every 5 s while the command runs, sets the autogroup of every
# process with that mark to nice 19 (and every thread of those processes to nice 19).
set -u
mark=$$
export SPCL_LOW_PRIORITY_RUN=$mark
lower() {
    for environ in /proc/[0-9]*/environ; do
        pid=${environ#/proc/}; pid=${pid%/environ}
        if grep -qxz "SPCL_LOW_PRIORITY_RUN=$mark" "$environ" 2>/dev/null; then
            echo 19 > "/proc/$pid/autogroup" 2>/dev/null
            # every thread: Linux's nice is per thread, and a thread started before the process was
            # reniced (torch's compute threads) kept nice 0 and took the core from its own main thread
            for task in /proc/"$pid"/task/[0-9]*; do renice -n 19 -p "${task#/proc/"$pid"/task/}" > /dev/null 2>&1; done
        fi
    done
}
"$@" &
child=$!
while kill -0 "$child" 2>/dev/null; do lower; sleep 5; done
wait "$child"
