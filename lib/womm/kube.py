"""Talking to the cluster: requests, watches, followed logs and exec streams, as plain dicts and bytes.

womm.kubeconfig says where the API is and who we are (KUBECONFIG, the current context and
its namespace, or the pod's ServiceAccount); this module talks to it with urllib3 and
websocket-client, the kubernetes library's own transports, and exec streams over SPDY where it can
(womm.spdy), without the library's generated classes: importing and building those costs ~1.2 s
here (kubernetes 37), which `womm status` and every run's first job would pay. Objects go and
come as the API's JSON; errors are ApiError, with the server's status and message.

The API server's pushback is waited out here, for every caller: a request answered 429
(throttled, by API Priority and Fairness or a proxy in front) or 503 is sent again after the
server's Retry-After (else a growing delay), for RETRY_FOR seconds at most, and the user is told
once per process. Its Warning headers (Pod Security's warn mode, deprecations) are shown once
per distinct text. Both go through womm.report.notice, which a task's Reporter takes over.

A load balancer or NAT between here and the API server may forget a connection idle for a while
(nginx and ELB after 60 s, Azure 240 s, NLB 350 s) without a FIN or a RST: what is sent on it then
vanishes, and a read on it waits for ever. So no connection here stays silent that long, and none is
waited on for ever: a watch asks the server to end it after WATCH_SECONDS (with bookmarks, so a
healthy one speaks before then), and one silent for WATCH_GRACE seconds more was dropped on the way
(Silent); a pooled connection idle for IDLE_REUSE seconds is connected anew; an exec stream's
keepalive() pings it, and ends it once silent for DEAD_AFTER seconds; a request that may be sent twice
(a GET) and is not answered within its timeout is sent again on a new connection. The kubeconfig's
proxy-url (an http:// proxy), or the environment's as kubectl reads it, carries requests and exec streams.
"""

import json
import os
import random
import re
import select
import socket
import threading
import time
from urllib.parse import quote, urlencode

from womm.errors import WommError

# The API group of each kind womm uses, and its path's name.
KINDS = {
    "Pod": ("/api/v1", "pods"), "Service": ("/api/v1", "services"), "ConfigMap": ("/api/v1", "configmaps"),
    "Secret": ("/api/v1", "secrets"), "ServiceAccount": ("/api/v1", "serviceaccounts"),
    "Deployment": ("/apis/apps/v1", "deployments"), "ReplicaSet": ("/apis/apps/v1", "replicasets"),
    "Role": ("/apis/rbac.authorization.k8s.io/v1", "roles"),
    "RoleBinding": ("/apis/rbac.authorization.k8s.io/v1", "rolebindings"),
    "NetworkPolicy": ("/apis/networking.k8s.io/v1", "networkpolicies"),
    "CronJob": ("/apis/batch/v1", "cronjobs"), "Lease": ("/apis/coordination.k8s.io/v1", "leases"),
}
GROUPS = {name: group for group, name in KINDS.values()}

# The exec API's channels (Kubernetes' remotecommand, v4 and v5.channel.k8s.io): each message's first byte.
STDIN, STDOUT, STDERR, ERROR, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255  # ERROR: the exec's status, as JSON

RETRY_FOR = 60  # seconds one request may spend being pushed back before its error stands
PUSHBACK = {429: "is throttling requests", 503: "is unavailable"}
# Sent again after a 503 without Retry-After, or a connection reset: doing them twice changes nothing.
IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
RESETS = 2  # times an idempotent request whose connection was reset or went silent is sent again

# Each below the 60 s after which the most impatient load balancers forget an idle connection.
WATCH_SECONDS = 30  # a watch's length, asked of the server; it sends a bookmark 2 s before the end
WATCH_GRACE = 10  # seconds beyond that after which a watch that said nothing was dropped on the way
IDLE_REUSE = 30  # seconds a connection may wait in the pool and still be used as it is
PING_EVERY = 30  # seconds between an exec stream's keepalive pings (the API server answers each)
DEAD_AFTER = 90  # seconds without a byte after which a pinged exec stream was dropped on the way
CLOSE_WAIT = 3  # seconds a closed exec stream waits for the server's answer before the connection is cut


