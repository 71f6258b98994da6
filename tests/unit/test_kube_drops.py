"""Silent drops in womm.kube, against local stand-ins (tests/unit/silentapi.py, and
tests/faultproxy.py's blackhole mode, which forgets a connection idle for a while without a FIN or a
RST, as load balancers do): a watch that goes silent is given up; a pooled connection idle too long
is not used again; exec streams are kept alive by pings, and one dropped anyway is given up, its
reader woken; the lazy share's stream dropped anyway ends the run saying why; the kubeconfig's
proxy-url carries requests and exec streams, and a proxy womm cannot use is refused."""

import base64
import sys
import threading
import time
from pathlib import Path

import pytest
from silentapi import HttpProxy, cluster_for, pod, tls, wait_until, within

from womm import kube, kubeconfig
from womm.shares.lazy import LazyShare

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import faultproxy  # noqa: E402

PODS = "/api/v1/namespaces/team/pods"


@pytest.mark.slow
def test_a_watch_asks_for_bookmarks_and_an_end_well_under_a_minute_and_gives_up_a_silent_one(
        apis, tmp_path, monkeypatch):
    api = apis(watches=[[("event", "ADDED", pod("a")), ("silent",)]])
    cluster = cluster_for(api.url, tmp_path, monkeypatch)
    assert kube.WATCH_SECONDS + kube.WATCH_GRACE < 60  # nginx's and ELB's idle cut
    monkeypatch.setattr(kube, "WATCH_SECONDS", 1)
    monkeypatch.setattr(kube, "WATCH_GRACE", 1)
    events = []

    def watch():
        for event in cluster.watch(PODS, {"labelSelector": "x=y"}):
            events.append(event)

    with pytest.raises(kube.Silent, match="said nothing for 2 s"):
        within(6, watch)
    assert [kind for kind, _ in events] == ["ADDED"]
    query = api.watch_queries()[0]
    assert query["allowWatchBookmarks"] == "true" and query["timeoutSeconds"] == "1"
    assert "resourceVersion" not in query


# ---------------------------------------------------------------- pooled connections


def test_a_pooled_connection_idle_for_too_long_is_not_used_again(apis, tmp_path, monkeypatch):
    api = apis(objects={"/api/v1/namespaces/team/configmaps/x": {"kind": "ConfigMap"}})
    with faultproxy.BlackholeProxy(f"127.0.0.1:{api.server_address[1]}", idle=0.5) as proxy:
        cluster = cluster_for(f"http://127.0.0.1:{proxy.port}", tmp_path, monkeypatch)
        monkeypatch.setattr(kube, "IDLE_REUSE", 0.3)
        path = cluster.path("configmaps", "x")
        assert cluster.request("GET", path)["kind"] == "ConfigMap"
        time.sleep(1)  # the proxy forgot the pooled connection, without a word
        assert within(4, cluster.request, "GET", path, None, None, 3)["kind"] == "ConfigMap"
        assert proxy.stats()["connections"] == 2
    assert kube.IDLE_REUSE < 60 and kube.IDLE_REUSE > 0


def test_a_handshake_the_server_spoils_is_made_again_for_a_request_that_may_be_sent_twice(apis, pki, tmp_path,
                                                                                         monkeypatch):
    api = apis(objects={"/api/v1/namespaces/team/configmaps/x": {"kind": "ConfigMap"}}, tls=tls(pki), spoiled=1)
    cluster = cluster_for(api.url, tmp_path, monkeypatch, pki=pki)
    assert cluster.request("GET", cluster.path("configmaps", "x"))["kind"] == "ConfigMap"
    assert api.connections == 2
    api.spoiled = 1  # not sent again where it may have been heard: one line, naming the alert
    with pytest.raises(kube.Unreachable, match="alert decode error"):
        cluster._pool().clear()  # a new connection, so a new handshake
        cluster.request("POST", cluster.path("configmaps"), body={})
    assert api.connections == 3
    # A certificate refused is no accident: said at once, not tried again.
    cluster = cluster_for(api.url, tmp_path, monkeypatch)  # without the CA that signed the server's
    with pytest.raises(kube.Unreachable, match="certificate verify failed"):
        cluster.request("GET", cluster.path("configmaps", "x"))
    assert api.connections == 4


# ---------------------------------------------------------------- exec streams


@pytest.mark.slow
def test_an_exec_stream_kept_alive_outlives_an_idle_cut(apis, pki, tmp_path, monkeypatch):
    api = apis(exec_mode="answer", tls=tls(pki))
    with faultproxy.BlackholeProxy(f"127.0.0.1:{api.server_address[1]}", idle=1) as proxy:
        cluster = cluster_for(f"https://127.0.0.1:{proxy.port}", tmp_path, monkeypatch, pki)
        stream = cluster.exec_stream("p", ["cat"])
        stream.keepalive(every=0.3, dead_after=5)
        time.sleep(2.5)  # longer than the proxy keeps an idle connection
        stream.send(b"hello")
        assert within(3, stream.recv) == (kube.STDOUT, b"hello")
        assert stream.silent is None and api.pings >= 5
        assert proxy.stats().get("dropped", 0) == 0
        stream.close()


