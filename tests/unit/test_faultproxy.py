"""tests/faultproxy.py against local fake upstreams: the throttle mode (HTTPS, 429 one in N, bodies
streamed, WebSocket upgrades piped) and the blackhole mode (a TCP relay that forgets idle flows)."""

import json
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from silentapi import tls as server_context

import faultproxy  # noqa: E402

# ---------------------------------------------------------------- certificates


def client_context(pki):
    return ssl.create_default_context(cafile=str(pki / "ca.crt"))


# ---------------------------------------------------------------- a fake HTTPS upstream

class Upstream:
    """An HTTPS server speaking just enough HTTP/1.1 by hand: /plain, /echo (POST), /stream (two
    chunks, the second sent only once `release` is set), /upgrade (101, then bytes echoed upper-cased).
    It records each request's head."""

    def __init__(self, pki):
        self.ctx = server_context(pki)
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.heads = []
        self.release = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, raw):
        try:
            conn = self.ctx.wrap_socket(raw, server_side=True)
            f = conn.makefile("rb")
            while True:
                head = b""
                while not head.endswith(b"\r\n\r\n"):
                    line = f.readline()
                    if not line:
                        return
                    head += line
                self.heads.append(head)
                first, *lines = head.decode().split("\r\n")
                method, path, _ = first.split(" ")
                headers = {k.lower(): v.strip() for k, v in (x.split(":", 1) for x in lines if ":" in x)}
                body = f.read(int(headers.get("content-length", 0)))
                if path == "/plain":
                    self._send(conn, 200, b'{"ok": true}')
                elif path == "/echo":
                    self._send(conn, 200, body)
                elif path == "/stream":
                    conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                    conn.sendall(b"6\r\nfirst\n\r\n")
                    self.release.wait(10)
                    conn.sendall(b"7\r\nsecond\n\r\n0\r\n\r\n")
                elif path == "/upgrade":
                    conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
                                 b"hello")
                    while data := conn.recv(100):
                        conn.sendall(data.upper())
                    return
                else:
                    self._send(conn, 404, b"{}")
        except (OSError, ssl.SSLError, ValueError):
            return

    @staticmethod
    def _send(conn, status, body):
        conn.sendall(f"HTTP/1.1 {status} X\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)

    def close(self):
        self.sock.close()


@pytest.fixture
def throttle(pki):
    upstream = Upstream(pki)
    proxy = faultproxy.ThrottleProxy(f"https://127.0.0.1:{upstream.port}", server_context(pki), client_context(pki),
                                     every=3, retry_after=2)
    with proxy:
        yield proxy, upstream
    upstream.close()


def connect(pki, port):
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    return client_context(pki).wrap_socket(sock, server_hostname="127.0.0.1")


def read_response(f):
    """(status, headers, body) of one response with a Content-Length."""
    status = int(f.readline().split()[1])
    headers = {}
    while (line := f.readline()) != b"\r\n":
        k, v = line.decode().split(":", 1)
        headers[k.lower()] = v.strip()
    return status, headers, f.read(int(headers.get("content-length", 0)))


def test_one_request_in_n_is_answered_429_the_rest_forwarded(pki, throttle):
    proxy, upstream = throttle
    conn = connect(pki, proxy.port)
    f = conn.makefile("rb")
    answers = []
    for _ in range(6):  # one connection, kept alive through the 429s
        conn.sendall(b"GET /plain HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer tok\r\n\r\n")
        answers.append(read_response(f))
    assert [a[0] for a in answers] == [200, 200, 429, 200, 200, 429]
    status, headers, body = answers[2]
    assert headers["retry-after"] == "2"
    got = json.loads(body)
    assert got["kind"] == "Status" and got["code"] == 429 and got["reason"] == "TooManyRequests"
    assert answers[0][2] == b'{"ok": true}'
    assert proxy.stats()["requests"] == 6 and proxy.stats()["throttled"] == 2
    assert proxy.throttled == [("GET", "/plain")] * 2
    # Only the forwarded requests reached the upstream, with the client's credentials.
    assert len(upstream.heads) == 4 and all(b"Authorization: Bearer tok" in h for h in upstream.heads)
    conn.close()


def test_request_bodies_are_forwarded(pki, throttle):
    proxy, _ = throttle
    conn = connect(pki, proxy.port)
    f = conn.makefile("rb")
    payload = b"x" * 200000
    conn.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(payload) + payload)
    status, _, body = read_response(f)
    assert status == 200 and body == payload
    conn.close()