class ApiError(WommError):
    """The API answered with an error: status (e.g. 404), reason, and the server's own message."""

    def __init__(self, status, reason, body=b""):
        self.status, self.reason, self.body = status, reason, body
        try:
            message = json.loads(body).get("message") if body else None
        except (ValueError, AttributeError):
            message = None
        if not message:
            text = _one_line(body)  # the kubelet's refusal relayed as it came: 'container not found ("womm")'
            message = f"{status} {reason}: {text}" if text else f"{status} {reason}".strip()
        super().__init__(message)
        # Credentials refused, or not allowed: a misconfiguration `womm doctor` checks.
        self.doctor = status in (401, 403)


def _one_line(body, longest=200):
    """A body that is one short line of text, shown as printable; None for anything else (a proxy's page)."""
    try:
        text = body.decode("utf-8").strip() if body else ""
    except (UnicodeError, AttributeError):
        return None
    if not text or "\n" in text or text.startswith("<"):
        return None
    text = printable(text)  # (its length once escaped: what is shown)
    return text if len(text) <= longest else None


class Unreachable(WommError):
    """No answer from the API at all (refused, timed out, TLS failed)."""

    doctor = True


class Silent(Unreachable):
    """A long-lived connection that said nothing for longer than it may: dropped on the way."""

    doctor = False


def _fresh(pool_class):
    """pool_class (one of urllib3's connection pools), whose connections idle for more than IDLE_REUSE
    seconds are connected anew before their next request: a load balancer may have forgotten them, and
    a request sent on one would wait out its whole read timeout for nothing."""

    class Fresh(pool_class):
        def _get_conn(self, timeout=None):
            conn = super()._get_conn(timeout)
            idle_since, conn.womm_idle_since = getattr(conn, "womm_idle_since", None), None
            if idle_since is not None and time.monotonic() - idle_since > IDLE_REUSE:
                conn.close()  # urllib3 connects a closed connection again when it is used
            return conn

        def _put_conn(self, conn):
            if conn is not None:
                conn.womm_idle_since = time.monotonic()
            super()._put_conn(conn)

    Fresh.__name__ = "Fresh" + pool_class.__name__
    return Fresh


