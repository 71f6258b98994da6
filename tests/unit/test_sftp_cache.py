"""The lazy share cache's door, `womm-fs serve-sftp --listen` (the program womm-lazy-cache runs), on a real
socket: connections without the task's token fork nothing and are bounded; those with it are served, a bounded
number at once."""

import os
import socket
import struct
import subprocess
import sys
import time

import pytest

from womm_fs import serve_sftp

TOKEN = b"ab" * 32
INIT = struct.pack(">IBI", 5, 1, 3)


def children(pid):
    """The pids whose parent is pid."""
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.append(int(name))
    return out


def rss(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))
    except OSError:
        return 0


class Cache:
    def __init__(self, tmp_path, *options):
        d = tmp_path / "share"
        d.mkdir()
        (tmp_path / "token").write_bytes(TOKEN + b"\n")
        probe = socket.create_server(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self.proc = subprocess.Popen([sys.executable, "-m", "womm_fs", "serve-sftp", "--listen", str(self.port),
                                      "--token-file", str(tmp_path / "token"), *options, str(d)],
                                     stderr=subprocess.PIPE)
        assert self.proc.stderr.readline().startswith(b"womm: serving")  # listening

    def connect(self):
        return socket.create_connection(("127.0.0.1", self.port), timeout=10)

    def session(self, token=TOKEN):
        """A connection that gives the token and SFTP's INIT; the connection, and its first reply (b"" if closed)."""
        s = self.connect()
        s.sendall(token + b"\n" + INIT)
        try:
            return s, s.recv(9)
        except ConnectionResetError:
            return s, b""

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)
        return self.proc.stderr.read().decode()


@pytest.fixture
def cache(tmp_path):
    made = []

    def start(*options):
        made.append(Cache(tmp_path, *options))
        return made[-1]

    yield start
    for c in made:
        if c.proc.poll() is None:
            c.stop()
        for pid in children(c.proc.pid):
            os.kill(pid, 9)


def closed(s):
    """Whether the server closed s (without waiting)."""
    s.setblocking(False)
    try:
        return s.recv(1) == b""
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True


@pytest.mark.slow
def test_a_flood_of_idle_connections_forks_nothing_and_the_task_still_gets_in(cache):
    c = cache()
    flood = [c.connect() for _ in range(300)]
    began = time.monotonic()
    deadline = began + 10
    while sum(map(closed, flood)) < 300 - serve_sftp.PENDING and time.monotonic() < deadline:
        time.sleep(0.05)  # the server takes them in and closes the oldest beyond what may wait
    forked, memory = children(c.proc.pid), rss(c.proc.pid) + sum(map(rss, children(c.proc.pid)))
    print(f"300 idle connections: {len(forked)} processes forked, {memory / 1e6:.0f} MB in all")
    assert forked == []
    assert sum(map(closed, flood)) >= 300 - serve_sftp.PENDING
    s, first = c.session()  # the task's own pod, during the flood
    assert first[4:5] == b"\x02", "a VERSION reply"
    assert len(children(c.proc.pid)) == 1
    # Who never gives the token is closed after TOKEN_WAIT.
    while not all(map(closed, flood)) and time.monotonic() < began + serve_sftp.TOKEN_WAIT + 5:
        time.sleep(0.1)
    assert all(map(closed, flood))
    s.close()
    for f in flood:
        f.close()


def test_a_wrong_token_is_closed_without_a_process_and_said_once(cache):
    c = cache()
    for _ in range(20):
        s, first = c.session(b"cd" * 32)
        assert first == b""
        s.close()
    assert children(c.proc.pid) == []
    s, first = c.session()
    assert first[4:5] == b"\x02"
    s.close()
    said = c.stop()
    assert said.count("without the task's token") == 1, said


def test_connections_beyond_the_bound_are_refused_until_one_ends(cache):
    c = cache("--max-connections", "2")
    a, first_a = c.session()
    b, first_b = c.session()
    assert first_a[4:5] == first_b[4:5] == b"\x02"
    extra, first = c.session()
    assert first == b"", "a third at once is closed"
    extra.close()
    a.close()
    deadline = time.monotonic() + 10
    while len(children(c.proc.pid)) > 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    again, first = c.session()
    assert first[4:5] == b"\x02"
    again.close()
    b.close()
    assert "beyond 2 at once" in c.stop()
