"""NetworkPolicies, enforced on the local cluster (tests/cluster/up runs womm-netpol, kube-router's policy
controller), against womm's own objects: the share server's policy and a lazy share cache's admit only
what they should; womm's runs work within them; a namespace that denies egress is named, by the run and
by `womm doctor`, within 30 s.

Test pods are of womm's helper image (bash, rsync). A refused connection is refused at once: the
enforcer rejects. A new pod's rules take the enforcer a moment (it learns of the pod from the API): what
must connect is waited for, and what must not is tried once the enforcer has made the pod's own chain
(so that it is refused by the policies, not for being unknown yet)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request
import uuid

import pytest
from womm_fixtures import wait_for

pytestmark = pytest.mark.e2e

MANAGED_BY = {"app.kubernetes.io/managed-by": "womm"}
SHARE = "womm.dev/share"


@pytest.fixture
def other_namespace(k8s):
    """A second namespace for one test, deleted afterwards."""
    import kubernetes

    name = f"e2e-netpol-other-{uuid.uuid4().hex[:6]}"
    k8s.core.create_namespace(kubernetes.client.V1Namespace(metadata=kubernetes.client.V1ObjectMeta(
        name=name, labels={"app.kubernetes.io/managed-by": "womm-e2e"})))
    wait_for(f"ServiceAccount default in {name}", 30, lambda: _exists(k8s, name))
    yield name
    k8s.core.delete_namespace(name, propagation_policy="Background")


def _exists(k8s, namespace):
    import kubernetes

    try:
        return k8s.core.read_namespaced_service_account("default", namespace)
    except kubernetes.client.ApiException as e:
        if e.status == 404:
            return None
        raise


def networking(k8s):
    import kubernetes

    return kubernetes.client.NetworkingV1Api(k8s.api_client)


def make_pods(k8s, image, pods):
    """pods: {(namespace, name): labels}. Pods that idle, made at once, waited for until all run."""
    for (namespace, name), labels in pods.items():
        k8s.core.create_namespaced_pod(namespace, {
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels},
            "spec": {"containers": [{"name": "main", "image": image,
                                     "command": ["sh", "-c", 'trap "exit 0" TERM; sleep infinity & wait']}],
                     "automountServiceAccountToken": False, "terminationGracePeriodSeconds": 0}})

    def running():
        return all(k8s.core.read_namespaced_pod(name, ns).status.phase == "Running" for ns, name in pods)

    wait_for("the test pods to run", 120, running)


NODE_NETNS = ("womm-node2",)  # network namespaces of the nodes after the first (tests/cluster/lib.sh)


def known_to_enforcer(pods):
    """Whether the enforcer of each pod's node has made its chain: its rules hold for it from then on.
    Each node's enforcer writes the chains of its own pods, in its node's network namespace."""
    listing = ["iptables", "-w", "-S", "KUBE-ROUTER-FORWARD"]
    rules = subprocess.run(listing, capture_output=True, text=True).stdout
    for netns in NODE_NETNS:
        rules += subprocess.run(["ip", "netns", "exec", netns, *listing], capture_output=True, text=True).stdout
    return all(f"POD name:{name} namespace: {namespace} " in rules for namespace, name in pods)


def delete_pods(k8s, pods):
    import kubernetes

    for namespace, name in pods:
        try:
            k8s.core.delete_namespaced_pod(name, namespace, grace_period_seconds=0)
        except kubernetes.client.ApiException as e:
            if e.status != 404:
                raise


def connects(k8s, namespace, pod, host, port, container=None):
    """Whether the pod opens a TCP connection to host:port."""
    assert host, f"no address to connect to from {namespace}/{pod}"  # (a refusal of None would prove nothing)
    code, _, err = k8s.exec(namespace, pod, ["timeout", "5", "bash", "-c", f"exec 3<>/dev/tcp/{host}/{port}"],
                            container=container, timeout=30)
    if code:
        print(f"{namespace}/{pod} to {host}:{port}: exit {code} {err.strip()[:200]}")
    return code == 0


def refused(k8s, namespace, pod, host, port, tries=3):
    """Whether every one of a few tries, a second apart, fails to connect."""
    for i in range(tries):
        if connects(k8s, namespace, pod, host, port):
            return False
        if i + 1 < tries:
            time.sleep(1)
    return True


def cache_pod(k8s, namespace, task):
    """The task's share cache pod, once it has an IP (else None)."""
    pods = k8s.core.list_namespaced_pod(namespace, label_selector=f"womm.dev/task={task},womm.dev/role=share-cache")
    return next((p for p in pods.items if p.status.pod_ip), None)


