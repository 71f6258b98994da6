"""Fixtures for running womm as someone other than the cluster's admin, and through a fault proxy.

- `edit_user`: a user with only the built-in `edit` ClusterRole in the test's namespace (a
  ServiceAccount, a RoleBinding, a 2 h token from the TokenRequest API), as on a shared cluster;
  edit_user.kubeconfig(server=None) writes a kubeconfig for it (the cluster's server and CA, or
  another server: a proxy's).
- `throttle_proxy`: throttle_proxy(every=5, retry_after=1) starts tests/faultproxy.py's throttle
  mode in front of the local API server (with the API server's own certificate, which names
  127.0.0.1); stopped at the end of the test. It forwards tokens only: use it with edit_user.
- `start_blackhole(cluster, directory, idle=60)` starts tests/faultproxy.py's blackhole mode in front
  of the local API server (a TCP relay that silently forgets a connection idle for IDLE seconds, as a
  load balancer does); proxy.kubeconfig is the admin's kubeconfig with the proxy as its server (the
  relay does not terminate TLS, so the admin's client certificate works, and the API server's
  certificate names 127.0.0.1). Its caller stops it.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import faultproxy  # noqa: E402

EDIT_USER = "womm-e2e-editor"
TOKEN_SECONDS = 2 * 3600


def admin_cluster_entry(cluster):
    """The server and CA data of the admin kubeconfig's current context."""
    config = yaml.safe_load(Path(cluster.kubeconfig).read_text())
    context = next(c["context"] for c in config["contexts"] if c["name"] == config["current-context"])
    return next(c["cluster"] for c in config["clusters"] if c["name"] == context["cluster"])


@dataclasses.dataclass
class EditUser:
    name: str
    namespace: str
    token: str
    server: str
    ca_data: str
    dir: Path

    def kubeconfig(self, server=None) -> Path:
        """A kubeconfig for this user in its namespace, at the cluster's server or at `server`."""
        config = {
            "apiVersion": "v1", "kind": "Config", "current-context": self.name,
            "clusters": [{"name": self.name, "cluster": {"server": server or self.server,
                                                         "certificate-authority-data": self.ca_data}}],
            "users": [{"name": self.name, "user": {"token": self.token}}],
            "contexts": [{"name": self.name, "context": {"cluster": self.name, "user": self.name,
                                                         "namespace": self.namespace}}],
        }
        path = self.dir / f"{self.name}-{abs(hash(server or self.server))}.kubeconfig"
        path.write_text(yaml.safe_dump(config))
        path.chmod(0o600)
        return path


def role_user(cluster, k8s, namespace, tmp_path, name, cluster_role, kind="ClusterRole") -> EditUser:
    """A ServiceAccount bound to a ClusterRole (or the namespace's Role) in the namespace, with a token
    and kubeconfigs."""
    import kubernetes.client as k

    k8s.core.create_namespaced_service_account(namespace, k.V1ServiceAccount(metadata=k.V1ObjectMeta(name=name)))
    k8s.rbac.create_namespaced_role_binding(namespace, k.V1RoleBinding(
        metadata=k.V1ObjectMeta(name=name),
        role_ref=k.V1RoleRef(api_group="rbac.authorization.k8s.io", kind=kind, name=cluster_role),
        subjects=[k.RbacV1Subject(kind="ServiceAccount", name=name, namespace=namespace)]))
    answer = k8s.core.create_namespaced_service_account_token(name, namespace, k.AuthenticationV1TokenRequest(
        spec=k.V1TokenRequestSpec(audiences=[], expiration_seconds=TOKEN_SECONDS)))
    entry = admin_cluster_entry(cluster)
    d = tmp_path / name
    d.mkdir()
    return EditUser(name, namespace, answer.status.token, entry["server"], entry["certificate-authority-data"], d)


def rules_user(cluster, k8s, namespace, tmp_path, name, rules) -> EditUser:
    """A user holding exactly rules, (verb, API group, resource, subresource) each, in the namespace."""
    import kubernetes.client as k

    k8s.rbac.create_namespaced_role(namespace, k.V1Role(metadata=k.V1ObjectMeta(name=name), rules=[
        k.V1PolicyRule(verbs=[verb], api_groups=[group], resources=[f"{resource}/{sub}" if sub else resource])
        for verb, group, resource, sub, *_ in rules]))
    return role_user(cluster, k8s, namespace, tmp_path, name, name, kind="Role")


@pytest.fixture
def edit_user(cluster, k8s, namespace, tmp_path) -> EditUser:
    return role_user(cluster, k8s, namespace, tmp_path, EDIT_USER, "edit")


@pytest.fixture
def view_user(cluster, k8s, namespace, tmp_path) -> EditUser:
    """A co-tenant who may read what the built-in `view` role reads (pods, their logs, ConfigMaps...)."""
    return role_user(cluster, k8s, namespace, tmp_path, "womm-e2e-viewer", "view")


@pytest.fixture
def throttle_proxy(cluster):
    started = []

    def start(every=5, retry_after=1):
        pki = cluster.state / "pki"
        proxy = faultproxy.ThrottleProxy.from_files(
            admin_cluster_entry(cluster)["server"], str(pki / "ca.crt"), str(pki / "kube-apiserver.crt"),
            str(pki / "kube-apiserver.key"), every=every, retry_after=retry_after)
        started.append(proxy.start())
        return proxy

    yield start
    for proxy in started:
        proxy.stop()


def start_blackhole(cluster, directory, idle=60):
    """A started BlackholeProxy, its kubeconfig (the admin's, through it) written in directory."""
    server = admin_cluster_entry(cluster)["server"]
    proxy = faultproxy.BlackholeProxy(server.split("://", 1)[1].rstrip("/"), idle=idle).start()
    config = yaml.safe_load(Path(cluster.kubeconfig).read_text())
    for entry in config["clusters"]:
        entry["cluster"]["server"] = f"https://127.0.0.1:{proxy.port}"
    proxy.kubeconfig = directory / f"blackhole-{proxy.port}.kubeconfig"
    proxy.kubeconfig.write_text(yaml.safe_dump(config))
    proxy.kubeconfig.chmod(0o600)
    return proxy