class Cluster:
    """One cluster connection: where the API is, who we are, and the namespace to use."""

    def __init__(self, context=None, namespace=None):
        from womm import kubeconfig

        self.credentials = kubeconfig.load(context)
        self.context = self.credentials.context
        self.namespace = namespace or self.credentials.namespace
        self._pools = None
        self._lock = threading.Lock()
        self.last_date = None
        self.connect_timeout = 10  # seconds; `womm doctor` asks for less
        self.retry_for = RETRY_FOR
        self.exec_spdy = os.environ.get("WOMM_EXEC_TRANSPORT", "spdy") != "websocket"

    @classmethod
    def of(cls, record, args=None):
        """The cluster a project's or task's record (a dict) names; --context and --namespace
        (args, when given) win over it."""
        record = record or {}
        return cls(getattr(args, "context", None) or record.get("context"),
                   getattr(args, "namespace", None) or record.get("namespace"))

    @property
    def server(self):
        return self.credentials.server

    def _pool(self):
        with self._lock:
            if self._pools is None:
                import urllib3

                kw = {"ssl_context": self.credentials.ssl_context, "maxsize": 8, "block": False, "retries": False}
                if self.credentials.server_hostname:
                    kw["server_hostname"] = self.credentials.server_hostname
                proxy = self.credentials.proxy_url
                if proxy:
                    user = proxy_user(proxy)
                    headers = urllib3.make_headers(proxy_basic_auth=":".join(user)) if user else None
                    pools = urllib3.ProxyManager(_without_user(proxy), proxy_headers=headers, **kw)
                else:
                    pools = urllib3.PoolManager(**kw)
                pools.pool_classes_by_scheme = {"http": _fresh(urllib3.HTTPConnectionPool),
                                                "https": _fresh(urllib3.HTTPSConnectionPool)}
                self._pools = pools
            return self._pools

    def path(self, kind, name=None, namespace=None, subresource=None, all_namespaces=False):
        """The API path of a namespaced kind ("pods", "replicasets", ...), or of all its objects."""
        group = GROUPS.get(kind, "/api/v1")
        if all_namespaces:
            return f"{group}/{kind}"
        path = f"{group}/namespaces/{namespace or self.namespace}/{kind}"
        if name:
            path += f"/{name}"
        if subresource:
            path += f"/{subresource}"
        return path

    def _url(self, path, query=None):
        params = [(k, v) for k, v in (query or {}).items() if v is not None]
        return self.server + path + ("?" + urlencode(params) if params else "")

    def _open(self, method, path, query=None, body=None, timeout=60, stream=False, content_type=None,
              idempotent=None):
        import urllib3

        headers = {"Accept": "application/json", **self.credentials.headers()}
        data = None
        if body is not None:
            headers["Content-Type"] = content_type or "application/json"
            data = json.dumps(body).encode()
        query = dict(query or {}, fieldManager="womm") if method in ("POST", "PATCH", "PUT") else query
        url = self._url(path, query)
        idempotent = method in IDEMPOTENT if idempotent is None else idempotent
        backoff, resets = Backoff(self.retry_for), 0
        while True:
            try:
                response = self._pool().request(
                    method, url, body=data, headers=headers, preload_content=not stream,
                    timeout=urllib3.Timeout(connect=self.connect_timeout, read=timeout), redirect=False,
                )
            except (urllib3.exceptions.ProtocolError, urllib3.exceptions.ReadTimeoutError,
                    urllib3.exceptions.SSLError) as e:
                # The connection was reset (or closed while idle in the pool) under the request, it went
                # silent (dropped on the way, the server never heard it), or its TLS failed (CI saw the
                # API server answer a handshake once with a "decode error" alert; a certificate refused
                # is no accident): sent again on a new one.
                if idempotent and resets < RESETS and not stream and not _certificate_refused(e):
                    resets += 1
                    continue
                raise Unreachable(f"cannot reach the Kubernetes API at {self.server}: {_reason(e)}") from None
            except urllib3.exceptions.HTTPError as e:
                raise Unreachable(f"cannot reach the Kubernetes API at {self.server}: {_reason(e)}") from None
            self.last_date = response.headers.get("Date")  # the server's clock (womm.taskobjects' heartbeats)
            # http.client reads headers as Latin-1; the API server writes its warnings in UTF-8.
            show_warnings([_utf8(v) for v in response.headers.getlist("Warning")])
            if 200 <= response.status <= 299:
                return response
            error_body = response.data if not stream else response.read()
            response.release_conn()
            wait = backoff.wait(response.status, response.headers.get("Retry-After"), idempotent)
            if wait is None:
                raise ApiError(response.status, response.reason or "", error_body)
            pushed_back(response.status)
            time.sleep(wait)

    def request(self, method, path, query=None, body=None, timeout=60, content_type=None, idempotent=None):
        """One API request; the decoded JSON answer. idempotent: whether it may be sent twice (default:
        by its method; a merge patch that sets a value may say so)."""
        response = self._open(method, path, query, body, timeout, content_type=content_type, idempotent=idempotent)
        return json.loads(response.data) if response.data else None

    def stream(self, path, query=None, silent_after=None):
        """The body of a long GET (a watch, a followed log) in chunks of bytes, as they come; Silent
        once nothing came for silent_after seconds (None: wait for ever)."""
        import urllib3

        response = self._open("GET", path, query, timeout=silent_after, stream=True)
        whole = False
        try:
            yield from response.stream(65536, decode_content=False)
            whole = True
        except urllib3.exceptions.ReadTimeoutError:
            raise Silent(f"the connection to the Kubernetes API at {self.server} said nothing for "
                         f"{silent_after:g} s (dropped on the way?)") from None
        except urllib3.exceptions.HTTPError as e:
            raise Unreachable(f"lost the Kubernetes API at {self.server}: {_reason(e)}") from None
        finally:
            if not whole:
                response.close()  # the rest of its body may still come: the connection is not reused
            response.release_conn()

    def watch(self, path, query=None, resource_version=None, timeout_seconds=None):
        """(type, object) events of a watch, objects as dicts, from resource_version (None: every object
        first, as ADDED events); ends when the server ends it, after timeout_seconds (WATCH_SECONDS);
        Silent when it said nothing for WATCH_GRACE seconds more. BOOKMARK events (an object with only
        its resourceVersion) come too: the first after a list ends the list (the server marks it
        k8s.io/initial-events-end), and the last is where the next watch goes on."""
        timeout_seconds = timeout_seconds or WATCH_SECONDS
        query = dict(query or {}, watch="true", timeoutSeconds=timeout_seconds, allowWatchBookmarks="true",
                     resourceVersion=resource_version)
        pending = b""
        for chunk in self.stream(path, query, silent_after=timeout_seconds + WATCH_GRACE):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                if line.strip():
                    event = json.loads(line)
                    if event.get("type") == "ERROR":
                        status = event.get("object") or {}
                        raise ApiError(status.get("code"), status.get("reason", ""), json.dumps(status).encode())
                    yield event["type"], event["object"]

    def create(self, obj):
        """POST obj to its kind's collection in its namespace (or this one); the object made."""
        group, kind = KINDS[obj["kind"]]
        namespace = obj["metadata"].get("namespace") or self.namespace
        return self.request("POST", f"{group}/namespaces/{namespace}/{kind}", body=obj)

    def apply(self, obj):
        """Create obj, or merge it into the existing one; "created" or "configured"."""
        group, kind = KINDS[obj["kind"]]
        namespace = obj["metadata"].get("namespace") or self.namespace
        collection = f"{group}/namespaces/{namespace}/{kind}"
        try:
            self.request("POST", collection, body=obj)
            return "created"
        except ApiError as e:
            if e.status != 409:
                raise
        self.request("PATCH", f"{collection}/{obj['metadata']['name']}", body=obj,
                     content_type="application/merge-patch+json")
        return "configured"

    def exec_stream(self, pod, command, container=None, namespace=None, tty=False, patient=True):
        """An exec stream running `command` (a list) in a container of a pod: over SPDY, unless something
        on the way did not carry it (then WebSocket: for this process's later streams too where SPDY was
        refused as a proxy refuses it and WebSocket passed), or WOMM_EXEC_TRANSPORT=websocket.
        patient=False: the API server's pushback is an ApiError at once."""
        args = (self, pod, command, container, namespace or self.namespace, tty, self.retry_for if patient else 0)
        if self.exec_spdy:
            try:
                return SpdyExecStream(*args)
            except NotUpgraded as e:
                # What looks like a proxy's refusal may not be one: SPDY is given up once WebSocket passed.
                stream = ExecStream(*args)
                if e.for_good:
                    self.exec_spdy = False
                return stream
        return ExecStream(*args)


