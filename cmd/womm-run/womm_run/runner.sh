# womm's job runner: PID 1 of a worker pod's job container, started as
#   bash -c RUNNER womm-runner RUN DIR SHELL GRACE     (sh where the image has no bash: manifests.UNDER_BASH)
# RUN is a directory shared with the pod's womm container (an emptyDir, laid out as
# womm.podrun says), whose agent (podagent.py) gives it jobs; DIR is where jobs run; SHELL
# runs them (sh when the image has no SHELL); GRACE is the seconds between TERM and KILL.
# POSIX sh builtins only, and setsid where the image has it: the user's image needs nothing else.
# Each job leads a process group of its own (a job's `kill 0` must not reach its loop): under bash,
# its job control makes it one as it forks the job; under another sh, setsid does, an exec more,
# and a session of its own too (under bash, a job that signals its whole session reaches PID 1).
#
# The agent writes one request per line into the fifo RUN/ctl:
#   loop NAME    start a slot's loop, RUN/loops/NAME/: it reads the names of its jobs from the fifo
#                `next` and runs them one after the other, each as its own child (a fork per job,
#                not two), holding the fifo `alive` for its whole life: if it dies, the agent sees it
#   kill PID     TERM to the job's process group and its tree, KILL after GRACE
# A job, RUN/jobs/JOB/, is `job` (sh assignments: the command and its PARALLEL_* variables) and the
# fifos in, out, err and status. Its loop writes "started PID", then "exit STATUS" when the job has
# ended, into its status fifo, which it holds meanwhile: if the loop dies, the agent sees it close.
# When the agent goes away (ctl reaches its end), every job still running is killed: the
# remote watchdog GNU parallel's ssh wrapper has.
run=$1 dir=$2 shell=${3:-sh} grace=${4:-2}
trap 'exit 0' TERM INT
command -v "$shell" >/dev/null 2>&1 || shell=sh
# By its path: a busybox setsid (below) runs its own applet of a bare name (its sh, with its own wc,
# seq, ...), not the image's.
shell=$(command -v "$shell")
setsid=
command -v setsid >/dev/null 2>&1 && setsid=setsid
[ -d "$dir" ] || echo "womm: $dir is not in this pod; jobs run in $PWD" >&2
printf 'shell=%s\nbash=%s\nsetsid=%s\nend\n' "$shell" "$(command -v bash)" "$setsid" > "$run/runner"

descendants() {
    # The processes below $1, through every thread of it (a thread's children are its own).
    # sh has no local variables: each list is expanded before the recursion reuses the names.
    for t in /proc/"$1"/task/*; do
        kids=
        read -r kids 2>/dev/null < "$t/children"
        for kid in $kids; do
            echo "$kid"
            descendants "$kid"
        done
    done
}

signal_job() {
    # $1 the job's pid, $2 the signal. Stop the tree first so that nothing forks past us,
    # then signal it and wake it.
    tree="$1 $(descendants "$1")"
    if [ -n "$groups" ]; then
        kill -STOP "-$1" 2>/dev/null
        kill -"$2" "-$1" 2>/dev/null
    fi
    # shellcheck disable=SC2086
    kill -STOP $tree 2>/dev/null
    # shellcheck disable=SC2086
    kill -"$2" $tree 2>/dev/null
    [ -n "$groups" ] && kill -CONT "-$1" 2>/dev/null
    # shellcheck disable=SC2086
    kill -CONT $tree 2>/dev/null
}

kill_job() {
    case $1 in ''|*[!0-9]*) return ;; esac
    signal_job "$1" TERM
    (sleep "$grace"; signal_job "$1" KILL) &
}

run_job() {
    # In a slot's loop: $1 the job's name. A job the agent gave up on before this loop reached it
    # has no status fifo left: the loop ends there (the agent gives the slot's next job a new loop).
    j="$run/jobs/$1"
    exec 3> "$j/status"
    # The loop opens the job's fifos before it says "started": from then on the agent may close its
    # end of `in` (the job then reads its end) without the job's open hanging.
    exec 4< "$j/in" 5> "$j/out" 6> "$j/err"
    # Job control only for the fork: with it, a shell's `wait` may return when its job is stopped.
    [ "$groups" != bash ] || set -m
    (
        # As a background command's: bash's exec would give the job the dispositions this shell
        # started with, where dash keeps these two ignored (and so did a job started with `&`).
        trap '' INT QUIT
        # Without setsid the job's group is not orphaned (its loop shares its session): the stops a
        # terminal sends would stop it for good, where an orphaned group has them discarded.
        [ -n "$setsid" ] || trap '' TSTP TTIN TTOU
        # What sourcing the job's files says goes to the job's stderr.
        exec 2>&6
        # Each job enters the directory anew: a lazy share is mounted over it after this runner started.
        cd "$dir" 2>/dev/null
        . "$j/job"
        # What runs, out of reach of the variables sourced next (--env may name cmd, shell or setsid).
        # shellcheck disable=SC2154 # cmd comes from $j/job
        set -- "$cmd" "$shell" "$setsid"
        if [ -r "$run/env" ]; then . "$run/env"; fi
        exec $3 "$2" -c "$1" <&4 >&5 2>&6 3>&- 4<&- 5>&- 6>&- 7>&- 8<&-
    ) &
    pid=$!
    [ "$groups" != bash ] || set +m
    exec 4<&- 5>&- 6>&-
    echo "$pid" > "$j/pid"
    echo "started $pid" >&3
    wait "$pid"
    echo "exit $?" >&3
    exec 3>&-
}

slot_loop() {
    # $1 the loop's directory. `next` first: the agent holds it, or has removed it (then this ends).
    exec 8< "$1/next" 7> "$1/alive"
    while IFS= read -r name <&8; do
        run_job "$name"
    done
}

job_control_leads_groups() {
    # Under bash, without a terminal: does a job forked with job control lead a process group of its
    # own? (In /proc/self/stat, the fields after the command's name: state, parent, process group.)
    [ -n "${BASH_VERSION:-}" ] || return 1
    set -m
    ( read -r stat < /proc/self/stat && set -- ${stat##*) } && [ "$3" = "$BASHPID" ] ) 2>/dev/null &
    led=$!
    set +m
    wait "$led"
}

kill_all() {
    for p in "$run"/jobs/*/pid; do
        pid=
        [ -e "$p" ] && read -r pid < "$p"
        kill_job "$pid"
    done
}

while :; do
    until [ -p "$run/ctl" ]; do sleep 0.05 2>/dev/null || sleep 1; done
    # The womm container's static setsid, there before ctl: a third of a job start's CPU less.
    if [ -x "$run/setsid" ] && "$run/setsid" "$shell" -c : 2>/dev/null; then setsid=$run/setsid; fi
    groups=$setsid
    # In a background subshell, as the slots' loops fork their jobs.
    job_control_leads_groups &
    if wait "$!"; then groups=bash setsid=; fi
    started=0
    while IFS=' ' read -r verb arg; do
        case $verb in
            loop) slot_loop "$run/loops/$arg" & ;;
            kill) kill_job "$arg" ;;
        esac
        # A shell keeps each background job it started until `jobs` reports it ended: unasked, the
        # table (and its scan at each fork) grew by every kill it started.
        started=$((started + 1))
        [ $((started % 64)) -ne 0 ] || jobs > /dev/null
    done < "$run/ctl"
    kill_all
done
