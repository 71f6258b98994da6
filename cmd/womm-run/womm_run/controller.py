"""The controller: hands GNU parallel's jobs to the pods' agents, and their output back.

Jobs come from job.sh (womm_run.slots); each pod is a PodLink (womm_run.podlink) with its
job slots. The Scheduler gives each job to an idle slot, or queues it; an attempt lost with
its pod or stream is rewound and run again first, up to the task's retries, after which the
job fails as a job (GNU parallel's exit status and --joblog show it); when GNU parallel
kills a job, the remote job is killed too. serve() is the loop that watches the job.sh
processes and feeds each running attempt its stdin, a window at a time.
"""

import collections
import itertools
import os
import select
import threading

from womm_run.slots import Job

STDIN_WINDOW = 1 << 20  # stdin bytes of one attempt in flight, not yet taken by the job
STDIN_CHUNK = 256 << 10


class Slot:
    """One job slot of one pod."""

    __slots__ = ("link", "index", "job")

    def __init__(self, link, index):
        self.link, self.index, self.job = link, index, None

    def __repr__(self):
        return f"{self.link.pod}/{self.index}"


class Scheduler:
    """Jobs in, slots out; one lock over both."""

    def __init__(self, rundir, retries=3, log=None):
        self.rundir = rundir
        self.retries = retries
        self.log = log or (lambda message: None)
        self.lock = threading.Lock()
        self.idle = collections.deque()
        self.queue = collections.deque()
        self.live = set()  # every slot of a connected pod
        self.granted = 0  # job slots GNU parallel was told about, beyond the local ones
        self.done = 0
        self.rerun = 0
        self._numbers = itertools.count(1)
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._woken = collections.deque()
        self.some_live = threading.Event()  # a pod's slots came, once

    # ---------------------------------------------------------------- slots come and go

    def add_slots(self, slots):
        with self.lock:
            self.live.update(slots)
            # A replacement pod may be ready before its predecessor's streams end: never
            # more slots than the task has fifos for. Only grow: a lost pod's jobs wait.
            live = min(len(self.live), self.rundir.max_slots - self.rundir.local_slots)
            if live > self.granted:
                self.granted = live
                self.rundir.set_jobs(self.rundir.local_slots + self.granted)
            for slot in slots:
                self._give(slot)
            if self.live:
                self.some_live.set()

    def grant_all(self):
        """Tell GNU parallel of every slot before the pods are there (its jobs wait in the queue),
        for the options that divide their work by the slots at the start."""
        with self.lock:
            self.granted = self.rundir.max_slots - self.rundir.local_slots

    def remove_slots(self, slots, reason, quiet=False):
        """A pod's stream ended: its slots go, and their jobs are lost with them."""
        with self.lock:
            for slot in slots:
                self.live.discard(slot)
                try:
                    self.idle.remove(slot)
                except ValueError:
                    pass
                if slot.job is not None:
                    self._lose(slot, slot.job, reason, quiet)

    # ---------------------------------------------------------------- jobs come and go

    def submit(self, job):
        with self.lock:
            if self.idle:
                self._run(self.idle.popleft(), job)
            else:
                self.queue.append(job)

    def finished(self, slot, number, status):
        """An attempt ended with an exit status (the agent's EXIT)."""
        with self.lock:
            job = slot.job
            if job is None or job.attempt != number:
                return
            slot.job, job.attempt, job.where = None, None, None
            job.done = True
            if not job.cancelled:
                self.rundir.answer(job.slot, job.pid, status)
                self.done += 1
            self.wake(job)  # the serve loop closes what it holds of the job
            if slot in self.live:
                self._give(slot)

    def lost(self, slot, number, reason):
        """An attempt vanished (the agent's LOST: its job container stopped)."""
        with self.lock:
            job = slot.job
            if job is None or job.attempt != number:
                return
            self._lose(slot, job, reason)
            if slot in self.live:
                self._give(slot)

    def cancel(self, job):
        """GNU parallel killed the job (--halt, --timeout, Ctrl-C): stop it in the pod too."""
        with self.lock:
            if job.done or job.cancelled:
                return
            job.cancelled = True
            try:
                self.queue.remove(job)
                job.done = True
                self.wake(job)
                return
            except ValueError:
                pass
            if job.where is not None:
                job.where.link.kill(job.where.index, job.attempt)

    def _lose(self, slot, job, reason, quiet=False):
        slot.job, job.attempt, job.where = None, None, None
        if job.cancelled:
            job.done = True
            self.wake(job)
            return
        job.losses.append(reason)
        job.rewind()
        if len(job.losses) > self.retries:
            job.done = True
            self.rundir.answer(job.slot, job.pid, 255)
            self.log(f"job {job.seq} failed: lost {len(job.losses)} times ({'; '.join(dict.fromkeys(job.losses))}): "
                     f"{job.command[:200].decode(errors='replace')}")
            self.wake(job)
            return
        self.rerun += 1
        if not quiet:
            self.log(f"job {job.seq} lost with {slot}: {reason}; running it again")
        if self.idle:
            self._run(self.idle.popleft(), job)
        else:
            self.queue.appendleft(job)  # it runs again first

    def _give(self, slot):
        if self.queue:
            self._run(slot, self.queue.popleft())
        else:
            self.idle.append(slot)

    def _run(self, slot, job):
        slot.job = job
        job.new_attempt(next(self._numbers), slot)
        slot.link.start(slot.index, job)
        self.wake(job)  # the serve loop gives the attempt its stdin

    # ---------------------------------------------------------------- the serve loop's side

    def wake(self, job):
        self._woken.append(job)
        try:
            os.write(self.wake_w, b"!")
        except BlockingIOError:
            pass  # the pipe is full: the loop is awake already

    def take_woken(self):
        try:
            while os.read(self.wake_r, 4096):
                pass
        except BlockingIOError:
            pass
        out = []
        while self._woken:
            out.append(self._woken.popleft())
        return out

    def acked(self, slot, number, count):
        """The attempt took `count` more bytes of its stdin: the window moves on."""
        job = slot.job
        if job is not None and job.attempt == number:
            job.acked += count
            self.wake(job)