def running_worker(womm, task=None):
    """Name of a ready worker pod of the namespace (of one task, or of any)."""
    selector = "womm.dev/role=worker,womm.dev/task" + (f"={task}" if task else "")
    pods = womm.k8s.core.list_namespaced_pod(womm.namespace, label_selector=selector).items
    ready = [p for p in pods if not p.metadata.deletion_timestamp and p.status.container_statuses
             and all(s.ready for s in p.status.container_statuses)]
    return ready[0].metadata.name if ready else None


def test_only_a_shares_pods_in_its_namespace_reach_the_share_server(womm, k8s, other_namespace):
    ns, server = womm.namespace, k8s.core.read_namespaced_service("womm-fs", womm.namespace).spec.cluster_ip
    share_pod = {**MANAGED_BY, SHARE: "s1"}
    make_pods(k8s, womm.helper_image, {
        (ns, "sharer"): share_pod,  # what a worker pod of an eager share carries: the policy admits it
        (ns, "plain"): {},
        (ns, "womms-no-share"): dict(MANAGED_BY),
        (other_namespace, "elsewhere"): share_pod,  # a share's labels, in another namespace
    })
    mine = [(ns, "sharer"), (ns, "plain"), (ns, "womms-no-share"), (other_namespace, "elsewhere")]
    wait_for("the enforcer to know the test pods", 30, lambda: known_to_enforcer(mine))
    wait_for("pod sharer to reach the share server", 30, lambda: connects(k8s, ns, "sharer", server, 873))
    assert refused(k8s, ns, "plain", server, 873)
    assert refused(k8s, ns, "womms-no-share", server, 873)
    assert refused(k8s, other_namespace, "elsewhere", server, 873)
    # The port is the pod's own too (8873, what the policy names): refused there as well.
    server_pod = k8s.core.list_namespaced_pod(ns, label_selector="womm.dev/role=share-server").items[0]
    assert refused(k8s, ns, "plain", server_pod.status.pod_ip, 8873)
    # Labels decide: given a share's labels, the plain pod gets in; without them, not any more.
    k8s.core.patch_namespaced_pod("plain", ns, {"metadata": {"labels": share_pod}})
    wait_for("pod plain, labelled as a share's, to reach the share server", 30,
             lambda: connects(k8s, ns, "plain", server, 873))
    k8s.core.patch_namespaced_pod("plain", ns, {"metadata": {"labels": {SHARE: None}}})
    wait_for("pod plain, unlabelled, to be refused again", 30, lambda: refused(k8s, ns, "plain", server, 873, 1))


def test_eager_and_lazy_runs_work_within_the_policies(womm, tmp_path):
    for share in ("eager", "eager-syncback", "lazy"):
        d = womm.setup_dir(tmp_path / share, share)
        (d / "in.txt").write_text("one\ntwo\n")
        out = womm("parallel", "--kube-pods", "2", "--kube-cpu", "0.5", "--",
                   "wc -l < {} > {.}.count; cat {.}.count", ":::", "in.txt", cwd=d).stdout
        assert out == "2\n", (share, out)
        assert (d / "in.count").exists() == (share != "eager"), share  # eager alone leaves the directory alone
    policies = networking(womm.k8s).list_namespaced_network_policy(womm.namespace).items
    assert "womm-fs" in {p.metadata.name for p in policies}  # the share server's: in force all along


