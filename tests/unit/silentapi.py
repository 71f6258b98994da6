"""Local stand-ins for the API server and what stands between it and womm, for unit tests of silent
drops: SilentApi plays the API server (watches, logs, exec WebSockets), each answer scripted, and
able to go silent without ending; HttpProxy is an HTTP proxy (CONNECT, and absolute-form requests)
that says what went through it.

SilentApi(watches=[[...], ...], exec_mode="answer", tls=None): the Nth watch request gets the Nth
script (the last one repeats), a list of steps: ("event", TYPE, OBJECT), ("sleep", SECONDS),
("silent",) (nothing more, and no end, until the server stops) or ("end",) (the default at the end of
a script); BOOKMARK events only go to watches that allow them. event_watches: the scripts of watches
of events (else those go with the others). Other GETs
answer {"kind": "Status"...} 404 unless `objects` has their path. An exec request is a WebSocket:
exec_mode "answer" answers pings with pongs and sends each stdin frame back on stdout; "deaf" reads
what comes and says nothing at all, as a connection a load balancer forgot; "stuck" does not even
read (what is sent fills the buffers, then blocks the sender); "chatty" also sends "tick" on stdout
every 0.1 s. api.seen is every request's (method, path, query); api.connections
counts the TCP connections it accepted.

For the tests: the fixtures `pki` (a CA and a certificate for 127.0.0.1) and `apis` (SilentApis
stopped at the end), tls(pki), cluster_for(server, ...) (a womm.kube.Cluster with a kubeconfig naming
that server), within() and wait_until().
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import select
import socket
import ssl
import struct
import subprocess
import threading
import time
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def pod(name, ready=True, version="1"):
    """A worker pod as the API shows it: running and ready, or pending."""
    status = {"phase": "Running", "containerStatuses": [{"name": "job", "ready": True, "restartCount": 0}]} \
        if ready else {"phase": "Pending"}
    return {"metadata": {"name": name, "resourceVersion": version}, "status": status}


def bookmark(version, ends_list=False):
    annotations = {"k8s.io/initial-events-end": "true"} if ends_list else None
    return ("event", "BOOKMARK", {"kind": "Pod", "metadata": {"resourceVersion": version, "annotations": annotations}})


SPOILED_HANDSHAKE = bytes([21, 3, 3, 0, 2, 2, 50])  # a TLS alert record: fatal, decode_error


class SilentApi(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, watches=(), objects=None, exec_mode="answer", tls=None, event_watches=None, spoiled=0):
        """spoiled: TLS handshakes answered with a fatal alert (decode_error) before the others pass."""
        super().__init__(("127.0.0.1", 0), _Handler)
        self.spoiled = spoiled
        self.watches = [list(w) for w in watches] or [[("silent",)]]
        self.event_watches = [list(w) for w in event_watches] if event_watches else None
        self.objects = dict(objects or {})
        self.exec_mode = exec_mode
        self.tls = tls
        self.seen = []
        self.connections = 0
        self.pings = 0
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self):
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.server_address[1]}"

    def get_request(self):
        sock, address = super().get_request()
        with self.lock:
            self.connections += 1
            spoil, self.spoiled = self.spoiled > 0, max(0, self.spoiled - 1)
        if self.tls and spoil:
            sock.recv(65536)  # the ClientHello
            sock.sendall(SPOILED_HANDSHAKE)
            sock.close()
            raise OSError("handshake spoiled")  # socketserver drops the connection and waits for the next
        if self.tls:
            sock = self.tls.wrap_socket(sock, server_side=True)
        return sock, address

    def next_watch(self, path=""):
        scripts = self.event_watches if path.endswith("/events") and self.event_watches else self.watches
        with self.lock:
            return scripts.pop(0) if len(scripts) > 1 else list(scripts[0])

    def watch_queries(self):
        return [q for m, p, q in self.seen if q.get("watch") == "true"]

    def stop(self):
        self.stopping.set()
        self.shutdown()
        self.server_close()


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    rbufsize = 0  # unbuffered: select() on the socket then sees every frame not read yet

    def log_message(self, *args):
        pass

    def do_GET(self):  # noqa: N802 - http.server's name
        parts = urlsplit(self.path)  # a proxy may pass an absolute-form target on
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        with self.server.lock:
            self.server.seen.append(("GET", parts.path, query))
        if self.headers.get("Upgrade", "").lower() == "websocket":
            return self._websocket()
        if query.get("watch") == "true":
            steps = self.server.next_watch(parts.path)
            if query.get("allowWatchBookmarks") != "true":  # as the API server: bookmarks when asked for
                steps = [step for step in steps if step[1:2] != ("BOOKMARK",)]
            return self._watch(steps)
        body = self.server.objects.get(parts.path)
        status = 200 if body is not None else 404
        data = json.dumps(body if body is not None else {"kind": "Status", "code": 404, "message": "not found"})
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data.encode())

    def _chunk(self, data):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _watch(self, steps):
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.flush()
        for step in steps:
            if step[0] == "silent":
                self.server.stopping.wait()
                self.close_connection = True
                return
            if step[0] == "end":
                break
            if step[0] == "sleep":
                time.sleep(step[1])
                continue
            _, kind, obj = step
            self._chunk(json.dumps({"type": kind, "object": obj}).encode() + b"\n")
        self._chunk(b"")

    # ------------------------------------------------------------ exec

    def _websocket(self):
        accept = base64.b64encode(hashlib.sha1((self.headers["Sec-WebSocket-Key"] + WS_GUID).encode()).digest())
        self.send_response(101)
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept.decode())
        self.send_header("Sec-WebSocket-Protocol", "v5.channel.k8s.io")
        self.end_headers()
        self.wfile.flush()
        self.close_connection = True
        self.send_lock = threading.Lock()
        if self.server.exec_mode == "stuck":
            self.server.stopping.wait()
            return
        if self.server.exec_mode == "chatty":
            threading.Thread(target=self._tick, daemon=True).start()
        sock = self.connection
        while not self.server.stopping.is_set():
            if not (isinstance(sock, ssl.SSLSocket) and sock.pending()):
                if not select.select([sock], [], [], 0.2)[0]:
                    continue
            try:
                opcode, payload = _read_frame(self.rfile)
            except (OSError, ValueError, struct.error):
                return
            if not self._on_frame(opcode, payload):
                return

    def _send(self, opcode, payload):
        with self.send_lock:
            self.wfile.write(_frame(opcode, payload))
            self.wfile.flush()

    def _tick(self):
        while not self.server.stopping.wait(0.1):
            try:
                self._send(2, b"\x01tick")
            except OSError:
                return

    def _on_frame(self, opcode, payload):
        """Answers a frame as the exec mode says; False once the stream is over."""
        if opcode == 9:
            with self.server.lock:
                self.server.pings += 1
        if self.server.exec_mode == "deaf":
            return True
        if opcode == 8:
            self._send(8, payload[:2])
            return False
        if opcode == 9:
            self._send(10, payload)
        elif opcode in (1, 2) and payload[:1] == b"\x00":
            self._send(2, b"\x01" + payload[1:])
        return True


def _frame(opcode, payload):
    n = len(payload)
    head = bytes([0x80 | opcode])
    if n < 126:
        head += bytes([n])
    elif n < 1 << 16:
        head += bytes([126]) + struct.pack("!H", n)
    else:
        head += bytes([127]) + struct.pack("!Q", n)
    return head + payload


def _read_frame(rfile):
    def read(n):
        data = b""
        while len(data) < n:
            more = rfile.read(n - len(data))
            if not more:
                raise ValueError("the connection ended")
            data += more
        return data

    first = read(2)
    opcode, n, masked = first[0] & 0x0F, first[1] & 0x7F, first[1] & 0x80
    if n == 126:
        n = struct.unpack("!H", read(2))[0]
    elif n == 127:
        n = struct.unpack("!Q", read(8))[0]
    mask = read(4) if masked else b"\0\0\0\0"
    data = read(n)
    return opcode, bytes(b ^ mask[i % 4] for i, b in enumerate(data))


class HttpProxy:
    """An HTTP proxy on 127.0.0.1: CONNECT tunnels, and absolute-form requests passed on (the rest of
    their connection relayed as it is). proxy.seen: (method, target, Proxy-Authorization or None) of
    each connection's first request. `routes` maps a requested "host:port" to the (host, port) really
    connected to."""

    def __init__(self, routes=None):
        self.routes = dict(routes or {})
        self.seen = []
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.closing = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.closing:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client):
        head = b""
        while b"\r\n\r\n" not in head:
            data = client.recv(4096)
            if not data:
                client.close()
                return
            head += data
        head, rest = head.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        method, target, version = lines[0].split(" ", 2)
        headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:] if ":" in line)}
        self.seen.append((method, target, headers.get("proxy-authorization")))
        if method == "CONNECT":
            where = target
        else:
            parts = urlsplit(target)
            where = parts.netloc
            lines[0] = f"{method} {parts.path}{'?' + parts.query if parts.query else ''} {version}"
            lines = [line for line in lines if not line.lower().startswith("proxy-authorization:")]
            rest = "\r\n".join(lines).encode("latin-1") + b"\r\n\r\n" + rest
        host, _, port = where.rpartition(":")
        try:
            upstream = socket.create_connection(self.routes.get(where, (host.strip("[]"), int(port))), timeout=10)
        except OSError:
            client.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            client.close()
            return
        upstream.settimeout(None)
        if method == "CONNECT":
            client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        if rest:
            upstream.sendall(rest)
        threading.Thread(target=_pipe, args=(upstream, client), daemon=True).start()
        _pipe(client, upstream)

    def close(self):
        self.closing = True
        self.sock.close()


def _pipe(a, b):
    try:
        while data := a.recv(65536):
            b.sendall(data)
    except OSError:
        pass
    finally:
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def within(seconds, fn, *args):
    """fn(*args) in a thread of its own: its result, or its exception raised here; AssertionError if
    it has not returned within `seconds` (it is left to run, a daemon)."""
    out = {}

    def run():
        try:
            out["value"] = fn(*args)
        except BaseException as e:  # noqa: BLE001 - handed to the test
            out["error"] = e

    t = threading.Thread(target=run, daemon=True)
    started = time.monotonic()
    t.start()
    t.join(seconds)
    if t.is_alive():
        raise AssertionError(f"still waiting after {seconds} s")
    if "error" in out:
        raise out["error"]
    out["took"] = time.monotonic() - started
    return out["value"]


# ---------------------------------------------------------------- for the tests


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A CA, and a certificate it signed for 127.0.0.1 (openssl, as tests/cluster does)."""
    d = tmp_path_factory.mktemp("pki")

    def run(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=d)

    run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "ca.key",
        "-out", "ca.crt", "-subj", "/CN=test-ca", "-days", "2")
    run("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "server.key",
        "-out", "server.csr", "-subj", "/CN=server", "-addext", "subjectAltName=IP:127.0.0.1")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2",
        "-copy_extensions", "copy", "-out", "server.crt")
    return d


