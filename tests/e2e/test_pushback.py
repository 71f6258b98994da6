"""The API server's pushback, on the real local cluster: a user with only `edit` rights in the
namespace, whose every request goes through tests/faultproxy.py's throttle mode (one in five
answered 429, Retry-After: 1), runs womm as on a busy shared cluster."""

from __future__ import annotations

import itertools
import json
import subprocess
import threading
import time

import pytest
from womm_fixtures import run_womm

pytestmark = pytest.mark.e2e

JOBS = 200


def test_a_throttled_edit_only_user_runs_every_job_once_and_its_task_never_looks_orphaned(
        womm, tmp_path, edit_user, throttle_proxy, k8s):
    d = womm.setup_dir(tmp_path / "proj", "none")  # the namespace was prepared by the admin (the fixture)
    # Pod Security's warn mode: the ReplicaSet's create answers with a Warning header.
    k8s.core.patch_namespace(womm.namespace, {"metadata": {"labels": {"pod-security.kubernetes.io/warn": "restricted"}}})
    proxy = throttle_proxy(every=5, retry_after=1)
    user = {"KUBECONFIG": str(edit_user.kubeconfig(server=f"https://127.0.0.1:{proxy.port}"))}
    start = time.monotonic()
    # Jobs of a second on 2 slots: the run outlives a Lease's 90 s, so its renewals went through the proxy.
    # (A tenth of a core each: the node's 2 are shared with other tests.)
    proc = womm.popen("parallel", "--kube-pods", "2", "--kube-cpu", "0.1", "--", "sleep 1; echo job {}", ":::",
                      *map(str, range(1, JOBS + 1)), cwd=d, env=user, stdout=subprocess.PIPE,
                      stderr=subprocess.PIPE, text=True)
    out = {}

    def communicate():
        out["stdout"], out["stderr"] = proc.communicate(timeout=600)

    t = threading.Thread(target=communicate)
    t.start()
    # Meanwhile another machine (its own WOMM_HOME and machine id, the same throttled user) watches:
    # the task is foreign there, its status read from its Lease.
    other = {**user, "WOMM_MACHINE_ID": "other"}
    seen = []
    while t.is_alive():
        status = run_womm(["status", "-A", "-o", "json", "--namespace", womm.namespace], tmp_path / "other-home",
                          cwd=tmp_path, env=other, timeout=120)
        seen += [task["status"] for task in json.loads(status.stdout)]
        t.join(3)
    took = time.monotonic() - start
    stats = proxy.stats()
    print(f"{JOBS} jobs in {took:.1f} s through the proxy: {stats}")
    assert proc.returncode == 0, out["stderr"]
    lines = out["stdout"].splitlines()
    assert sorted(lines) == sorted(f"job {i}" for i in range(1, JOBS + 1))  # each exactly once
    # RUNNING all along; ENDING only in the last listings, made while the client deleted the task's objects.
    running = seen[:len(seen) - len(list(itertools.takewhile(lambda s: s == "ENDING", reversed(seen))))]
    assert running and set(running) == {"RUNNING"}, seen
    assert stats["throttled"] >= 5, stats
    err = out["stderr"]
    assert "Traceback" not in err
    assert err.count("the API server is throttling requests (429); retrying") == 1, err
    warned = [line for line in err.splitlines() if "warning from the Kubernetes API: would violate PodSecurity" in line]
    assert len(warned) == 1 and warned[0].startswith("womm: task "), err
    womm.wait_no_objects()
