"""`womm parallel`: GNU parallel with pods as job slots, on the real local cluster."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
from benchlib import api_requests  # noqa: E402

pytestmark = pytest.mark.e2e


def local_parallel(args, cwd, input=None):
    return subprocess.run(["parallel", *args], cwd=cwd, input=input, capture_output=True, text=True)


def make_files(d, n=12):
    (d / "sub").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (d / ("sub" if i % 3 == 0 else ".") / f"file{i}.txt").write_text("line\n" * (i + 1))


def task_ids(womm):
    return [t["id"] for t in json.loads(womm("status", "-o", "json", "--namespace", womm.namespace).stdout)]


def test_page_example_matches_local_parallel(womm, tmp_path):
    d = womm.setup_dir(tmp_path / "proj", "eager")
    make_files(d)
    files = subprocess.run(["find", ".", "-type", "f"], cwd=d, capture_output=True, text=True).stdout
    ours = womm("parallel", "--kube-pods", "3", "--", "wc", "-l", "{}", cwd=d, input=files)
    theirs = local_parallel(["wc", "-l", "{}"], d, input=files)
    assert ours.returncode == 0
    assert sorted(ours.stdout.splitlines()) == sorted(theirs.stdout.splitlines())
    assert len(ours.stdout.splitlines()) == len(files.splitlines())
    womm.wait_no_objects()


def test_exit_status_inputs_and_order_as_gnu_parallel(womm, tmp_path):
    d = womm.setup_dir(tmp_path / "proj", "none")
    options = ["-k", "--tag"]
    command = ["echo out {}; echo err {} >&2; exit {}", ":::", "0", "3", "0", "1"]
    ours = womm("parallel", "--kube-pods", "2", "--procs-per-pod", "2", *options, "--", *command,
                cwd=d, check=False)
    theirs = local_parallel(options + command, d)
    assert ours.returncode == theirs.returncode == 2
    assert ours.stdout == theirs.stdout
    assert ours.stderr == theirs.stderr
    # stdin as input, -k keeps the order whatever the pods' speed
    ours = womm("parallel", "--kube-pods", "2", "-k", "--", "sleep 0.$((RANDOM % 3)); echo {}", cwd=d,
                input="".join(f"{i}\n" for i in range(20)))
    assert ours.stdout == "".join(f"{i}\n" for i in range(20))


def test_jobs_see_the_directory_and_run_in_it(womm, tmp_path):
    d = womm.setup_dir(tmp_path / "proj", "none")
    out = womm("parallel", "--kube-pods", "1", "--", "pwd; echo $PARALLEL_SEQ", ":::", "x", cwd=d).stdout
    assert out.splitlines() == [str(d), "1 x"]  # GNU parallel appends the argument


def test_in_the_pod_each_job_leads_a_process_group_of_its_own(womm, tmp_path):
    """The test image has bash: the job container's runner runs under it (manifests.UNDER_BASH), whose
    job control makes each job a group's leader as it forks it. A job's `kill 0` ends that job alone,
    the terminal's stops do not stop a job, and nothing is lost or run again."""
    d = womm.setup_dir(tmp_path / "proj", "none")
    command = ("if [ {} = 2 ]; then kill -TERM 0; fi; kill -TSTP $$; read -r s < /proc/$$/stat; s=${s##*) }; "
               "set -- $s; echo {} $(( $3 == $$ )) $(head -c 12 /proc/1/cmdline | tr '\\0' ' ')")
    ours = womm("parallel", "--kube-pods", "1", "--procs-per-pod", "1", "-k", "--", command, ":::", "1", "2", "3",
                cwd=d, check=False)
    assert (ours.returncode, ours.stdout) == (1, "1 1 bash --posix\n3 1 bash --posix\n"), ours.stderr
    assert "again" not in ours.stderr and "lost" not in ours.stderr, ours.stderr


def settled_api_requests():
    """benchlib's counts of the API server's requests, once they stay still for a second (a long
    request, a watch or an exec stream, is counted when it ends)."""
    last, now = None, api_requests()
    while now != last:
        time.sleep(1)
        last, now = now, api_requests()
    return now


