"""Two nodes: what each offers the tests, womm's workers on both, and a lazy share read across them.

Node 2 of the local cluster (tests/cluster/up) is this machine in namespaces of its own: its own
containerd, kubelet, kube-proxy and NetworkPolicy enforcer, its pods on a bridge of their own.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time

import pytest
from womm_fixtures import in_home, wait_for

pytestmark = pytest.mark.e2e


def ready(node) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or [])


def pod_nodes(k8s, namespace, selector) -> dict:
    """{pod name: its node} of the scheduled pods that SELECTOR picks."""
    pods = k8s.core.list_namespaced_pod(namespace, label_selector=selector).items
    return {p.metadata.name: p.spec.node_name for p in pods if p.spec.node_name}


class NodeWatch:
    """Where a namespace's pods of womm are placed, noted while a run goes on (womm deletes them at the end)."""

    def __init__(self, k8s, namespace):
        self.k8s, self.namespace = k8s, namespace
        self.placed = {}  # pod name: node
        self.roles = {}  # pod name: womm.dev/role
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()

    def _watch(self):
        while not self.stop.is_set():
            try:
                pods = self.k8s.core.list_namespaced_pod(self.namespace, label_selector="womm.dev/task").items
            except Exception:  # noqa: BLE001 - the next look will do
                pods = []
            for p in pods:
                if p.spec.node_name:
                    self.placed[p.metadata.name] = p.spec.node_name
                    self.roles[p.metadata.name] = (p.metadata.labels or {}).get("womm.dev/role")
            time.sleep(0.2)

    def of(self, role) -> dict:
        return {name: node for name, node in dict(self.placed).items() if self.roles.get(name) == role}

    def close(self):
        self.stop.set()
        self.thread.join(5)


def test_every_node_is_ready_and_takes_any_pod(cluster, k8s):
    assert len(cluster.node_names) >= 2, cluster.node_names
    nodes = {n.metadata.name: n for n in k8s.core.list_node().items}
    assert set(cluster.node_names) <= set(nodes), nodes.keys()
    for name in cluster.node_names:
        node = nodes[name]
        assert ready(node), (name, node.status.conditions)
        assert not node.spec.unschedulable, name
        assert not node.spec.taints, (name, node.spec.taints)
    addresses = {n: [a.address for a in nodes[n].status.addresses if a.type == "InternalIP"] for n in cluster.node_names}
    assert len({a[0] for a in addresses.values()}) == len(cluster.node_names), addresses


@pytest.mark.parametrize("node_index", [0, 1])
def test_each_node_pulls_from_the_registry_by_its_names_and_propagates_a_sidecars_mount(cluster, k8s, namespace,
                                                                                           node_index):
    """What a lazy share needs of a node: a privileged container's mount in a Bidirectional emptyDir is seen
    by an unprivileged sibling (HostToContainer), and FUSE; the image comes from the local registry under
    its 127.0.0.1:5000 name (pulled again: imagePullPolicy Always)."""
    import kubernetes.client as k

    node = cluster.node_names[node_index]
    mounter = ('trap "umount /shared/m; exit 0" TERM; mkdir -p /shared/m && mount -t tmpfs womm-e2e /shared/m'
               f' && echo propagated-on-{node} >/shared/m/file && touch /shared/ready; sleep infinity & wait')
    idle = 'trap "exit 0" TERM; sleep infinity & wait'
    shared = "shared"
    k8s.core.create_namespaced_pod(namespace, k.V1Pod(
        metadata=k.V1ObjectMeta(name="share"),
        spec=k.V1PodSpec(
            node_name=node,
            termination_grace_period_seconds=2,
            volumes=[k.V1Volume(name=shared, empty_dir=k.V1EmptyDirVolumeSource())],
            containers=[
                k.V1Container(name="mounter", image=cluster.base_image, image_pull_policy="Always",
                              command=["sh", "-c", mounter], security_context=k.V1SecurityContext(privileged=True),
                              volume_mounts=[k.V1VolumeMount(name=shared, mount_path="/shared",
                                                             mount_propagation="Bidirectional")]),
                k.V1Container(name="worker", image=cluster.base_image, image_pull_policy="Always",
                              command=["sh", "-c", idle],
                              security_context=k.V1SecurityContext(run_as_user=1000, allow_privilege_escalation=False,
                                                                   capabilities=k.V1Capabilities(drop=["ALL"])),
                              volume_mounts=[k.V1VolumeMount(name=shared, mount_path="/shared",
                                                             mount_propagation="HostToContainer")]),
            ],
        ),
    ))

    def running():
        p = k8s.core.read_namespaced_pod("share", namespace)
        return p.status.phase == "Running" and all(c.ready for c in p.status.container_statuses or [])

    wait_for("pod share Running on " + node, 120, running)
    wait_for("the mounter's tmpfs", 30,
             lambda: k8s.exec(namespace, "share", ["test", "-e", "/shared/ready"], container="mounter")[0] == 0)
    code, out, err = k8s.exec(namespace, "share", ["sh", "-c", "id -u; cat /shared/m/file; grep -c ' /shared/m tmpfs ' /proc/mounts"],
                              container="worker")
    assert (code, out) == (0, f"1000\npropagated-on-{node}\n1\n"), err
    code, _, err = k8s.exec(namespace, "share", ["test", "-c", "/dev/fuse"], container="mounter")
    assert code == 0, err
    assert k8s.core.read_namespaced_pod("share", namespace).spec.node_name == node


