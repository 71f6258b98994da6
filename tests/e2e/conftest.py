"""Fixtures of womm's end-to-end tests, which run against the real local cluster of tests/cluster/.

`cluster` runs `tests/cluster/up` once per test session (a few seconds when the cluster is already up)
and exports what `tests/cluster/env` prints into os.environ. A failing `up` fails the tests that need
it, loudly, with its output: these tests are never skipped.
"""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import time
import uuid
from pathlib import Path

import pytest

CLUSTER_DIR = Path(__file__).resolve().parent.parent / "cluster"
EXPORTED = ("KUBECONFIG", "WOMM_TEST_REGISTRY", "WOMM_TEST_BASE_IMAGE", "DOCKER_HOST", "PATH")
MANAGED_BY = {"app.kubernetes.io/managed-by": "womm-e2e"}
UP_TIMEOUT = 3600  # a cold `up` builds Kubernetes from source: about 10 minutes on 2 cores


@dataclasses.dataclass(frozen=True)
class Cluster:
    """The running local cluster and where its pieces are."""

    dir: Path  # tests/cluster
    env: dict  # what tests/cluster/env exports
    state: Path  # $WOMM_CLUSTER_STATE: pids/, logs/, pki/, kubeconfig/
    bin: Path  # the cached Kubernetes and etcd binaries
    run: Path  # runtime dir of the kubelet's containerd
    node_name: str  # node 1's: this machine's network namespace
    node_names: tuple  # every node's, node 1's first
    up_output: str

    @property
    def kubeconfig(self) -> str:
        return self.env["KUBECONFIG"]

    @property
    def registry(self) -> str:
        return self.env["WOMM_TEST_REGISTRY"]

    @property
    def base_image(self) -> str:
        return self.env["WOMM_TEST_BASE_IMAGE"]

    def script(self, name: str, timeout: float = UP_TIMEOUT) -> subprocess.CompletedProcess:
        """Run tests/cluster/<name>; its output is returned, not printed."""
        return subprocess.run(
            [str(self.dir / name)],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )


def cluster_paths() -> dict:
    """STATE, BIN, RUN, NODE_NAME and NODES as tests/cluster/lib.sh computes them."""
    out = subprocess.run(
        [
            "bash",
            "-c",
            'source "$1/lib.sh" && printf "%s\\n" "$STATE" "$BIN" "$RUN" "$NODE_NAME" "${NODES[*]}"',
            "_",
            str(CLUSTER_DIR),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    return dict(zip(("state", "bin", "run", "node_name", "node_names"), out, strict=True))


def cluster_env() -> dict:
    """The variables `eval "$(tests/cluster/env)"` sets, as a shell would set them."""
    proc = subprocess.run(
        ["bash", "-c", 'eval "$("$1/env")" && env -0', "_", str(CLUSTER_DIR)],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        pytest.fail(f"tests/cluster/env failed (exit {proc.returncode}):\n{proc.stderr}", pytrace=False)
    env = dict(item.split("=", 1) for item in proc.stdout.split("\0") if "=" in item)
    return {k: env[k] for k in EXPORTED if k in env}


def run_up() -> str:
    proc = subprocess.run(
        [str(CLUSTER_DIR / "up")],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=UP_TIMEOUT,
    )
    output = proc.stdout + proc.stderr
    if proc.returncode != 0:
        pytest.fail(f"tests/cluster/up failed (exit {proc.returncode}):\n{output}", pytrace=False)
    return output


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "restarts_cluster: stops and restarts the local cluster; run after every other test"
    )


def pytest_collection_modifyitems(session, config, items):
    """Tests that restart the cluster run last, so no other test sees the cluster go away."""
    items.sort(key=lambda item: item.get_closest_marker("restarts_cluster") is not None)


@pytest.fixture(scope="session")
def cluster() -> Cluster:
    output = run_up()
    env = cluster_env()
    os.environ.update(env)
    if "DOCKER_HOST" not in env:
        # The cluster's docker is the one on the default socket.
        os.environ.pop("DOCKER_HOST", None)
    paths = cluster_paths()
    return Cluster(
        dir=CLUSTER_DIR,
        env=env,
        state=Path(paths["state"]),
        bin=Path(paths["bin"]),
        run=Path(paths["run"]),
        node_name=paths["node_name"],
        node_names=tuple(paths["node_names"].split()),
        up_output=output,
    )


@dataclasses.dataclass
class K8s:
    """Kubernetes API access for tests: typed APIs on one client built from the cluster's kubeconfig."""

    api_client: object
    core: object  # kubernetes.client.CoreV1Api
    apps: object  # kubernetes.client.AppsV1Api
    rbac: object  # kubernetes.client.RbacAuthorizationV1Api
    auth: object  # kubernetes.client.AuthorizationV1Api

    def exec(
        self, namespace: str, pod: str, command: list, container: str | None = None, timeout: float = 60
    ) -> tuple[int, str, str]:
        """Run COMMAND in a pod through the API; return (exit code, stdout, stderr)."""
        from kubernetes import client
        from kubernetes.stream import stream

        kwargs = {"container": container} if container else {}
        # A client of its own: stream() swaps its client's request method for the call's length, so that
        # another thread's request on a shared one went out as a WebSocket handshake (test_drops, in CI).
        own = client.CoreV1Api(client.ApiClient(self.api_client.configuration))
        resp = stream(
            own.connect_get_namespaced_pod_exec,
            pod,
            namespace,
            command=command,
            stdin=False,
            stdout=True,
            stderr=True,
            tty=False,
            _preload_content=False,
            **kwargs,
        )
        out, err = [], []

        def drain():
            if resp.peek_stdout():
                out.append(resp.read_stdout())
            if resp.peek_stderr():
                err.append(resp.read_stderr())

        deadline = time.monotonic() + timeout
        try:
            while resp.is_open():
                if time.monotonic() > deadline:
                    raise TimeoutError(f"exec {command} in {namespace}/{pod} still running after {timeout}s")
                resp.update(timeout=1)
                drain()
            drain()
            code = resp.returncode
        finally:
            resp.close()
            own.api_client.close()
        return code, "".join(out), "".join(err)


@pytest.fixture(scope="session")
def k8s(cluster) -> K8s:
    import kubernetes

    api_client = kubernetes.config.new_client_from_config(config_file=cluster.kubeconfig)
    yield K8s(
        api_client=api_client,
        core=kubernetes.client.CoreV1Api(api_client),
        apps=kubernetes.client.AppsV1Api(api_client),
        rbac=kubernetes.client.RbacAuthorizationV1Api(api_client),
        auth=kubernetes.client.AuthorizationV1Api(api_client),
    )
    api_client.close()


@pytest.fixture(scope="session")
def docker_client(cluster):
    import docker

    client = docker.from_env()
    yield client
    client.close()


def new_namespace(k8s, stem) -> str:
    """A new namespace named after stem, ready for pods (its default ServiceAccount exists)."""
    import kubernetes

    stem = re.sub(r"[^a-z0-9]+", "-", stem.lower()).strip("-")[:40].strip("-")
    name = f"e2e-{stem}-{uuid.uuid4().hex[:6]}"
    k8s.core.create_namespace(
        kubernetes.client.V1Namespace(metadata=kubernetes.client.V1ObjectMeta(name=name, labels=MANAGED_BY))
    )
    # Pods cannot be created before the namespace's default ServiceAccount exists.
    deadline = time.monotonic() + 30
    while True:
        try:
            k8s.core.read_namespaced_service_account("default", name)
            return name
        except kubernetes.client.ApiException as e:
            if e.status != 404 or time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def delete_namespace(k8s, name):
    """Without waiting for the deletion to finish."""
    import kubernetes

    try:
        k8s.core.delete_namespace(name, propagation_policy="Background")
    except kubernetes.client.ApiException as e:
        if e.status != 404:
            raise


@pytest.fixture
def namespace(request, k8s) -> str:
    """A new namespace for one test, deleted afterwards."""
    name = new_namespace(k8s, request.node.name)
    yield name
    delete_namespace(k8s, name)


# Fixtures that run the real womm programs (womm_fixtures.py), and as an edit-only user (access_fixtures.py).
from access_fixtures import edit_user, throttle_proxy, view_user  # noqa: E402, F401
from womm_fixtures import project_image, womm, womm_images, womm_session_home  # noqa: E402, F401
