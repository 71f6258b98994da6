"""The API server's pushback in womm.kube, against a tiny local HTTP server playing the API server:
429 and 503 waited out (Retry-After honoured, bounded), resets of idempotent requests sent again,
exec handshakes throttled; Warning headers shown once each; an unreadable womm-config said as such;
the task's heartbeat renewed again soon after a failed renewal."""

import base64
import hashlib
import http.server
import json
import socket
import struct
import threading
import time
import zlib
from types import SimpleNamespace

import pytest
import yaml

from womm import kube, report, settings, taskobjects
from womm.errors import WommError

STATUS_429 = json.dumps({"kind": "Status", "status": "Failure", "reason": "TooManyRequests", "code": 429,
                         "message": "Too many requests, please try again later."}).encode()


class FakeApi(http.server.ThreadingHTTPServer):
    """Answers each request with the next of `script` (the last one repeats): a tuple
    (status, headers, body), "reset" (the connection closed without an answer), "websocket"
    (a 101 then one frame on channel 1, "hi", and a close), or "spdy" (a 101 to SPDY/3.1, a reply
    to each stream the client opens, then its stdin up to its FIN echoed on stdout, a Success
    status on the error stream, and a close)."""

    daemon_threads = True

    def __init__(self, script):
        super().__init__(("127.0.0.1", 0), Handler)
        self.script = list(script)
        self.seen = []  # (method, path, time, Authorization)
        self.lock = threading.Lock()
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def next_answer(self, handler):
        with self.lock:
            self.seen.append((handler.command, handler.path, time.monotonic(), handler.headers.get("Authorization")))
            return self.script.pop(0) if len(self.script) > 1 else self.script[0]

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server_address[1]}"


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        answer = self.server.next_answer(self)
        if answer == "reset":
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
            self.close_connection = True
            return
        if answer == "websocket":
            key = self.headers["Sec-WebSocket-Key"]
            accept = base64.b64encode(hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest())
            self.send_response(101)
            self.send_header("Upgrade", "websocket")
            self.send_header("Connection", "Upgrade")
            self.send_header("Sec-WebSocket-Accept", accept.decode())
            self.send_header("Sec-WebSocket-Protocol", "v4.channel.k8s.io")
            self.end_headers()
            self.wfile.write(b"\x82\x03\x01hi" + b"\x88\x00")
            self.wfile.flush()
            self.close_connection = True
            return
        if answer == "spdy":
            return self._spdy()
        status, headers, body = answer
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        if not any(name.lower() == "content-type" for name, _ in headers):
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _answer

    def _spdy(self):
        assert self.headers["Upgrade"] == "SPDY/3.1" and self.command == "POST"
        self.send_response(101)
        self.send_header("Upgrade", "SPDY/3.1")
        self.send_header("Connection", "Upgrade")
        self.end_headers()
        self.wfile.flush()
        inflate, streams, stdin = zlib.decompressobj(), {}, b""
        while True:
            first, second = struct.unpack(">II", self.rfile.read(8))
            body = self.rfile.read(second & 0xFFFFFF)
            if first & 0x80000000 and first & 0xFFFF == 1:  # SYN_STREAM: its id, and its header block
                stream = struct.unpack_from(">I", body)[0]
                block = inflate.decompress(body[10:])
                n = struct.unpack_from(">I", block, 4)[0]  # one header, streamtype: its name's length
                assert block[8:8 + n] == b"streamtype"
                streams[block[12 + n:].decode()] = stream
                self.wfile.write(struct.pack(">HHII", 0x8003, 2, 4, stream))  # its SYN_REPLY
            elif not first & 0x80000000 and first == streams.get("stdin"):
                stdin += body
                if second >> 24 & 1:  # FIN
                    break
            self.wfile.flush()
        self.server.spdy_streams = streams
        for name, data in (("stdout", stdin), ("error", b'{"status": "Success"}')):
            self.wfile.write(struct.pack(">II", streams[name], 1 << 24 | len(data)) + data)
        self.wfile.flush()
        self.close_connection = True


@pytest.fixture(autouse=True)
def fresh_notices(monkeypatch):
    """Each test starts as a new process would: nothing said yet, no task's Reporter."""
    monkeypatch.setattr(kube, "_said", set())
    monkeypatch.setattr(report, "_notices", None)


def cluster_for(api, tmp_path, monkeypatch, retry_for=None):
    config = {"apiVersion": "v1", "kind": "Config", "current-context": "c",
              "clusters": [{"name": "c", "cluster": {"server": api.url}}],
              "users": [{"name": "u", "user": {"token": "sekret"}}],
              "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u", "namespace": "team"}}]}
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    monkeypatch.setenv("KUBECONFIG", str(path))
    cluster = kube.Cluster()
    if retry_for is not None:
        cluster.retry_for = retry_for
    return cluster


