"""Talking to the cluster: KUBECONFIG, the current context and namespace, exec streams.

The kubernetes client is imported inside functions: it costs ~0.3 s, and the
dispatcher and per-job paths must not pay it. Every request womm makes goes
through request(), stream(), watch() and ExecStream, below the generated API
classes: building CoreV1Api and AppsV1Api costs another 0.85 s here
(kubernetes 37), before any request.
"""

import json
import os

from womm.errors import WommError

SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


class Cluster:
    """One cluster connection: the client configuration and the namespace to use."""

    def __init__(self, context=None, namespace=None):
        from kubernetes import client, config
        from kubernetes.config.config_exception import ConfigException

        self.configuration = client.Configuration()
        self.context = context
        default_namespace = "default"
        try:
            contexts, active = config.list_kube_config_contexts()
            if context:
                found = [c for c in contexts if c["name"] == context]
                if not found:
                    names = ", ".join(c["name"] for c in contexts) or "none"
                    raise WommError(f"no context '{context}' in the kubeconfig (contexts: {names})")
                active = found[0]
            config.load_kube_config(context=active["name"], client_configuration=self.configuration)
            self.context = active["name"]
            default_namespace = active.get("context", {}).get("namespace") or "default"
        except (ConfigException, FileNotFoundError, TypeError) as e:
            if os.path.exists(os.path.join(SERVICE_ACCOUNT_DIR, "token")) and not context:
                config.load_incluster_config(client_configuration=self.configuration)
                with open(os.path.join(SERVICE_ACCOUNT_DIR, "namespace")) as f:
                    default_namespace = f.read().strip()
            else:
                where = os.environ.get("KUBECONFIG") or "~/.kube/config"
                raise WommError(
                    f"no usable Kubernetes configuration in {where} ({_first_line(e)}): "
                    "set KUBECONFIG or run `kubectl config use-context`"
                ) from None
        self.namespace = namespace or default_namespace
        self._api_client = client.ApiClient(self.configuration)

    def exec_stream(self, pod, command, container=None, namespace=None, tty=False):
        """An ExecStream running `command` (a list) in a container of a pod."""
        return ExecStream(self, pod, command, container, namespace or self.namespace, tty)

    def path(self, kind, name=None, namespace=None, subresource=None, all_namespaces=False):
        """The API path of a namespaced kind ("pods", "replicasets", ...), or of all its objects."""
        group = "/apis/apps/v1" if kind in ("replicasets", "deployments") else "/api/v1"
        if all_namespaces:
            return f"{group}/{kind}"
        path = f"{group}/namespaces/{namespace or self.namespace}/{kind}"
        if name:
            path += f"/{name}"
        if subresource:
            path += f"/{subresource}"
        return path

    def _serialize(self, method, path, query, body):
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        params = [(k, v) for k, v in (query or {}).items() if v is not None]
        return self._api_client.param_serialize(
            method, path, query_params=params, header_params=headers, body=body, auth_settings=["BearerToken"]
        )

    def request(self, method, path, query=None, body=None, timeout=60):
        """One API request; the decoded JSON answer. Raises kubernetes' ApiException."""
        from kubernetes.client.rest import ApiException

        method, url, headers, body, post = self._serialize(method, path, query, body)
        response = self._api_client.call_api(method, url, headers, body, post, _request_timeout=timeout)
        response.read()
        if not 200 <= response.status <= 299:
            raise ApiException(http_resp=response)
        return json.loads(response.data) if response.data else None

    def stream(self, path, query=None):
        """The body of a long GET (a watch, a followed log) in chunks of bytes, as they come."""
        from kubernetes.client.rest import ApiException

        method, url, headers, body, post = self._serialize("GET", path, query, None)
        response = self._api_client.call_api(method, url, headers, body, post, _request_timeout=(10, None))
        if not 200 <= response.status <= 299:
            response.read()
            raise ApiException(http_resp=response)
        raw = response.response
        try:
            yield from raw.stream(65536, decode_content=False)
        finally:
            raw.release_conn()

    def watch(self, path, query=None, timeout_seconds=300):
        """(type, object) events of a watch, objects as dicts; ends when the server ends it."""
        from kubernetes.client.rest import ApiException

        query = dict(query or {}, watch="true", timeoutSeconds=timeout_seconds)
        pending = b""
        for chunk in self.stream(path, query):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                if line.strip():
                    event = json.loads(line)
                    if event.get("type") == "ERROR":
                        raise ApiException(status=(event.get("object") or {}).get("code"),
                                           reason=(event.get("object") or {}).get("message"))
                    yield event["type"], event["object"]


class ExecStream:
    """A process in a pod, through the exec API: send() to its stdin, recv() its output.

    recv() returns (channel, bytes) with channel 1 for stdout, 2 for stderr,
    3 for the exec status; None when the stream has ended.
    """

    def __init__(self, cluster, pod, command, container, namespace, tty=False):
        from kubernetes.client.rest import ApiException
        from kubernetes.stream.ws_client import WSClient, get_websocket_url
        from websocket import WebSocketBadStatusException

        query = {"stdin": "true", "stdout": "true", "stderr": "false" if tty else "true", "tty": str(tty).lower()}
        if container:
            query["container"] = container
        _, url, headers, _, _ = cluster._serialize("GET", cluster.path("pods", pod, namespace, "exec"), query, None)
        url += "".join(f"&command={quote(word)}" for word in command)
        try:
            self.ws = WSClient(cluster.configuration, get_websocket_url(url), headers, False, binary=True)
        except WebSocketBadStatusException as e:
            body = e.resp_body.decode(errors="replace") if isinstance(e.resp_body, bytes) else e.resp_body
            raise ApiException(status=e.status_code, reason=str(e).split(" -+-+- ")[0], body=body) from None
        self.status_text = b""

    def send(self, data):
        from websocket import WebSocketException

        try:
            self.ws.write_stdin(data)
        except (WebSocketException, OSError) as e:
            raise OSError(str(e)) from None

    def resize(self, columns, lines):
        try:
            self.ws.write_channel(4, json.dumps({"Width": columns, "Height": lines}).encode())
        except Exception:  # noqa: BLE001 - a resize is best effort
            pass

    def close_stdin(self):
        self.ws.close_channel(0)

    def recv(self):
        from websocket import ABNF, WebSocketException

        while True:
            try:
                opcode, frame = self.ws.sock.recv_data_frame(True)
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


def quote(word):
    from urllib.parse import quote as url_quote

    return url_quote(word, safe="")


def relay_stdio(stream):
    """Join this process's stdin/stdout/stderr to an exec stream; the remote exit status."""
    import sys
    import threading

    def pump_stdin():
        while True:
            try:
                data = os.read(0, 65536)
            except OSError:
                data = b""
            if not data:
                try:
                    stream.close_stdin()
                except Exception:  # noqa: BLE001 - v4 streams cannot half-close
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


def _first_line(e):
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__
