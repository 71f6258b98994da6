"""The local jobs: what GNU parallel's jobs (job.sh) and the controller share on this machine.

GNU parallel runs each job as `job.sh -c COMMAND` (womm sets PARALLEL_SHELL).
job.sh writes "PID SLOT SEQ" into the run directory's `submit` fifo and waits
on its slot's fifo for "PID STATUS". The controller reads the command from
/proc/PID/cmdline and the job's stdin from /proc/PID/fd/6 (what --pipe gives it,
else an empty pipe), and writes the job's output straight into the job's own
stdout and stderr (job.sh keeps them on fds 8 and 9), so GNU parallel sees exactly what a
local job would have printed: its --group, -k, --tag, --results and --joblog
work unchanged. A pidfd tells the controller when GNU parallel killed a job.

Nothing here starts a process per job, nothing here talks to Kubernetes, and the
controller holds no file per slot: only the few of each running job.
"""

import bisect
import errno
import os
import stat
import threading
import time
from importlib import resources

from womm import home
from womm_run import protocol

JOB_SCRIPT = "job.sh"


class RunDir:
    """~/.womm/run/<task>/: the job script, the fifos and the job slots file."""

    def __init__(self, task_id, max_slots, local_slots):
        self.path = home.run_dir(task_id)
        self.path.mkdir(parents=True, exist_ok=True)
        self.max_slots = max_slots
        self.local_slots = local_slots
        self.job_script = self.path / JOB_SCRIPT
        self.job_script.write_bytes(resources.files("womm_run").joinpath(JOB_SCRIPT).read_bytes())
        self.job_script.chmod(0o755)
        self.jobs_file = self.path / "jobs"
        self._jobs_mtime = 0
        self._jobs_lock = threading.Lock()
        self.submit_path = self.path / "submit"
        _mkfifo(self.submit_path)
        # O_RDWR: opening never blocks, and the fifo never reports EOF.
        self.submit_fd = os.open(self.submit_path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        for slot in range(local_slots + 1, max_slots + 1):
            _mkfifo(self.path / f"slot.{slot}")
        self._submit_buf = b""

    def set_jobs(self, n):
        """Tell GNU parallel how many job slots it has now (it re-reads this file).

        GNU parallel re-reads the file when its mtime, in whole seconds, grew since
        it last looked: a second change within the same second would go unseen (pods
        often become ready together). So each version gets a later whole second.
        """
        with self._jobs_lock:  # pods' threads and the main thread write it (one temporary name)
            tmp = self.path / f".jobs.{os.getpid()}"
            tmp.write_text(f"{max(1, n)}\n")
            self._jobs_mtime = max(int(time.time()), self._jobs_mtime + 1)
            os.utime(tmp, (self._jobs_mtime, self._jobs_mtime))
            os.replace(tmp, self.jobs_file)

    def environment(self, local_shell):
        return {
            "PARALLEL_SHELL": str(self.job_script),
            "WOMM_RUN_DIR": str(self.path),
            "WOMM_LOCAL_SLOTS": str(self.local_slots),
            "WOMM_LOCAL_SHELL": local_shell,
        }

    def read_submissions(self):
        """[(pid, jobslot, seq)] written by job.sh since the last call (non-blocking)."""
        try:
            self._submit_buf += os.read(self.submit_fd, 65536)
        except BlockingIOError:
            return []
        *lines, self._submit_buf = self._submit_buf.split(b"\n")
        out = []
        for line in lines:
            try:
                pid, jobslot, seq = (int(x) for x in line.split())
            except ValueError:
                continue
            out.append((pid, jobslot, seq))
        return out

    def answer(self, jobslot, pid, status):
        """Release job.sh of `pid` waiting on `jobslot`'s fifo with the job's exit status."""
        try:
            fd = os.open(self.path / f"slot.{jobslot}", os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            return  # nobody waits there (ENXIO): that job.sh is gone already
        try:
            os.write(fd, f"{pid} {status}\n".encode())
        except OSError:
            pass
        finally:
            os.close(fd)

    def close(self):
        try:
            os.close(self.submit_fd)
        except OSError:
            pass


def _mkfifo(path):
    try:
        os.mkfifo(path, 0o600)
    except FileExistsError:
        if not stat.S_ISFIFO(os.stat(path).st_mode):
            raise


class Stdin:
    """A job's stdin, kept so that an attempt lost with its pod can be given it again from the
    start: in memory, then (past SPILL bytes) in an unnamed file. It comes from job.sh's own
    stdin (a pipe), from a local fifo (--tee: opened once its writer is there), or from byte
    ranges of a local file (--pipepart: read here, no process)."""

    SPILL = 8 << 20
    CHUNK = 256 << 10
    SMALL = 64 << 10  # reads under this are gathered into one piece: a trickle kept read by read
    # would cost a page and a frame each

    def __init__(self, fd, directory, ranges=None):
        self.fd = fd  # -1 while a fifo waits for its writer, and once read to its end
        self.directory = directory
        self.ranges = list(ranges) if ranges is not None else None
        self.eof = False
        self.size = 0
        # In memory: each large read as it came (chunk() gives them on without a copy), at these
        # offsets, and the small ones since the last piece, gathered (never given out: it grows).
        self._pieces, self._starts = [], []
        self._small = bytearray()
        self._file = None

    @classmethod
    def from_fifo(cls, path, directory, remove, on_open):
        """A fifo: opened (blocking, in a thread of its own) when its writer opens it; on_open() then."""
        import threading

        stdin = cls(-1, directory)

        def open_it():
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
                os.set_blocking(fd, False)
                if remove:
                    os.unlink(path)
            except OSError:
                fd, stdin.eof = -1, True
            stdin.fd = fd
            on_open()

        threading.Thread(target=open_it, name="stdin fifo", daemon=True).start()
        return stdin

    def pollable(self):
        """An fd to wait on for more (None: nothing to wait on, more comes by itself or never)."""
        return self.fd if self.fd >= 0 and self.ranges is None else None

    def read_more(self):
        """Read what there is now; False when nothing was there yet."""
        data = self._read()
        if data is None:
            return False
        if not data:
            self.eof = True
            self.close_source()
            return True
        if self.size == 0 and self.ranges is None:
            protocol.grow_pipe(self.fd)  # a job that has stdin (--pipe): its writer waits less
        self._keep(data)
        return True

    def _read(self):
        """What came (b"" at the end), or None if nothing yet."""
        if self.ranges is not None:
            return self._next_range()
        if self.fd < 0:
            return None  # a fifo not open yet
        try:
            return os.read(self.fd, self.CHUNK)
        except BlockingIOError:
            return None
        except OSError:
            return b""

    def _keep(self, data):
        if self._file is None and self.size + len(data) > self.SPILL:
            self._file = os.open(self.directory, os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, 0o600)
            self._gathered()
            for piece, start in zip(self._pieces, self._starts, strict=True):
                os.pwrite(self._file, piece, start)
            self._pieces, self._starts = [], []
        if self._file is not None:
            os.pwrite(self._file, data, self.size)
        elif len(data) < self.SMALL:
            self._small += data
        else:
            self._gathered()
            self._pieces.append(data)
            self._starts.append(self.size)
        self.size += len(data)
        if len(self._small) >= self.SMALL:
            self._gathered()

    def _gathered(self):
        """The small reads gathered since the last piece, made a piece."""
        if self._small:
            self._pieces.append(bytes(self._small))
            self._starts.append(self.size - len(self._small))
            self._small = bytearray()

    def _next_range(self):
        while self.ranges:
            offset, length = self.ranges[0]
            data = os.pread(self.fd, min(self.CHUNK, length), offset) if length else b""
            if not data:
                self.ranges.pop(0)
                continue
            self.ranges[0] = (offset + len(data), length - len(data))
            return data
        return b""

    def chunk(self, offset, limit):
        """At most limit bytes from offset: a large read's piece, or a view of it, not copied (fewer
        bytes where it ends); small pieces joined up to limit (a replay of a trickle is not a frame
        per read)."""
        n = min(limit, self.size - offset)
        if n <= 0:
            return b""
        if self._file is not None:
            return os.pread(self._file, n, offset)
        if self._small:
            self._gathered()
        i = bisect.bisect_right(self._starts, offset) - 1
        piece, at = self._pieces[i], offset - self._starts[i]
        if len(piece) - at >= min(n, self.SMALL):
            return piece if at == 0 and len(piece) <= n else memoryview(piece)[at:at + n]
        parts = []
        while n > 0:
            part = memoryview(self._pieces[i])[at:at + n]
            parts.append(part)
            n, i, at = n - len(part), i + 1, 0
        return b"".join(parts)

    def close_source(self):
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def close(self):
        self.close_source()
        if self._file is not None:
            os.close(self._file)
            self._file = None
        self._pieces, self._starts, self._small = [], [], bytearray()


class Job:
    """One job GNU parallel started on one of its job slots that are pods', seen from the controller.

    Two kinds of slot meet here: `jobslot` is GNU parallel's ({%}, the fifo job.sh waits on),
    `pod_slot` the slot of a pod that runs the job now (womm_run.scheduler.PodSlot).
    An attempt is one run of it in a pod; an attempt lost with its pod or stream is
    followed by another, up to the task's retries, its output rewound and its stdin replayed.
    """

    __slots__ = ("pid", "jobslot", "seq", "command", "env", "pidfd", "out", "err", "_rewind", "stdin", "done",
                 "cancelled", "losses", "attempt", "pod_slot", "sent", "acked", "eof_sent", "only_with_input")

    def __init__(self, pid, jobslot, seq, command, pidfd, out, err, rewind, stdin, env=(), only_with_input=False):
        self.pid, self.jobslot, self.seq, self.command = pid, jobslot, seq, command
        self.env = env  # (name, value) pairs of job.sh's environment the pod's job needs
        self.only_with_input = only_with_input  # run only if its stdin has a byte (--pipe)
        self.pidfd, self.out, self.err = pidfd, out, err
        self._rewind = rewind
        self.stdin = stdin
        self.done = False
        self.cancelled = False
        self.losses = []  # why each lost attempt was lost
        self.attempt = None  # the number of the attempt running now (the protocol's `job`)
        self.pod_slot = None  # the PodSlot it runs on now
        self.sent = self.acked = 0  # stdin bytes given to the attempt, and taken by it
        self.eof_sent = False

    @classmethod
    def attach(cls, pid, jobslot, seq, run_dir, can_rewind=True, on_stdin=None):
        """Take over the job of job.sh process `pid`; None if it is already gone.

        GNU parallel's wrappers are seen through (womm_run.wrappers). on_stdin(): called when a
        stdin that opens later (a --tee fifo) is there. Raises OSError if its stdout or stderr
        cannot be opened (a socket, say).
        """
        from womm_run import wrappers

        opened = _open_job(pid)
        if opened is None:
            return None
        pidfd, command, out, err, inp = opened
        rewind = {}
        if can_rewind:
            for fd in (out, err):
                st = os.fstat(fd)
                if stat.S_ISREG(st.st_mode):
                    rewind[fd] = st.st_size
        u = wrappers.unwrap(command)
        stdin = _job_stdin(u, inp, run_dir, on_stdin)
        return cls(pid, jobslot, seq, u.command, pidfd, out, err, rewind, stdin, _job_env(pid, u.env),
                   u.only_with_input)

    def new_attempt(self, number, pod_slot):
        self.attempt, self.pod_slot = number, pod_slot
        self.sent = self.acked = 0
        self.eof_sent = False

    def write(self, fd, data):
        """Write job output into the job's own stdout or stderr (self.out, self.err)."""
        while data:
            try:
                n = os.write(fd, data)
            except OSError as e:
                if e.errno == errno.EAGAIN:
                    # A pipe to GNU parallel (-u, --line-buffer) is full: wait for it.
                    import select

                    select.select([], [fd], [])
                    continue
                return  # GNU parallel went away; nothing to keep the output for
            data = data[n:]

    def rewind(self):
        """Forget the output of an attempt that died with its pod, before running it again.

        Possible where GNU parallel gave the job a file of its own (the default
        --group, --results); with -u or --line-buffer the output already went out.
        """
        for fd, size in self._rewind.items():
            try:
                os.ftruncate(fd, size)
            except OSError:
                pass

    def close(self):
        """Done with the job's output and stdin (its pidfd belongs to the controller's loop)."""
        for fd in (self.out, self.err):
            try:
                os.close(fd)
            except OSError:
                pass
        self.out = self.err = -1
        self.stdin.close()


def _open_job(pid):
    """(pidfd, command, stdout, stderr, stdin) of job.sh process pid, opened; None if it is gone."""
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:
        return None
    fds = []
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
        command = argv[argv.index(b"-c") + 1]
        for n in (8, 9):  # job.sh's copies of its stdout and stderr
            fds.append(os.open(f"/proc/{pid}/fd/{n}", os.O_WRONLY | os.O_APPEND | os.O_NONBLOCK | os.O_CLOEXEC))
        fds.append(os.open(f"/proc/{pid}/fd/6", os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC))  # its stdin
    except (FileNotFoundError, ProcessLookupError, ValueError, IndexError):
        for fd in [pidfd, *fds]:
            os.close(fd)
        return None
    except OSError:
        for fd in [pidfd, *fds]:
            os.close(fd)
        raise
    return (pidfd, command, *fds)


def _job_stdin(unwrapped, inp, run_dir, on_stdin):
    """The job's Stdin: ranges of a file (--pipepart), a fifo (--tee), or job.sh's own stdin."""
    if unwrapped.ranges:
        os.close(inp)
        return Stdin(os.open(unwrapped.stdin_file, os.O_RDONLY | os.O_CLOEXEC), run_dir, ranges=unwrapped.ranges)
    if unwrapped.stdin_file:
        os.close(inp)
        return Stdin.from_fifo(unwrapped.stdin_file, run_dir, unwrapped.remove, on_stdin or (lambda: None))
    stdin = Stdin(inp, run_dir)
    stdin.read_more()  # most often its end already: the job's first frame can say so
    return stdin


def _job_env(pid, names):
    """(name, value) pairs of job.sh's environment that the job needs in the pod (wrappers' names)."""
    if not names:
        return ()
    with open(f"/proc/{pid}/environ", "rb") as f:
        environ = dict(item.partition(b"=")[::2] for item in f.read().split(b"\0") if b"=" in item)
    return tuple((name, environ[name]) for name in names if name in environ)
