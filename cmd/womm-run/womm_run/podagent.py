"""A pod's agent: womm's end of the pod's one exec stream, in its womm container.

    controller ==frames (womm_run.protocol)==> agent --RUN/ctl, loops/*/, jobs/*/ fifos--> runner.sh
                 one exec stream per pod                                 (PID 1 of the job container)

The controller runs `python3 -m womm_run.podagent RUN SLOTS` in the pod's womm container through the
exec API; RUN is an emptyDir both containers mount (its layout: womm.podrun). The agent says
HELLO first, then turns JOB frames into job directories, whose names it gives to the runner's
loop for the job's slot, and each job's fifos back into OUT, ERR and EXIT frames, binary-safe,
reading every job a slice at a time so that no slot starves another. A job's stdin comes in IN
frames and is acknowledged as the job takes it (ACK): the controller never has more than a window
of a job's stdin in flight.

When the stream ends (the controller went away, or its connection broke), or when a new
agent takes over the pod, every job of this agent is killed: a job never outlives the stream
that runs it. The controller runs it again elsewhere, as for a pod that died.

With a syncback share (--push), a job's EXIT waits until a push of the pod's changes that
began after the job ended has reached the share server: a job the controller counts as done
has its results safe from what happens to the pod next. Jobs that end during a push share
the next one.

Standard library only, and nothing heavy: it starts once per pod.
"""

import errno
import fcntl
import os
import selectors
import signal
import sys
import time

from womm import podrun
from womm_run import protocol

CHUNK = 65536
OUTPUT_HIGH = 1 << 20  # bytes queued for the controller above which no job is read
SILENCE_LIMIT = 300  # seconds without a frame (the controller pings every 30 s): it is gone
# --early: started before the pod is said to be ready, the agent waits this long for the job
# container's runner, then ends with NOT_YET (its image may still be pulling): the controller
# attaches it again once the pod is ready.
EARLY_WAIT = 5
NOT_YET = 75


def sh_quote(data):
    return b"'" + data.replace(b"'", b"'\\''") + b"'"


