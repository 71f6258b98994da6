"""`womm status`, `womm finish` and `womm reap` on the real local cluster."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

pytestmark = pytest.mark.e2e


def start(womm, d, seconds=300):
    """A womm parallel whose jobs sleep; returns (process, task id) once its pods run."""
    proc = womm.popen("parallel", "--kube-pods", "1", "--kube-cpu", "0.5", "--", f"sleep {seconds}; echo {{}}",
                      ":::", "a", cwd=d, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        tasks = status(womm, d)
        if tasks and tasks[0]["pods_ready"]:
            return proc, tasks[0]["id"]
        time.sleep(0.5)
    proc.kill()
    pytest.fail("the task never became ready")


def status(womm, d, *extra):
    return json.loads(womm("status", "-o", "json", *extra, cwd=d).stdout)


def test_sigkilled_run_is_orphaned_then_reaped(womm, tmp_path):
    d = womm.setup_dir(tmp_path / "proj", "none")
    proc, task = start(womm, d)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert [t["status"] for t in status(womm, d)] == ["ORPHANED"]
    table = womm("status", cwd=d).stdout.splitlines()
    assert table[0].split() == ["ID", "AGE", "STATUS", "CPU", "MEM", "HEALTH", "PWD", "COMMAND"]
    assert task in table[2] and "ORPHANED" in table[2]
    reaped = womm("reap", "--namespace", womm.namespace, cwd=d)
    assert f"finished {task} (orphaned)" in reaped.stdout.splitlines()
    womm.wait_no_objects(task, timeout=30)
    assert not (womm.home / "tasks" / f"{task}.json").exists()
    assert f"finished {task}" in (womm.home / "logs" / "reap.log").read_text()
    again = womm("reap", "--namespace", womm.namespace, cwd=d)
    assert again.stdout == "" and again.stderr == ""


def test_reap_leaves_a_live_run_alone(womm, tmp_path):
    d = womm.setup_dir(tmp_path / "proj", "none")
    proc, task = start(womm, d, seconds=8)
    r = womm("reap", "--namespace", womm.namespace, cwd=d)
    assert r.stdout == ""
    assert [t["status"] for t in status(womm, d)] == ["RUNNING"]
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert out == "a\n"


def test_finish_refuses_another_directorys_task_without_force(womm, tmp_path):
    d = womm.setup_dir(tmp_path / "proj", "none")
    other = womm.setup_dir(tmp_path / "other", "none")
    proc, task = start(womm, d)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    r = womm("finish", task, cwd=other, check=False)
    assert r.returncode != 0 and "--force" in r.stderr and "Traceback" not in r.stderr
    assert womm.objects(task)
    womm("finish", task, "--force", cwd=other)
    womm.wait_no_objects(task, timeout=30)


def test_cron_line_reaps_with_crons_environment(womm, tmp_path):
    d = womm.setup_dir(tmp_path / "proj", "none")
    proc, task = start(womm, d)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    line = womm("reap", "--print-cron", "--namespace", womm.namespace, cwd=d).stdout.strip()
    fields = line.split(None, 5)
    assert len(fields) == 6 and fields[0].startswith("*/")
    command = fields[5]
    # cron's environment: no PATH beyond /usr/bin:/bin, no KUBECONFIG, HOME and a shell.
    env = {"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/root"), "SHELL": "/bin/sh",
           "LOGNAME": "root"}
    r = subprocess.run(["sh", "-c", command], env=env, cwd="/", capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert f"finished {task}" in r.stdout
    womm.wait_no_objects(task, timeout=30)
