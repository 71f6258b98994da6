# womm's job agent: one per job slot, started in a pod by the controller through
# the Kubernetes exec API as `sh -c AGENT womm-agent TOKEN DIR SHELL`. It runs the
# slot's jobs one at a time. POSIX sh builtins only: the user's image needs
# nothing else (no perl, no sshd).
#
# Controller -> agent, on stdin, one message per line:
#   j SEQ SLOT      a job: its command follows,
#   |LINE           one line of the command each ("|" keeps "." and "" unambiguous),
#   .               end of the command: run it;
#   k               kill the running job and everything it started.
# Agent -> controller: the job's stdout and stderr as they come; when the job has
# ended, "\nTOKEN STATUS\n" on both (the controller strips it). The token is
# random per task, so no job prints it by chance.
#
# When stdin closes (the controller went away, or its connection broke), the running
# job is killed: the watchdog GNU parallel's ssh wrapper has, in POSIX sh.
token=$1 dir=$2 shell=${3:-sh}
command -v "$shell" >/dev/null 2>&1 || shell=sh
cd "$dir" 2>/dev/null || echo "womm: $dir is not in this pod; jobs run in $PWD" >&2
nl='
'
pid=

descendants() {
    # The processes below $1, parents first (/proc/PID/task/PID/children).
    # sh has no local variables: print each one before recursing.
    kids=
    read -r kids < "/proc/$1/task/$1/children" 2>/dev/null
    for kid in $kids; do
        echo "$kid"
        descendants "$kid"
    done
}

kill_job() {
    [ -n "$pid" ] || return 0
    # Stop the tree first so nothing forks past us, then terminate and wake it.
    tree=$(descendants "$pid")
    [ -n "$tree" ] || return 0
    kill -STOP $tree 2>/dev/null
    kill -TERM $tree 2>/dev/null
    kill -CONT $tree 2>/dev/null
}

while IFS= read -r line; do
    case $line in
        "j "*)
            set -f
            set -- $line
            set +f
            seq=$2 slot=$3 cmd= first=1
            ;;
        "|"*)
            if [ -n "$first" ]; then cmd=${line#|} first=; else cmd=$cmd$nl${line#|}; fi
            ;;
        .)
            [ -n "$pid" ] && wait "$pid"
            (
                PARALLEL_SEQ=$seq PARALLEL_JOBSLOT=$slot
                export PARALLEL_SEQ PARALLEL_JOBSLOT
                "$shell" -c "$cmd" < /dev/null
                status=$?
                printf '\n%s %s\n' "$token" "$status" >&2
                printf '\n%s %s\n' "$token" "$status"
            ) &
            pid=$!
            ;;
        k)
            kill_job
            ;;
    esac
done
kill_job
