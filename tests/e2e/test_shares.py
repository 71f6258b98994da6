"""The four shares, cluster-setup, and share isolation, on the real local cluster."""

from __future__ import annotations

import json
import subprocess
import threading
import time

import pytest

pytestmark = pytest.mark.e2e


def files(d, n=6):
    for i in range(n):
        (d / f"in{i}.txt").write_text("x\n" * (i + 1))
    return sorted(f"in{i}.txt" for i in range(n))


def run_jobs(womm, d, command, names, **kw):
    return womm("parallel", "--kube-pods", "2", "--kube-cpu", "0.5", "--", command, ":::", *names, cwd=d, **kw)


def test_lazy_results_appear_locally(womm, tmp_path):
    d = womm.setup_dir(tmp_path / "lazy", "lazy")
    names = files(d)
    out = run_jobs(womm, d, "wc -l < {} > {.}.count; cat {.}.count", names)
    assert sorted(out.stdout.split()) == sorted(str(i + 1) for i in range(6))
    for i in range(6):
        assert (d / f"in{i}.count").read_text() == f"{i + 1}\n"
    # The pods' sshfs mounts propagate to the node (this machine): gone with them, or the kubelet
    # could not remove the pods' volumes, and the pods would stay Terminating.
    womm.wait_no_objects(timeout=60)
    assert not [line for line in open("/proc/mounts") if line.split()[2] == "fuse.sshfs" and str(d) in line]


