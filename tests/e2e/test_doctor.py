"""`womm doctor` on the real local cluster: it passes where womm works, and names what is broken."""

from __future__ import annotations

import json
import time

import pytest

pytestmark = pytest.mark.e2e


def lines(proc):
    return proc.stdout.splitlines()


def test_doctor_passes_where_womm_works(womm, tmp_path):
    for share in ("eager", "lazy"):
        d = womm.setup_dir(tmp_path / share, share)
        start = time.monotonic()
        proc = womm("doctor", cwd=d, check=False, timeout=60)
        took = time.monotonic() - start
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert all(line[:5] in ("ok   ", "skip ") for line in lines(proc)), proc.stdout
        probed = [line for line in lines(proc) if line.startswith("ok   privileged pods and FUSE")]
        assert bool(probed) == (share == "lazy"), proc.stdout
        assert took < 30, f"womm doctor took {took:.1f} s"
        print(f"womm doctor, {share} share: {took:.2f} s")  # shown with -s: the figure in the README
        checks = json.loads(womm("doctor", "-o", "json", cwd=d).stdout)
        assert {c["check"] for c in checks} >= {"kubeconfig", "API server", "permissions", "share server"}
        assert all(c["ok"] is not False for c in checks)


def test_doctor_names_the_missing_kubeconfig(womm, tmp_path):
    d = womm.setup_dir(tmp_path / "proj", "none")
    missing = tmp_path / "no-such-kubeconfig"
    proc = womm("doctor", cwd=d, check=False, env={"KUBECONFIG": str(missing)}, timeout=60)
    assert proc.returncode != 0
    failed = [line for line in lines(proc) if line.startswith("FAIL")]
    assert failed and failed[0].startswith("FAIL kubeconfig:") and str(missing) in failed[0], proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr
    # The other programs say the same in one line, and point at womm doctor.
    run = womm("parallel", "--kube-pods", "1", "--", "true", cwd=d, check=False, env={"KUBECONFIG": str(missing)})
    assert run.returncode == 255 and run.stderr.count("\n") == 1 and str(missing) in run.stderr
    assert run.stderr.rstrip().endswith("run `womm doctor`") and "Traceback" not in run.stderr


def test_doctor_names_the_share_server_scaled_to_zero(womm, k8s, tmp_path):
    d = womm.setup_dir(tmp_path / "proj", "eager")
    k8s.apps.patch_namespaced_deployment("womm-fs", womm.namespace, {"spec": {"replicas": 0}})
    proc = womm("doctor", cwd=d, check=False, timeout=60)
    assert proc.returncode == 1
    failed = [line for line in lines(proc) if line.startswith("FAIL")]
    assert len(failed) == 1 and failed[0].startswith("FAIL share server:") and "scaled to 0" in failed[0], proc.stdout
    checks = json.loads(womm("doctor", "-o", "json", cwd=d, check=False).stdout)
    server = next(c for c in checks if c["check"] == "share server")
    assert server["ok"] is False and "womm cluster-setup --apply" in server["fix"]
