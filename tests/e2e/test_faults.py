"""Faults, on the real local cluster: each ends in a complete run (every job once) or in a bounded
failure that names its cause and leaves nothing behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time

import pytest
from womm_fixtures import wait_for

pytestmark = pytest.mark.e2e


def background(womm, d, *args, stdin=None):
    """A womm parallel in the background; (process, {stdout, stderr} once it ended, its thread)."""
    proc = womm.popen("parallel", *args, cwd=d, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                      stderr=subprocess.PIPE, text=True)
    out = {}

    def communicate():
        out["stdout"], out["stderr"] = proc.communicate(stdin, timeout=600)

    t = threading.Thread(target=communicate)
    t.start()
    return proc, out, t


def worker_pods(womm, running=True):
    pods = womm.k8s.core.list_namespaced_pod(womm.namespace, label_selector="womm.dev/role=worker").items
    return [p for p in pods if not running or (p.status.phase == "Running" and not p.metadata.deletion_timestamp)]


def test_a_job_that_keeps_losing_its_runner_fails_as_a_job_within_bounds(womm, tmp_path):
    d = womm.setup_dir(tmp_path / "proj", "none")
    joblog = tmp_path / "joblog"
    t = time.monotonic()
    # The bad job kills what runs it in the pod, every time: to womm it vanished, as with its container.
    r = womm("parallel", "--kube-pods", "1", "--kube-retries", "2", "--joblog", str(joblog), "--",
             "if [ {} = bad ]; then kill -9 $PPID; sleep 2; fi; echo {}", ":::", "ok", "bad", cwd=d, check=False,
             timeout=300)
    assert time.monotonic() - t < 120
    assert r.returncode == 1, r.stderr
    assert r.stdout == "ok\n"
    assert "failed: lost 3 times" in r.stderr and "bad" in r.stderr
    rows = {row.split("\t")[-1]: row.split("\t")[6] for row in joblog.read_text().splitlines()[1:]}
    assert sorted(rows.values()) == ["0", "255"]
    womm.wait_no_objects()


def test_pods_that_cannot_be_scheduled_end_the_run_with_the_schedulers_reason(womm, tmp_path):
    d = womm.setup_dir(tmp_path / "proj", "none")
    t = time.monotonic()
    r = womm("parallel", "--kube-pods", "2", "--kube-cpu", "64", "--kube-pending-timeout", "20s", "--",
             "echo", ":::", "1", "2", cwd=d, check=False, timeout=120)
    assert time.monotonic() - t < 90
    assert r.returncode == 255
    assert "Insufficient cpu" in r.stderr and "Traceback" not in r.stderr
    # Said once, not once per pod and second.
    assert r.stderr.count("Insufficient cpu") <= 2, r.stderr
    womm.wait_no_objects(timeout=30)


def test_two_sigterms_in_a_row_leave_no_object(womm, tmp_path):
    d = womm.setup_dir(tmp_path / "proj", "none")
    proc, out, t = background(womm, d, "--kube-pods", "2", "--", "sleep 100", ":::", "1", "2", "3")
    wait_for("a worker running", 120, lambda: worker_pods(womm))
    time.sleep(2)
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    t.join(60)
    assert proc.returncode == 128 + signal.SIGTERM, out.get("stderr")
    assert "running it again" not in out["stderr"]  # the run's own end loses no job worth saying
    womm.wait_no_objects(timeout=30)


def test_a_job_that_ignores_term_is_gone_after_its_timeout(womm, tmp_path):
    d = womm.setup_dir(tmp_path / "proj", "none")
    stubborn = "trap '' TERM; sh -c \"trap '' TERM; sleep 1234\" & sleep 1235"
    # The other jobs (1 s each, within the timeout) keep the pod there long enough to look.
    proc, out, t = background(womm, d, "--kube-pods", "1", "--procs-per-pod", "2", "--timeout", "5", "--",
                              "if [ {} = stubborn ]; then " + stubborn + "; else sleep 1; echo done; fi",
                              ":::", "stubborn", *map(str, range(40)))
    pod = wait_for("a worker running", 120, lambda: worker_pods(womm))[0].metadata.name
    def stubborn_processes():
        # The other jobs' command lines hold the same text: only the stubborn job's own processes count.
        return [line for line in ps(womm, pod).splitlines()
                if line.startswith(("sleep 1234", "sleep 1235")) or "[ stubborn = stubborn ]" in line]

    wait_for("the stubborn job to start", 60, stubborn_processes)
    time.sleep(12)  # its timeout (5 s), the kill sequence (TERM, 2 s, KILL), and some
    left = stubborn_processes()
    t.join(120)
    assert left == []
    assert proc.returncode == 1 and out["stdout"] == "done\n" * 40, out


def ps(womm, pod):
    """The command lines of the processes in a pod's job container."""
    script = "for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline 2>/dev/null; echo; done"
    _, text, _ = womm.k8s.exec(womm.namespace, pod, ["sh", "-c", script], container="job")
    return text


