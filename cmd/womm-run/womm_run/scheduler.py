"""Jobs to the pods' slots: the Scheduler gives each job GNU parallel started on a pod's slot
to an idle PodSlot, or queues it.

An attempt lost with its pod or stream is rewound and run again first, up to the task's
retries, after which the job fails as a job (GNU parallel's exit status and --joblog show
it); when GNU parallel kills a job, the remote job is killed too. The Scheduler's lock covers
its slots and queue, and every job's attempt and pod_slot; the controller's loop
(womm_run.controller) is woken through a pipe for the jobs whose state changed.
"""

import collections
import itertools
import os
import threading

from womm.report import printable


class PodSlot:
    """One job slot of one pod: `index` (1..procs-per-pod) on the PodLink `link`."""

    __slots__ = ("link", "index", "job")

    def __init__(self, link, index):
        self.link, self.index, self.job = link, index, None

    def __repr__(self):
        return f"{self.link.pod}/{self.index}"


class Scheduler:
    """Jobs in, slots out; one lock over both."""

    def __init__(self, rundir, retries=3, log=None, show_commands=True):
        self.rundir = rundir
        self.retries = retries
        self.log = log or (lambda message: None)
        # An --async leader's messages are its pod's log, which whoever may read pods reads: no commands there.
        self.show_commands = show_commands
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
            slot.job, job.attempt, job.pod_slot = None, None, None
            job.done = True
            if not job.cancelled:
                self.rundir.answer(job.jobslot, job.pid, status)
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
            if job.pod_slot is not None:
                job.pod_slot.link.kill(job.pod_slot.index, job.attempt)

    def _lose(self, slot, job, reason, quiet=False):
        slot.job, job.attempt, job.pod_slot = None, None, None
        if job.cancelled:
            job.done = True
            self.wake(job)
            return
        job.losses.append(reason)
        job.rewind()
        if len(job.losses) > self.retries:
            job.done = True
            self.rundir.answer(job.jobslot, job.pid, 255)
            command = f": {printable(job.command[:200].decode(errors='replace'))}" if self.show_commands else ""
            self.log(f"job {job.seq} failed: lost {len(job.losses)} times ({'; '.join(dict.fromkeys(job.losses))})"
                     + command)
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