def ok(obj=None):
    return 200, [], json.dumps(obj if obj is not None else {"kind": "ConfigMap"}).encode()


def throttled(retry_after="1"):
    return 429, [("Retry-After", retry_after)] if retry_after is not None else [], STATUS_429


def test_a_throttled_request_waits_as_told_then_succeeds(tmp_path, monkeypatch, capsys):
    api = FakeApi([throttled("1"), ok({"data": {"a": "1"}})])
    cluster = cluster_for(api, tmp_path, monkeypatch)
    start = time.monotonic()
    assert cluster.request("GET", cluster.path("configmaps", "x")) == {"data": {"a": "1"}}
    assert len(api.seen) == 2
    waited = api.seen[1][2] - api.seen[0][2]
    assert 1.0 <= waited < 2.0, waited  # Retry-After: 1, and a little jitter
    assert time.monotonic() - start < 3
    assert api.seen[1][3] == "Bearer sekret"  # the retry is the same request, credentials and all
    err = capsys.readouterr().err
    assert err == "womm: the API server is throttling requests (429); retrying\n"


def test_throttling_is_said_once_per_process(tmp_path, monkeypatch, capsys):
    api = FakeApi([throttled("0"), ok(), throttled("0"), ok()])
    cluster = cluster_for(api, tmp_path, monkeypatch)
    cluster.request("GET", "/a")
    cluster.request("POST", "/b", body={})  # a 429 was never processed: a create is sent again too
    assert [m for m, *_ in api.seen] == ["GET", "GET", "POST", "POST"]
    assert capsys.readouterr().err.count("throttling") == 1


@pytest.mark.slow
def test_the_wait_is_bounded(tmp_path, monkeypatch):
    api = FakeApi([throttled("1")])
    cluster = cluster_for(api, tmp_path, monkeypatch, retry_for=2.5)
    start = time.monotonic()
    with pytest.raises(kube.ApiError) as e:
        cluster.request("GET", "/a")
    assert e.value.status == 429 and "Too many requests" in str(e.value)
    assert time.monotonic() - start < 3
    assert 2 <= len(api.seen) <= 3


def test_a_retry_after_longer_than_the_budget_is_not_waited_for(tmp_path, monkeypatch):
    api = FakeApi([throttled("3600"), ok()])
    cluster = cluster_for(api, tmp_path, monkeypatch)
    start = time.monotonic()
    with pytest.raises(kube.ApiError):
        cluster.request("GET", "/a")
    assert time.monotonic() - start < 1 and len(api.seen) == 1


def test_without_retry_after_the_waits_grow():
    backoff = kube.Backoff(budget=60)
    waits = [backoff.wait(429) for _ in range(6)]
    assert all(0.25 <= w <= 8 for w in waits)
    assert waits[5] > waits[0]
    assert kube.Backoff(budget=0.1).wait(429, "1") is None


@pytest.mark.parametrize("value, seconds", [("1", 1), (" 7 ", 7), ("soon", None), ("", None), (None, None)])
def test_retry_after_in_seconds(value, seconds):
    assert kube.retry_after_seconds(value) == seconds


def test_retry_after_as_a_date():
    from email.utils import formatdate

    assert 1 <= kube.retry_after_seconds(formatdate(time.time() + 3, usegmt=True)) <= 3
    assert kube.retry_after_seconds(formatdate(time.time() - 30, usegmt=True)) == 0


def test_a_503_is_waited_out_where_sending_again_is_safe(tmp_path, monkeypatch):
    unavailable = (503, [], b'{"message": "try later"}')
    api = FakeApi([unavailable, ok()])
    cluster = cluster_for(api, tmp_path, monkeypatch)
    cluster.request("GET", "/a")
    assert len(api.seen) == 2
    # A create answered 503 may have been done: its error stands, unless the server said when to come back.
    api = FakeApi([unavailable, ok()])
    cluster = cluster_for(api, tmp_path, monkeypatch)
    with pytest.raises(kube.ApiError) as e:
        cluster.request("POST", "/a", body={})
    assert e.value.status == 503 and len(api.seen) == 1
    api = FakeApi([(503, [("Retry-After", "0")], b"{}"), ok()])
    cluster = cluster_for(api, tmp_path, monkeypatch)
    cluster.request("POST", "/a", body={})
    assert len(api.seen) == 2


