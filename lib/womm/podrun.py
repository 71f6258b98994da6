"""A worker pod's run directory: what its two containers share, and nothing else does.

    /.womm-pod/                 an emptyDir mounted by the womm container and the job container
    |-- ctl                     fifo: the agent's requests to runner.sh, one line each
    |                           (`loop NAME`, `kill PID`); runner.sh kills every job when it ends
    |-- runner                  what runner.sh found in the job container (`shell=`, `bash=`,
    |                           `setsid=`), then a line `end`
    |-- env                     the jobs' --env variables (sh), sourced before every job
    |-- functions.bash          exported bash functions, reached through BASH_ENV
    |-- agent.lock, agent.pid   the pod's one agent (a new one stops the old one first)
    |-- setsid                  the helper image's static busybox, which runs as `setsid` by that
    |                           name: the runner starts every job through it (an image's own setsid,
    |                           dynamically linked, costs a job start three times as much CPU)
    |-- loops/NAME/             a slot's loop in runner.sh, NAME = "AGENT_PID-TIME_NS-SLOT":
    |   |-- next                fifo: the names of the jobs it runs, one per line
    |   `-- alive               fifo: the loop holds it open for its whole life
    `-- jobs/NAME/              one attempt of a job, NAME = "SLOT-NUMBER":
        |-- job                 sh assignments: `cmd=...`, PARALLEL_SEQ, PARALLEL_JOBSLOT, env
        |-- in out err          fifos: the job's stdin, stdout and stderr
        |-- status              fifo: its loop says `started PID`, then `exit STATUS`
        `-- pid                 the job's process (for kill_all)

The agent (womm_run.podagent) and runner.sh (womm_run's, the job container's PID 1) follow
this layout; runner.sh's header names the same files, and a unit test holds them together.
The womm container's first command makes the directory (prepare_script); the agent makes
what is missing again (prepare), so that either may come first.
"""

import os

POD_RUN = "/.womm-pod"

CTL = "ctl"
RUNNER = "runner"
ENV = "env"
FUNCTIONS = "functions.bash"
AGENT_LOCK = "agent.lock"
AGENT_PID = "agent.pid"
SETSID = "setsid"
STATIC_SETSID = "/bin/busybox"  # in the helper image (busybox-static)
JOBS = "jobs"
LOOPS = "loops"
NEXT = "next"
ALIVE = "alive"

JOB = "job"
FIFOS = ("in", "out", "err", "status")
PID = "pid"
JOB_FILES = (JOB, *FIFOS, PID)


def path(run, *names):
    return os.path.join(run, *names)


def job_name(slot, number):
    return f"{slot}-{number}"


def job_dir(run, name):
    return os.path.join(run, JOBS, name)


def loop_dir(run, name):
    return os.path.join(run, LOOPS, name)


def prepare(run):
    """The directory's shared parts (the agent's side): jobs/, loops/ and the ctl fifo, made if missing."""
    os.makedirs(path(run, JOBS), exist_ok=True)
    os.makedirs(path(run, LOOPS), exist_ok=True)
    ctl = path(run, CTL)
    if not os.path.exists(ctl):
        os.mkfifo(ctl, 0o666)


def prepare_script(run=POD_RUN):
    """The same, in sh, for the womm container's first command (before any agent runs). Both
    containers may run as other users: what one makes, the other must be able to use."""
    # chmod fails where the directory is not ours (an emptyDir is 0777 already): no matter. The
    # static setsid is there before ctl, which the runner waits for; a helper image without it
    # leaves the runner to the image's own setsid.
    return (f"mkdir -p {run}/{JOBS} {run}/{LOOPS} && "
            f"{{ chmod 0777 {run} {run}/{JOBS} {run}/{LOOPS} 2>/dev/null || true; }} && "
            f"{{ [ ! -x {STATIC_SETSID} ] || [ -x {run}/{SETSID} ] || cp {STATIC_SETSID} {run}/{SETSID}; }} && "
            f"{{ [ -p {run}/{CTL} ] || mkfifo -m 0666 {run}/{CTL}; }}")