def test_only_the_tasks_own_pods_reach_its_lazy_cache(womm, k8s, other_namespace, tmp_path):
    d = womm.setup_dir(tmp_path / "lazy", "lazy")
    proc = womm.popen("parallel", "--kube-pods", "1", "--", "sleep 120; : {}", ":::", "x", cwd=d,
                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ns = womm.namespace
    mine = [(ns, "plain"), (ns, "other-task"), (ns, "share-cache-peer"), (other_namespace, "same-labels")]
    try:
        worker = wait_for("a worker pod to be ready", 120, lambda: running_worker(womm))
        task = k8s.core.read_namespaced_pod(worker, ns).metadata.labels["womm.dev/task"]
        # The worker is ready before its share is mounted, and may be before its cache pod has an address.
        cache = wait_for("the task's share cache pod to have an IP", 120, lambda: cache_pod(k8s, ns, task))
        ip, port = cache.status.pod_ip, cache.spec.containers[0].ports[0].container_port
        # The task's worker connects (within a while: the cache may still be starting its server).
        wait_for("the task's worker to reach its lazy cache", 60,
                 lambda: connects(k8s, ns, worker, ip, port, container="womm"))
        make_pods(k8s, womm.helper_image, {
            (ns, "plain"): {},
            (ns, "other-task"): {**MANAGED_BY, "womm.dev/task": "another", "womm.dev/role": "worker"},
            (ns, "share-cache-peer"): {**MANAGED_BY, "womm.dev/task": task, "womm.dev/role": "share-cache"},
            (other_namespace, "same-labels"): {**MANAGED_BY, "womm.dev/task": task, "womm.dev/role": "worker"},
        })
        wait_for("the enforcer to know the test pods", 30, lambda: known_to_enforcer(mine))
        for namespace, pod in mine:
            assert refused(k8s, namespace, pod, ip, port), f"{namespace}/{pod} reached the lazy cache"
    finally:
        running = proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
        print(f"womm parallel {'was running' if running else 'had ended'}; its stderr: {err}")
        delete_pods(k8s, mine)  # they carry womm's labels
    womm.wait_no_objects(timeout=60)


def test_another_shares_pod_is_let_in_by_the_policy_and_refused_by_the_key(womm, tmp_path):
    a = womm.setup_dir(tmp_path / "a", "eager-syncback")
    b = womm.setup_dir(tmp_path / "b", "eager")
    (b / "secret.txt").write_text("b's secret\n")
    womm("parallel", "--kube-pods", "1", "--", "cat", ":::", "secret.txt", cwd=b)  # b's share now on the server
    share_a = json.loads(womm("share", "-o", "json", cwd=a).stdout)["share_id"]
    share_b = json.loads(womm("share", "-o", "json", cwd=b).stdout)["share_id"]
    server = womm.k8s.core.read_namespaced_service("womm-fs", womm.namespace).spec.cluster_ip
    proc = womm.popen("parallel", "--kube-pods", "1", "--", "sleep 60; : {}", ":::", "x", cwd=a,
                      stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        pod = wait_for("a worker pod of a's task", 120, lambda: running_worker(womm))
        # a's pod carries a share label: the server's NetworkPolicy lets it in...
        wait_for("a's pod to reach the share server", 30,
                 lambda: connects(womm.k8s, womm.namespace, pod, server, 873, container="womm"))
        # ... and its own share's key (which its agent holds, to send results back) opens a's share only.
        rsync = "rsync --contimeout=5 --password-file=/womm/secret/password rsync://womm@{}/share-{}/ >/dev/null"
        code, _, err = womm.k8s.exec(womm.namespace, pod, ["sh", "-c", rsync.format(server, share_a)], "womm")
        assert code == 0, err
        code, _, err = womm.k8s.exec(womm.namespace, pod, ["sh", "-c", rsync.format(server, share_b)], "womm")
        assert code == 5 and "auth failed" in err, (code, err)
    finally:
        proc.terminate()
        proc.wait(60)


def deny_egress(k8s, namespace):
    """A default-deny egress policy in the namespace, as a careful platform team writes one."""
    networking(k8s).create_namespaced_network_policy(namespace, {
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "default-deny-egress"},
        "spec": {"podSelector": {}, "policyTypes": ["Egress"]}})


def test_a_namespace_that_denies_egress_is_named_within_30_s(womm, k8s, tmp_path):
    d = womm.setup_dir(tmp_path / "eager", "eager")
    (d / "in.txt").write_text("x\n")
    before = womm("doctor", cwd=d, check=False, timeout=120).stdout.splitlines()
    assert "ok   network from worker pods to the share server: a pod labelled as this share's workers connected " \
           "to the share server" in "\n".join(before), before
    deny_egress(k8s, womm.namespace)
    start = time.monotonic()
    proc = womm("parallel", "--kube-pods", "2", "--", "cat", ":::", "in.txt", cwd=d, check=False, timeout=300)
    took = time.monotonic() - start
    last = proc.stderr.strip().splitlines()[-1]
    print(f"womm parallel under default-deny egress: ended in {took:.1f} s: {last}")
    assert proc.returncode == 255, proc.stderr
    assert took < 30, f"took {took:.1f} s: {proc.stderr}"
    assert "NetworkPolicy" in last and "share server" in last and "womm-share-pull" in last, proc.stderr
    assert "Traceback" not in proc.stderr
    womm.wait_no_objects(timeout=60)

    start = time.monotonic()
    doctor = womm("doctor", cwd=d, check=False, timeout=120)
    took = time.monotonic() - start
    failed = [line for line in doctor.stdout.splitlines() if line.startswith("FAIL")]
    print(f"womm doctor under default-deny egress, {took:.1f} s: {failed}")
    assert doctor.returncode == 1
    assert len(failed) == 1, doctor.stdout
    assert failed[0].startswith("FAIL network from worker pods to the share server:"), failed
    assert "NetworkPolicy default-deny-egress" in failed[0] and "no egress to the share server" in failed[0]
    assert took < 30, f"womm doctor took {took:.1f} s"
    assert not k8s.core.list_namespaced_pod(womm.namespace, label_selector="womm.dev/probe").items


def test_the_enforcer_comes_back_after_kill_9_and_policies_hold_from_the_first_packet(cluster):
    def healthz():
        with urllib.request.urlopen("http://127.0.0.1:20244/healthz", timeout=3) as r:
            return r.read().decode()

    pid = int((cluster.state / "pids" / "womm-netpol.pid").read_text())
    assert os.path.basename(os.readlink(f"/proc/{pid}/exe")).startswith("womm-netpol-")
    assert healthz().startswith("ok")
    os.kill(pid, signal.SIGKILL)
    wait_for("womm-netpol to be gone", 10, lambda: not os.path.exists(f"/proc/{pid}/exe"))
    up = cluster.script("up", timeout=600)
    assert up.returncode == 0, up.stdout + up.stderr
    assert "womm-netpol started" in up.stdout and "NetworkPolicy" in up.stdout, up.stdout
    new = int((cluster.state / "pids" / "womm-netpol.pid").read_text())
    assert new != pid and healthz().startswith("ok")
    # As up leaves them: bridge traffic meets the policies before anything accepts it, wherever WOMM-FORWARD
    # stands in FORWARD; and the pod range's isolation is before the filter table.
    rules = subprocess.run(["iptables", "-w", "-S", "WOMM-FORWARD"], capture_output=True, text=True).stdout.split("\n")
    assert rules[1] == "-A WOMM-FORWARD -i cni0 -o cni0 -j KUBE-ROUTER-FORWARD", rules
    forward = subprocess.run(["iptables", "-w", "-S", "FORWARD"], capture_output=True, text=True).stdout
    assert "-j KUBE-ROUTER-FORWARD" in forward
    isolation = subprocess.run(["nft", "list", "chain", "ip", "womm-cluster", "forward"], capture_output=True, text=True)
    assert "ip saddr 10.244.0.0/16 reject" in isolation.stdout, isolation.stdout + isolation.stderr


def test_results_a_dropping_network_keeps_from_the_share_server_end_the_job_within_seconds(womm, k8s, tmp_path):
    """Some policy enforcers drop what they deny (no refusal comes back): a worker whose pushes to the
    share server go unanswered mid-run loses its job's results in 10 s (womm-share-push's connect
    timeout), not after the kernel's SYN retries (about 2 minutes); the job fails as lost."""
    d = womm.setup_dir(tmp_path / "dropped", "eager-syncback")
    proc = womm.popen("parallel", "--kube-pods", "1", "--kube-retries", "0", "--",
                      "sleep 15; echo {} > out-{}.txt; echo {}", ":::", "a", cwd=d,
                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    rules = []
    try:
        worker = wait_for("a worker pod to be ready", 120, lambda: running_worker(womm))
        ip = k8s.core.read_namespaced_pod(worker, womm.namespace).status.pod_ip
        server = k8s.core.read_namespaced_service("womm-fs", womm.namespace).spec.cluster_ip
        # Dropped where the worker's packets enter its node, before anything (the enforcer's chains, which
        # accept what a policy admits, or kube-proxy's) sees them: every node's raw table.
        rule = ["PREROUTING", "-s", ip, "-d", server, "-p", "tcp", "--dport", "873", "-j", "DROP"]
        for prefix in ([], *(["ip", "netns", "exec", ns] for ns in NODE_NETNS)):
            subprocess.run([*prefix, "iptables", "-w", "-t", "raw", "-I", *rule], check=True)
            rules.append(prefix)
        dropped = time.monotonic()
        out, err = proc.communicate(timeout=300)
        took = time.monotonic() - dropped
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        for prefix in rules:
            subprocess.run([*prefix, "iptables", "-w", "-t", "raw", "-D", *rule], check=False)
    print(f"ended {took:.1f} s after the drop began (the job sleeps 15 s): {err.strip().splitlines()[-1:]}")
    assert proc.returncode != 0 and out == "", (out, err)
    assert "its results could not be sent back" in err, err
    assert took < 60, f"the run ended {took:.1f} s after its pushes began to be dropped: {err}"
    assert "Traceback" not in err


def test_a_lazy_share_in_a_namespace_that_denies_egress_is_named_within_30_s(womm, k8s, tmp_path):
    """The workers cannot reach their task's share cache: the run ends saying so, and why it may be."""
    d = womm.setup_dir(tmp_path / "lazy", "lazy")
    (d / "in.txt").write_text("x\n")
    deny_egress(k8s, womm.namespace)
    start = time.monotonic()
    proc = womm("parallel", "--kube-pods", "1", "--", "cat", ":::", "in.txt", cwd=d, check=False, timeout=300)
    took = time.monotonic() - start
    last = proc.stderr.strip().splitlines()[-1]
    print(f"womm parallel (lazy) under default-deny egress: ended in {took:.1f} s: {last}")
    assert proc.returncode == 255, proc.stderr
    assert "cannot connect to the share cache" in last and "NetworkPolicy" in last, proc.stderr
    assert took < 30, f"took {took:.1f} s: {proc.stderr}"
    assert "Traceback" not in proc.stderr
    womm.wait_no_objects(timeout=60)
