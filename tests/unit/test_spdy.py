"""womm.spdy and womm.kube's SpdyExecStream against a tiny local server playing the API server's
(and a hostile or broken one's) side of an exec: a frame cut by a silent or closed connection, data
before the streams' replies, a proxy's bare refusal, the server's PING while our sender is blocked."""

import base64
import socket
import ssl
import struct
import threading
import time
import zlib

import pytest
import silentapi
from silentapi import HttpProxy, within
from test_kube_pushback import FakeApi, cluster_for

from womm import kube, spdy


class SpdyServer:
    """Accepts one exec: reads the upgrade request and answers 101 (or `refuse`, raw HTTP), replies to
    the client's four SYN_STREAMs (unless `early` bytes of data come first), then runs then(conn, ids)."""

    def __init__(self, then=None, early=0, refuse=None):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.then, self.early, self.refuse = then, early, refuse
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        conn, _ = self.listener.accept()
        try:
            self._answer(conn)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up first (a flood it refused): what it did is what the test looks at

    def _answer(self, conn):
        head = b""
        while b"\r\n\r\n" not in head:
            head += conn.recv(65536)
        if self.refuse:
            conn.sendall(self.refuse)
            conn.close()
            return
        conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: SPDY/3.1\r\nConnection: Upgrade\r\n\r\n")
        rfile, inflate, ids = conn.makefile("rb"), zlib.decompressobj(), {}
        while len(ids) < 4:
            first, second = struct.unpack(">II", rfile.read(8))
            body = rfile.read(second & 0xFFFFFF)
            block = inflate.decompress(body[10:])
            n = struct.unpack_from(">I", block, 4)[0]
            ids[block[12 + n:].decode()] = struct.unpack_from(">I", body)[0]
        if self.early:
            conn.sendall(data_frame(ids["stdout"], b"x" * self.early))
        for stream in ids.values():
            conn.sendall(struct.pack(">HHII", 0x8003, 2, 4, stream))
        if self.then:
            self.then(conn, ids)


def data_frame(stream, data, fin=False):
    return struct.pack(">II", stream, (fin << 24) | len(data)) + data


def test_a_frame_cut_by_a_connection_gone_silent_ends_the_stream_once_silent(tmp_path, monkeypatch):
    held = []

    def part_then_silence(conn, ids):
        conn.sendall(data_frame(ids["stdout"], b"whole"))
        conn.sendall(data_frame(ids["stdout"], b"0123456789")[:11])  # 3 bytes of its payload, then nothing
        held.append(conn)

    stream = cluster_for(SpdyServer(part_then_silence), tmp_path, monkeypatch).exec_stream("p", ["cat"])
    assert stream.recv() == (kube.STDOUT, b"whole")
    stream.keepalive(every=0.2, dead_after=1)
    assert within(10, stream.recv) is None and stream.silent == 1


def test_a_frame_cut_by_the_connections_end_ends_the_stream(tmp_path, monkeypatch):
    def part_then_close(conn, ids):
        conn.sendall(data_frame(ids["stdout"], b"0123456789")[:11])
        conn.close()

    stream = cluster_for(SpdyServer(part_then_close), tmp_path, monkeypatch).exec_stream("p", ["cat"])
    assert within(10, stream.recv) is None  # not EOFError from the reader's thread


def test_data_flooding_in_before_the_streams_replies_is_refused(tmp_path, monkeypatch):
    cluster = cluster_for(SpdyServer(early=spdy.MAX_EARLY + 1), tmp_path, monkeypatch)
    with pytest.raises(kube.Unreachable, match="data before it opened"):
        within(10, cluster.exec_stream, "p", ["cat"])


@pytest.mark.parametrize("answer", [
    (403, [], b""),  # Envoy, to an upgrade it was not told of
    (400, [], b'{"kind": "Status", "code": 400, "message": "Upgrade request required"}'),
])
def test_an_exec_goes_by_websocket_where_spdy_does_not_pass_and_stays_there(answer, tmp_path, monkeypatch):
    api = FakeApi([answer, "websocket"])
    cluster = cluster_for(api, tmp_path, monkeypatch)
    for _ in range(2):
        stream = cluster.exec_stream("pod", ["echo", "hi"])
        assert type(stream) is kube.ExecStream and stream.recv() == (1, b"hi")
        stream.close()
    assert [method for method, *_ in api.seen] == ["POST", "GET", "GET"]