def test_a_hundred_thousand_arguments_and_no_inputs_in_annotations(womm, tmp_path):
    d = womm.setup_dir(tmp_path / "proj", "none")
    proc, out, t = background(womm, d, "--kube-pods", "1", "-X", "-k", "--", "sleep 3; echo", ":::",
                              *map(str, range(100000)))
    rs = wait_for("the replica set", 60, lambda: womm.k8s.apps.list_namespaced_replica_set(
        womm.namespace, label_selector="womm.dev/task").items)
    assert "womm.dev/command" not in rs[0].metadata.annotations  # its Lease only: `view` reads ReplicaSets
    import kubernetes

    leases = kubernetes.client.CoordinationV1Api(womm.k8s.api_client).list_namespaced_lease(
        womm.namespace, label_selector="womm.dev/task").items
    command = leases[0].metadata.annotations["womm.dev/command"]
    assert len(command) < 2000 and "99999" not in command
    t.join(300)
    assert proc.returncode == 0, out["stderr"]
    assert out["stdout"].split() == [str(i) for i in range(100000)]


def clock_step(seconds):
    time.clock_settime(time.CLOCK_REALTIME, time.clock_gettime(time.CLOCK_REALTIME) + seconds)


def test_reap_leaves_a_live_task_alone_after_a_clock_step_and_on_a_namesake_machine(womm, tmp_path):
    d = womm.setup_dir(tmp_path / "proj", "none")
    proc, out, t = background(womm, d, "--kube-pods", "1", "--", "sleep 40; echo {}", ":::", "alive")
    wait_for("a worker running", 120, lambda: worker_pods(womm))
    clock_step(10)
    try:
        reaped = womm("reap", "--namespace", womm.namespace, cwd=d)
    finally:
        clock_step(-10)
    assert reaped.stdout == "", reaped.stdout
    # Another machine with the same host name: the task is not its own, and its heartbeat is fresh.
    other = {"WOMM_MACHINE_ID": "another-machine-with-the-same-hostname"}
    reaped = womm("reap", "--all-hosts", "--namespace", womm.namespace, cwd=d, env=other)
    assert reaped.stdout == "", reaped.stdout
    status = json.loads(womm("status", "-A", "-o", "json", "--namespace", womm.namespace, cwd=d, env=other).stdout)
    assert [s["status"] for s in status] == ["RUNNING"]
    t.join(120)
    assert proc.returncode == 0 and out["stdout"] == "alive\n", out


@pytest.mark.restarts_cluster
def test_the_api_server_killed_and_started_again_mid_run(womm, tmp_path, cluster):
    d = womm.setup_dir(tmp_path / "proj", "none")
    joblog = tmp_path / "joblog"
    proc, out, t = background(womm, d, "--kube-pods", "2", "--procs-per-pod", "2", "--joblog", str(joblog), "--",
                              "sleep 1; echo job {}", stdin="".join(f"{i}\n" for i in range(60)))
    wait_for("jobs to run", 180, lambda: joblog.exists() and len(joblog.read_text().splitlines()) > 5)
    pid = int((cluster.state / "pids" / "kube-apiserver.pid").read_text())
    os.kill(pid, signal.SIGKILL)
    t0 = time.monotonic()
    time.sleep(3)
    up = cluster.script("up", timeout=600)
    assert up.returncode == 0, up.stdout + up.stderr
    print(f"the API server was away for {time.monotonic() - t0:.1f} s")
    t.join(300)
    assert proc.returncode == 0, out["stderr"]
    assert sorted(out["stdout"].splitlines()) == sorted(f"job {i}" for i in range(60))
    assert "attached again" in out["stderr"]


def test_a_run_left_without_pods_ends_within_its_pending_timeout(womm, tmp_path, k8s):
    """Its ReplicaSet deleted mid-run (as with its namespace): no pod comes back for the lost jobs,
    and the run ends, bounded, naming the cause, and leaves nothing behind."""
    d = womm.setup_dir(tmp_path / "proj", "none")
    proc, out, t = background(womm, d, "--kube-pods", "1", "--kube-pending-timeout", "15s", "--",
                              "sleep 60; echo {}", ":::", "a", "b")
    wait_for("a worker running", 120, lambda: worker_pods(womm))
    time.sleep(2)  # its jobs run
    start = time.monotonic()
    k8s.apps.delete_collection_namespaced_replica_set(womm.namespace, label_selector="womm.dev/role=worker",
                                                      propagation_policy="Foreground")
    t.join(120)
    assert not t.is_alive(), "the run did not end"
    assert time.monotonic() - start < 60
    assert proc.returncode == 255, out
    assert "no pod has been ready for 15 s" in out["stderr"] and "Traceback" not in out["stderr"], out["stderr"]
    womm.wait_no_objects(timeout=30)