def serve(rundir, scheduler, stop_fd, rewindable=True):
    """Take GNU parallel's jobs from job.sh until stop_fd is readable (GNU parallel exited).

    rewindable: job outputs that are regular files belong to one job each (not -u),
    so a job run again after its pod died can start its output afresh.
    """
    poller = select.epoll()
    for fd in (rundir.submit_fd, stop_fd, scheduler.wake_r):
        poller.register(fd, select.EPOLLIN)
    by_pidfd = {}  # job.sh's pidfd -> Job
    by_stdin = {}  # a job's stdin, while the loop waits for more of it -> Job

    def unwatch(job):
        for fd, j in list(by_stdin.items()):
            if j is job:
                poller.unregister(fd)
                del by_stdin[fd]

    def pump(job):
        """Give the job's running attempt its stdin while the window has room; close a finished job."""
        if job.done:
            unwatch(job)
            job.close()
            return
        with scheduler.lock:
            attempt, where = job.attempt, job.where
        if attempt is None or where is None or job in by_stdin.values():
            return
        while job.sent - job.acked < STDIN_WINDOW:
            if job.sent < job.stdin.size:
                data = job.stdin.chunk(job.sent, min(STDIN_CHUNK, STDIN_WINDOW - (job.sent - job.acked)))
                where.link.send_in(where.index, attempt, data)
                job.sent += len(data)
            elif not job.stdin.eof:
                if not job.stdin.read_more():
                    fd = job.stdin.pollable()
                    if fd is not None:
                        poller.register(fd, select.EPOLLIN)
                        by_stdin[fd] = job
                    return  # else it wakes the loop itself once it opens (a --tee fifo)
            else:
                if not job.eof_sent:
                    job.eof_sent = True
                    where.link.send_in(where.index, attempt, b"")
                return

    stopping = False
    while not stopping:
        for fd, _ in poller.poll():
            if fd == stop_fd:
                stopping = True
            elif fd == rundir.submit_fd:
                for pid, slot, seq in rundir.read_submissions():
                    holder = []  # a --tee fifo may open later: the loop then hears of it
                    try:
                        job = Job.attach(pid, slot, seq, rundir.path, can_rewind=rewindable,
                                         on_stdin=lambda h=holder: h and scheduler.wake(h[0]))
                    except OSError as e:
                        scheduler.log(f"job {seq}: cannot take over its output ({e.strerror}); failing it")
                        rundir.answer(slot, pid, 255)
                        continue
                    if job is None:
                        continue  # job.sh is gone already
                    holder.append(job)
                    by_pidfd[job.pidfd] = job
                    poller.register(job.pidfd, select.EPOLLIN)
                    scheduler.submit(job)
            elif fd == scheduler.wake_r:
                for job in scheduler.take_woken():
                    pump(job)
            elif fd in by_stdin:
                job = by_stdin.pop(fd)
                poller.unregister(fd)
                job.stdin.read_more()
                pump(job)
            elif fd in by_pidfd:
                # job.sh exited: answered, or killed by GNU parallel.
                job = by_pidfd.pop(fd)
                poller.unregister(fd)
                os.close(fd)
                if not job.done:
                    scheduler.cancel(job)
    poller.close()
    for job in by_pidfd.values():
        if not job.done:
            scheduler.cancel(job)


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


def start_parallel(argv, rundir, scheduler, env, local_shell, pass_fds=()):
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


def serve_parallel(proc, rundir, scheduler, rewindable=True):
    """Serve GNU parallel's jobs until it exits; its exit status."""
    stop = os.pidfd_open(proc.pid)
    try:
        serve(rundir, scheduler, stop, rewindable=rewindable)
    finally:
        os.close(stop)
    return proc.wait()


def stop_parallel(proc):
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