def test_the_api_servers_own_refusal_stands_for_both_transports(tmp_path, monkeypatch):
    api = FakeApi([(403, [], b'{"kind": "Status", "code": 403, "message": "pods \\"pod\\" is forbidden"}'),
                   "websocket"])
    with pytest.raises(kube.ApiError, match="forbidden"):
        cluster_for(api, tmp_path, monkeypatch).exec_stream("pod", ["true"])
    assert len(api.seen) == 1


def test_the_kubelets_refusal_relayed_by_the_api_server_keeps_spdy(tmp_path, monkeypatch):
    # What the API server says when the pod's container does not run (yet): its words name the
    # upgrade, but the refusal is the kubelet's, and WebSocket would get the same.
    refused = (b'{"kind": "Status", "code": 500, "message": "Internal error occurred: unable to upgrade '
               b'connection: container not found (\\"womm\\")"}')
    api = FakeApi([(500, [], refused), "websocket"])
    cluster = cluster_for(api, tmp_path, monkeypatch)
    with pytest.raises(kube.ApiError, match="container not found"):
        cluster.exec_stream("pod", ["true"])
    assert len(api.seen) == 1 and cluster.exec_spdy


def test_the_kubelets_refusal_in_bare_text_stands_for_both_and_keeps_spdy(tmp_path, monkeypatch):
    # A pod's early try, before its helper container runs: the API server relays the kubelet's
    # answer as it came, text/plain: an answer for both transports, not tried again by WebSocket.
    refused = (500, [("Content-Type", "text/plain; charset=utf-8")], b'container not found ("womm")')
    api = FakeApi([refused, "spdy"])
    cluster = cluster_for(api, tmp_path, monkeypatch)
    with pytest.raises(kube.ApiError) as e:
        cluster.exec_stream("pod", ["true"])
    assert e.value.status == 500 and cluster.exec_spdy
    assert str(e.value) == '500 Internal Server Error: container not found ("womm")'
    assert type(cluster.exec_stream("pod", ["cat"])) is kube.SpdyExecStream
    assert [method for method, *_ in api.seen] == ["POST", "POST"]


def test_an_api_error_shows_a_bodys_one_short_line_and_nothing_else():
    assert str(kube.ApiError(502, "Bad Gateway", b"<html>\n<h1>502</h1>\n</html>")) == "502 Bad Gateway"
    assert str(kube.ApiError(500, "Internal Server Error", b"no\x1b[2J")) == "500 Internal Server Error: no\\x1b[2J"
    assert str(kube.ApiError(404, "Not Found", b"x" * 201)) == "404 Not Found"
    assert str(kube.ApiError(404, "Not Found", b"\x07" * 40)) == "404 Not Found: " + "\\x07" * 40  # 160 escaped
    assert str(kube.ApiError(404, "Not Found", b"\x07" * 60)) == "404 Not Found"  # 240 once escaped
    assert str(kube.ApiError(403, "Forbidden", b"\xff")) == "403 Forbidden"


@pytest.mark.parametrize("answer", [
    (500, [("Content-Type", "text/html")], b"<html><body>upstream failed</body></html>"),  # a proxy's page
    (500, [], b'{"kind": "Status", "code": 500, "message": "Internal error occurred: cannot upgrade to SPDY"}'),
])
def test_a_proxys_500_still_goes_by_websocket(answer, tmp_path, monkeypatch):
    api = FakeApi([answer, "websocket"])
    stream = cluster_for(api, tmp_path, monkeypatch).exec_stream("pod", ["echo", "hi"])
    assert type(stream) is kube.ExecStream and stream.recv() == (1, b"hi")
    assert [method for method, *_ in api.seen] == ["POST", "GET"]