class Job:
    """One attempt of a job in this pod: its directory (womm.podrun) and this end of its fifos."""

    def __init__(self, agent, slot, number, spec):
        self.slot, self.number = slot, number
        self.name = podrun.job_name(slot, number)
        self.dir = podrun.job_dir(agent.run, self.name)
        self.pid = None
        self.cancelled = False
        self.pending_in = bytearray()
        self.in_eof = False
        self.in_grown = False
        self.status_buf = b""
        self.paths = {name: f"{self.dir}/{name}" for name in podrun.JOB_FILES}
        os.mkdir(self.dir, 0o777)
        for name in podrun.FIFOS:
            os.mkfifo(self.paths[name], 0o666)
        script = [b"cmd=%s\nPARALLEL_SEQ=%d PARALLEL_JOBSLOT=%d\nexport PARALLEL_SEQ PARALLEL_JOBSLOT\n"
                  % (sh_quote(spec.command), spec.seq, spec.jobslot)]
        for name, value in spec.env:
            if name.replace(b"_", b"a").isalnum() and not name[:1].isdigit():
                script.append(b"%s=%s; export %s\n" % (name, sh_quote(value), name))
        fd = os.open(self.paths[podrun.JOB], os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
        try:
            data = memoryview(b"".join(script))
            while data:
                data = data[os.write(fd, data):]
        finally:
            os.close(fd)
        # The job's fifos O_RDWR: the opens never block, and reads see no end while the runner has not
        # opened its side yet. The status fifo read-only from the start: a reader that has seen no
        # writer yet gets no event (Linux counts the writers that came), so its end means the loop
        # that opened it is gone, whenever it died.
        flags = os.O_NONBLOCK | os.O_CLOEXEC
        self.fds = {name: os.open(self.paths[name], flags | (os.O_RDONLY if name == "status" else os.O_RDWR))
                    for name in podrun.FIFOS}

    def close(self):
        _remove(self)


class Loop:
    """A slot's loop in runner.sh (womm.podrun's loops/NAME/): it runs the jobs whose names it is
    given, one after the other. Only a loop whose last job ended with "exit" is given another: one
    that died, or whose job was given up on, is removed, and the slot's next job gets a new loop."""

    def __init__(self, agent, slot, name):
        self.slot, self.name = slot, name
        self.dir = podrun.loop_dir(agent.run, name)
        self.paths = {name: f"{self.dir}/{name}" for name in (podrun.NEXT, podrun.ALIVE)}
        self.job = None  # the job it was given last, until that job ended
        self.fds = {}
        try:
            os.mkdir(self.dir, 0o777)
            for path in self.paths.values():
                os.mkfifo(path, 0o666)
            # `next` read-write: the loop's open never waits, and it sees the end once this is closed.
            # `alive` read-only: an event only once the loop, its one writer, came and went.
            self.fds[podrun.NEXT] = os.open(self.paths[podrun.NEXT], os.O_RDWR | os.O_CLOEXEC)
            self.fds[podrun.ALIVE] = os.open(self.paths[podrun.ALIVE], os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            self.close()
            raise

    def give(self, job):
        os.write(self.fds[podrun.NEXT], job.name.encode() + b"\n")
        self.job = job

    def close(self):
        # The paths first: a loop not started yet then finds nothing to open, rather than an open
        # that waits for ever.
        _remove(self)


def _remove(fifos):
    """Close a job's or a loop's fifos and remove its directory."""
    for path in fifos.paths.values():
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
    try:
        os.rmdir(fifos.dir)
    except OSError:
        pass
    for fd in fifos.fds.values():
        os.close(fd)
    fifos.fds = {}


class Agent:
    def __init__(self, run, slots, stdin=0, stdout=1, push=None, early=False):
        self.run = run
        self.early = early
        self.slots = slots
        self.push = ["womm-share-push", *push] if push else None
        self.push_proc = None
        self.push_waiting = []  # EXIT frames of jobs that ended since the running push began
        self.push_sent = []  # those the running push covers
        self.stdin, self.stdout = stdin, stdout
        self.sel = selectors.DefaultSelector()
        self.watched = set()  # the fds self.sel selects
        self.jobs = {}  # slot -> Job
        self.loops = {}  # slot -> its Loop
        self.out = bytearray()  # frames waiting for the stream
        self.decoder = protocol.Decoder()
        self.last_heard = time.monotonic()
        self.reading_jobs = True
        self.ended = False
        self.on_frame = {protocol.JOB: self._on_job, protocol.IN: self._on_in, protocol.KILL: self._on_kill,
                         protocol.ENV: self._on_env, protocol.PING: self._on_ping}

    # ---------------------------------------------------------------- start and end

    def take_over(self):
        """Become the pod's only agent: a previous one (its stream broken) is stopped first."""
        self.lock = os.open(podrun.path(self.run, podrun.AGENT_LOCK), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        deadline = time.monotonic() + 10
        while True:
            try:
                fcntl.flock(self.lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                old = _read_int(podrun.path(self.run, podrun.AGENT_PID))
                if old:
                    try:
                        os.kill(old, signal.SIGKILL if time.monotonic() > deadline else signal.SIGTERM)
                    except ProcessLookupError:
                        pass
                time.sleep(0.1)
        # Written in place (womm.store's tempfile and pathlib would slow every pod's start): only the
        # next agent reads it, once it is blocked by the lock held from here on.
        fd = os.open(podrun.path(self.run, podrun.AGENT_PID), os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        os.write(fd, f"{os.getpid()}\n".encode())
        os.close(fd)
        podrun.prepare(self.run)
        self.ctl = os.open(podrun.path(self.run, podrun.CTL), os.O_RDWR | os.O_CLOEXEC)

    def runner_info(self, wait=30):
        """What runner.sh found in the job container (its shell, bash, setsid); None if it said nothing
        within `wait` seconds."""
        path = podrun.path(self.run, podrun.RUNNER)
        deadline = time.monotonic() + wait
        while True:
            try:
                with open(path) as f:
                    lines = f.read().splitlines()
                if "end" in lines:
                    return dict(line.split("=", 1) for line in lines if "=" in line)
            except FileNotFoundError:
                pass
            if time.monotonic() > deadline:
                return None
            time.sleep(0.05)

    def serve(self):
        if self.early and self.runner_info(EARLY_WAIT) is None:
            sys.exit(NOT_YET)  # before taking anything over: no agent of this pod is stopped for nothing
        self.take_over()
        for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
            signal.signal(signum, self._on_signal)
        os.set_blocking(self.stdout, False)
        protocol.grow_pipe(self.stdin)
        runner = self.runner_info() or {}
        self.runner = self._runner_generation()
        self.send(protocol.HELLO, payload=protocol.hello(runner.get("shell", ""), runner.get("bash", ""),
                                                         runner.get("setsid", ""), os.getpid()))
        self._watch(self.stdin, selectors.EVENT_READ, ("stdin", None))
        on_event = {"stdin": self._from_controller, "stdout": self._flush, "push": self._push_done,
                    "in": self._write_in, "status": self._status, "out": self._read_output, "err": self._read_output,
                    podrun.ALIVE: self._loop_event}
        checked = time.monotonic()
        try:
            while not self.ended:
                self._flush()
                events = self.sel.select(1.0)
                now = time.monotonic()
                if now - self.last_heard >= SILENCE_LIMIT:
                    break  # the controller has not pinged for minutes: its stream is dead
                if now - checked >= 1.0:  # once a second, however busy the other slots keep it
                    checked = now
                    self._check_runner()
                for key, _ in events:
                    what, job = key.data  # job: a Job, or a Loop for its alive fifo
                    if job is None:
                        on_event[what]()
                    elif job.fds.get(what) == key.fd:  # else an earlier event of this batch ended it
                        on_event[what](job, what)
        finally:
            self.stop_all()

    def _runner_generation(self):
        try:
            st = os.stat(podrun.path(self.run, podrun.RUNNER))
            return st.st_ino, st.st_mtime_ns
        except FileNotFoundError:
            return None

    def _check_runner(self):
        """A job container that restarted lost the jobs it had not started yet: they run again. Its
        loops are gone too, even one that died before it opened `alive` (no end to see there)."""
        now = self._runner_generation()
        if now == self.runner:
            return
        self.runner = now
        for job in list(self.jobs.values()):
            if job.pid is None:
                self._end(job, protocol.LOST, protocol.text("its job container restarted"))
        for loop in list(self.loops.values()):
            self._retire(loop)

    def _on_signal(self, signum, frame):
        self.ended = True

    def stop_all(self):
        """Kill every job of this agent (the stream that runs them is gone)."""
        for job in list(self.jobs.values()):
            if job.pid:
                self._ctl(f"kill {job.pid}")
            job.close()
        self.jobs.clear()
        for loop in list(self.loops.values()):
            self._retire(loop)

    # ---------------------------------------------------------------- the controller's frames

    def _from_controller(self):
        try:
            data = os.read(self.stdin, protocol.WINDOW)
        except OSError:
            data = b""
        if not data:
            self.ended = True
            return
        self.last_heard = time.monotonic()
        for kind, slot, number, payload in self.decoder.feed(data):
            handler = self.on_frame.get(kind)
            if handler:  # else a frame only the controller receives: ignored
                handler(slot, number, payload)

    def _on_job(self, slot, number, payload):
        self._start(slot, number, protocol.read_job(payload))

    def _on_in(self, slot, number, payload):
        job = self._job(slot, number)
        if job:
            if payload:
                if not job.in_grown and "in" in job.fds:
                    protocol.grow_pipe(job.fds["in"])
                    job.in_grown = True
                job.pending_in += payload
            else:
                job.in_eof = True
            self._want_write(job)

    def _on_kill(self, slot, number, payload):
        job = self._job(slot, number)
        if job:
            job.cancelled = True
            if job.pid:
                self._ctl(f"kill {job.pid}")

    def _on_env(self, slot, number, payload):
        """The scripts of womm_run.jobenv: `env` for runner.sh to source, and the bash functions."""
        from womm import store  # here: only a task with --env or exported functions sends ENV

        sh, bash = protocol.read_env(payload)
        if bash:
            functions = podrun.path(self.run, podrun.FUNCTIONS)
            store.write_bytes(functions, bash, 0o644)
            sh += b"BASH_ENV=%s; export BASH_ENV\n" % functions.encode()
        store.write_bytes(podrun.path(self.run, podrun.ENV), sh, 0o644)

    def _on_ping(self, slot, number, payload):
        self.send(protocol.PONG)

    def _job(self, slot, number):
        job = self.jobs.get(slot)
        return job if job is not None and job.number == number else None

    def _start(self, slot, number, spec):
        old = self.jobs.pop(slot, None)
        if old is not None:  # the controller gave up on it: it must not write into its successor
            if old.pid:
                self._ctl(f"kill {old.pid}")
            self._unregister(old)
            old.close()
            loop = self.loops.get(slot)
            if loop is not None and loop.job is old:
                self._retire(loop)  # busy with it until it ends, which this agent no longer hears
        job = None
        try:
            job = Job(self, slot, number, spec)
            loop = self._loop(slot)
        except OSError as e:
            if job is not None:
                job.close()
            self.send(protocol.LOST, slot, number, protocol.text(f"cannot prepare the job: {e.strerror}"))
            return
        self.jobs[slot] = job
        self._watch(job.fds["status"], selectors.EVENT_READ, ("status", job))
        for name in ("out", "err"):
            self._watch(job.fds[name], selectors.EVENT_READ if self.reading_jobs else 0, (name, job))
        loop.give(job)

    def _loop(self, slot):
        """The slot's loop, started now if it has none."""
        loop = self.loops.get(slot)
        if loop is None:
            # Unique in the run directory, which outlives a womm container's restart (and its agent
            # may get the same pid again).
            loop = Loop(self, slot, f"{os.getpid()}-{time.time_ns()}-{slot}")
            try:
                self._ctl(f"loop {loop.name}")
            except OSError:
                loop.close()
                raise
            self.loops[slot] = loop
            self._watch(loop.fds[podrun.ALIVE], selectors.EVENT_READ, (podrun.ALIVE, loop))
        return loop

    def _loop_event(self, loop, what):
        try:
            if os.read(loop.fds[podrun.ALIVE], 256):
                return  # nothing writes there but a job playing with its pod: no matter
        except BlockingIOError:
            return
        # The loop died (a job killed it, say). What its job's status fifo holds first: the job may have
        # ended before its loop did. A job it was given and had not started never will be.
        if loop.job is not None and "status" in loop.job.fds:
            self._status(loop.job, "status")
        if loop.job is not None:
            self._end(loop.job, protocol.LOST, protocol.text("the runner's loop for its slot died"))
        self._retire(loop)

    def _retire(self, loop):
        """Remove the loop: it ends when it next reads `next` (or opens what was its job's)."""
        if loop.fds:
            self._watch(loop.fds[podrun.ALIVE], 0)
        loop.close()
        if self.loops.get(loop.slot) is loop:
            del self.loops[loop.slot]

    def _ctl(self, line):
        os.write(self.ctl, line.encode() + b"\n")

    # ---------------------------------------------------------------- the jobs' fifos

    def _read_output(self, job, what):
        try:
            data = os.read(job.fds[what], CHUNK)
        except BlockingIOError:
            return
        if data:
            self.send(protocol.OUT if what == "out" else protocol.ERR, job.slot, job.number, data)

    def _status(self, job, what):
        try:
            data = os.read(job.fds["status"], 256)
        except BlockingIOError:
            return
        if not data:
            # Its loop died before it said how the job ended: killed, or its container went away.
            self._end(job, protocol.LOST,
                      protocol.text("the runner's loop for its slot or its job container stopped "
                                    "(killed, restarted, or out of memory)"))
            return
        job.status_buf += data
        while b"\n" in job.status_buf:
            line, job.status_buf = job.status_buf.split(b"\n", 1)
            word, _, value = line.partition(b" ")
            if word == b"started" and value.isdigit():
                job.pid = int(value)
                if job.cancelled:
                    self._ctl(f"kill {job.pid}")
                self._want_write(job)
            elif word == b"exit":
                self._drain(job)
                status = protocol.exit_status(protocol.read_exit(value))
                if self.push:
                    self._end(job, None, None)
                    self.push_waiting.append((job.slot, job.number, status))
                    self._start_push()
                else:
                    self._end(job, protocol.EXIT, status)
                return

    def _drain(self, job):
        """What the job wrote before it ended is in its fifos: all of it goes before EXIT."""
        for what in ("out", "err"):
            while True:
                try:
                    data = os.read(job.fds[what], CHUNK)
                except BlockingIOError:
                    break
                if not data:
                    break
                self.send(protocol.OUT if what == "out" else protocol.ERR, job.slot, job.number, data)

    def _end(self, job, kind, payload):
        self._unregister(job)
        job.close()
        if self.jobs.get(job.slot) is job:
            del self.jobs[job.slot]
        loop = self.loops.get(job.slot)
        if loop is not None and loop.job is job:
            loop.job = None
            if kind == protocol.LOST:
                self._retire(loop)  # it died, or has not run the job: it gets no other
        if kind is not None:
            self.send(kind, job.slot, job.number, payload)

    # ---------------------------------------------------------------- syncback: results out as jobs end

    def _start_push(self):
        if self.push_proc is not None or not self.push_waiting:
            return
        import subprocess

        self.push_sent, self.push_waiting = self.push_waiting, []
        self.push_proc = subprocess.Popen(self.push, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                          stderr=subprocess.PIPE)
        self.push_err = b""
        self._watch(self.push_proc.stderr.fileno(), selectors.EVENT_READ, ("push", None))

    def _push_done(self):
        data = os.read(self.push_proc.stderr.fileno(), CHUNK)
        if data:
            self.push_err += data[-4096:]
            return
        self._watch(self.push_proc.stderr.fileno(), 0)
        self.push_proc.stderr.close()
        status = self.push_proc.wait()
        for slot, number, value in self.push_sent:
            if status == 0:
                self.send(protocol.EXIT, slot, number, value)
            else:
                # The job ran, but what it made did not reach the share server: it ran for nothing.
                why = (self.push_err.decode(errors="replace").strip().splitlines() or [f"exit {status}"])[-1]
                self.send(protocol.LOST, slot, number, protocol.text(f"its results could not be sent back: {why}"))
        self.push_proc, self.push_sent = None, []
        self._start_push()

    def _unregister(self, job):
        for fd in job.fds.values():
            self._watch(fd, 0)

    def _watch(self, fd, events, data=None):
        """Select fd for events (0: not at all). Called a dozen times per job: the set answers what
        asking the selector would answer with an exception at each miss."""
        if events and fd not in self.watched:
            self.sel.register(fd, events, data)
            self.watched.add(fd)
        elif not events and fd in self.watched:
            self.sel.unregister(fd)
            self.watched.discard(fd)

    def _want_write(self, job):
        """Watch the job's stdin fifo for room while there is input to give it (once it started)."""
        fd = job.fds.get("in")
        if fd is not None and job.pid is not None:
            wants = bool(job.pending_in) or job.in_eof
            self._watch(fd, selectors.EVENT_WRITE if wants else 0, ("in", job))

    def _write_in(self, job, what="in"):
        fd = job.fds["in"]
        written = 0
        while job.pending_in:
            try:
                with memoryview(job.pending_in) as pending:
                    n = os.write(fd, pending[:protocol.WINDOW])
            except BlockingIOError:
                break
            except OSError as e:
                if e.errno != errno.EPIPE:
                    raise
                job.pending_in.clear()
                break
            written += n
            del job.pending_in[:n]
        if written:
            self.send(protocol.ACK, job.slot, job.number, protocol.ack(written))
        if not job.pending_in and job.in_eof:
            # The end of its stdin: the job reads EOF once this, its only writer, is closed.
            self._watch(fd, 0)
            os.close(fd)
            del job.fds["in"]
            return
        self._want_write(job)

    # ---------------------------------------------------------------- the stream to the controller

    def send(self, kind, slot=0, number=0, payload=b""):
        """Queue a frame: the loop writes what its events queued in one go (one message for the
        jobs that ended together, a job's last output with its EXIT)."""
        self.out += protocol.encode(kind, slot, number, payload)
        if len(self.out) >= OUTPUT_HIGH:
            self._flush()

    def _flush(self):
        while self.out:
            try:
                n = os.write(self.stdout, self.out[:CHUNK])
            except BlockingIOError:
                break
            except OSError:
                self.ended = True  # the stream is gone
                self.out.clear()
                return
            del self.out[:n]
        self._watch(self.stdout, selectors.EVENT_WRITE if self.out else 0, ("stdout", None))
        # Back-pressure: while the stream is slow, the jobs wait on their fifos.
        reading = len(self.out) < OUTPUT_HIGH
        if reading != self.reading_jobs:
            self.reading_jobs = reading
            for job in self.jobs.values():
                for name in ("out", "err"):
                    self._watch(job.fds[name], selectors.EVENT_READ if reading else 0, (name, job))


def _read_int(path):
    try:
        with open(path) as f:
            return int(f.read().strip() or 0)
    except (OSError, ValueError):
        return 0


def main(argv):
    """RUN SLOTS [--push SERVER SHARE TASK DIR] [--early], as the controller gives them (no argparse: it
    would add a fifth to the agent's start)."""
    early = argv[-1:] == ["--early"]
    argv = argv[:-1] if early else argv
    if len(argv) not in (2, 7) or not argv[1].isdigit() or (len(argv) == 7 and argv[2] != "--push"):
        sys.exit("usage: python3 -m womm_run.podagent RUN SLOTS [--push SERVER SHARE TASK DIR] [--early]")
    Agent(argv[0], int(argv[1]), push=argv[3:] or None, early=early).serve()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
