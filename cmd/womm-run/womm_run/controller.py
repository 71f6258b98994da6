"""The controller: hands GNU parallel's jobs to the pods, and their output and status back.

GNU parallel runs each job of a pod's slot as job.sh (womm_run.localjobs), which hands it
over through a fifo; the Controller's loop takes each one over (Job.attach), gives it to the
Scheduler (womm_run.scheduler), which runs it on an idle PodSlot of a pod's link
(womm_run.podlink), and feeds each running attempt its stdin, a window at a time, as the pod
takes it. job.sh's pidfd tells the loop when GNU parallel killed a job, and the job is
killed in its pod too. Each descriptor the loop waits on has its handler.
"""

import functools
import os
import select
import sys

from womm_run import protocol
from womm_run.localjobs import Job

STDIN_CHUNK = 256 << 10
# The links' reader threads bring each job's exit, and this loop the next job: a thread that wants
# the GIL while another runs waits this long before it asks for it. Python's 5 ms held up a slot's
# next job that long now and then; 0.5 ms was faster in 8 of 9 pinned rounds, by 1-11 % (README).
SWITCH_INTERVAL = 0.0005


class Controller:
    """Serve GNU parallel's pod jobs until it exits.

    rewindable: job outputs that are regular files belong to one job each (not -u),
    so a job run again after its pod died can start its output afresh.
    """

    def __init__(self, rundir, scheduler, rewindable=True):
        self.rundir, self.scheduler, self.rewindable = rundir, scheduler, rewindable
        self.poller = select.epoll()
        self.handlers = {}  # fd -> what to do when it is readable
        self.by_pidfd = {}  # job.sh's pidfd -> Job
        self.stdin_fd = {}  # Job -> its stdin's fd, while the loop waits for more of it
        self.stopping = False
        self._watch(rundir.submit_fd, self._take_submissions)
        self._watch(scheduler.wake_r, self._pump_woken)

    def serve(self, stop_fd):
        """Until stop_fd is readable (GNU parallel exited)."""
        self._watch(stop_fd, self._stop)
        switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(min(switch_interval, SWITCH_INTERVAL))
        try:
            while not self.stopping:
                for fd, _ in self.poller.poll():
                    handler = self.handlers.get(fd)
                    if handler is not None:  # else an earlier event of this batch unwatched it
                        handler()
        finally:
            sys.setswitchinterval(switch_interval)
            self.poller.close()
            for job in self.by_pidfd.values():
                if not job.done:
                    self.scheduler.cancel(job)

    def _watch(self, fd, handler):
        self.poller.register(fd, select.EPOLLIN)
        self.handlers[fd] = handler

    def _unwatch(self, fd):
        self.poller.unregister(fd)
        del self.handlers[fd]

    def _stop(self):
        self.stopping = True

    def _take_submissions(self):
        for pid, jobslot, seq in self.rundir.read_submissions():
            self._take(pid, jobslot, seq)

    def _take(self, pid, jobslot, seq):
        holder = []  # a --tee fifo may open later: the loop then hears of it
        try:
            job = Job.attach(pid, jobslot, seq, self.rundir.path, can_rewind=self.rewindable,
                             on_stdin=lambda: holder and self.scheduler.wake(holder[0]))
        except OSError as e:
            self.scheduler.log(f"job {seq}: cannot take over its output ({e.strerror}); failing it")
            self.rundir.answer(jobslot, pid, 255)
            return
        if job is None:
            return  # job.sh is gone already
        holder.append(job)
        self.by_pidfd[job.pidfd] = job
        self._watch(job.pidfd, functools.partial(self._job_sh_ended, job))
        if job.only_with_input:
            self._when_input(job)
        else:
            self.scheduler.submit(job)

    def _when_input(self, job):
        """--pipe's wrapper runs the command only if its stdin has a byte: the job goes to a pod with
        its first byte, and one whose stdin is empty ends here, with 0, as the wrapper's would."""
        if job in self.stdin_fd:
            self._unwatch(self.stdin_fd.pop(job))
        while not (job.stdin.size or job.stdin.eof or job.cancelled):
            if not job.stdin.read_more():
                self.stdin_fd[job] = job.stdin.pollable()  # job.sh's stdin, a pipe
                self._watch(self.stdin_fd[job], functools.partial(self._when_input, job))
                return
        if job.stdin.size and not job.cancelled:
            self.scheduler.submit(job)
            return
        job.done = True
        if not job.cancelled:
            self.rundir.answer(job.jobslot, job.pid, 0)
        job.close()

    def _job_sh_ended(self, job):
        """job.sh exited: answered, or killed by GNU parallel."""
        self._unwatch(job.pidfd)
        del self.by_pidfd[job.pidfd]
        os.close(job.pidfd)
        if not job.done:
            self.scheduler.cancel(job)
            if job in self.stdin_fd and job.attempt is None and not job.done:
                self._when_input(job)  # killed while it waited for its first byte: forgotten

    def _pump_woken(self):
        for job in self.scheduler.take_woken():
            self.pump(job)

    def _more_stdin(self, job):
        self._unwatch(self.stdin_fd.pop(job))
        job.stdin.read_more()
        self.pump(job)

    def pump(self, job):
        """Give the job's running attempt its stdin while the window has room; close a finished job."""
        if job.done:
            if job in self.stdin_fd:
                self._unwatch(self.stdin_fd.pop(job))
            job.close()
            return
        with self.scheduler.lock:
            attempt, pod_slot = job.attempt, job.pod_slot
        if attempt is None or pod_slot is None or job in self.stdin_fd:
            return
        while job.sent - job.acked < protocol.WINDOW:
            if job.sent < job.stdin.size:
                data = job.stdin.chunk(job.sent, min(STDIN_CHUNK, protocol.WINDOW - (job.sent - job.acked)))
                pod_slot.link.send_in(pod_slot.index, attempt, data)
                job.sent += len(data)
            elif not job.stdin.eof:
                if not job.stdin.read_more():
                    fd = job.stdin.pollable()
                    if fd is not None:
                        self.stdin_fd[job] = fd
                        self._watch(fd, functools.partial(self._more_stdin, job))
                    return  # else it wakes the loop itself once it opens (a --tee fifo)
            else:
                if not job.eof_sent:
                    job.eof_sent = True
                    pod_slot.link.send_in(pod_slot.index, attempt, b"")
                return
