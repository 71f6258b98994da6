"""The local half of the job slots: what GNU parallel's jobs and the controller share.

GNU parallel runs each job as `job.sh -c COMMAND` (womm sets PARALLEL_SHELL).
job.sh writes "PID SLOT SEQ" into the run directory's `submit` fifo and waits
on its slot's fifo for "PID STATUS". The controller reads the command from
/proc/PID/cmdline and writes the job's output straight into the job's own
stdout and stderr (job.sh keeps them on fds 8 and 9), so GNU parallel sees exactly what a
local job would have printed: its --group, -k, --tag, --results and --joblog
work unchanged. A pidfd tells the controller when GNU parallel killed a job.

Nothing here starts a process per job, and nothing here talks to Kubernetes.
"""

import errno
import os
import stat
import time
from importlib import resources

from womm import home

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
        self.submit_path = self.path / "submit"
        _mkfifo(self.submit_path)
        # O_RDWR: opening never blocks, and the fifo never reports EOF.
        self.submit_fd = os.open(self.submit_path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        self.slot_fds = {}
        for slot in range(local_slots + 1, max_slots + 1):
            path = self.path / f"slot.{slot}"
            _mkfifo(path)
            self.slot_fds[slot] = os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        self._submit_buf = b""

    def set_jobs(self, n):
        """Tell GNU parallel how many job slots it has now (it re-reads this file).

        GNU parallel re-reads the file when its mtime, in whole seconds, grew since
        it last looked: a second change within the same second would go unseen (pods
        often become ready together). So each version gets a later whole second.
        """
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
        """[(pid, slot, seq)] written by job.sh since the last call (non-blocking)."""
        try:
            self._submit_buf += os.read(self.submit_fd, 65536)
        except BlockingIOError:
            return []
        *lines, self._submit_buf = self._submit_buf.split(b"\n")
        out = []
        for line in lines:
            try:
                pid, slot, seq = (int(x) for x in line.split())
            except ValueError:
                continue
            out.append((pid, slot, seq))
        return out

    def answer(self, slot, pid, status):
        """Release job.sh of `pid` waiting on `slot` with the job's exit status."""
        fd = self.slot_fds.get(slot)
        if fd is None:
            return
        try:
            os.write(fd, f"{pid} {status}\n".encode())
        except OSError:
            pass

    def close(self):
        for fd in [self.submit_fd, *self.slot_fds.values()]:
            try:
                os.close(fd)
            except OSError:
                pass


def _mkfifo(path):
    try:
        os.mkfifo(path, 0o600)
    except FileExistsError:
        if not stat.S_ISFIFO(os.stat(path).st_mode):
            raise


class Job:
    """One job GNU parallel started on a pod slot, seen from the controller."""

    __slots__ = ("pid", "slot", "seq", "command", "pidfd", "out", "err", "_rewind", "done", "cancelled")

    def __init__(self, pid, slot, seq, command, pidfd, out, err, rewind):
        self.pid, self.slot, self.seq, self.command = pid, slot, seq, command
        self.pidfd, self.out, self.err = pidfd, out, err
        self._rewind = rewind
        self.done = False
        self.cancelled = False

    @classmethod
    def attach(cls, pid, slot, seq, can_rewind=True):
        """Take over the job of job.sh process `pid`; None if it is already gone.

        Raises OSError if its stdout or stderr cannot be opened (a socket, say).
        """
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
        except (FileNotFoundError, ProcessLookupError, ValueError, IndexError):
            for fd in [pidfd, *fds]:
                os.close(fd)
            return None
        except OSError:
            for fd in [pidfd, *fds]:
                os.close(fd)
            raise
        out, err = fds
        rewind = {}
        if can_rewind:
            for fd in (out, err):
                st = os.fstat(fd)
                if stat.S_ISREG(st.st_mode):
                    rewind[fd] = st.st_size
        return cls(pid, slot, seq, command.decode("utf-8", "surrogateescape"), pidfd, out, err, rewind)

    def write(self, channel, data):
        """Write job output (channel 1 stdout, 2 stderr) into the job's own file descriptors."""
        fd = self.out if channel == 1 else self.err
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

    def close_outputs(self):
        """Done with the job's output (its pidfd belongs to the controller's loop)."""
        for fd in (self.out, self.err):
            try:
                os.close(fd)
            except OSError:
                pass
        self.out = self.err = -1