def test_a_dropped_exec_stream_is_given_up_once_silent_and_its_reader_woken(apis, pki, tmp_path, monkeypatch):
    api = apis(exec_mode="deaf", tls=tls(pki))  # as a connection a load balancer forgot: nothing comes back
    cluster = cluster_for(api.url, tmp_path, monkeypatch, pki)
    stream = cluster.exec_stream("p", ["cat"])
    said = []
    stream.keepalive(every=0.2, dead_after=1, on_silent=lambda: said.append(stream.silent))
    assert within(4, stream.recv) is None  # the reader, blocked in recv(), sees the end
    assert stream.silent == 1
    wait_until("on_silent called", 2, lambda: said == [1])
    assert api.pings >= 3


def test_a_sender_blocked_on_a_dropped_stream_does_not_keep_it_from_being_given_up(apis, tmp_path, monkeypatch):
    api = apis(exec_mode="stuck")  # reads nothing: the buffers fill and the sender blocks, holding the stream
    stream = cluster_for(api.url, tmp_path, monkeypatch).exec_stream("p", ["cat"])
    stream.keepalive(every=0.2, dead_after=1)
    failed = []

    def send():
        try:
            while True:
                stream.send(b"x" * 65536)
        except OSError:
            failed.append(True)

    threading.Thread(target=send, daemon=True).start()
    assert within(5, stream.recv) is None
    assert stream.silent == 1
    wait_until("the sender released", 3, lambda: failed)


@pytest.mark.slow
def test_closing_a_dropped_stream_that_another_thread_reads_wakes_that_reader(apis, tmp_path, monkeypatch):
    api = apis(exec_mode="deaf")  # the close frame is never answered
    stream = cluster_for(api.url, tmp_path, monkeypatch).exec_stream("p", ["cat"])
    read = []
    reader = threading.Thread(target=lambda: read.append(stream.recv()), daemon=True)
    reader.start()
    time.sleep(0.3)  # the reader waits in recv()
    within(kube.CLOSE_WAIT + 2, stream.close)
    reader.join(2)
    assert read == [None]


def test_closing_a_live_stream_that_another_thread_reads_takes_no_wait(apis, tmp_path, monkeypatch):
    api = apis(exec_mode="answer")  # answers the close frame
    stream = cluster_for(api.url, tmp_path, monkeypatch).exec_stream("p", ["cat"])
    read = []
    reader = threading.Thread(target=lambda: read.append(stream.recv()), daemon=True)
    reader.start()
    time.sleep(0.3)
    started = time.monotonic()
    stream.close()
    assert time.monotonic() - started < 1
    reader.join(2)
    assert read == [None]


def test_output_waiting_for_a_busy_reader_is_not_silence(apis, tmp_path, monkeypatch):
    api = apis(exec_mode="chatty")
    cluster = cluster_for(api.url, tmp_path, monkeypatch)
    stream = cluster.exec_stream("p", ["cat"])
    stream.keepalive(every=0.2, dead_after=0.6)
    time.sleep(1.5)  # the reader is busy elsewhere: ticks wait in the socket
    assert stream.silent is None
    assert stream.recv() == (kube.STDOUT, b"tick")
    stream.close()


def test_recv_returns_at_a_pong_when_asked_to(apis, tmp_path, monkeypatch):
    api = apis(exec_mode="answer")
    stream = cluster_for(api.url, tmp_path, monkeypatch).exec_stream("p", ["sh"], tty=True)
    stream.ping()
    # A terminal's relay waits in select() for the keyboard too: a pong must not hold it in recv().
    assert within(3, stream.recv, True) == (None, b"")
    stream.close()


def test_keepalive_threads_end_with_their_streams(apis, tmp_path, monkeypatch):
    api = apis(exec_mode="answer")
    cluster = cluster_for(api.url, tmp_path, monkeypatch)
    for _ in range(5):
        stream = cluster.exec_stream("p", ["true"])
        stream.keepalive(every=0.1, dead_after=5)
        stream.close()
    wait_until("the keepalive threads gone", 3,
               lambda: not [t for t in threading.enumerate() if t.name == "exec keepalive"])