def tls(pki):
    """A server's TLS context with pki's certificate."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki / "server.crt", pki / "server.key")
    return ctx


@pytest.fixture
def apis():
    """apis(...): a SilentApi, stopped at the end of the test."""
    started = []

    def start(*args, **kw):
        api = SilentApi(*args, **kw)
        started.append(api)
        return api

    yield start
    for api in started:
        api.stop()


def cluster_for(server, tmp_path, monkeypatch, pki=None, proxy_url=None, **cluster):
    """A womm.kube.Cluster whose kubeconfig (a token user, namespace "team") names `server` (and the
    cluster entry's other fields, given as keywords: tls_server_name=...)."""
    from womm import kube

    entry = {"server": server, **{k.replace("_", "-"): v for k, v in cluster.items()}}
    if pki is not None:
        entry["certificate-authority-data"] = base64.b64encode((pki / "ca.crt").read_bytes()).decode()
    if proxy_url:
        entry["proxy-url"] = proxy_url
    config = {"apiVersion": "v1", "kind": "Config", "current-context": "c",
              "clusters": [{"name": "c", "cluster": entry}],
              "users": [{"name": "u", "user": {"token": "sekret"}}],
              "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u", "namespace": "team"}}]}
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    monkeypatch.setenv("KUBECONFIG", str(path))
    return kube.Cluster()


def wait_until(what, seconds, check):
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds} s waiting for {what}")
        time.sleep(0.05)