def test_other_errors_are_not_retried(tmp_path, monkeypatch):
    api = FakeApi([(500, [("Retry-After", "1")], b'{"message": "boom"}'), ok()])
    cluster = cluster_for(api, tmp_path, monkeypatch)
    with pytest.raises(kube.ApiError, match="boom"):
        cluster.request("GET", "/a")
    assert len(api.seen) == 1


def test_a_reset_connection_is_retried_for_idempotent_requests_only(tmp_path, monkeypatch):
    api = FakeApi(["reset", ok({"x": 1})])
    cluster = cluster_for(api, tmp_path, monkeypatch)
    assert cluster.request("GET", "/a") == {"x": 1}
    assert cluster.request("PATCH", "/lease", body={}, idempotent=True) == {"x": 1}
    api = FakeApi(["reset", ok()])
    cluster = cluster_for(api, tmp_path, monkeypatch)
    with pytest.raises(kube.Unreachable):
        cluster.request("POST", "/a", body={})
    assert len(api.seen) == 1


def test_a_watch_whose_first_request_is_throttled(tmp_path, monkeypatch):
    events = b"".join(json.dumps({"type": "ADDED", "object": {"metadata": {"name": n}}}).encode() + b"\n"
                      for n in ("p1", "p2"))
    api = FakeApi([throttled("0"), (200, [], events)])
    cluster = cluster_for(api, tmp_path, monkeypatch)
    got = [(kind, obj["metadata"]["name"]) for kind, obj in cluster.watch("/api/v1/namespaces/team/pods")]
    assert got == [("ADDED", "p1"), ("ADDED", "p2")]
    assert "watch=true" in api.seen[1][1]


