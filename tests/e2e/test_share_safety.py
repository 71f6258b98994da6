"""The shares' promises, on the real local cluster: nothing outside the directory is reached or
written, no local file is lost or overwritten, and no result is lost with a pod."""

from __future__ import annotations

import os
import subprocess
import threading
import time

import pytest
from womm_fixtures import wait_for

pytestmark = pytest.mark.e2e


def run_bg(womm, d, *args):
    proc = womm.popen("parallel", *args, cwd=d, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out = {}

    def communicate():
        out["stdout"], out["stderr"] = proc.communicate(timeout=600)

    t = threading.Thread(target=communicate)
    t.start()
    return proc, out, t


def running_workers(womm, task=None):
    selector = "womm.dev/role=worker" + (f",womm.dev/task={task}" if task else "")
    pods = womm.k8s.core.list_namespaced_pod(womm.namespace, label_selector=selector).items
    return [p for p in pods if p.status.phase == "Running" and not p.metadata.deletion_timestamp
            and p.status.container_statuses and all(s.ready for s in p.status.container_statuses)]


def test_syncback_never_writes_through_a_link_to_elsewhere(womm, tmp_path):
    d = womm.setup_dir(tmp_path / "proj", "eager-syncback")
    elsewhere = tmp_path / "dot-config"  # outside the directory: the user's ~/.config, say
    elsewhere.mkdir()
    # Run 1: a job leaves cfg -> elsewhere. It does not come back: it leads out of the directory.
    r = womm("parallel", "--kube-pods", "1", "--", f"ln -s {elsewhere} cfg; : {{}}", ":::", "1", cwd=d)
    assert not os.path.lexists(d / "cfg")
    assert "cfg" in r.stderr and "leads out of the directory" in r.stderr
    # The same link made here (or left by an older womm); run 2's job makes cfg a directory.
    (d / "cfg").symlink_to(elsewhere)
    r = womm("parallel", "--kube-pods", "1", "--",
             "rm cfg && mkdir cfg && echo from-the-cluster > cfg/settings; : {}", ":::", "1", cwd=d)
    assert list(elsewhere.iterdir()) == []
    assert os.readlink(d / "cfg") == str(elsewhere)
    beside = [p for p in d.iterdir() if p.name.startswith("cfg.womm-cluster-")]
    assert len(beside) == 1 and (beside[0] / "settings").read_text() == "from-the-cluster\n"


def test_a_same_size_edit_with_its_mtime_put_back_during_the_run_is_kept(womm, tmp_path):
    d = womm.setup_dir(tmp_path / "proj", "eager-syncback")
    notes = d / "notes.txt"
    notes.write_text("AAAA\n")
    t0 = time.time() - 3600
    os.utime(notes, (t0, t0))
    proc, out, t = run_bg(womm, d, "--kube-pods", "1", "--", "sleep 6; echo CCCC > notes.txt; : {}", ":::", "1")
    wait_for("the pod to run", 120, lambda: running_workers(womm))
    time.sleep(1)
    notes.write_text("BBBB\n")  # the same size, in the same second as the original's time: `cp -p`, `tar -x`
    os.utime(notes, (t0, t0))
    t.join(300)
    assert proc.returncode == 0, out["stderr"]
    assert notes.read_text() == "BBBB\n"
    beside = [p for p in d.iterdir() if p.name.startswith("notes.txt.womm-cluster-")]
    assert len(beside) == 1 and beside[0].read_text() == "CCCC\n"


def test_two_syncback_runs_in_one_directory_both_get_all_their_results(womm, tmp_path):
    d = womm.setup_dir(tmp_path / "proj", "eager-syncback")
    (d / "input.txt").write_text("data\n")
    runs = [run_bg(womm, d, "--kube-pods", "1", "--kube-cpu", "0.25", "--",
                   f"sleep 2; cat input.txt > {name}-{{}}.out", ":::", *map(str, range(6)))
            for name in ("a", "b")]
    for proc, out, t in runs:
        t.join(300)
        assert proc.returncode == 0, out["stderr"]
    for name in ("a", "b"):
        for i in range(6):
            assert (d / f"{name}-{i}.out").read_text() == "data\n", f"{name}-{i}.out"


def test_a_pod_deleted_after_its_jobs_ended_loses_none_of_their_results(womm, tmp_path):
    d = womm.setup_dir(tmp_path / "proj", "eager-syncback")
    joblog = tmp_path / "joblog"
    proc, out, t = run_bg(womm, d, "--kube-pods", "2", "--kube-cpu", "0.25", "--joblog", str(joblog), "--",
                          "sleep 1; echo {} > out-{}.txt; uname -n", ":::", *map(str, range(16)))
    # Once a pod has finished some jobs, it goes (as a preempted or evicted pod would).
    wait_for("some jobs to end", 180, lambda: joblog.exists() and len(joblog.read_text().splitlines()) > 4)
    victim = running_workers(womm)[0].metadata.name
    womm.k8s.core.delete_namespaced_pod(victim, womm.namespace, grace_period_seconds=0)
    t.join(300)
    assert proc.returncode == 0, out["stderr"]
    assert victim in out["stdout"].split(), "the deleted pod had finished jobs"
    for i in range(16):
        assert (d / f"out-{i}.txt").read_text() == f"{i}\n", f"out-{i}.txt"


@pytest.mark.parametrize("share", ["lazy", "eager-syncback"])
def test_a_job_makes_no_bare_repository_here_nor_changes_one(womm, tmp_path, share):
    # No .git needed: HEAD beside objects/ and refs/ is a repository to git, and a shell prompt runs git (and
    # what the config names) in every directory one enters. The user's own bare mirror is as protected.
    d = womm.setup_dir(tmp_path / "proj", share)
    for sub in ("objects", "refs"):
        (d / "mirror.git" / sub).mkdir(parents=True)
    (d / "mirror.git" / "HEAD").write_text("ref: refs/heads/main\n")
    (d / "mirror.git" / "config").write_text("[core]\n\tbare = true\n")
    pwned = tmp_path / "pwned"  # what `git status` in results/ would run, as tried with git 2.39
    evil = f"[core]\\n\\trepositoryformatversion = 0\\n\\tbare = false\\n\\tworktree = ..\\n\\tfsmonitor = touch {pwned}\\n"
    r = womm("parallel", "--kube-pods", "1", "--", "mkdir -p results/objects results/refs; echo 42 > results/out.txt; "
             f"printf '{evil}' > results/config; (echo ref: refs/heads/main > results/HEAD) 2>/dev/null || echo no-HEAD; "
             "(echo '\tfsmonitor = x' >> mirror.git/config) 2>/dev/null || echo no-config; : {}", ":::", "1", cwd=d)
    assert (d / "mirror.git" / "config").read_text() == "[core]\n\tbare = true\n"
    assert not (d / "results" / "HEAD").exists()
    if (d / "results").exists():  # syncback: not even that (below)
        subprocess.run(["git", "status"], cwd=d / "results", capture_output=True,
                       env=dict(os.environ, GIT_CEILING_DIRECTORIES=str(tmp_path)))
    assert not pwned.exists()
    if share == "lazy":  # refused as it happened, the rest written
        assert r.stdout.split() == ["no-HEAD", "no-config"]
        assert sorted(p.name for p in (d / "results").iterdir()) == ["config", "objects", "out.txt", "refs"]
    else:  # made in the pod's copy, and nothing of it comes back
        assert r.stdout == ""
        assert not (d / "results").exists()
        assert "changes under mirror.git, results not brought back: tools run what is there" in r.stderr