def test_a_streamed_body_comes_as_it_is_sent(pki, throttle):
    proxy, upstream = throttle
    conn = connect(pki, proxy.port)
    f = conn.makefile("rb")
    conn.sendall(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
    assert f.readline().startswith(b"HTTP/1.1 200")
    while f.readline() != b"\r\n":
        pass
    # The first chunk arrives while the upstream still holds the second: nothing waits for the end.
    assert f.readline() == b"6\r\n" and f.readline() == b"first\n" and f.readline() == b"\r\n"
    upstream.release.set()
    assert f.readline() == b"7\r\n" and f.readline() == b"second\n"
    assert f.readline() == b"\r\n" and f.readline() == b"0\r\n" and f.readline() == b"\r\n"
    # and the connection carries the next request
    conn.sendall(b"GET /plain HTTP/1.1\r\nHost: x\r\n\r\n")
    assert read_response(f)[0] == 200
    conn.close()


def test_an_upgraded_connection_is_piped_both_ways(pki, throttle):
    proxy, _ = throttle
    conn = connect(pki, proxy.port)
    conn.sendall(b"GET /upgrade HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
    got = b""
    while not got.endswith(b"hello"):
        got += conn.recv(100)
    assert got.startswith(b"HTTP/1.1 101")
    for word in (b"abc", b"def"):
        conn.sendall(word)
        assert conn.recv(100) == word.upper()
    assert proxy.stats()["upgrades"] == 1
    conn.close()


def test_the_429_to_an_upgrade_is_an_http_answer(pki, throttle):
    proxy, upstream = throttle
    conn = connect(pki, proxy.port)
    f = conn.makefile("rb")
    for _ in range(2):
        conn.sendall(b"GET /plain HTTP/1.1\r\nHost: x\r\n\r\n")
        read_response(f)
    conn.sendall(b"GET /upgrade HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
    status, headers, body = read_response(f)
    assert status == 429 and headers["retry-after"] == "2" and json.loads(body)["code"] == 429
    assert not any(h.startswith(b"GET /upgrade") for h in upstream.heads)
    conn.close()


# ---------------------------------------------------------------- blackhole

class Echo:
    """A TCP server that echoes, recording what it received and whether each connection ended."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.received = bytearray()
        self.ended = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        try:
            while data := conn.recv(65536):
                self.received += data
                conn.sendall(data)
        except OSError:
            pass
        self.ended.set()

    def close(self):
        self.sock.close()


@pytest.fixture
def blackhole():
    echo = Echo()
    with faultproxy.BlackholeProxy(f"127.0.0.1:{echo.port}", idle=0.6) as proxy:
        yield proxy, echo
    echo.close()


@pytest.mark.slow
def test_a_busy_connection_is_relayed(blackhole):
    proxy, echo = blackhole
    conn = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
    for i in range(8):  # 2 s in all, never idle for 0.6 s
        conn.sendall(b"ping %d" % i)
        assert conn.recv(100) == b"ping %d" % i
        time.sleep(0.25)
    assert proxy.stats().get("dropped", 0) == 0
    conn.close()
    assert echo.ended.wait(5)  # a close before the drop is relayed


@pytest.mark.slow
def test_an_idle_connection_is_forgotten_silently(blackhole):
    proxy, echo = blackhole
    conn = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
    conn.sendall(b"before")
    assert conn.recv(100) == b"before"
    time.sleep(1.0)  # idle past 0.6 s
    assert proxy.stats()["dropped"] == 1
    conn.sendall(b"after")
    conn.settimeout(1.0)
    with pytest.raises(socket.timeout):  # no answer, and no FIN (b"") nor RST (ConnectionResetError)
        conn.recv(100)
    assert bytes(echo.received) == b"before"
    conn.shutdown(socket.SHUT_WR)  # the client's FIN is not relayed either
    time.sleep(0.3)
    assert not echo.ended.is_set()
    conn.close()


def test_the_program_says_where_it_listens_and_what_it_counted(tmp_path):
    echo = Echo()
    proc = subprocess.Popen([sys.executable, str(Path(faultproxy.__file__)), "blackhole", "--upstream",
                             f"127.0.0.1:{echo.port}", "--idle", "5"], stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("listening on 127.0.0.1:")
        port = int(line.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
            conn.sendall(b"x")
            assert conn.recv(10) == b"x"
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=10)
        echo.close()
    assert proc.returncode == 0
    assert json.loads(out)["connections"] == 1


def test_bad_arguments_are_one_line():
    proc = subprocess.run([sys.executable, str(Path(faultproxy.__file__)), "blackhole", "--upstream", "nowhere"],
                          capture_output=True, text=True)
    assert proc.returncode == 1 and proc.stderr == "faultproxy: error: the upstream must be HOST:PORT, not 'nowhere'\n"
