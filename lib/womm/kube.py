"""Talking to the cluster: KUBECONFIG, the current context and namespace, exec streams.

The kubernetes client is imported inside functions: it costs ~0.4 s, and the
dispatcher and per-job paths must not pay it.
"""

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
        self.in_cluster = False
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
                self.in_cluster = True
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

    @property
    def core(self):
        from kubernetes import client

        return client.CoreV1Api(self._api_client)

    @property
    def apps(self):
        from kubernetes import client

        return client.AppsV1Api(self._api_client)

    @property
    def rbac(self):
        from kubernetes import client

        return client.RbacAuthorizationV1Api(self._api_client)

    def exec_stream(self, pod, command, container=None, namespace=None, tty=False):
        """An ExecStream running `command` (a list) in a container of a pod."""
        return ExecStream(self, pod, command, container, namespace or self.namespace, tty)


class ExecStream:
    """A process in a pod, through the exec API: send() to its stdin, recv() its output.

    recv() returns (channel, bytes) with channel 1 for stdout, 2 for stderr,
    3 for the exec status; None when the stream has ended.
    """

    def __init__(self, cluster, pod, command, container, namespace, tty=False):
        from kubernetes import client
        from kubernetes.stream import stream

        # stream() patches the ApiClient it is given while it connects: give each
        # stream its own, so that pods can be attached from several threads at once.
        api = client.CoreV1Api(client.ApiClient(cluster.configuration))
        kwargs = {"command": command, "stdin": True, "stdout": True, "stderr": not tty, "tty": tty}
        if container:
            kwargs["container"] = container
        self.ws = stream(
            api.connect_get_namespaced_pod_exec, pod, namespace,
            _preload_content=False, binary=True, **kwargs,
        )
        self.status_text = b""

    def send(self, data):
        from websocket import WebSocketException

        try:
            self.ws.write_stdin(data)
        except (WebSocketException, OSError) as e:
            raise OSError(str(e)) from None

    def resize(self, columns, lines):
        import json

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
        import json

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

    def close(self):
        try:
            self.ws.close()
        except Exception:  # noqa: BLE001 - closing a broken stream
            pass


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
    while (item := stream.recv()) is not None:
        channel, data = item
        if channel in out:
            out[channel].write(data)
            out[channel].flush()
    status = stream.exit_status()
    stream.close()
    return 255 if status is None else status


def _first_line(e):
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__