class Backoff:
    """The waits between one request's attempts while the API server pushes back, within a budget."""

    def __init__(self, budget=RETRY_FOR):
        self.deadline = time.monotonic() + budget
        self.delay = 0.5

    def wait(self, status, retry_after=None, idempotent=True):
        """Seconds to wait before the next attempt; None when the answer stands (not pushback, a 503 to
        a request that may not be sent twice, or no time left)."""
        seconds = retry_after_seconds(retry_after)
        if not (status == 429 or (status == 503 and (idempotent or seconds is not None))):
            return None
        if seconds is None:
            seconds = random.uniform(self.delay / 2, self.delay)
            self.delay = min(self.delay * 2, 8)
        else:
            # At least what the server asked; a little more, so that the clients it throttled
            # together do not all come back in the same instant.
            seconds = max(seconds, 0.2) + random.uniform(0, 0.1 + seconds / 10)
        if time.monotonic() + seconds > self.deadline:
            return None
        return seconds


def retry_after_seconds(value):
    """A Retry-After header's delay in seconds (it may be a number or an HTTP date); None if absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None or when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - time.time())


_said = set()  # what notices this process has given (each is given once)
_said_lock = threading.Lock()


def _once(key):
    with _said_lock:
        if key in _said:
            return False
        _said.add(key)
        return True


def pushed_back(status):
    """Tell the user, once per process and status, that requests wait for the API server."""
    if _once(("pushback", status)):
        from womm.report import notice

        notice(f"the API server {PUSHBACK.get(status, 'pushes back')} ({status}); retrying")


# RFC 7234's warning-value: code, agent, "quoted text", an optional "date"; several per header, comma-separated.
_WARNING = re.compile(r'\s*(\d{3})\s+(\S+)\s+"((?:[^"\\]|\\.)*)"(?:\s+"[^"]*")?\s*(?:,|$)')


def warning_texts(values):
    """The texts of Warning header values, as the API server wrote them (unquoted)."""
    texts = []
    for value in values:
        found = [re.sub(r"\\(.)", r"\1", m.group(3)) for m in _WARNING.finditer(value)]
        texts += found or [value.strip()]
    return [t for t in texts if t]


def _utf8(value):
    try:
        return value.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return value


def printable(text):
    """text with control (and other invisible) characters spelled out: a server's words cannot move
    the cursor, recolour the terminal or reorder what is shown."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def show_warnings(values):
    """The API server's Warning headers, each distinct text once per process."""
    for text in warning_texts(values):
        text = printable(text)
        if _once(("warning", text)):
            from womm.report import notice

            notice(f"warning from the Kubernetes API: {text}")