def test_the_lazy_shares_stream_dropped_anyway_ends_the_run_saying_why(apis, tmp_path, monkeypatch):
    api = apis(exec_mode="deaf")
    monkeypatch.setattr(kube, "PING_EVERY", 0.2)
    monkeypatch.setattr(kube, "DEAD_AFTER", 1)
    share = LazyShare.__new__(LazyShare)  # only its stream to the cache matters here
    share.closing = False
    share.stream = cluster_for(api.url, tmp_path, monkeypatch).exec_stream("cache", ["womm-lazy-cache"])
    fatal = []
    share._keep_alive(fatal.append)
    wait_until("the run told", 4, lambda: fatal)
    assert "lazy share" in fatal[0] and "heard nothing for 1 s" in fatal[0] and "lost the directory" in fatal[0]
    assert api.pings >= 3


# ---------------------------------------------------------------- the kubeconfig's proxy-url


def request_and_stream_go_through(cluster):
    """A GET and an exec stream (a `cat`, answered by the stand-in) each reach the API."""
    assert cluster.request("GET", cluster.path("configmaps", "x"))["kind"] == "ConfigMap"
    stream = cluster.exec_stream("p", ["cat"])
    stream.send(b"through")
    assert stream.recv() == (kube.STDOUT, b"through")
    stream.close()


def test_the_kubeconfigs_proxy_url_carries_requests_and_exec_streams(apis, pki, tmp_path, monkeypatch):
    monkeypatch.setenv("WOMM_EXEC_TRANSPORT", "websocket")  # (SPDY's tunnel: test_spdy)
    api = apis(objects={"/api/v1/namespaces/team/configmaps/x": {"kind": "ConfigMap"}}, exec_mode="answer",
               tls=tls(pki))
    # The server the kubeconfig names is reachable through the proxy only (nothing listens on port 9).
    proxy = HttpProxy(routes={"127.0.0.1:9": ("127.0.0.1", api.server_address[1])})
    try:
        cluster = cluster_for("https://127.0.0.1:9", tmp_path, monkeypatch, pki,
                              proxy_url=f"http://someone:p%40ss@127.0.0.1:{proxy.port}")
        request_and_stream_go_through(cluster)
    finally:
        proxy.close()
    auth = "Basic " + base64.b64encode(b"someone:p@ss").decode()
    assert proxy.seen == [("CONNECT", "127.0.0.1:9", auth), ("CONNECT", "127.0.0.1:9", auth)]


@pytest.mark.parametrize("url, kind", [("socks5://me:secret@proxy:1080", "socks5"), ("https://proxy:3128", "https")])
def test_a_proxy_womm_cannot_go_through_is_refused_in_one_line(tmp_path, monkeypatch, url, kind):
    with pytest.raises(kubeconfig.KubeconfigError) as e:
        cluster_for("https://127.0.0.1:6443", tmp_path, monkeypatch, proxy_url=url)
    message = str(e.value)
    assert "\n" not in message and f"proxy-url {kind}://proxy" in message and "http:// proxies only" in message
    assert "secret" not in message




# ---------------------------------------------------------------- proxies from the environment, as kubectl


