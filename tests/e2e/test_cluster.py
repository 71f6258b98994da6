"""The local test cluster itself: what womm's end-to-end tests rely on, checked through the real APIs."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

SMOKE_DOCKERFILE = """\
FROM {base}
RUN apt-get update \\
 && apt-get install -y --no-install-recommends busybox curl \\
 && rm -rf /var/lib/apt/lists/*
RUN mkdir /www && echo womm-e2e-smoke >/etc/womm-e2e-smoke
"""
# PID 1 answers SIGTERM at once, serves its pod name over HTTP on port 8080.
WEB_COMMAND = ["sh", "-c", 'trap "exit 0" TERM; hostname >/www/index.html; busybox httpd -f -p 8080 -h /www & wait']
IDLE_COMMAND = ["sh", "-c", 'trap "exit 0" TERM; sleep infinity & wait']
SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"

pytestmark = pytest.mark.e2e


def wait_until(what: str, timeout: float, probe, interval: float = 0.25):
    """Call PROBE until it returns something true; return that, or fail after TIMEOUT seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


@pytest.fixture(scope="module")
def smoke_image(cluster, docker_client) -> str:
    """A small image built with the docker SDK from the base image, pushed to the local registry."""
    tag = f"{cluster.registry}/womm-test/e2e-smoke:1"
    dockerfile = SMOKE_DOCKERFILE.format(base=cluster.base_image).encode()
    image, _ = docker_client.images.build(fileobj=io.BytesIO(dockerfile), tag=tag, rm=True, pull=False)
    assert tag in image.tags
    for line in docker_client.images.push(tag, stream=True, decode=True):
        assert "error" not in line, f"push of {tag} failed: {line}"
    return tag


def pod_manifest(name, image, command, labels=None, service_account="default"):
    import kubernetes.client as k

    return k.V1Pod(
        metadata=k.V1ObjectMeta(name=name, labels=labels or {}),
        spec=k.V1PodSpec(
            service_account_name=service_account,
            containers=[k.V1Container(name="main", image=image, command=command, image_pull_policy="Always")],
        ),
    )


def running_pods(k8s, namespace, selector, count):
    pods = k8s.core.list_namespaced_pod(namespace, label_selector=selector).items
    ready = [
        p
        for p in pods
        if p.status.phase == "Running"
        and p.metadata.deletion_timestamp is None
        and all(c.ready for c in p.status.container_statuses or [])
    ]
    return ready if len(ready) == count else None


def test_smoke(cluster, k8s, namespace, smoke_image):
    import kubernetes.client as k

    # A Deployment of two web servers from the freshly pushed image.
    labels = {"app": "web"}
    k8s.apps.create_namespaced_deployment(
        namespace,
        k.V1Deployment(
            metadata=k.V1ObjectMeta(name="web"),
            spec=k.V1DeploymentSpec(
                replicas=2,
                selector=k.V1LabelSelector(match_labels=labels),
                template=k.V1PodTemplateSpec(
                    metadata=k.V1ObjectMeta(labels=labels),
                    spec=k.V1PodSpec(
                        containers=[
                            k.V1Container(
                                name="web",
                                image=smoke_image,
                                command=WEB_COMMAND,
                                image_pull_policy="Always",
                                ports=[k.V1ContainerPort(container_port=8080)],
                            )
                        ]
                    ),
                ),
            ),
        ),
    )
    web = wait_until("both web pods Running", 120, lambda: running_pods(k8s, namespace, "app=web", 2))
    names = sorted(p.metadata.name for p in web)
    assert {p.spec.node_name for p in web} <= set(cluster.node_names)

    # Exec into each pod through the API: output and exit codes come back.
    for name in names:
        code, out, err = k8s.exec(namespace, name, ["cat", "/www/index.html", "/etc/womm-e2e-smoke"])
        assert (code, out, err) == (0, f"{name}\nwomm-e2e-smoke\n", ""), (code, out, err)
        code, out, err = k8s.exec(namespace, name, ["sh", "-c", "echo oops >&2; exit 3"])
        assert (code, err) == (3, "oops\n")

    # A ClusterIP Service reaches both pods from another pod.
    svc = k8s.core.create_namespaced_service(
        namespace,
        k.V1Service(
            metadata=k.V1ObjectMeta(name="web"),
            spec=k.V1ServiceSpec(selector=labels, ports=[k.V1ServicePort(port=80, target_port=8080)]),
        ),
    )
    cluster_ip = svc.spec.cluster_ip
    assert cluster_ip and cluster_ip != "None"

    # ServiceAccounts: "lister" may list pods in the namespace (a Role says so), "outsider" has no Role.
    for sa in ("lister", "outsider"):
        k8s.core.create_namespaced_service_account(namespace, k.V1ServiceAccount(metadata=k.V1ObjectMeta(name=sa)))
    k8s.rbac.create_namespaced_role(
        namespace,
        k.V1Role(
            metadata=k.V1ObjectMeta(name="pod-lister"),
            rules=[k.V1PolicyRule(api_groups=[""], resources=["pods"], verbs=["get", "list"])],
        ),
    )
    k8s.rbac.create_namespaced_role_binding(
        namespace,
        k.V1RoleBinding(
            metadata=k.V1ObjectMeta(name="lister-lists-pods"),
            role_ref=k.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="Role", name="pod-lister"),
            subjects=[k.RbacV1Subject(kind="ServiceAccount", name="lister", namespace=namespace)],
        ),
    )
    for sa in ("lister", "outsider"):
        k8s.core.create_namespaced_pod(
            namespace, pod_manifest(sa, smoke_image, IDLE_COMMAND, labels={"role": "client"}, service_account=sa)
        )
    wait_until("both client pods Running", 120, lambda: running_pods(k8s, namespace, "role=client", 2))

    def answers():
        code, out, _ = k8s.exec(
            namespace,
            "lister",
            ["sh", "-c", f"for i in $(seq 30); do curl -fsS -m 2 http://{cluster_ip}/ || echo FAILED; done"],
        )
        seen = set(out.split())
        return seen if code == 0 and seen == set(names) else None

    wait_until(f"Service {cluster_ip} to answer from both pods", 60, answers, interval=1)

    # By name, through the cluster's DNS; a name outside the cluster does not resolve (nothing leaves).
    code, out, err = k8s.exec(namespace, "outsider", ["curl", "-fsS", "-m", "5", f"http://web.{namespace}.svc.cluster.local/"])
    assert code == 0 and out.strip() in names, err
    code, out, err = k8s.exec(namespace, "outsider", ["sh", "-c", "getent hosts deb.debian.org || echo unresolved"])
    assert out.strip() == "unresolved", out

    # Pod to pod, by pod IP, too.
    for p in web:
        code, out, err = k8s.exec(namespace, "outsider", ["curl", "-fsS", "-m", "5", f"http://{p.status.pod_ip}:8080/"])
        assert (code, out) == (0, f"{p.metadata.name}\n"), err

    def list_pods_as(pod: str, ns: str):
        script = (
            f'curl -sS -m 5 -w "\\n%{{http_code}}" --cacert {SA_DIR}/ca.crt'
            f' -H "Authorization: Bearer $(cat {SA_DIR}/token)"'
            f' "https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT/api/v1/namespaces/{ns}/pods"'
        )
        code, out, err = k8s.exec(namespace, pod, ["sh", "-c", script])
        assert code == 0, err
        body, _, status = out.rpartition("\n")
        return int(status), json.loads(body)

    status, body = list_pods_as("lister", namespace)
    assert status == 200, body
    assert set(names) <= {item["metadata"]["name"] for item in body["items"]}
    status, body = list_pods_as("outsider", namespace)
    assert (status, body.get("reason")) == (403, "Forbidden"), body
    status, body = list_pods_as("lister", "kube-system")
    assert (status, body.get("reason")) == (403, "Forbidden"), body


def test_privileged_sidecar_mount_propagates(k8s, namespace, smoke_image):
    """A privileged container's mount in a Bidirectional emptyDir shows in an unprivileged sibling."""
    import kubernetes.client as k

    mounter = (
        'trap "umount /shared/m; exit 0" TERM; mkdir -p /shared/m && mount -t tmpfs womm-e2e /shared/m'
        " && echo propagated >/shared/m/file && touch /shared/ready; sleep infinity & wait"
    )
    k8s.core.create_namespaced_pod(
        namespace,
        k.V1Pod(
            metadata=k.V1ObjectMeta(name="share"),
            spec=k.V1PodSpec(
                volumes=[k.V1Volume(name="shared", empty_dir=k.V1EmptyDirVolumeSource())],
                containers=[
                    k.V1Container(
                        name="mounter",
                        image=smoke_image,
                        command=["sh", "-c", mounter],
                        security_context=k.V1SecurityContext(privileged=True),
                        volume_mounts=[
                            k.V1VolumeMount(name="shared", mount_path="/shared", mount_propagation="Bidirectional")
                        ],
                    ),
                    k.V1Container(
                        name="worker",
                        image=smoke_image,
                        command=IDLE_COMMAND,
                        security_context=k.V1SecurityContext(
                            run_as_user=1000,
                            allow_privilege_escalation=False,
                            capabilities=k.V1Capabilities(drop=["ALL"]),
                        ),
                        volume_mounts=[
                            k.V1VolumeMount(name="shared", mount_path="/shared", mount_propagation="HostToContainer")
                        ],
                    ),
                ],
            ),
        ),
    )
    wait_until("pod share Running", 120, lambda: running_pods(k8s, namespace, "", 1))
    wait_until(
        "the mounter's tmpfs",
        30,
        lambda: k8s.exec(namespace, "share", ["test", "-e", "/shared/ready"], container="mounter")[0] == 0,
    )
    code, out, err = k8s.exec(
        namespace,
        "share",
        ["sh", "-c", "id -u; cat /shared/m/file; grep -c ' /shared/m tmpfs ' /proc/mounts"],
        container="worker",
    )
    assert (code, out) == (0, "1000\npropagated\n1\n"), err
    # FUSE, which womm's share sidecar uses, is available to privileged containers.
    code, _, err = k8s.exec(namespace, "share", ["test", "-c", "/dev/fuse"], container="mounter")
    assert code == 0, err


def cluster_processes(cluster) -> list[str]:
    """Processes that belong to the cluster: its binaries, its state paths, its cgroups."""
    found = []
    me = os.getpid()
    markers = (f"{cluster.state}/", f"{cluster.run}/")
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == me:
            continue
        try:
            exe = os.readlink(proc / "exe")
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cgroups = (proc / "cgroup").read_text()
        except OSError:
            continue  # gone, or a kernel thread
        if (
            exe.startswith(f"{cluster.bin}/")
            or any(m in cmdline for m in markers)
            or "/womm-cluster/" in cgroups
            or "/kubepods" in cgroups
        ):
            found.append(f"{proc.name} {exe} {cmdline[:200]}")
    return found


@pytest.mark.restarts_cluster
def test_down_then_up(cluster, k8s):
    pids = {}
    for f in (cluster.state / "pids").glob("*.pid"):
        pids[f.stem] = int(f.read_text())
    assert {"kube-apiserver", "kubelet", "containerd", "etcd"} <= set(pids), pids
    exes = {name: os.readlink(f"/proc/{pid}/exe") for name, pid in pids.items()}

    down = cluster.script("down", timeout=600)
    assert down.returncode == 0, down.stdout + down.stderr

    for name, pid in pids.items():
        try:
            alive = os.readlink(f"/proc/{pid}/exe") == exes[name]
        except OSError:
            alive = False
        assert not alive, f"{name} (pid {pid}) still runs after down"
    assert cluster_processes(cluster) == []
    mounts = Path("/proc/self/mountinfo").read_text().split("\n")
    assert [m for m in mounts if f" {cluster.state}/" in m or f" {cluster.run}/" in m] == []
    for bridge in ("wommnode0", "cni0"):
        assert not Path(f"/sys/class/net/{bridge}").exists(), f"bridge {bridge} left behind"
    assert not list((cluster.state / "pids").glob("*.pid"))
    # Node 2 entirely: its network namespace (with its veth and the route to its pods), its pods' cgroups,
    # its mount namespace (held under RUN, gone with it), its data.
    assert not Path("/run/netns/womm-node2").exists()
    assert not Path("/sys/class/net/wommn2h").exists()
    assert "10.244.1.0/24" not in subprocess.run(["ip", "route"], capture_output=True, text=True).stdout
    assert not list(Path("/sys/fs/cgroup").glob("*/womm-node2"))
    assert not (cluster.state / "node2" / "kubelet").exists()

    up = cluster.script("up")
    assert up.returncode == 0, up.stdout + up.stderr

    def node_ready():
        node = k8s.core.read_node(cluster.node_name)
        return any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or [])

    wait_until("the node to be Ready after up", 60, node_ready)
    for name in cluster.node_names:
        node = k8s.core.read_node(name)
        assert any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or []), name


@pytest.mark.restarts_cluster
def test_up_forgets_a_node_the_cluster_no_longer_runs(cluster, k8s):
    """A node the API lists but no kubelet here runs (left in etcd when the machine stopped under an older
    up, or a node renamed) would be given pods that never start: up deletes it."""
    import kubernetes.client as k

    k8s.core.create_node(k.V1Node(metadata=k.V1ObjectMeta(name="womm-node-of-old")))
    pid = int((cluster.state / "pids" / "kube-proxy.pid").read_text())
    os.kill(pid, signal.SIGKILL)  # so that up goes through its phases, as after a reboot
    up = cluster.script("up")
    assert up.returncode == 0, up.stdout + up.stderr
    assert "node womm-node-of-old forgotten" in up.stdout, up.stdout
    assert "womm-node-of-old" not in [n.metadata.name for n in k8s.core.list_node().items]