def _certificate_refused(e):
    """Whether urllib3's error e is a TLS certificate (or its name) refused."""
    import ssl

    return any(isinstance(a, (ssl.SSLCertVerificationError, ssl.CertificateError)) for a in e.args) \
        or "certificate verify failed" in str(e)


def _reason(e):
    text = str(getattr(e, "reason", None) or e)
    for marker in ("Connection refused", "timed out", "Name or service not known", "certificate verify failed",
                   "No route to host", "Connection reset"):
        if marker in text:
            return marker
    return text.splitlines()[0][:200] if text else type(e).__name__


def proxy_user(url):
    """(user, password) written in a proxy's URL, percent-decoded; None without them."""
    from urllib.parse import unquote, urlsplit

    parts = urlsplit(url)
    return (unquote(parts.username), unquote(parts.password or "")) if parts.username else None


def proxy_endpoint(url):
    """(host, port, (user, password) or None) of an http:// proxy's URL: what an exec stream connects to."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return parts.hostname, parts.port or 80, proxy_user(url)


def _without_user(url):
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    host = f"[{parts.hostname}]" if ":" in (parts.hostname or "") else parts.hostname
    return urlunsplit((parts.scheme, host + (f":{parts.port}" if parts.port else ""), parts.path, "", ""))


# A host name that matches none: websocket-client would otherwise go around the kubeconfig's proxy for
# NO_PROXY's hosts (and, before 1.8, for localhost), where kubectl does not.
NO_BYPASS = ["no-bypass.invalid"]


def exec_url(cluster, pod, command, container, namespace, tty):
    """The https:// URL of an exec of command (a list) in a pod's container."""
    query = {"stdin": "true", "stdout": "true", "stderr": "false" if tty else "true", "tty": str(tty).lower()}
    if container:
        query["container"] = container
    url = cluster._url(cluster.path("pods", pod, namespace, "exec"), query)
    return url + "".join(f"&command={quote(word, safe='')}" for word in command)