def without_proxy_environment(monkeypatch):
    for name in ("HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.delenv(name, raising=False)


def test_without_a_proxy_url_the_environments_https_proxy_carries_requests_and_exec_streams(apis, pki, tmp_path,
                                                                                            monkeypatch):
    monkeypatch.setenv("WOMM_EXEC_TRANSPORT", "websocket")
    api = apis(objects={"/api/v1/namespaces/team/configmaps/x": {"kind": "ConfigMap"}}, exec_mode="answer",
               tls=tls(pki))
    # A name only the proxy knows: without it, nothing is reached.
    proxy = HttpProxy(routes={"api.womm.invalid:9": ("127.0.0.1", api.server_address[1])})
    without_proxy_environment(monkeypatch)
    monkeypatch.setenv("https_proxy", f"127.0.0.1:{proxy.port}")  # no scheme: http://, as Go reads it
    monkeypatch.setenv("NO_PROXY", "localhost,.svc,10.0.0.0/8")
    try:
        cluster = cluster_for("https://api.womm.invalid:9", tmp_path, monkeypatch, pki, tls_server_name="127.0.0.1")
        request_and_stream_go_through(cluster)
    finally:
        proxy.close()
    assert [(method, target) for method, target, _ in proxy.seen] == [("CONNECT", "api.womm.invalid:9")] * 2


@pytest.mark.parametrize("server, env, expected", [
    ("https://api.example.com", {"HTTPS_PROXY": "http://p:3128"}, "http://p:3128"),
    ("https://api.example.com", {"https_proxy": "p:3128"}, "http://p:3128"),
    ("https://api.example.com", {"HTTP_PROXY": "http://p:3128"}, None),  # http's, not https's
    ("http://api.example.com", {"HTTP_PROXY": "http://p:3128"}, "http://p:3128"),
    ("https://127.0.0.1:6443", {"HTTPS_PROXY": "http://p:3128"}, None),  # loopback: never
    ("https://localhost:6443", {"HTTPS_PROXY": "http://p:3128"}, None),
    ("https://10.1.2.3:6443", {"HTTPS_PROXY": "http://p:3128", "NO_PROXY": "10.0.0.0/8"}, None),
    ("https://10.1.2.3:6443", {"HTTPS_PROXY": "http://p:3128", "NO_PROXY": "10.1.2.3:443"}, "http://p:3128"),
    ("https://10.1.2.3:6443", {"HTTPS_PROXY": "http://p:3128", "NO_PROXY": "10.1.2.3:6443"}, None),
    ("https://k8s.corp.example", {"HTTPS_PROXY": "http://p:3128", "no_proxy": "corp.example"}, None),
    ("https://corp.example", {"HTTPS_PROXY": "http://p:3128", "no_proxy": ".corp.example"}, "http://p:3128"),
    ("https://k8s.corp.example", {"HTTPS_PROXY": "http://p:3128", "no_proxy": ".corp.example"}, None),
    ("https://k8s.corp.example", {"HTTPS_PROXY": "http://p:3128", "no_proxy": "*"}, None),
    ("https://notcorp.example", {"HTTPS_PROXY": "http://p:3128", "no_proxy": "corp.example"}, "http://p:3128"),
])
def test_the_environments_proxy_is_chosen_as_kubectl_chooses_it(monkeypatch, server, env, expected):
    without_proxy_environment(monkeypatch)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert kubeconfig.environment_proxy(server) == expected


def test_an_environments_proxy_womm_cannot_go_through_is_refused_in_one_line_naming_the_variable(monkeypatch):
    without_proxy_environment(monkeypatch)
    monkeypatch.setenv("HTTPS_PROXY", "socks5://me:secret@proxy:1080")
    with pytest.raises(kubeconfig.KubeconfigError) as e:
        kubeconfig.environment_proxy("https://api.example.com")
    message = str(e.value)
    assert "\n" not in message and "HTTPS_PROXY" in message and "socks5://proxy:1080" in message
    assert "secret" not in message


# ---------------------------------------------------------------- a request whose connection goes silent


def test_a_read_that_a_dropped_connection_never_answers_is_sent_again_on_a_new_one(tmp_path, monkeypatch):
    """The first connection takes the request and never answers (dropped on the way); a GET is sent
    again on a new connection, and answered. A POST is not: the server may have acted on it."""
    import socket

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    held = []

    def serve():
        for n in range(3):
            conn, _ = listener.accept()
            conn.recv(65536)
            if n != 1:
                held.append(conn)  # black-holed: no answer, no FIN
                continue
            body = b'{"kind": "ConfigMap"}'
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                         b"Connection: close\r\n\r\n%s" % (len(body), body))
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    try:
        cluster = cluster_for(f"http://127.0.0.1:{port}", tmp_path, monkeypatch)
        assert cluster.request("GET", cluster.path("configmaps", "x"), timeout=0.5)["kind"] == "ConfigMap"
        with pytest.raises(kube.Unreachable):
            cluster.request("POST", cluster.path("configmaps"), body={"kind": "ConfigMap"}, timeout=0.5)
    finally:
        listener.close()
        for conn in held:
            conn.close()


# ---------------------------------------------------------------- a command that never ends


def test_a_share_server_script_that_never_ends_is_given_up_in_one_line_naming_its_pod(apis, tmp_path, monkeypatch):
    """The exec is answered, pinged, alive, and its command never ends (a pod gone wrong under it):
    the run is told within SCRIPT_TIMEOUT, not left waiting."""
    from womm.errors import WommError
    from womm.shares import eager

    api = apis(exec_mode="answer")
    cluster = cluster_for(api.url, tmp_path, monkeypatch)
    monkeypatch.setattr(eager, "SCRIPT_TIMEOUT", 0.5)
    server = eager.ShareServer(cluster)
    server.pod = "womm-fs-abc"
    start = time.monotonic()
    with pytest.raises(WommError) as e:
        server.run(["womm-share-register", "s", "t"], stdin=b"secret\n")
    assert time.monotonic() - start < 3
    assert str(e.value).startswith("the share server's pod womm-fs-abc did not answer womm-share-register within")


def test_a_bounded_command_that_ends_without_a_status_is_not_taken_for_a_timeout(apis, tmp_path, monkeypatch):
    api = apis(exec_mode="answer")
    cluster = cluster_for(api.url, tmp_path, monkeypatch)
    stream = cluster.exec_stream("p", ["cat"])
    threading.Timer(0.2, stream.close).start()  # the stream ends, well within the bound, with no status
    assert stream.collect(b"x", timeout=30) == (None, b"x", b"")
