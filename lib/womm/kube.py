"""Talking to the cluster: requests, watches, followed logs and exec streams, as plain dicts and bytes.

womm.kubeconfig says where the API is and who we are (KUBECONFIG, the current context and
its namespace, or the pod's ServiceAccount); this module talks to it with urllib3 and
websocket-client, the kubernetes library's own transports, without the library's generated
classes: importing and building those costs ~1.2 s here (kubernetes 37), which `womm status`
and every run's first job would pay. Objects go and come as the API's JSON; errors are
ApiError, with the server's status and message.
"""

import json
import threading
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


class ApiError(WommError):
    """The API answered with an error: status (e.g. 404), reason, and the server's own message."""

    def __init__(self, status, reason, body=b""):
        self.status, self.reason, self.body = status, reason, body
        try:
            message = json.loads(body).get("message") if body else None
        except (ValueError, AttributeError):
            message = None
        super().__init__(message or f"{status} {reason}".strip())
        # Credentials refused, or not allowed: a misconfiguration `womm doctor` checks.
        self.doctor = status in (401, 403)


class Unreachable(WommError):
    """No answer from the API at all (refused, timed out, TLS failed)."""

    doctor = True


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
                self._pools = urllib3.PoolManager(**kw)
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

    def _open(self, method, path, query=None, body=None, timeout=60, stream=False, content_type=None):
        import urllib3

        headers = {"Accept": "application/json", **self.credentials.headers()}
        data = None
        if body is not None:
            headers["Content-Type"] = content_type or "application/json"
            data = json.dumps(body).encode()
        try:
            query = dict(query or {}, fieldManager="womm") if method in ("POST", "PATCH", "PUT") else query
            response = self._pool().request(
                method, self._url(path, query), body=data, headers=headers, preload_content=not stream,
                timeout=urllib3.Timeout(connect=self.connect_timeout, read=timeout), redirect=False,
            )
        except urllib3.exceptions.HTTPError as e:
            raise Unreachable(f"cannot reach the Kubernetes API at {self.server}: {_reason(e)}") from None
        self.last_date = response.headers.get("Date")  # the server's clock (womm.taskobjects' heartbeats)
        if not 200 <= response.status <= 299:
            body = response.data if not stream else response.read()
            response.release_conn()
            raise ApiError(response.status, response.reason or "", body)
        return response

    def request(self, method, path, query=None, body=None, timeout=60, content_type=None):
        """One API request; the decoded JSON answer."""
        response = self._open(method, path, query, body, timeout, content_type=content_type)
        return json.loads(response.data) if response.data else None

    def stream(self, path, query=None):
        """The body of a long GET (a watch, a followed log) in chunks of bytes, as they come."""
        import urllib3

        response = self._open("GET", path, query, timeout=None, stream=True)
        try:
            yield from response.stream(65536, decode_content=False)
        except urllib3.exceptions.HTTPError as e:
            raise Unreachable(f"lost the Kubernetes API at {self.server}: {_reason(e)}") from None
        finally:
            response.release_conn()

    def watch(self, path, query=None, timeout_seconds=300):
        """(type, object) events of a watch, objects as dicts; ends when the server ends it."""
        query = dict(query or {}, watch="true", timeoutSeconds=timeout_seconds)
        pending = b""
        for chunk in self.stream(path, query):
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

    def exec_stream(self, pod, command, container=None, namespace=None, tty=False):
        """An ExecStream running `command` (a list) in a container of a pod."""
        return ExecStream(self, pod, command, container, namespace or self.namespace, tty)


def _reason(e):
    text = str(getattr(e, "reason", None) or e)
    for marker in ("Connection refused", "timed out", "Name or service not known", "certificate verify failed",
                   "No route to host", "Connection reset"):
        if marker in text:
            return marker
    return text.splitlines()[0][:200] if text else type(e).__name__