def test_a_runs_workers_land_on_every_node(cluster, womm, tmp_path):
    """womm spreads a task's workers over the nodes (a soft topology spread): with 4 pods on 2 nodes, each
    node runs some of them, and jobs run on both."""
    d = womm.setup_dir(tmp_path / "spread", "none")
    watch = NodeWatch(womm.k8s, womm.namespace)
    try:
        r = womm("parallel", "--kube-pods", "4", "--kube-cpu", "0.1", "--", "sleep 2; echo {} $(hostname)", ":::",
                 *map(str, range(12)), cwd=d, timeout=300)
    finally:
        watch.close()
    workers = watch.of("worker")
    lines = [line.split() for line in r.stdout.splitlines()]
    assert sorted(int(job) for job, _ in lines) == list(range(12)), r.stdout
    assert len(workers) >= 4, workers
    assert set(workers.values()) == set(cluster.node_names), workers
    assert {workers[pod] for _, pod in lines} == set(cluster.node_names), (lines, workers)
    womm.wait_no_objects(timeout=60)


def test_workers_ask_for_nodes_of_the_platform_the_image_was_built_for(cluster, womm, tmp_path):
    """A cluster of x86 and Arm nodes: `womm setup` records the image's platform and the workers ask for
    its nodes (on the others their containers would end in "exec format error"); where no node has it
    (an image built on an Arm laptop, x86 nodes: the record says so here), the wait names the platform.
    (A kubelet puts its node's kubernetes.io/arch back within a second: the nodes cannot pose as Arm.)"""
    from womm import records

    k8s = womm.k8s
    d = womm.setup_dir(tmp_path / "platform", "none")
    arch = k8s.core.read_node(cluster.node_names[0]).metadata.labels["kubernetes.io/arch"]
    project = in_home(womm.home, records.load_project, d)
    assert project["platform"] == f"linux/{arch}"
    # A project set up by a womm that did not record it: `womm setup` there records it.
    in_home(womm.home, records.save_project, d, {k: v for k, v in project.items() if k != "platform"})
    womm("setup", "--yes", cwd=d)
    assert in_home(womm.home, records.load_project, d)["platform"] == f"linux/{arch}"
    task = womm("parallel", "--async", "--kube-pods", "1", "--", "echo", ":::", "a", cwd=d).stdout.strip()
    try:
        pod = wait_for("the worker pod", 60, lambda: k8s.core.list_namespaced_pod(
            womm.namespace, label_selector=f"womm.dev/task={task},womm.dev/role=worker").items)[0]
        assert pod.spec.node_selector == {"kubernetes.io/os": "linux", "kubernetes.io/arch": arch}
        assert womm("logs", task, cwd=d, timeout=120).stdout == "a\n"
    finally:
        womm("finish", task, cwd=d, check=False)
    other = "arm64" if arch == "amd64" else "amd64"
    in_home(womm.home, records.save_project, d, dict(project, platform=f"linux/{other}"))
    start = time.monotonic()
    r = womm("parallel", "--kube-pods", "1", "--kube-pending-timeout", "8", "--", "true", ":::", "1", cwd=d,
             check=False, timeout=120)
    assert r.returncode != 0 and time.monotonic() - start < 60, r.stderr
    assert "didn't match Pod's node affinity/selector" in r.stderr, r.stderr
    assert f"(womm asks for linux/{other} nodes: the platform the image was built for)" in r.stderr, r.stderr
    womm.wait_no_objects(timeout=60)