def test_a_bare_refusal_that_websocket_gets_too_keeps_spdy_for_the_next_exec(tmp_path, monkeypatch):
    api = FakeApi([(403, [], b""), (403, [], b""), "spdy"])
    cluster = cluster_for(api, tmp_path, monkeypatch)
    with pytest.raises(kube.ApiError):
        cluster.exec_stream("pod", ["true"])
    assert type(cluster.exec_stream("pod", ["cat"])) is kube.SpdyExecStream
    assert [method for method, *_ in api.seen] == ["POST", "GET", "POST"]


def test_a_status_that_speaks_of_the_upgrade_in_other_words_goes_by_websocket_this_time_only(tmp_path, monkeypatch):
    # A proxy built with Kubernetes' own libraries may answer with a Status of its own.
    refused = b'{"kind": "Status", "code": 400, "message": "this proxy cannot upgrade to SPDY/3.1"}'
    api = FakeApi([(400, [], refused), "websocket"])
    cluster = cluster_for(api, tmp_path, monkeypatch)
    stream = cluster.exec_stream("pod", ["echo", "hi"])
    assert type(stream) is kube.ExecStream and stream.recv() == (1, b"hi")
    assert [method for method, *_ in api.seen] == ["POST", "GET"] and cluster.exec_spdy


def test_an_impatient_exec_is_refused_at_the_first_pushback(tmp_path, monkeypatch):
    throttled = (429, [("Retry-After", "1")], b'{"kind": "Status", "code": 429, "message": "Too many requests"}')
    api = FakeApi([throttled, throttled])
    cluster = cluster_for(api, tmp_path, monkeypatch)
    started = time.monotonic()
    with pytest.raises(kube.ApiError) as e:
        cluster.exec_stream("pod", ["true"], patient=False)
    assert e.value.status == 429 and len(api.seen) == 1 and time.monotonic() - started < 1


def test_a_connection_reset_before_any_answer_goes_by_websocket_this_time_only(tmp_path, monkeypatch):
    api = FakeApi(["reset", "websocket"])
    cluster = cluster_for(api, tmp_path, monkeypatch)
    stream = cluster.exec_stream("pod", ["echo", "hi"])
    assert type(stream) is kube.ExecStream and stream.recv() == (1, b"hi")
    assert [method for method, *_ in api.seen] == ["POST", "GET"] and cluster.exec_spdy


def test_the_servers_ping_is_answered_while_our_sender_waits_on_full_buffers():
    ours, theirs = socket.socketpair()
    conn = spdy.Connection(ours, ["error", "stdin", "stdout", "stderr"])
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    def send():
        try:
            conn.send("stdin", b"x" * (8 << 20))
        except OSError:
            pass  # the test is over

    threading.Thread(target=send, daemon=True).start()  # the other side reads nothing: the sender blocks,
    # holding the connection's lock
    time.sleep(0.3)
    theirs.sendall(struct.pack(">HHII", 0x8003, spdy.PING, 4, 2) + data_frame(5, b"out"))
    assert within(5, conn.read)[0] == spdy.PING
    assert within(5, conn.read) == ("data", 5, b"out", False)  # the reader goes on reading
    ours.close()


def test_the_kubeconfigs_proxy_tunnels_a_spdy_exec(tmp_path, monkeypatch):
    def echo(conn, ids):
        conn.sendall(data_frame(ids["stdout"], b"through", fin=True))
        conn.close()

    server = SpdyServer(echo)
    # The server the kubeconfig names is reachable through the proxy only (nothing listens on port 9).
    proxy = HttpProxy(routes={"127.0.0.1:9": ("127.0.0.1", int(server.url.rsplit(":", 1)[1]))})
    try:
        cluster = silentapi.cluster_for("http://127.0.0.1:9", tmp_path, monkeypatch,
                                        proxy_url=f"http://someone:p%40ss@127.0.0.1:{proxy.port}")
        stream = cluster.exec_stream("p", ["cat"])
        assert type(stream) is kube.SpdyExecStream and within(10, stream.recv) == (kube.STDOUT, b"through")
    finally:
        proxy.close()
    assert proxy.seen == [("CONNECT", "127.0.0.1:9", "Basic " + base64.b64encode(b"someone:p@ss").decode())]


