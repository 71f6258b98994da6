#!/bin/sh
# GNU parallel runs every job as `$PARALLEL_SHELL -c COMMAND`, and womm-run points
# PARALLEL_SHELL here. This runs once per job, so it is a few shell builtins and no
# Python: local slots run the command here; the other slots hand the job to the
# controller and wait for its exit status.
#
# The controller reads the command from /proc/$$/cmdline (it can be long) and the job's
# stdin from /proc/$$/fd/6, writes the job's output straight into this process's stdout
# and stderr (/proc/$$/fd/8 and 9), and answers "PID STATUS" on this slot's fifo. If GNU parallel kills this process, the
# controller sees it go and kills the remote job.
if [ "${PARALLEL_JOBSLOT:-0}" -le "${WOMM_LOCAL_SLOTS:-0}" ]; then
    exec "${WOMM_LOCAL_SHELL:-/bin/sh}" "$@"
fi
# GNU parallel's own wrappers that run this script again for the command itself (--env sets
# variables, in perl, compressed when long or multi-line) run here, and that inner call goes to
# a pod. --fifo's wrapper (which makes its fifo) and --pipe's (the command only when there is
# input, its stdin copied through perl) go to the controller, which sees through them
# (womm_run.wrappers); --pipe's around one of the others runs here.
case $2 in
    "perl -e '(\$s,\$c,\$f)=@ARGV;system\"mkfifo\","*) ;;
    "perl -e 'if(sysread(STDIN,\$buf,1)){open(\$fh,\"|-\",@ARGV)"*)
        case $2 in
            *"$WOMM_RUN_DIR/job.sh"*"$WOMM_RUN_DIR/job.sh"*|*"perl -e '\"'\"'@GNU_Parallel=split"*) exec /bin/sh -c "$2" ;;
        esac ;;
    *"$WOMM_RUN_DIR/job.sh"*) exec /bin/sh -c "$2" ;;
    "perl -e '@GNU_Parallel=split/_/,\"use_IPC::Open3;_use_MIME::Base64\";"*) exec /bin/sh -c "$2" ;;
esac
# fds 6, 8 and 9: the job's own stdin, stdout and stderr, where the controller opens them
# (the redirections below move fds 0 and 1 for a moment). fd 7: the slot's fifo, opened
# read-write so that the open never waits and the controller's answer never finds it unopened.
exec 6<&0 8>&1 9>&2 7<> "$WOMM_RUN_DIR/slot.$PARALLEL_JOBSLOT"
echo "$$ $PARALLEL_JOBSLOT $PARALLEL_SEQ" > "$WOMM_RUN_DIR/submit"
while read -r pid status <&7; do
    if [ "$pid" = $$ ]; then exit "$status"; fi
done
exit 255
