"""Where the cluster is and who we are there: the kubeconfig as kubectl reads it, or the pod's
ServiceAccount inside the cluster.

KUBECONFIG (a list of files; the first to name a context, cluster or user wins, and the
current-context comes from the first file that sets one), else ~/.kube/config. Read here:
server, certificate-authority(-data), insecure-skip-tls-verify, tls-server-name, proxy-url
(http:// proxies: womm's transports have no SOCKS or TLS to a proxy, so other kinds are refused),
client-certificate(-data) and client-key(-data), token and tokenFile, username and password,
and exec credential plugins (EKS, GKE, AKS...). A user entry with anything else (the old
auth-provider plugins) is loaded by the kubernetes library's own loader instead, which costs
half a second more but knows them all.

Why not always the library: importing it costs ~0.4 s, more than `womm status` may take.
"""

import base64
import json
import os
import ssl
import subprocess
import tempfile
import threading
import time

from womm.errors import WommError

SERVICE_ACCOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"


class KubeconfigError(WommError):
    """The kubeconfig (or the pod's ServiceAccount) does not say how to reach the cluster."""

    doctor = True


class Credentials:
    """How to reach the API: its URL, a TLS context, and the headers that authenticate us."""

    def __init__(self, server, context_name, namespace, ssl_context, headers=None, token_file=None,
                 exec_spec=None, base_dir=None, server_hostname=None, proxy_url=None):
        self.server = server.rstrip("/")
        self.proxy_url = proxy_url  # an http:// proxy every connection to the API goes through
        self.context = context_name
        self.namespace = namespace
        self.ssl_context = ssl_context
        self.server_hostname = server_hostname
        self._headers = headers or {}
        self._token_file = token_file
        self._exec = exec_spec
        self._base_dir = base_dir
        self._exec_token = None
        self._exec_expiry = 0
        self._lock = threading.Lock()
        self.source = None  # where this came from: the kubeconfig file(s), or the pod's ServiceAccount

    def headers(self):
        """The authentication headers for one request (a rotated token file is read again)."""
        h = dict(self._headers)
        if self._token_file:
            try:
                with open(self._token_file) as f:
                    h["Authorization"] = "Bearer " + f.read().strip()
            except OSError as e:
                raise KubeconfigError(f"cannot read the token file {self._token_file}: {e.strerror}") from None
        if self._exec:
            h["Authorization"] = "Bearer " + self._exec_credential()
        return h

    def _exec_credential(self):
        with self._lock:
            if self._exec_token and time.time() < self._exec_expiry - 60:
                return self._exec_token
            token, expiry = run_exec_plugin(self._exec, self._base_dir)
            if token is None:
                raise KubeconfigError("the kubeconfig's exec plugin gave no token (client certificates from "
                                "exec plugins are not supported)")
            self._exec_token, self._exec_expiry = token, expiry
            return token


def load(context=None):
    """The Credentials of the named context (default: the current one), or of this pod's ServiceAccount."""
    files = _kubeconfig_files()
    present = [f for f in files if os.path.exists(f)]
    if not present:
        if not context and os.path.exists(os.path.join(SERVICE_ACCOUNT, "token")):
            credentials = in_cluster()
            credentials.source = "the pod's ServiceAccount"
            return credentials
    where = os.environ.get("KUBECONFIG") or "~/.kube/config"
    if not present:
        raise KubeconfigError(f"no usable Kubernetes configuration in {where} (no such file): "
                              "set KUBECONFIG or run `kubectl config use-context`")
    credentials = _load(context, present, where)
    credentials.source = os.pathsep.join(present)
    return credentials


def _load(context, present, where):
    merged = _merge(present)
    name = context or merged["current-context"]
    if not name:
        raise KubeconfigError(f"no current context in {where}: run `kubectl config use-context`, or give --context")
    if name not in merged["contexts"]:
        names = ", ".join(merged["contexts"]) or "none"
        raise KubeconfigError(f"no context '{name}' in {where} (contexts: {names})")
    ctx, _ = merged["contexts"][name]
    cluster, cluster_dir = merged["clusters"].get(ctx.get("cluster"), (None, None))
    user, user_dir = merged["users"].get(ctx.get("user"), ({}, None))
    if not cluster or not cluster.get("server"):
        raise KubeconfigError(f"context '{name}' names no cluster with a server in {where}")
    namespace = ctx.get("namespace") or "default"
    proxy = proxy_url(cluster.get("proxy-url"), f"context '{name}' in {where}") or environment_proxy(cluster["server"])
    known = {"client-certificate", "client-certificate-data", "client-key", "client-key-data", "token",
             "tokenFile", "username", "password", "exec"}
    if set(user) - known:
        return _with_library(name, namespace, where)
    try:
        tls = _ssl_context(cluster, cluster_dir, user, user_dir)
    except (ValueError, ssl.SSLError) as e:  # bad base64, PEM that is not a certificate or key
        raise KubeconfigError(f"context '{name}' in {where}: unusable TLS certificates or key "
                              f"({str(e).splitlines()[0][:120] or type(e).__name__})") from None
    headers = {}
    if user.get("token"):
        headers["Authorization"] = "Bearer " + user["token"]
    elif user.get("username"):
        pair = f"{user['username']}:{user.get('password', '')}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
    token_file = _path(user.get("tokenFile"), user_dir) if user.get("tokenFile") and not user.get("token") else None
    return Credentials(cluster["server"], name, namespace, tls, headers, token_file, user.get("exec"), user_dir,
                       cluster.get("tls-server-name"), proxy)


