"""The controller: hands GNU parallel's jobs to the agents in the pods.

One Worker per job slot in a pod: a long-lived agent (agent.sh) reached through
one exec stream, opened once per slot when its pod is ready. A job costs a few
lines on that stream and no API request. The Scheduler gives each submitted job
to an idle worker, queues it when none is idle, runs again the jobs of a worker
whose pod died, and kills the remote job when GNU parallel kills the local one.
"""

import collections
import os
import secrets
import select
import threading

from womm_run.slots import Job


def new_token():
    return secrets.token_hex(16)


class MarkerParser:
    """Splits one output channel of an agent into job output and "\\nTOKEN STATUS\\n" ends."""

    def __init__(self, token):
        self.marker = b"\n" + token.encode() + b" "
        self.pending = b""

    def feed(self, data):
        """[("data", bytes) | ("status", int)] for the bytes received so far."""
        buf = self.pending + data if self.pending else data
        out = []
        m = self.marker
        while True:
            i = buf.find(m)
            if i < 0:
                break
            j = buf.find(b"\n", i + len(m))
            if j < 0:
                break
            if i:
                out.append(("data", buf[:i]))
            try:
                status = int(buf[i + len(m):j])
            except ValueError:
                status = 255
            out.append(("status", status))
            buf = buf[j + 1:]
        keep = self._unfinished_marker(buf)
        if keep < len(buf):
            out.append(("data", buf[: len(buf) - keep]))
        self.pending = buf[len(buf) - keep:] if keep else b""
        return out

    def _unfinished_marker(self, buf):
        """Length of the tail of buf that may be the start of a marker."""
        m = self.marker
        start = buf.rfind(m)
        if start >= 0:  # a whole marker whose status line has not ended yet
            return len(buf) - start
        pos = buf.find(b"\n", max(0, len(buf) - len(m)))
        while pos >= 0:
            if m.startswith(buf[pos:]):
                return len(buf) - pos
            pos = buf.find(b"\n", pos + 1)
        return 0


class Worker:
    """One job slot in a pod: an agent reached through a transport, an object with send(bytes),
    recv() -> (channel, bytes) or None at the end, and close(): womm.kube.ExecStream."""

    def __init__(self, name, transport, token, scheduler):
        self.name = name
        self.transport = transport
        self.token = token
        self.scheduler = scheduler
        self.job = None
        self.lost = False
        self._status = {}
        self.thread = threading.Thread(target=self._read_loop, name=f"worker {name}", daemon=True)

    def start(self):
        self.thread.start()

    def run_job(self, job):
        """Send a job to the agent (called with the scheduler's lock held)."""
        self.job = job
        self._status = {}
        lines = "".join(f"|{line}\n" for line in job.command.split("\n"))
        message = f"j {job.seq} {job.slot}\n{lines}.\n".encode("utf-8", "surrogateescape")
        try:
            self.transport.send(message)
        except OSError:
            pass  # the read loop sees the stream end and reports the worker lost

    def kill_job(self):
        try:
            self.transport.send(b"k\n")
        except OSError:
            pass

    def _read_loop(self):
        parsers = {1: MarkerParser(self.token), 2: MarkerParser(self.token)}
        try:
            while True:
                item = self.transport.recv()
                if item is None:
                    break
                channel, data = item
                parser = parsers.get(channel)
                if parser is None:
                    continue
                for kind, value in parser.feed(data):
                    if kind == "data":
                        job = self.job
                        if job is not None and not job.cancelled:
                            job.write(channel, value)
                    else:
                        self._status[channel] = value
                        if len(self._status) == 2:
                            self.scheduler.job_done(self, self._status[1])
        except Exception:  # noqa: BLE001, S110 - a broken stream is a lost worker, reported below
            pass
        finally:
            self.lost = True
            self.transport.close()
            self.scheduler.worker_lost(self)