class ExecStream:
    """A process in a pod, through the exec API (WebSocket, the v5 channel protocol): send() to
    its stdin, recv() its output. SpdyExecStream is the same over SPDY.

    recv() returns (channel, bytes) with channel STDOUT, STDERR or ERROR (the exec's status);
    None when the stream has ended (also once keepalive() gave it up: self.silent says so).
    """

    PROTOCOLS = ["v5.channel.k8s.io", "v4.channel.k8s.io"]

    def __init__(self, cluster, pod, command, container, namespace, tty=False, retry_for=RETRY_FOR):
        import websocket

        url = exec_url(cluster, pod, command, container, namespace, tty)
        url = "wss://" + url[len("https://"):] if url.startswith("https://") else "ws://" + url[len("http://"):]
        sslopt = {"context": cluster.credentials.ssl_context}
        if cluster.credentials.server_hostname:
            sslopt["server_hostname"] = cluster.credentials.server_hostname
        headers = [f"{k}: {v}" for k, v in cluster.credentials.headers().items()]
        proxy = {}
        if cluster.credentials.proxy_url:
            host, port, user = proxy_endpoint(cluster.credentials.proxy_url)
            proxy = {"http_proxy_host": host, "http_proxy_port": port, "proxy_type": "http",
                     "http_proxy_auth": user, "http_no_proxy": NO_BYPASS}
        backoff = Backoff(retry_for)
        while True:
            # enable_multithread: the controller sends from several threads while one reads.
            self.ws = websocket.WebSocket(sslopt=sslopt, skip_utf8_validation=True, enable_multithread=True)
            try:
                self.ws.connect(url, header=headers, subprotocols=self.PROTOCOLS, timeout=30, **proxy)
                break
            except websocket.WebSocketBadStatusException as e:
                # Not sent again after a reset or a plain 503: the command may have started.
                got = e.resp_headers or {}  # websocket-client names them in lower case
                wait = backoff.wait(e.status_code, got.get("retry-after"), idempotent=False)
                if wait is None:
                    raise ApiError(e.status_code, e.status_message or "", e.resp_body or b"") from None
                show_warnings([got["warning"]] if got.get("warning") else [])
                pushed_back(e.status_code)
                time.sleep(wait)
            except (websocket.WebSocketException, OSError) as e:
                raise Unreachable(f"cannot reach the Kubernetes API at {cluster.server}: {_reason(e)}") from None
        self.ws.settimeout(None)
        self.v5 = self.ws.subprotocol == "v5.channel.k8s.io"
        self._begin(self.ws.getheaders() or {})

    def _begin(self, got):
        """The state of a stream just connected; got: the upgrade's answer's headers, lower case."""
        show_warnings([got["warning"]] if got.get("warning") else [])
        self.status_text = b""
        self.heard = time.monotonic()  # when the last frame came (a pong too)
        self.silent = None  # the seconds of silence after which keepalive() gave the stream up
        self.ended = threading.Event()
        self._reading = threading.Event()  # a thread waits in recv()

    def _sock(self):
        return self.ws.sock

    def _write(self, channel, data, head=b""):
        import websocket

        try:
            self.ws.send(bytes([channel]) + head + data, opcode=websocket.ABNF.OPCODE_BINARY)
        except (websocket.WebSocketException, OSError) as e:
            raise OSError(str(e)) from None

    def send(self, data, head=b""):
        """head + data to the process's stdin (head: a few bytes that the data need not be copied behind)."""
        self._write(STDIN, data, head=head)

    def resize(self, columns, lines):
        try:
            self._write(RESIZE, json.dumps({"Width": columns, "Height": lines}).encode())
        except OSError:
            pass  # a resize is best effort

    def close_stdin(self):
        """The end of the remote stdin (v5 only: v4 streams cannot half-close)."""
        if self.v5:
            self._write(CLOSE, bytes([STDIN]))

    def ping(self):
        try:
            self.ws.ping()
        except Exception as e:  # noqa: BLE001 - websocket-client raises several kinds
            raise OSError(str(e)) from None

    def keepalive(self, every=None, dead_after=None, on_silent=None):
        """Ping the stream every `every` seconds (PING_EVERY) until it ends: the API server answers each
        with a pong, so the connection is never idle long enough for a load balancer to forget it. One
        dropped anyway, that heard nothing for dead_after seconds (DEAD_AFTER), is ended (recv() returns
        None) with self.silent set, then on_silent() is called. A thread of its own."""
        every, dead_after = every or PING_EVERY, dead_after or DEAD_AFTER

        def run():
            pinged, pinger = time.monotonic(), None
            while not self.ended.wait(min(every, 5)):
                now = time.monotonic()
                if self._unread():
                    self.heard = now  # it came, and waits for a reader busy elsewhere
                if now - self.heard > dead_after:
                    self.silent = dead_after
                    self.abort()
                    if on_silent is not None:
                        on_silent()
                    return
                # Each ping from a thread of its own: on a dropped connection a sender may block (the
                # buffers full) holding the stream's lock, and this thread must still see the silence.
                if now - pinged >= every and not (pinger and pinger.is_alive()):
                    pinged = now
                    pinger = threading.Thread(target=self._ping_quietly, name="exec ping", daemon=True)
                    pinger.start()

        threading.Thread(target=run, name="exec keepalive", daemon=True).start()

    def _ping_quietly(self):
        try:
            self.ping()
        except OSError:
            pass  # broken: its reader sees the end

    def _unread(self):
        """Whether bytes arrived that no one read yet (without reading them)."""
        sock = self._sock()
        if sock is None:
            return False
        try:
            return bool(self.pending() or select.select([sock], [], [], 0)[0])
        except (OSError, ValueError):
            return False

    def abort(self):
        """End the stream at once, with no closing handshake (a dropped connection would never answer
        it): a reader blocked in recv() returns None."""
        self.ended.set()
        sock = self._sock()
        if sock is not None:
            try:
                # The plain socket's shutdown, under TLS: it wakes a reader in another thread, which
                # closing alone would not; SSLSocket's own would pull its TLS state from under that reader.
                socket.socket.shutdown(sock, socket.SHUT_RDWR)
            except OSError:
                pass

    def fileno(self):
        return self._sock().fileno()

    def pending(self):
        """Bytes read from the socket but not yet returned (TLS buffers them)."""
        sock = self._sock()
        return sock.pending() if hasattr(sock, "pending") else 0

    def recv(self, control=False):
        """The next (channel, bytes); with control, (None, b"") for a control frame (a pong) too, so
        that a caller that waits in select() is not then held here until the next output."""
        self._reading.set()
        try:
            return self._recv(control)
        finally:
            self._reading.clear()

    def _recv(self, control):
        from websocket import ABNF, WebSocketException

        while True:
            try:
                opcode, frame = self.ws.recv_data_frame(True)
            except (WebSocketException, OSError, AttributeError, ValueError):
                self.ended.set()
                return None
            self.heard = time.monotonic()
            if opcode == ABNF.OPCODE_CLOSE:
                self.ended.set()
                return None
            if opcode not in (ABNF.OPCODE_BINARY, ABNF.OPCODE_TEXT):
                if control:
                    return None, b""
                continue
            data = frame.data
            if not data:
                continue
            channel = data[0]
            if channel == CLOSE:  # v5: the other side closed a channel
                continue
            if channel == ERROR:
                self.status_text += data[1:]
            return channel, data[1:]

    def exit_status(self):
        """The command's exit status from the exec status channel, once it ended."""
        if not self.status_text:
            return None
        try:
            status = json.loads(self.status_text)
        except ValueError:
            return None
        if status.get("status") == "Success":
            return 0
        for cause in (status.get("details") or {}).get("causes") or []:
            if cause.get("reason") == "ExitCode":
                return int(cause.get("message", 1))
        return None

    def drain(self, on_output):
        """Read the command's output to its end, on_output(channel, bytes) for STDOUT and
        STDERR; the exit status (None if unknown). Closes the stream."""
        while (item := self.recv()) is not None:
            if item[0] in (STDOUT, STDERR):
                on_output(*item)
        status = self.exit_status()
        self.close()
        return status

    def collect(self, stdin=b"", timeout=None):
        """Send stdin, then read everything: (status, stdout, stderr). With a timeout: TimeoutError
        once the command has not ended within it (the stream is ended)."""
        timer, fired = None, threading.Event()
        if timeout is not None:
            timer = threading.Timer(timeout, lambda: (fired.set(), self.abort()))
            timer.daemon = True
            timer.start()
        try:
            if stdin:
                self.send(stdin)
            out = {STDOUT: bytearray(), STDERR: bytearray()}
            status = self.drain(lambda channel, data: out[channel].extend(data))
        finally:
            if timer is not None:
                timer.cancel()
        if fired.is_set() and status is None:  # (a cancelled Timer's `finished` is set too)
            raise TimeoutError(f"not ended within {timeout:g} s")
        return status, bytes(out[1]), bytes(out[2])

    def close(self):
        """End the stream: a close frame tells the server (which ends the command), then the connection
        is closed. A reader in recv() in another thread returns None when the server answers, or after
        CLOSE_WAIT seconds: a dropped connection answers nothing."""
        self.ended.set()
        if self._reading.is_set():
            # websocket-client's close() would wait for that reader's lock, for ever on a dropped
            # connection. The frame goes from a thread of its own: a sender blocked on full buffers may
            # hold the stream.
            threading.Thread(target=self._send_close, name="exec close", daemon=True).start()
            deadline = time.monotonic() + CLOSE_WAIT
            while self._reading.is_set() and time.monotonic() < deadline:
                time.sleep(0.02)
            self.abort()
            self.ws.shutdown()
            return
        try:
            self.ws.close()
        except Exception:  # noqa: BLE001 - closing a broken stream
            pass

    def _send_close(self):
        try:
            self.ws.send_close()
        except Exception:  # noqa: BLE001 - a broken stream: nothing to tell
            pass