def test_a_lazy_share_is_read_and_written_on_a_node_other_than_its_caches(cluster, womm, tmp_path):
    """The task's share cache serves the directory to worker pods on the other node too (sshfs across the
    cluster network); the workers write into it from there. Should the spread put every worker on the
    cache's node, the test moves them: the cache's node is cordoned and its workers deleted (their
    ReplicaSet makes them again on the other node), and uncordoned afterwards."""
    d = womm.setup_dir(tmp_path / "lazy", "lazy")
    token = f"read-across-nodes-{os.getpid()}"
    (d / "data.txt").write_text(token + "\n")
    k8s, namespace = womm.k8s, womm.namespace
    watch = NodeWatch(k8s, namespace)
    cordoned = None
    proc = womm.popen("parallel", "--kube-pods", "2", "--kube-cpu", "0.1", "--",
                      "sleep 2; echo $(cat data.txt) $(hostname) > out-{}.txt; cat out-{}.txt", ":::",
                      *map(str, range(10)), cwd=d, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        cache = wait_for("the share cache on a node", 120, lambda: list(watch.of("share-cache").values()))[0]
        workers = wait_for("both workers on nodes", 120, lambda: (w := watch.of("worker")) and len(w) >= 2 and w)
        if all(node == cache for node in workers.values()):
            cordoned = cache
            k8s.core.patch_node(cache, {"spec": {"unschedulable": True}})
            for pod in workers:
                k8s.core.delete_namespaced_pod(pod, namespace, grace_period_seconds=0)
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.communicate(timeout=60)
        if cordoned:
            k8s.core.patch_node(cordoned, {"spec": {"unschedulable": False}})
        watch.close()
    assert proc.returncode == 0, err
    workers = watch.of("worker")
    print(f"share cache on {cache}; workers {workers}; " + (f"{cordoned} cordoned" if cordoned else "as placed"))
    lines = [line.split() for line in out.splitlines()]
    assert len(lines) == 10 and {read for read, _ in lines} == {token}, out
    elsewhere = {pod for _, pod in lines if workers.get(pod) not in (None, cache)}
    assert elsewhere, f"no job ran on a node other than the cache's ({cache}): {lines}, {workers}"
    # What they wrote there is here.
    for i in range(10):
        read, pod = (d / f"out-{i}.txt").read_text().split()
        assert read == token and pod in workers
    womm.wait_no_objects(timeout=60)


def test_node2s_kubelet_and_containerd_come_back_after_kill_9_and_its_pods_live_on(cluster, k8s, namespace):
    import kubernetes.client as k

    node = cluster.node_names[1]
    idle = 'trap "exit 0" TERM; sleep infinity & wait'

    def pod(name):
        return k.V1Pod(metadata=k.V1ObjectMeta(name=name), spec=k.V1PodSpec(
            node_name=node, termination_grace_period_seconds=2,
            containers=[k.V1Container(name="main", image=cluster.base_image, command=["sh", "-c", idle])]))

    def running(name):
        p = k8s.core.read_namespaced_pod(name, namespace)
        return p.status.phase == "Running" and all(c.ready for c in p.status.container_statuses or []) and p

    k8s.core.create_namespaced_pod(namespace, pod("before"))
    wait_for("pod before Running", 120, lambda: running("before"))
    pids = {c: int((cluster.state / "pids" / f"{c}.pid").read_text()) for c in ("node2-kubelet", "node2-containerd")}
    for pid in pids.values():
        os.kill(pid, signal.SIGKILL)
    wait_for("both gone", 10, lambda: not any(os.path.exists(f"/proc/{pid}/exe") for pid in pids.values()))
    up = cluster.script("up", timeout=600)
    assert up.returncode == 0, up.stdout + up.stderr
    assert "node2-containerd started" in up.stdout and "node2-kubelet started" in up.stdout, up.stdout
    for c, pid in pids.items():
        assert int((cluster.state / "pids" / f"{c}.pid").read_text()) != pid
    wait_for(f"{node} Ready", 60, lambda: ready(k8s.core.read_node(node)))
    # The pod from before lives on, its container never restarted; a new one starts.
    code, out, err = k8s.exec(namespace, "before", ["echo", "alive"])
    assert (code, out) == (0, "alive\n"), err
    assert running("before").status.container_statuses[0].restart_count == 0
    k8s.core.create_namespaced_pod(namespace, pod("after"))
    wait_for("pod after Running", 120, lambda: running("after"))
    code, out, err = k8s.exec(namespace, "after", ["cat", "/etc/debian_version"])
    assert code == 0 and out.strip(), err
