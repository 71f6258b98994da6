"""Co-tenants in the namespace, on the real local cluster: what someone who may only read (the
built-in `view` role: pods, their logs, ReplicaSets, ConfigMaps) learns of a user's task, and what
the --async leader's token, in anyone's hands, may do."""

from __future__ import annotations

import json
import time

import pytest

pytestmark = pytest.mark.e2e

SECRET = "Bearer s3cr3t-token-of-the-user"


def readable_by(user, namespace, task):
    """Everything of the task's the user's kubeconfig lets it read, as one text (what it cannot
    read is left out: the API says so)."""
    import kubernetes

    api = kubernetes.config.new_client_from_config(str(user.kubeconfig()))
    core, apps = kubernetes.client.CoreV1Api(api), kubernetes.client.AppsV1Api(api)
    selector = f"womm.dev/task={task}"
    texts = []
    for lister in (core.list_namespaced_pod, apps.list_namespaced_replica_set, core.list_namespaced_config_map,
                   core.list_namespaced_event):
        try:
            items = lister(namespace, _preload_content=False).data.decode()
        except kubernetes.client.exceptions.ApiException as e:
            assert e.status == 403, e
            continue
        texts.append(items)
    for pod in core.list_namespaced_pod(namespace, label_selector=selector).items:
        for container in pod.spec.containers:
            try:
                texts.append(core.read_namespaced_pod_log(pod.metadata.name, namespace, container=container.name))
            except kubernetes.client.exceptions.ApiException:
                pass
    return "\n".join(texts)


def test_a_view_user_reads_no_command_input_or_environment_of_a_task(womm, tmp_path, view_user, k8s, monkeypatch):
    d = womm.setup_dir(tmp_path / "proj", "eager")
    (d / "input.txt").write_text(f"{SECRET} in an input file\n")
    env = {"WOMM_SECRET_VALUE": f"{SECRET} in the environment"}
    # The command carries the secret, so do its stdin, an input file and an --env variable.
    task = womm("parallel", "--async", "--kube-pods", "1", "--env", "WOMM_SECRET_VALUE", "--",
                f": '{SECRET}'; sleep 20; echo {{}}", "::::", "input.txt", "-", cwd=d,
                input=f"{SECRET} on stdin\n", env=env).stdout.strip()
    deadline = time.monotonic() + 120
    seen = ""
    while time.monotonic() < deadline:
        seen = readable_by(view_user, womm.namespace, task)
        pods = json.loads(k8s.core.list_namespaced_pod(womm.namespace, label_selector=f"womm.dev/task={task}",
                                                       _preload_content=False).data)["items"]
        if {p["metadata"]["labels"]["womm.dev/role"] for p in pods if p["status"].get("phase") == "Running"} \
                >= {"leader", "worker"}:
            break
        time.sleep(1)
    seen += readable_by(view_user, womm.namespace, task)
    assert task in seen  # it does see the task
    assert "s3cr3t" not in seen
    womm("logs", task, cwd=d, timeout=300)
    womm("finish", task, cwd=d)


def test_the_leaders_token_may_make_no_pod_nor_replicaset(womm, k8s):
    import kubernetes.client as k

    subject = f"system:serviceaccount:{womm.namespace}:womm-leader"
    for group, resource in (("", "pods"), ("apps", "replicasets"), ("apps", "deployments"), ("batch", "jobs")):
        review = k8s.auth.create_subject_access_review(k.V1SubjectAccessReview(spec=k.V1SubjectAccessReviewSpec(
            user=subject, groups=["system:serviceaccounts", f"system:serviceaccounts:{womm.namespace}"],
            resource_attributes=k.V1ResourceAttributes(namespace=womm.namespace, verb="create", group=group,
                                                       resource=resource))))
        assert review.status.allowed is False, (resource, review.status)


FLOOD = r"""
import socket, sys, time
host, port = sys.argv[1], int(sys.argv[2])
idle = []
for _ in range(300):  # connections that never send a token
    try:
        idle.append(socket.create_connection((host, port), timeout=2))
    except OSError:
        pass
end, made = time.monotonic() + 15, 0
while time.monotonic() < end:  # and a few hundred a second with a wrong one
    try:
        s = socket.create_connection((host, port), timeout=2)
        s.sendall(b"not-the-token\n")
        s.close()
        made += 1
    except OSError:
        pass
print(len(idle), made)
"""


def test_the_lazy_cache_serves_its_pods_through_a_flood_of_its_port(womm, tmp_path, k8s):
    """From inside the task's own pod (where any NetworkPolicy lets it in): idle connections without
    a token, then hundreds a second with a wrong one. The pods keep reading the directory."""
    import subprocess

    d = womm.setup_dir(tmp_path / "lazy", "lazy")
    (d / "data.txt").write_text("x\n" * 1000)
    proc = womm.popen("parallel", "--kube-pods", "1", "--procs-per-pod", "2", "--",
                      "for i in $(seq 40); do wc -l < data.txt > /dev/null || exit 1; sleep 0.5; done; echo ok {}",
                      ":::", "1", "2", cwd=d, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline, cache, worker = time.monotonic() + 120, None, None
    while time.monotonic() < deadline and not (cache and worker):
        for pod in k8s.core.list_namespaced_pod(womm.namespace, label_selector="app.kubernetes.io/managed-by=womm").items:
            role = (pod.metadata.labels or {}).get("womm.dev/role")
            if pod.status.phase == "Running" and role == "share-cache":
                cache = pod.status.pod_ip
            if pod.status.phase == "Running" and role == "worker":
                worker = pod.metadata.name
        time.sleep(0.5)
    assert cache and worker, "no running cache and worker"
    import threading

    flood = {}
    t = threading.Thread(target=lambda: flood.update(result=k8s.exec(
        womm.namespace, worker, ["python3", "-c", FLOOD, cache, "2222"], container="womm-share", timeout=90)))
    t.start()
    time.sleep(8)  # its 300 idle connections are open, and the wrong tokens keep coming
    cache_pod = next(p.metadata.name for p in k8s.core.list_namespaced_pod(
        womm.namespace, label_selector="womm.dev/role=share-cache").items)
    code, count, err = k8s.exec(womm.namespace, cache_pod, ["sh", "-c", "ls -d /proc/[0-9]* | wc -l"],
                                container="womm-share")
    t.join(120)
    code, out, err = flood["result"]
    assert code == 0, err
    idle, made = map(int, out.split())
    print(f"flood: {idle} idle connections, {made} with a wrong token in 15 s; {count.strip()} processes in the cache")
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert sorted(out.splitlines()) == ["ok 1", "ok 2"]
    assert made > 100 and idle == 300
    assert int(count) < 30  # no process per connection: the token is read before anything is forked
    womm.wait_no_objects()
