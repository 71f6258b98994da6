"""Pods on this machine, for unit tests: the real runner.sh and the real agent (womm_run.podagent)
in local processes, a directory standing for the pod's emptyDir; the exec API is a pipe."""

import os
import selectors
import signal
import subprocess
import sys
import threading
from importlib import resources

from womm import manifests

RUNNER = resources.files("womm_run").joinpath("runner.sh").read_text()


def tree(pid):
    out = [pid]
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                for kid in f.read().split():
                    out += tree(int(kid))
    except OSError:
        pass
    return out


def kill_tree(pid):
    """All at once, as a container's end kills its processes: each is stopped first (until the tree
    holds no running process), so that none sees another die and reports it (a wrapper's `exit 137`)."""
    stopped = set()
    while True:
        new = [p for p in tree(pid) if p not in stopped]
        if not new:
            break
        for p in new:
            try:
                os.kill(p, signal.SIGSTOP)
            except ProcessLookupError:
                pass
            stopped.add(p)
    for p in stopped:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass


class LocalPod:
    """runner.sh as the job container's PID 1, in `cwd`; RUN is its own directory."""

    def __init__(self, root, name, cwd, shell="sh", stderr=None, grace=1, runner_sh=None, started=True):
        self.name, self.cwd, self.shell, self.stderr, self.grace = name, str(cwd), shell, stderr, grace
        # What runs runner.sh: None as the pod's manifest starts it (bash, which this machine has), or
        # exactly this shell ("dash": an image without bash).
        self.runner_sh = runner_sh
        self.run = os.path.join(str(root), name)
        os.makedirs(os.path.join(self.run, "jobs"), exist_ok=True)
        self.runner = None
        if started:  # else the job container starts later (its image still pulling, say)
            self.start_job_container()

    def start_job_container(self):
        start = (["sh", "-c", manifests.UNDER_BASH, RUNNER] if self.runner_sh is None
                 else [self.runner_sh, "-c", RUNNER, "womm-runner"])
        # A session of its own, as a container's PID 1 (a job's `kill 0` gone wrong reaches no test).
        self.runner = subprocess.Popen([*start, self.run, self.cwd, self.shell, str(self.grace)],
                                       stdin=subprocess.DEVNULL, stderr=self.stderr, start_new_session=True)

    def restart_job_container(self):
        """Like a container that died (OOM-killed, say) and was started again: its jobs die with it."""
        kill_tree(self.runner.pid)
        self.runner.wait()
        self.start_job_container()

    def stop(self):
        kill_tree(self.runner.pid)
        self.runner.wait()


class LocalStream:
    """The same send()/recv()/close()/abort()/exit_status() as womm.kube.ExecStream, to an agent in a
    local process."""

    status_text = b""  # the exec's own words: a local process has none

    def __init__(self, pod, command):
        # ["python3", "-m", "womm_run.podagent", RUN, SLOTS, options...]: the pod's own directory stands for RUN.
        self.proc = subprocess.Popen([sys.executable, "-m", "womm_run.podagent", pod.run, *command[4:]],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.proc.stdout, selectors.EVENT_READ, 1)
        self.sel.register(self.proc.stderr, selectors.EVENT_READ, 2)
        self.open = 2
        self.lock = threading.Lock()

    def send(self, data, head=b""):
        with self.lock:
            try:
                self.proc.stdin.write(head)
                self.proc.stdin.write(data)
                self.proc.stdin.flush()
            except ValueError:  # closed (killed): a broken exec stream's send raises OSError
                raise BrokenPipeError("the stream was closed") from None

    def recv(self):
        while self.open:
            for key, _ in self.sel.select():
                data = os.read(key.fileobj.fileno(), 65536)
                if data:
                    return key.data, data
                self.sel.unregister(key.fileobj)
                self.open -= 1
        return None

    def close(self):
        try:
            self.proc.stdin.close()
        except OSError:
            pass

    abort = close

    def exit_status(self):
        return self.proc.wait()

    def kill(self):
        """The stream breaks (an API server killed): the agent sees its stdin end."""
        self.close()


class LocalCluster:
    """What womm_run.podlink needs of womm.kube.Cluster: exec streams to the local pods' agents."""

    def __init__(self):
        self.pods = {}
        self.streams = []

    def exec_stream(self, pod, command, container=None, patient=True):
        if pod not in self.pods:
            raise OSError(f"no pod {pod}")
        stream = LocalStream(self.pods[pod], command)
        self.streams.append((pod, stream))
        return stream


class LocalPods:
    """What womm_run.podlink needs of womm_run.pods.TaskPods."""

    def __init__(self, cluster):
        self.cluster = cluster
        self.stopping = threading.Event()

    def running(self, name):
        return name in self.cluster.pods

    def why(self, name):
        return None if name in self.cluster.pods else f"pod {name} was deleted"
