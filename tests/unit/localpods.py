"""Fake pods for unit tests: job agents (the real agent.sh) in local processes."""

import os
import selectors
import subprocess
from importlib import resources


def agent_script():
    return resources.files("womm_run").joinpath("agent.sh").read_text()


class LocalTransport:
    """The same send()/recv()/close() as womm.kube.ExecStream, over a local process."""

    def __init__(self, token, directory, shell="sh"):
        self.proc = subprocess.Popen(
            ["sh", "-c", agent_script(), "womm-agent", token, str(directory), shell],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.proc.stdout, selectors.EVENT_READ, 1)
        self.sel.register(self.proc.stderr, selectors.EVENT_READ, 2)
        self.open = 2

    def send(self, data):
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

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

    def kill(self):
        """Like a pod dying: the agent and its jobs go away at once."""
        import signal

        for pid in _tree(self.proc.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _tree(pid):
    out = [pid]
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            for kid in f.read().split():
                out += _tree(int(kid))
    except OSError:
        pass
    return out
