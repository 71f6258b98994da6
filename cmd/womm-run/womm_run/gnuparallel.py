"""GNU parallel itself: started with womm's job slots, served until it exits, stopped.

womm gives GNU parallel `-j FILE` (the job slots file it re-reads as pods come) and job.sh
as its PARALLEL_SHELL (womm_run.localjobs); the controller (womm_run.controller) serves the
jobs of pods' slots while it runs.
"""

import os

from womm_run.controller import Controller


def citation():
    """`womm parallel --citation`: GNU parallel's own where it has one; where it has none
    (Debian's build patches the notice out), one line saying so."""
    import subprocess

    from womm.report import say

    try:
        probe = subprocess.run(["parallel", "--citation"], stdin=subprocess.DEVNULL, capture_output=True,
                               timeout=30)
    except subprocess.TimeoutExpired:
        probe = None
    if probe is not None and b"Unknown option: citation" in probe.stdout + probe.stderr:
        say("this GNU parallel has no citation notice (its build left it out): there is nothing to promise")
        return 0
    os.execvp("parallel", ["parallel", "--citation"])


def inherited_fds():
    """The descriptors this process was given beyond stdio (a `<(...)`, a `3< file`): GNU parallel
    gets them too, as it would have from the shell. (Python's own are close-on-exec.)"""
    import fcntl

    out = []
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        try:
            if fd > 2 and not fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC:
                out.append(fd)
        except OSError:
            pass  # the listing's own fd, closed meanwhile
    return out


def start(argv, rundir, scheduler, env, local_shell, pass_fds=()):
    """Start GNU parallel (argv) with its pod slots to be served by `scheduler`."""
    import shutil
    import subprocess

    environ = dict(env)
    environ.update(rundir.environment(local_shell))
    with scheduler.lock:  # pods' threads write the file too (add_slots)
        rundir.set_jobs(rundir.local_slots + scheduler.granted)
    # If this controller is killed (even by SIGKILL), GNU parallel must not go on
    # starting jobs nobody serves: it gets SIGTERM, and stops.
    setpriv = shutil.which("setpriv")
    if setpriv:
        argv = [setpriv, "--pdeathsig", "TERM", "--", *argv]
    return subprocess.Popen(argv, env=environ, pass_fds=pass_fds)


def serve(proc, rundir, scheduler, rewindable=True):
    """Serve GNU parallel's jobs until it exits; its exit status."""
    stop = os.pidfd_open(proc.pid)
    try:
        Controller(rundir, scheduler, rewindable).serve(stop)
    finally:
        os.close(stop)
    return proc.wait()


def stop(proc):
    """Interrupted: GNU parallel kills its jobs on SIGINT (Ctrl-C sent it one already)."""
    import signal
    import subprocess

    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