def environment_proxy(server):
    """The proxy kubectl takes from the environment for a server the kubeconfig gives no proxy-url
    (Go's ProxyFromEnvironment): HTTPS_PROXY for https:// (HTTP_PROXY for http://), either case, a value
    without a scheme meaning http://; none for a host NO_PROXY names, nor for localhost or a loopback
    address. Refused in one line, as a proxy-url would be, if womm cannot go through it."""
    from urllib.parse import urlsplit

    parts = urlsplit(server)
    scheme = "https" if parts.scheme == "https" else "http"
    host, port = (parts.hostname or "").lower(), parts.port or (443 if scheme == "https" else 80)
    url = _environ(f"{scheme}_proxy")
    if not url or host == "localhost" or _loopback(host) or _no_proxy(host, port, _environ("no_proxy")):
        return None
    if "://" not in url:
        url = "http://" + url
    return proxy_url(url, f"the environment's {scheme.upper()}_PROXY (for {server})", "")


def _environ(name):
    return os.environ.get(name.upper()) or os.environ.get(name) or ""


def _loopback(host):
    import ipaddress

    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _no_proxy(host, port, value):
    """Whether NO_PROXY's value names the host, as Go reads it: `*`; an address or a network
    (10.0.0.0/8); a name, which its subdomains match too (`.name`: only they); each with an optional port."""
    import ipaddress

    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    for entry in (e.strip().lower() for e in value.split(",")):
        if entry == "*":
            return True
        if not entry:
            continue
        try:
            network = ipaddress.ip_network(entry, strict=False)
            if address is not None and address in network:
                return True
            continue
        except ValueError:
            pass
        name, _, entry_port = entry.rpartition(":") if entry.count(":") == 1 else (entry, "", "")
        if entry_port and entry_port != str(port):
            continue
        name = name.strip("[]")
        if name.startswith("*."):
            name = name[1:]
        if name == host or (name.startswith(".") and host.endswith(name)) or host.endswith("." + name):
            return True
    return False


def proxy_url(url, where, name="proxy-url "):
    """A cluster's proxy-url if womm can go through it (an http:// proxy), else KubeconfigError naming it;
    None without one. where: the context and file (or the variable), for the message."""
    if not url:
        return None
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(str(url))
        port = parts.port
    except ValueError:
        parts = port = None
    if parts is None or not parts.hostname or not parts.scheme:
        raise KubeconfigError(f"{where}: {name or 'the proxy '}is not a URL")
    shown = f"{parts.scheme}://{parts.hostname}" + (f":{port}" if port else "")  # without its password
    if parts.scheme != "http":
        raise KubeconfigError(f"{where}: {name}{shown} is a {parts.scheme} proxy: womm reaches the "
                              "Kubernetes API through http:// proxies only")
    return str(url)


def in_cluster():
    host, port = os.environ.get("KUBERNETES_SERVICE_HOST"), os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    if not host:
        raise KubeconfigError("inside a pod without KUBERNETES_SERVICE_HOST: no way to the API")
    with open(os.path.join(SERVICE_ACCOUNT, "namespace")) as f:
        namespace = f.read().strip()
    tls = ssl.create_default_context(cafile=os.path.join(SERVICE_ACCOUNT, "ca.crt"))
    host = f"[{host}]" if ":" in host else host
    server = f"https://{host}:{port}"
    return Credentials(server, None, namespace, tls, token_file=os.path.join(SERVICE_ACCOUNT, "token"),
                       proxy_url=environment_proxy(server))


def _kubeconfig_files():
    value = os.environ.get("KUBECONFIG")
    if value:
        return [os.path.expanduser(p) for p in value.split(os.pathsep) if p]
    return [os.path.expanduser("~/.kube/config")]