class Scheduler:
    """Jobs in, workers out; one lock over both."""

    def __init__(self, rundir, log=None):
        self.rundir = rundir
        self.lock = threading.Lock()
        self.idle = collections.deque()
        self.queue = collections.deque()
        self.workers = set()
        self.slots = 0  # job slots GNU parallel was told about, beyond the local ones
        self.done = 0
        self.rerun = 0
        self.log = log or (lambda message: None)

    def add_worker(self, worker):
        with self.lock:
            self.workers.add(worker)
            # A replacement pod may be ready before its predecessor's streams end: never
            # more slots than the task has fifos for.
            live = min(len(self.workers), self.rundir.max_slots - self.rundir.local_slots)
            if live > self.slots:
                # Only grow: while a pod is replaced its jobs wait in the queue.
                self.slots = live
                self.rundir.set_jobs(self.rundir.local_slots + self.slots)
            self._give(worker)

    def submit(self, job):
        with self.lock:
            if self.idle:
                self.idle.popleft().run_job(job)
            else:
                self.queue.append(job)

    def job_done(self, worker, status):
        with self.lock:
            job, worker.job = worker.job, None
            if job is not None:
                job.done = True
                if not job.cancelled:
                    self.rundir.answer(job.slot, job.pid, status)
                    self.done += 1
                job.close_outputs()
            if not worker.lost:
                self._give(worker)

    def worker_lost(self, worker):
        with self.lock:
            self.workers.discard(worker)
            try:
                self.idle.remove(worker)
            except ValueError:
                pass
            job, worker.job = worker.job, None
            if job is not None and not job.done and not job.cancelled:
                # Its pod died under it: run it again first, on the next free worker.
                job.rewind()
                self.rerun += 1
                self.log(f"job {job.seq} lost with {worker.name}; running it again")
                if self.idle:
                    self.idle.popleft().run_job(job)
                else:
                    self.queue.appendleft(job)

    def cancel(self, job):
        """GNU parallel killed the job (--halt, --timeout, Ctrl-C): stop it in the pod too."""
        with self.lock:
            if job.done or job.cancelled:
                return
            job.cancelled = True
            try:
                self.queue.remove(job)
                job.close_outputs()
                return
            except ValueError:
                pass
            for worker in self.workers:
                if worker.job is job:
                    worker.kill_job()

    def _give(self, worker):
        if self.queue:
            worker.run_job(self.queue.popleft())
        else:
            self.idle.append(worker)


def serve(rundir, scheduler, stop_fd, rewindable=True):
    """Take GNU parallel's jobs from job.sh until stop_fd is readable (GNU parallel exited).

    rewindable: job outputs that are regular files belong to one job each (not -u),
    so a job run again after its pod died can start its output afresh.
    """
    poller = select.epoll()
    poller.register(rundir.submit_fd, select.EPOLLIN)
    poller.register(stop_fd, select.EPOLLIN)
    jobs = {}  # pidfd -> Job
    stopping = False
    while not stopping:
        for fd, _ in poller.poll():
            if fd == stop_fd:
                stopping = True
            elif fd == rundir.submit_fd:
                for pid, slot, seq in rundir.read_submissions():
                    try:
                        job = Job.attach(pid, slot, seq, can_rewind=rewindable)
                    except OSError as e:
                        scheduler.log(f"job {seq}: cannot write its output ({e.strerror}); failing it")
                        rundir.answer(slot, pid, 255)
                        continue
                    if job is None:
                        continue  # job.sh is gone already
                    jobs[job.pidfd] = job
                    poller.register(job.pidfd, select.EPOLLIN)
                    scheduler.submit(job)
            else:
                # job.sh exited: answered, or killed by GNU parallel.
                job = jobs.pop(fd)
                poller.unregister(fd)
                if not job.done:
                    scheduler.cancel(job)
                os.close(fd)
    poller.close()
    for job in jobs.values():
        if not job.done:
            scheduler.cancel(job)


def start_parallel(argv, rundir, scheduler, env, local_shell):
    """Start GNU parallel (argv) with its pod slots to be served by `scheduler`."""
    import shutil
    import subprocess

    environ = dict(env)
    environ.update(rundir.environment(local_shell))
    rundir.set_jobs(rundir.local_slots + scheduler.slots)
    # If this controller is killed (even by SIGKILL), GNU parallel must not go on
    # starting jobs nobody serves: it gets SIGTERM, and stops.
    setpriv = shutil.which("setpriv")
    if setpriv:
        argv = [setpriv, "--pdeathsig", "TERM", "--", *argv]
    return subprocess.Popen(argv, env=environ)


def serve_parallel(proc, rundir, scheduler):
    """Serve GNU parallel's jobs until it exits; its exit status."""
    stop = os.pidfd_open(proc.pid)
    try:
        serve(rundir, scheduler, stop, rewindable="-u" not in proc.args and "--ungroup" not in proc.args)
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