class ExecStream:
    """A process in a pod, through the exec API (WebSocket, the v5 channel protocol): send() to
    its stdin, recv() its output.

    recv() returns (channel, bytes) with channel 1 for stdout, 2 for stderr,
    3 for the exec status; None when the stream has ended.
    """

    PROTOCOLS = ["v5.channel.k8s.io", "v4.channel.k8s.io"]

    def __init__(self, cluster, pod, command, container, namespace, tty=False):
        import websocket

        query = {"stdin": "true", "stdout": "true", "stderr": "false" if tty else "true", "tty": str(tty).lower()}
        if container:
            query["container"] = container
        url = cluster._url(cluster.path("pods", pod, namespace, "exec"), query)
        url += "".join(f"&command={quote(word, safe='')}" for word in command)
        url = "wss://" + url[len("https://"):] if url.startswith("https://") else "ws://" + url[len("http://"):]
        sslopt = {"context": cluster.credentials.ssl_context}
        if cluster.credentials.server_hostname:
            sslopt["server_hostname"] = cluster.credentials.server_hostname
        # enable_multithread: the controller sends from several threads while one reads.
        self.ws = websocket.WebSocket(sslopt=sslopt, skip_utf8_validation=True, enable_multithread=True)
        headers = [f"{k}: {v}" for k, v in cluster.credentials.headers().items()]
        try:
            self.ws.connect(url, header=headers, subprotocols=self.PROTOCOLS, timeout=30)
        except websocket.WebSocketBadStatusException as e:
            raise ApiError(e.status_code, str(e).split(" -+-+- ")[0], e.resp_body or b"") from None
        except (websocket.WebSocketException, OSError) as e:
            raise Unreachable(f"cannot reach the Kubernetes API at {cluster.server}: {_reason(e)}") from None
        self.ws.settimeout(None)
        self.v5 = self.ws.subprotocol == "v5.channel.k8s.io"
        self.status_text = b""

    def _write(self, channel, data):
        import websocket

        try:
            self.ws.send(bytes([channel]) + data, opcode=websocket.ABNF.OPCODE_BINARY)
        except (websocket.WebSocketException, OSError) as e:
            raise OSError(str(e)) from None

    def send(self, data):
        self._write(0, data)

    def resize(self, columns, lines):
        try:
            self._write(4, json.dumps({"Width": columns, "Height": lines}).encode())
        except OSError:
            pass  # a resize is best effort

    def close_stdin(self):
        """The end of the remote stdin (v5 only: v4 streams cannot half-close)."""
        if self.v5:
            self._write(255, b"\0")

    def ping(self):
        try:
            self.ws.ping()
        except Exception as e:  # noqa: BLE001 - websocket-client raises several kinds
            raise OSError(str(e)) from None

    def fileno(self):
        return self.ws.sock.fileno()

    def pending(self):
        """Bytes read from the socket but not yet returned (TLS buffers them)."""
        sock = self.ws.sock
        return sock.pending() if hasattr(sock, "pending") else 0

    def recv(self):
        from websocket import ABNF, WebSocketException

        while True:
            try:
                opcode, frame = self.ws.recv_data_frame(True)
            except (WebSocketException, OSError, AttributeError):
                return None
            if opcode == ABNF.OPCODE_CLOSE:
                return None
            if opcode not in (ABNF.OPCODE_BINARY, ABNF.OPCODE_TEXT):
                continue
            data = frame.data
            if not data:
                continue
            channel = data[0]
            if channel == 255:  # v5: the other side closed a channel
                continue
            if channel == 3:
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
        """Read the command's output to its end, on_output(channel, bytes) for stdout (1) and
        stderr (2); the exit status (None if unknown). Closes the stream."""
        while (item := self.recv()) is not None:
            if item[0] in (1, 2):
                on_output(*item)
        status = self.exit_status()
        self.close()
        return status

    def collect(self, stdin=b""):
        """Send stdin, then read everything: (status, stdout, stderr)."""
        if stdin:
            self.send(stdin)
        out = {1: bytearray(), 2: bytearray()}
        status = self.drain(lambda channel, data: out[channel].extend(data))
        return status, bytes(out[1]), bytes(out[2])

    def close(self):
        try:
            self.ws.close()
        except Exception:  # noqa: BLE001 - closing a broken stream
            pass


def relay_stdio(stream):
    """Join this process's stdin/stdout/stderr to an exec stream; the remote exit status."""
    import os
    import sys

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
    out = {1: sys.stdout.buffer, 2: sys.stderr.buffer}

    def write(channel, data):
        out[channel].write(data)
        out[channel].flush()

    status = stream.drain(write)
    return 255 if status is None else status