def _merge(files):
    """kubectl's merge: the first file to define a name wins; entries remember their file's directory."""
    import yaml

    merged = {"current-context": None, "contexts": {}, "clusters": {}, "users": {}}
    for path in files:
        try:
            with open(path) as f:
                doc = yaml.safe_load(f) or {}
        except OSError as e:
            raise KubeconfigError(f"cannot read the kubeconfig {path}: {e.strerror}") from None
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            what = getattr(e, "problem", None) or str(e).splitlines()[0]
            where = f" (line {mark.line + 1})" if mark is not None else ""
            raise KubeconfigError(f"the kubeconfig {path} is not YAML: {what}{where}") from None
        if not isinstance(doc, dict):
            raise KubeconfigError(f"the kubeconfig {path} is not a kubeconfig")
        base = os.path.dirname(os.path.abspath(path))
        merged["current-context"] = merged["current-context"] or doc.get("current-context")
        for section, key in (("contexts", "context"), ("clusters", "cluster"), ("users", "user")):
            for entry in doc.get(section) or []:
                if isinstance(entry, dict) and entry.get("name") and entry["name"] not in merged[section]:
                    merged[section][entry["name"]] = (entry.get(key) or {}, base)
    return merged


def _path(value, base):
    value = os.path.expanduser(value)
    return value if os.path.isabs(value) else os.path.join(base or ".", value)


def _data_or_file(entry, base, key):
    """The PEM text of `key-data` (base64) or of the file `key`; None if neither."""
    if entry.get(key + "-data"):
        return base64.b64decode(entry[key + "-data"]).decode()
    if entry.get(key):
        path = _path(entry[key], base)
        try:
            with open(path) as f:
                return f.read()
        except OSError as e:
            raise KubeconfigError(f"cannot read {path} (the kubeconfig's {key}): {e.strerror}") from None
    return None


def _ssl_context(cluster, cluster_dir, user, user_dir):
    if cluster.get("insecure-skip-tls-verify"):
        tls = ssl.create_default_context()
        tls.check_hostname = False
        tls.verify_mode = ssl.CERT_NONE
    else:
        ca = _data_or_file(cluster, cluster_dir, "certificate-authority")
        tls = ssl.create_default_context(cadata=ca) if ca else ssl.create_default_context()
    cert = _data_or_file(user, user_dir, "client-certificate")
    key = _data_or_file(user, user_dir, "client-key")
    if cert and key:
        # ssl loads a client certificate from files only: a private one, removed once loaded.
        with tempfile.TemporaryDirectory(prefix="womm-tls-") as d:
            cert_path, key_path = os.path.join(d, "cert"), os.path.join(d, "key")
            for path, text in ((cert_path, cert), (key_path, key)):
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w") as f:
                    f.write(text)
            tls.load_cert_chain(cert_path, key_path)
    return tls


def run_exec_plugin(spec, base):
    """Run a client-go credential plugin; (token, expiry as epoch seconds)."""
    command = spec.get("command")
    if not command:
        raise KubeconfigError("the kubeconfig's exec plugin names no command")
    env = dict(os.environ)
    for item in spec.get("env") or []:
        env[item["name"]] = item["value"]
    info = {"apiVersion": spec.get("apiVersion", "client.authentication.k8s.io/v1"), "kind": "ExecCredential",
            "spec": {"interactive": False}}
    env["KUBERNETES_EXEC_INFO"] = json.dumps(info)
    if os.sep in command and not os.path.isabs(command):
        command = os.path.join(base or ".", command)
    try:
        proc = subprocess.run([command, *(spec.get("args") or [])], env=env, capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as e:
        hint = spec.get("installHint", "").strip().splitlines()
        raise KubeconfigError(f"the kubeconfig's exec plugin {command} did not run ({e})"
                        + (f": {hint[0]}" if hint else "")) from None
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no message"])[-1]
        raise KubeconfigError(f"the kubeconfig's exec plugin {command} failed ({proc.returncode}): {last}")
    try:
        status = json.loads(proc.stdout).get("status") or {}
    except ValueError:
        raise KubeconfigError(f"the kubeconfig's exec plugin {command} printed no ExecCredential") from None
    expiry = status.get("expirationTimestamp")
    when = time.time() + 3600
    if expiry:
        from datetime import datetime

        when = datetime.fromisoformat(expiry.replace("Z", "+00:00")).timestamp()
    return status.get("token"), when


def _with_library(name, namespace, where):
    """A user entry only the kubernetes library knows (auth-provider): its loader, our transport."""
    from kubernetes import client, config

    configuration = client.Configuration()
    config.load_kube_config(context=name, client_configuration=configuration)
    if configuration.verify_ssl:
        tls = ssl.create_default_context(cafile=configuration.ssl_ca_cert)
    else:
        tls = ssl.create_default_context()
        tls.check_hostname = False
        tls.verify_mode = ssl.CERT_NONE
    if configuration.cert_file and configuration.key_file:
        tls.load_cert_chain(configuration.cert_file, configuration.key_file)
    headers = {}
    auth = configuration.get_api_key_with_prefix("authorization") or configuration.get_api_key_with_prefix("BearerToken")
    if auth:
        headers["Authorization"] = auth
    proxy = proxy_url(configuration.proxy, f"context '{name}' in {where}") or environment_proxy(configuration.host)
    return Credentials(configuration.host, name, namespace, tls, headers, proxy_url=proxy)
