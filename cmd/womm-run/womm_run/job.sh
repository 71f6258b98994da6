#!/bin/sh
# GNU parallel runs every job as `$PARALLEL_SHELL -c COMMAND`, and womm-run points
# PARALLEL_SHELL here. This runs once per job, so it is a few shell builtins and no
# Python: local slots run the command here; the other slots hand the job to the
# controller and wait for its exit status.
#
# The controller reads the command from /proc/$$/cmdline (it can be long), writes the job's output
# straight into this process's stdout and stderr (/proc/$$/fd/8 and 9: fds 1 and 2, whatever
# GNU parallel made them), and answers "PID STATUS" on this slot's fifo. If GNU
# parallel kills this process, the controller sees it go and kills the remote job.
if [ "${PARALLEL_JOBSLOT:-0}" -le "${WOMM_LOCAL_SLOTS:-0}" ]; then
    exec "${WOMM_LOCAL_SHELL:-/bin/sh}" "$@"
fi
# The redirection below moves fd 1 for a moment: keep the job's own stdout and
# stderr on fds 8 and 9, where the controller opens them.
exec 8>&1 9>&2
echo "$$ $PARALLEL_JOBSLOT $PARALLEL_SEQ" > "$WOMM_RUN_DIR/submit"
while read -r pid status; do
    if [ "$pid" = $$ ]; then exit "$status"; fi
done < "$WOMM_RUN_DIR/slot.$PARALLEL_JOBSLOT"
exit 255