def test_each_pod_is_tried_once_at_its_womm_containers_start(womm, tmp_path):
    # Not every 0.25 s from the kubelet's first word, as before: a few refused execs per pod (7 to 26
    # in all for this run), each a connection from the API server to the kubelet. The kubelet's
    # Started event says when.
    d = womm.setup_dir(tmp_path / "proj", "none")
    before = settled_api_requests()
    # Jobs long enough for the pods to be attached while the run lasts.
    out = womm("parallel", "--kube-pods", "3", "--kube-cpu", "100m", "--", "sleep 2; echo {} $(hostname)",
               ":::", *"123456", cwd=d).stdout
    after = settled_api_requests()
    assert sorted(out.split()[::2]) == list("123456")
    execs = after.get(("CONNECT", "pods/exec"), 0) - before.get(("CONNECT", "pods/exec"), 0)
    # One per pod attached (every pod that ran a job was), none refused.
    assert len(set(out.split()[1::2])) <= execs <= 3
    assert after.get(("WATCH", "events"), 0) > before.get(("WATCH", "events"), 0)


def test_local_procs_add_local_slots(womm, tmp_path):
    d = womm.setup_dir(tmp_path / "proj", "none")
    out = womm("parallel", "--kube-pods", "1", "--kube-cpu", "0.5", "--local-procs", "2", "--", "sleep 1; uname -n; : {}", ":::", *map(str, range(30)),
               cwd=d).stdout.splitlines()
    import socket

    assert len(out) == 30
    assert socket.gethostname() in out
    assert any(line.startswith("womm-task-") for line in out)