class RecordingSocket:
    def __init__(self):
        self.writes = []

    def sendall(self, data):
        self.writes.append(data)


def test_a_large_piece_of_stdin_goes_to_the_socket_as_it_is_after_its_frames_header():
    """A --pipe block is not copied once more behind its frame's header (and the pod protocol's) on
    its way to TLS; a small frame stays one write."""
    sock = RecordingSocket()
    conn = spdy.Connection(sock, ["error", "stdin", "stdout", "stderr"])
    block, head = b"x" * (256 << 10), b"HEAD"
    conn.send("stdin", block, head=head)
    assert b"".join(bytes(w) for w in sock.writes) == data_frame(conn.ids["stdin"], head + block)
    assert any(isinstance(w, memoryview) and w.obj is block for w in sock.writes), "the block, not a copy"
    sock.writes.clear()
    conn.send("stdin", b"small", head=head, fin=True)
    assert sock.writes == [data_frame(conn.ids["stdin"], head + b"small", fin=True)]



def test_a_frames_header_and_data_never_pass_the_longest_frame():
    """head + data longer than a SPDY frame holds: the first frame is cut at the longest (its length
    never spills into the flags), the rest follows, FIN on the last."""
    sock = RecordingSocket()
    conn = spdy.Connection(sock, ["error", "stdin", "stdout", "stderr"])
    data, head = b"y" * spdy.MAX_DATA, b"HEAD"
    conn.send("stdin", data, head=head, fin=True)
    stream, frames = b"".join(bytes(w) for w in sock.writes), []
    while stream:
        ident, second = struct.unpack_from(">II", stream)
        frames.append((ident, second >> 24, second & 0xFFFFFF))
        stream = stream[8 + (second & 0xFFFFFF):]
    ident = conn.ids["stdin"]
    assert frames == [(ident, 0, spdy.MAX_DATA), (ident, spdy.FIN, len(head))]


def spoiling_tls_server(pki, spoiled):
    """A TLS listener whose first `spoiled` handshakes get a fatal alert (decode_error) for an answer;
    the others pass, then it closes. (the listener, the list of how each connection went)"""
    listener = socket.create_server(("127.0.0.1", 0))
    context, went = silentapi.tls(pki), []

    def serve():
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return  # closed: the test is over
            if len(went) < spoiled:
                went.append("spoiled")
                conn.recv(65536)  # the ClientHello
                conn.sendall(silentapi.SPOILED_HANDSHAKE)
                conn.close()
                continue
            try:
                context.wrap_socket(conn, server_side=True).close()
                went.append("passed")
            except OSError:
                went.append("failed")

    threading.Thread(target=serve, daemon=True).start()
    return listener, went


def client_context(pki=None):
    """What trusts pki's CA (without pki: only the system's)."""
    return ssl.create_default_context(cafile=str(pki / "ca.crt") if pki else None)


def test_a_spoiled_tls_handshake_is_made_again_before_the_exec_is_sent_and_a_refused_certificate_is_not(pki):
    with spoiling_tls_server(pki, spoiled=2)[0] as listener:
        with spdy._connection(listener.getsockname(), 5, None, client_context(pki), "127.0.0.1") as sock:
            assert sock.version()  # the third handshake passed
    listener, went = spoiling_tls_server(pki, spoiled=spdy.HANDSHAKES)
    with listener, pytest.raises(ssl.SSLError, match="decode error"):
        spdy._connection(listener.getsockname(), 5, None, client_context(pki), "127.0.0.1")
    assert went == ["spoiled"] * spdy.HANDSHAKES
    listener, went = spoiling_tls_server(pki, spoiled=0)
    with listener, pytest.raises(ssl.SSLCertVerificationError):
        spdy._connection(listener.getsockname(), 5, None, client_context(), "127.0.0.1")  # a CA that did not sign it
    silentapi.wait_until("the server's side of the one handshake", 5, lambda: went)
    time.sleep(0.3)  # (a second connection, were there one, would have come by now)
    assert went == ["failed"]