class NotUpgraded(Exception):
    """Something between here and the API server (a proxy, a load balancer) did not carry SPDY this
    time (for_good: it never will; else the connection ended before any answer)."""

    def __init__(self, message, for_good):
        super().__init__(message)
        self.for_good = for_good


def _api_status(body):
    """The message of the API server's own Status in a body; None if the body is not one (a proxy's)."""
    try:
        status = json.loads(body)
    except ValueError:
        return None
    return str(status.get("message") or "") if isinstance(status, dict) and status.get("kind") == "Status" else None


class SpdyExecStream(ExecStream):
    """The same stream over SPDY/3.1 (womm.spdy), which the API server carries to the kubelet as
    bytes: a third of its CPU per MB of a WebSocket exec, whose every message it translates."""

    def __init__(self, cluster, pod, command, container, namespace, tty=False, retry_for=RETRY_FOR):
        from womm import spdy

        url = exec_url(cluster, pod, command, container, namespace, tty)
        streams = ["error", "stdin", "stdout", "resize" if tty else "stderr"]
        proxy = None
        if cluster.credentials.proxy_url:
            import urllib3

            host, port, user = proxy_endpoint(cluster.credentials.proxy_url)
            auth = urllib3.make_headers(proxy_basic_auth=":".join(user))["proxy-authorization"] if user else None
            proxy = (host, port, auth)
        self.channels = {"stdout": STDOUT, "stderr": STDERR, "error": ERROR}
        backoff = Backoff(retry_for)
        while True:
            try:
                self.conn = spdy.Connection.connect(url, cluster.credentials.ssl_context,
                                                    cluster.credentials.server_hostname,
                                                    cluster.credentials.headers(), streams, 30, proxy)
                break
            except spdy.NoAnswer as e:
                raise NotUpgraded(str(e), for_good=False) from None  # (nothing was started: no stream asked)
            except spdy.Refused as e:
                # What is not the API server's own Status is a proxy's or a load balancer's (Envoy answers an
                # upgrade it was not told of with a bare 403), and so is the API server's "Upgrade request
                # required" (the header was taken off on the way): WebSocket may pass. A Status that
                # speaks of the upgrade in other words may be a proxy's too: WebSocket, this time. The
                # API server's other answers (403, 404, the kubelet's refusal it relays as a Status "unable
                # to upgrade connection: container not found", or as the kubelet's own line of text, a 500
                # 'container not found ("womm")') stand for both; so do pushback and 401.
                message = _api_status(e.body)
                text = (message or "").lower()
                relayed = e.status == 500 and message is None and _one_line(e.body) is not None and \
                    e.headers.get("content-type", "").startswith("text/plain")
                if e.status not in (401, 429, 503) and not relayed:
                    if message is None or text.startswith("upgrade request required"):
                        raise NotUpgraded(str(e), for_good=True) from None
                    if "upgrade" in text and "unable to upgrade connection" not in text:
                        raise NotUpgraded(str(e), for_good=False) from None
                # Not sent again after a plain 503: the command may have started.
                wait = backoff.wait(e.status, e.headers.get("retry-after"), idempotent=False)
                if wait is None:
                    raise ApiError(e.status, e.reason, e.body) from None
                show_warnings([e.headers["warning"]] if e.headers.get("warning") else [])
                pushed_back(e.status)
                time.sleep(wait)
            except OSError as e:
                raise Unreachable(f"cannot reach the Kubernetes API at {cluster.server}: {_reason(e)}") from None
        self.v5 = True  # the end of stdin is its stream's FIN
        self._begin(self.conn.headers)

    def _sock(self):
        return self.conn.sock

    def pending(self):
        return self.conn.buffered()

    def _unread(self):
        # A frame's part that came counts: the connection lives, and a long frame may be on its way.
        return self.conn.received > self.heard or super()._unread()

    def _write(self, channel, data, fin=False, head=b""):
        name = "resize" if channel == RESIZE else "stdin"
        if name not in self.conn.ids:
            return  # a resize without a terminal
        try:
            self.conn.send(name, data, fin, head=head)
        except OSError as e:
            raise OSError(str(e)) from None

    def close_stdin(self):
        self._write(STDIN, b"", fin=True)

    def ping(self):
        self.conn.ping()

    def _recv(self, control):
        while True:
            try:
                frame = self.conn.read()
            except OSError:
                frame = None
            if frame is None:
                self.ended.set()
                return None
            self.heard = time.monotonic()
            kind, stream, data, _ = frame
            if kind != "data":
                if control:
                    return None, b""
                continue
            channel = self.channels.get(self.conn.names.get(stream))
            if channel is None or not data:
                continue
            if channel == ERROR:
                self.status_text += data
            return channel, data

    def close(self):
        """End the stream: SPDY needs no closing handshake (the server sees the connection end, and the
        command its stdin's); a reader in recv() in another thread returns None."""
        self.abort()
        deadline = time.monotonic() + CLOSE_WAIT
        while self._reading.is_set() and time.monotonic() < deadline:
            time.sleep(0.02)
        try:
            self.conn.sock.close()
        except OSError:
            pass


def relay_stdio(stream):
    """Join this process's stdin/stdout/stderr to an exec stream, kept alive while it lasts; the remote
    exit status (255 when unknown: stream.silent says whether the stream was dropped on the way)."""
    import sys

    stream.keepalive()

    def pump_stdin():
        while True:
            try:
                data = os.read(0, 65536)
            except OSError:
                data = b""
            if not data:
                try:
                    stream.close_stdin()
                except OSError:
                    pass
                return
            try:
                stream.send(data)
            except OSError:
                return

    threading.Thread(target=pump_stdin, daemon=True).start()
    out = {STDOUT: sys.stdout.buffer, STDERR: sys.stderr.buffer}

    def write(channel, data):
        out[channel].write(data)
        out[channel].flush()

    status = stream.drain(write)
    return 255 if status is None else status