def test_a_pod_dying_mid_run_loses_no_job(womm, tmp_path):
    d = womm.setup_dir(tmp_path / "proj", "none")
    joblog = tmp_path / "joblog"
    proc = womm.popen("parallel", "--kube-pods", "2", "--procs-per-pod", "2", "--joblog", str(joblog), "--",
                      "sleep 0.1; echo job {}", cwd=d, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                      stderr=subprocess.PIPE, text=True)
    out = {}

    def feed():
        out["stdout"], out["stderr"] = proc.communicate("".join(f"{i}\n" for i in range(200)), timeout=300)

    t = threading.Thread(target=feed)
    t.start()
    # Once jobs run, delete one of the task's pods: its jobs run again elsewhere.
    deadline = time.monotonic() + 120
    victim = None
    while time.monotonic() < deadline and victim is None:
        if joblog.exists() and len(joblog.read_text().splitlines()) > 20:
            pods = womm.k8s.core.list_namespaced_pod(womm.namespace, label_selector="womm.dev/role=worker").items
            running = [p for p in pods if p.status.phase == "Running"]
            if running:
                victim = running[0].metadata.name
                womm.k8s.core.delete_namespaced_pod(victim, womm.namespace, grace_period_seconds=0)
        time.sleep(0.05)
    t.join(300)
    assert victim, "no pod to delete"
    assert proc.returncode == 0, out["stderr"]
    lines = out["stdout"].splitlines()
    assert sorted(lines) == sorted(f"job {i}" for i in range(200))
    rows = [r.split("\t") for r in joblog.read_text().splitlines()[1:]]
    ok = [r[-1] for r in rows if r[6] == "0"]
    assert sorted(ok) == sorted(f"sleep 0.1; echo job {i}" for i in range(200))


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_leaves_no_object_behind(womm, tmp_path, sig):
    d = womm.setup_dir(tmp_path / "proj", "none")
    proc = womm.popen("parallel", "--kube-pods", "2", "--", "sleep 100", ":::", "1", "2", "3", cwd=d,
                      stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        pods = womm.k8s.core.list_namespaced_pod(womm.namespace, label_selector="womm.dev/role=worker").items
        if any(p.status.phase == "Running" for p in pods):
            break
        time.sleep(0.2)
    time.sleep(2)  # jobs are running in the pods
    proc.send_signal(sig)
    proc.wait(60)
    assert proc.returncode == 128 + sig, proc.stderr.read()
    womm.wait_no_objects(timeout=30)
    assert task_ids(womm) == []


def test_async_run_survives_its_client(womm, tmp_path):
    d = womm.setup_dir(tmp_path / "proj", "eager")
    (d / "data.txt").write_text("a\nb\nc\n")
    started = womm("parallel", "--async", "--kube-pods", "2", "--kube-cpu", "0.5", "--",
                   "sleep 1; wc -l data.txt; echo {}",
                   cwd=d, input="x\ny\nz\n")
    task = started.stdout.strip()
    assert task and "womm logs" in started.stderr
    logs = womm("logs", task, cwd=d, timeout=300)
    lines = logs.stdout.splitlines()
    assert sorted(line for line in lines if line in "xyz") == ["x", "y", "z"]
    assert lines.count("3 data.txt") == 3
    assert "COMPLETE" in logs.stderr
    status = json.loads(womm("status", "-o", "json", cwd=d).stdout)
    assert [t["status"] for t in status if t["id"] == task] == ["COMPLETE"]
    womm("finish", task, cwd=d)
    womm.wait_no_objects(task, timeout=30)


def test_async_is_refused_with_a_lazy_share_or_local_procs(womm, tmp_path):
    d = womm.setup_dir(tmp_path / "lazy", "lazy")
    r = womm("parallel", "--async", "--kube-pods", "1", "--", "true", ":::", "1", cwd=d, check=False)
    assert r.returncode == 2 and "lazy" in r.stderr and "Traceback" not in r.stderr
    d = womm.setup_dir(tmp_path / "eager", "eager")
    r = womm("parallel", "--async", "--local-procs", "1", "--kube-pods", "1", "--", "true", ":::", "1",
             cwd=d, check=False)
    assert r.returncode == 2 and "--local-procs" in r.stderr


def test_shell_through_a_real_terminal(womm, tmp_path):
    import pexpect

    d = womm.setup_dir(tmp_path / "proj", "none")
    from womm_fixtures import WOMM, womm_env

    child = pexpect.spawn(WOMM, ["shell", "--", "echo in-pod-$((6*7)); tty >/dev/null && echo has-tty; exit 7"],
                          cwd=str(d), env=womm_env(womm.home), timeout=120, encoding="utf-8")
    child.expect("in-pod-42")
    child.expect("has-tty")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 7
    womm.wait_no_objects()


def test_usage_errors_are_one_line(womm, tmp_path):
    d = womm.setup_dir(tmp_path / "proj", "none")
    # (`--kube-pods 2 echo`, without "--", is GNU parallel's own form: a run.)
    for args in (["parallel", "--", "echo"], ["parallel", "--kube-pods", "two", "--", "echo"],
                 ["parallel", "-j4", "--kube-pods", "1", "--", "true"]):
        r = womm(*args, cwd=d, check=False)
        assert r.returncode == 2, args
        assert len(r.stderr.strip().splitlines()) <= 2 and "Traceback" not in r.stderr
    r = womm("parallel", "--kube-pods", "1", "--", "true", cwd=tmp_path, check=False)
    assert r.returncode == 255 and "womm setup" in r.stderr


def test_an_image_that_cannot_be_pulled_fails_in_one_line_and_leaves_nothing(womm, tmp_path):
    d = tmp_path / "proj"
    d.mkdir()
    womm("setup", "--share", "none", "--image", f"{womm.registry}/womm-e2e/no-such-image:1",
         "--namespace", womm.namespace, "--yes", cwd=d)
    r = womm("parallel", "--kube-pods", "2", "--", "echo", ":::", "1", "2", cwd=d, check=False, timeout=120)
    assert r.returncode == 255, r.stderr
    errors = r.stderr.strip().splitlines()
    assert len(errors) == 1 and "ErrImagePull" in errors[0] and "no-such-image" in errors[0], r.stderr
    assert r.stdout == ""
    womm.wait_no_objects(timeout=30)
    assert task_ids(womm) == []