TRANSPORTS = {"spdy": kube.SpdyExecStream, "websocket": kube.ExecStream}


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_an_exec_handshake_answered_429_is_attempted_again(transport, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("WOMM_EXEC_TRANSPORT", transport)
    api = FakeApi([throttled("1"), transport])
    cluster = cluster_for(api, tmp_path, monkeypatch)
    start = time.monotonic()
    stream = cluster.exec_stream("pod", ["echo", "hi"])
    assert time.monotonic() - start >= 1 and type(stream) is TRANSPORTS[transport]
    if transport == "spdy":
        stream.send(b"hi")
        stream.close_stdin()
    assert stream.recv() == (1, b"hi")
    stream.close()
    assert len(api.seen) == 2 and "/pods/pod/exec?" in api.seen[1][1]
    assert "throttling requests (429)" in capsys.readouterr().err


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_an_exec_handshake_refused_otherwise_is_an_api_error(transport, tmp_path, monkeypatch):
    monkeypatch.setenv("WOMM_EXEC_TRANSPORT", transport)
    api = FakeApi([(403, [], b'{"kind": "Status", "message": "pods \\"pod\\" is forbidden"}'), transport])
    cluster = cluster_for(api, tmp_path, monkeypatch)
    with pytest.raises(kube.ApiError) as e:
        cluster.exec_stream("pod", ["true"])
    assert e.value.status == 403 and str(e.value) == 'pods "pod" is forbidden' and len(api.seen) == 1


def test_a_spdy_exec_opens_its_streams_and_carries_stdin_its_end_output_and_status(tmp_path, monkeypatch):
    api = FakeApi(["spdy"])
    stream = cluster_for(api, tmp_path, monkeypatch).exec_stream("pod", ["cat"])
    for piece in (b"one ", b"two " * 70000, b"three"):  # one of them longer than a frame of the fake's reads
        stream.send(piece)
    stream.close_stdin()
    got = bytearray()
    while (item := stream.recv()) is not None:
        if item[0] == kube.STDOUT:
            got += item[1]
    assert got == b"one " + b"two " * 70000 + b"three" and stream.exit_status() == 0
    assert api.spdy_streams == {"error": 1, "stdin": 3, "stdout": 5, "stderr": 7}


def test_a_tasks_reporter_carries_the_notices(tmp_path, monkeypatch, capsys):
    api = FakeApi([throttled("0"), ok()])
    cluster = cluster_for(api, tmp_path, monkeypatch)
    report.Reporter("abcdefgh")
    cluster.request("GET", "/a")
    assert capsys.readouterr().err == "womm: task abcdefgh: the API server is throttling requests (429); retrying\n"


# ---------------------------------------------------------------- Warning headers

def test_warning_texts():
    assert kube.warning_texts(['299 - "would violate PodSecurity \\"restricted:latest\\": a, b"']) == \
        ['would violate PodSecurity "restricted:latest": a, b']
    # Two in one header (as joined), with a date; and something that is not a warning-value.
    assert kube.warning_texts(['299 - "one", 299 k8s "two" "Wed, 21 Oct 2015 07:28:00 GMT"', "plain text"]) == \
        ["one", "two", "plain text"]


def test_warnings_are_shown_once_each_with_controls_made_visible(tmp_path, monkeypatch, capsys):
    # The API server writes UTF-8; http.server sends a header's characters as Latin-1 bytes.
    evil = '299 - "red \x1b[31m bell \x07 \u202e sdrawkcab \\"quoted\\""'.encode().decode("latin-1")
    api = FakeApi([(200, [("Warning", '299 - "policy/v1beta1 is deprecated"'), ("Warning", evil)], b"{}"),
                   (200, [("Warning", '299 - "policy/v1beta1 is deprecated"')], b"{}"),
                   (200, [("Warning", '299 - "another"')], b"{}")])
    cluster = cluster_for(api, tmp_path, monkeypatch)
    for _ in range(3):
        cluster.request("GET", "/a")
    lines = capsys.readouterr().err.splitlines()
    assert lines == ["womm: warning from the Kubernetes API: policy/v1beta1 is deprecated",
                     'womm: warning from the Kubernetes API: red \\x1b[31m bell \\x07 \\u202e sdrawkcab "quoted"',
                     "womm: warning from the Kubernetes API: another"]


def test_a_tasks_reporter_carries_the_warnings(tmp_path, monkeypatch, capsys):
    api = FakeApi([(200, [("Warning", '299 - "would violate PodSecurity"')], b"{}")])
    cluster = cluster_for(api, tmp_path, monkeypatch)
    report.Reporter("abcdefgh")
    cluster.request("GET", "/a")
    assert capsys.readouterr().err == "womm: task abcdefgh: warning from the Kubernetes API: would violate PodSecurity\n"


# ---------------------------------------------------------------- womm-config

class Refusing:
    namespace = "team"

    def __init__(self, error):
        self.error = error

    def path(self, *args, **kw):
        return "/api/v1/namespaces/team/configmaps/womm-config"

    def request(self, *args, **kw):
        raise self.error


def test_an_unreadable_womm_config_says_why():
    forbidden = kube.ApiError(403, "Forbidden", b'{"message": "configmaps \\"womm-config\\" is forbidden: no"}')
    with pytest.raises(WommError) as e:
        settings.configured_image(Refusing(forbidden))
    assert str(e.value) == ('cannot read ConfigMap womm-config in namespace team: 403 Forbidden: '
                            'configmaps "womm-config" is forbidden: no')
    assert e.value.doctor
    with pytest.raises(WommError) as e:
        settings.configured_image(Refusing(kube.ApiError(500, "Internal Server Error")))
    assert str(e.value) == "cannot read ConfigMap womm-config in namespace team: 500 Internal Server Error"
    with pytest.raises(WommError) as e:
        settings.configured_image(Refusing(kube.ApiError(404, "Not Found")))
    assert str(e.value).startswith("no helper image known for namespace team")


# ---------------------------------------------------------------- the heartbeat

class Renewals:
    """A cluster whose Lease renewals fail `failures` times, then succeed."""

    namespace = "team"

    def __init__(self, failures):
        self.failures = failures
        self.times = []

    def path(self, *args, **kw):
        return "/apis/coordination.k8s.io/v1/namespaces/team/leases/womm-task-t"

    def request(self, method, path, **kw):
        self.times.append(time.monotonic())
        assert method == "PATCH" and kw.get("idempotent") is True
        if len(self.times) <= self.failures:
            raise kube.ApiError(429, "Too Many Requests", STATUS_429)
        return {}


def test_a_failed_renewal_is_tried_again_sooner(monkeypatch):
    monkeypatch.setattr(taskobjects, "RENEW_EVERY", 0.5)
    monkeypatch.setattr(taskobjects, "RENEW_AGAIN", 0.05)
    cluster, said, stopping = Renewals(failures=3), [], threading.Event()
    taskobjects.keep_alive(cluster, SimpleNamespace(id="t"), stopping, said.append)
    time.sleep(1.3)
    stopping.set()
    t = cluster.times
    assert len(t) >= 5, t
    assert all(b - a < 0.3 for a, b in zip(t[:3], t[1:4], strict=True))  # after each failure: soon
    assert t[4] - t[3] >= 0.45  # after a success: the usual interval
    assert said == ["could not renew the task's heartbeat: Too many requests, please try again later.; trying again",
                    "the task's heartbeat is renewed again"]