def test_lazy_propagation_both_ways(womm, tmp_path, record_property):
    """A job waits for a local file and answers by writing one: both delays, measured."""
    d = womm.setup_dir(tmp_path / "lazy", "lazy")
    proc = womm.popen("parallel", "--kube-pods", "1", "--kube-cpu", "0.5", "--",
                      "until [ -e ping ]; do sleep 0.01; done; echo pong > pong; echo {}", ":::", "go", cwd=d,
                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # wait until the job is running in the pod
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        pods = womm.k8s.core.list_namespaced_pod(womm.namespace, label_selector="womm.dev/role=worker").items
        if pods and all(s.ready for p in pods for s in (p.status.container_statuses or [])) and pods[0].status.container_statuses:
            break
        time.sleep(0.2)
    time.sleep(3)
    t0 = time.monotonic()
    (d / "ping").write_text("ping\n")
    while not (d / "pong").exists() and time.monotonic() - t0 < 30:
        time.sleep(0.005)
    round_trip = time.monotonic() - t0
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert (d / "pong").read_text() == "pong\n"
    record_property("lazy_round_trip_s", round_trip)
    print(f"lazy share: local file -> seen by the job -> its answer seen locally: {round_trip:.3f} s")
    assert round_trip < 5


def test_eager_leaves_the_local_directory_alone(womm, tmp_path):
    d = womm.setup_dir(tmp_path / "eager", "eager")
    names = files(d)
    before = sorted(p.name for p in d.iterdir())
    out = run_jobs(womm, d, "wc -l < {} > {.}.count && cat {.}.count && rm {}", names)
    assert sorted(out.stdout.split()) == sorted(str(i + 1) for i in range(6))
    assert sorted(p.name for p in d.iterdir()) == before


def test_syncback_brings_results_and_keeps_local_edits(womm, tmp_path):
    d = womm.setup_dir(tmp_path / "syncback", "eager-syncback")
    names = files(d)
    (d / "notes.txt").write_text("original\n")
    (d / "doomed.txt").write_text("a job deletes this in its pod\n")
    command = ("sleep 4; wc -l < {} > {.}.count; "
               "if [ {} = in0.txt ]; then echo cluster >> notes.txt; rm doomed.txt; fi")
    result = {}

    def run():
        result["proc"] = run_jobs(womm, d, command, names, check=False)

    t = threading.Thread(target=run)
    t.start()
    # Once the pods run, the directory has been sent (their init waits for it): the user edits a file.
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        pods = womm.k8s.core.list_namespaced_pod(womm.namespace, label_selector="womm.dev/role=worker").items
        if any(p.status.phase == "Running" for p in pods):
            break
        time.sleep(0.2)
    (d / "notes.txt").write_text("original\nlocal edit\n")
    t.join(300)
    proc = result["proc"]
    assert proc.returncode == 0, proc.stderr
    for i in range(6):
        assert (d / f"in{i}.count").read_text() == f"{i + 1}\n"
    assert (d / "notes.txt").read_text() == "original\nlocal edit\n"
    beside = [p for p in d.iterdir() if p.name.startswith("notes.txt.womm-cluster-")]
    assert len(beside) == 1 and beside[0].read_text() == "original\ncluster\n"
    assert (d / "doomed.txt").exists()
    assert "notes.txt" in proc.stderr  # both versions are reported


def test_none_share_runs_without_the_directory(womm, tmp_path):
    d = womm.setup_dir(tmp_path / "none", "none")
    files(d)
    out = womm("parallel", "--kube-pods", "1", "--", "ls -A . | wc -l; pwd; : {}", ":::", "x", cwd=d).stdout
    assert out.split() == ["0", str(d)]


def test_eager_sends_only_what_changed(womm, tmp_path):
    d = womm.setup_dir(tmp_path / "many", "eager")
    for i in range(100):
        sub = d / f"dir{i:02d}"
        sub.mkdir()
        for j in range(100):
            (sub / f"f{j:02d}").write_text(f"{i} {j}\n")
    run_jobs(womm, d, "ls {} | wc -l", ["dir00", "dir99"])
    (d / "dir42" / "f17").write_text("changed\n")
    out = run_jobs(womm, d, "cat {}", ["dir42/f17"])
    assert out.stdout == "changed\n"
    project = json.loads(womm("share", "-o", "json", cwd=d).stdout)
    lines = [json.loads(line) for line in open(project["log"])]
    first, second = lines[-2], lines[-1]
    assert first["files_transferred"] == 10000
    assert second["files_transferred"] == 1
    assert second["files"] == first["files"] == 10101  # the files and directories rsync considered


def test_cluster_setup_through_kubectl_and_apply_twice(cluster, k8s, namespace, womm_images, tmp_path):
    from womm_fixtures import run_womm

    home = tmp_path / "home"
    yaml = run_womm(["cluster-setup", "--namespace", namespace, "--helper-image", womm_images], home).stdout
    created = subprocess.run(["kubectl", "create", "-f", "-"], input=yaml, capture_output=True, text=True)
    assert created.returncode == 0, created.stderr
    assert "deployment.apps/womm-fs created" in created.stdout
    assert "rolebinding.rbac.authorization.k8s.io/womm-leader created" in created.stdout
    for _ in range(2):
        applied = run_womm(["cluster-setup", "--apply", "--namespace", namespace, "--helper-image", womm_images],
                           home)
        assert "deployment/womm-fs configured" in applied.stdout
    svc = k8s.core.read_namespaced_service("womm-fs", namespace)
    assert svc.spec.type == "ClusterIP"


def test_a_share_cannot_read_another(womm, tmp_path):
    a = womm.setup_dir(tmp_path / "a", "eager-syncback")
    b = womm.setup_dir(tmp_path / "b", "eager")
    (b / "secret.txt").write_text("b's secret\n")
    (a / "mine.txt").write_text("a's file\n")
    womm("parallel", "--kube-pods", "1", "--", "cat", ":::", "secret.txt", cwd=b)
    share_b = json.loads(womm("share", "-o", "json", cwd=b).stdout)["share_id"]
    share_a = json.loads(womm("share", "-o", "json", cwd=a).stdout)["share_id"]
    server_ip = womm.k8s.core.read_namespaced_service("womm-fs", womm.namespace).spec.cluster_ip
    probe = (f"for s in {share_a} {share_b}; do "
             f"if rsync --password-file=/womm/secret/password rsync://womm@{server_ip}/share-$s/ >/dev/null 2>&1; "
             "then echo $s readable; else echo $s refused; fi; done; "
             "ls /womm/secret >/dev/null 2>&1 && echo has-key")
    proc = womm.popen("parallel", "--kube-pods", "1", "--", "sleep 30; : {}", ":::", "x", cwd=a,
                      stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        pod = None
        while time.monotonic() < deadline and pod is None:
            pods = womm.k8s.core.list_namespaced_pod(womm.namespace, label_selector="womm.dev/role=worker").items
            ready = [p for p in pods if not p.metadata.deletion_timestamp
                     and p.metadata.labels.get("womm.dev/task")
                     and p.status.container_statuses and all(s.ready for s in p.status.container_statuses)]
            pod = ready[0].metadata.name if ready else None
            time.sleep(0.5)
        assert pod
        # The share's own helper (the pod's agent, which sends results back) holds A's key: A opens, B refuses.
        code, out, _ = womm.k8s.exec(womm.namespace, pod, ["sh", "-c", probe], container="womm")
        assert out.split("\n")[:2] == [f"{share_a} readable", f"{share_b} refused"]
        # The job container has no key at all.
        code, out, _ = womm.k8s.exec(womm.namespace, pod, ["sh", "-c", "ls /womm/secret 2>/dev/null || echo no-key"],
                                     container="job")
        assert out.strip() == "no-key"
    finally:
        proc.terminate()
        proc.wait(60)
