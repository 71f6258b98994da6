"""The reaper's decisions, without a cluster."""

import fcntl
import os
import subprocess
import sys
import time

import pytest

from womm import home, taskobjects, tasks
from womm.errors import UsageError
from womm_reap import commands


def me(**extra):
    return {"host": home.hostname(), "machine": tasks.machine_id(), "pid": os.getpid(),
            "pid_start": tasks.process_start(os.getpid()), **extra}


def test_status_from_the_controller_and_the_leader():
    assert taskobjects.status_of(me(mode="sync")) == "RUNNING"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    assert taskobjects.status_of(me(mode="sync", pid=dead.pid)) == "ORPHANED"
    # a reused pid: same number, another start time
    assert taskobjects.status_of(me(mode="sync", pid_start="another-boot:1")) == "ORPHANED"
    assert taskobjects.status_of(me(mode="sync", machine="elsewhere")) == "UNKNOWN"
    # Another machine's task (or one with this host's name): its heartbeat decides.
    assert taskobjects.status_of(me(mode="sync", machine="elsewhere", heartbeat_age=20)) == "RUNNING"
    assert taskobjects.status_of(me(mode="sync", machine="elsewhere", heartbeat_age=200)) == "ORPHANED"
    assert taskobjects.status_of(me(mode="async", leader="Running")) == "RUNNING"
    assert taskobjects.status_of(me(mode="async", leader="Succeeded")) == "COMPLETE"
    assert taskobjects.status_of(me(mode="async", leader=None)) == "ORPHANED"
    assert taskobjects.status_of(me(mode="sync", ending=True)) == "ENDING"


@pytest.mark.parametrize("text, seconds", [("90m", 5400), ("24h", 86400), ("7d", 604800), ("30", 30)])
def test_ttl(text, seconds):
    assert commands.parse_ttl(text) == seconds


def test_bad_ttl_is_a_usage_error():
    with pytest.raises(UsageError):
        commands.parse_ttl("soon")


def test_table_has_the_pages_columns(capsys):
    t = me(id="abcdefgh", status="RUNNING", created=time.time() - 3000, cpu="1", mem="512Mi", pods=2,
           pods_ready=1, cwd="/home/a/proj", command=["parallel", "--", "sleep 1; echo {}"], done=5)
    commands._print_table([commands.COLUMNS] + [[commands._cell(t, c) for c in commands.COLUMNS]])
    header, rule, row = capsys.readouterr().out.splitlines()
    assert header.split() == commands.COLUMNS
    assert set(rule.replace(" ", "")) == {"-"}
    assert row.split()[:6] == ["abcdefgh", "50m", "RUNNING", "1", "512Mi", "1/2"]
    assert "'sleep 1; echo {}'" in row and "5 done" in row


def test_a_second_reaper_steps_aside(womm_env):
    womm_env.mkdir(parents=True, exist_ok=True)
    with open(home.root() / "reap.lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        args = type("A", (), {"print_cron": False, "ttl": "24h", "dry_run": False, "context": None, "namespace": None})
        assert commands.reap(args) == 0  # returns at once, touching nothing


def test_status_across_namespaces_without_the_right_says_so_without_a_doctor_hint(monkeypatch, capsys):
    import json

    import pytest

    from womm import kube
    from womm_reap import cli

    class NoClusterWideRights(kube.Cluster):
        def __init__(self, context=None, namespace=None):
            self.namespace, self.context = "team", None

        def request(self, method, path, query=None, body=None, timeout=60, content_type=None, idempotent=None):
            message = 'leases.coordination.k8s.io is forbidden: User "u" cannot list resource "leases" at the cluster scope'
            raise kube.ApiError(403, "Forbidden", json.dumps({"message": message}).encode())

    from womm_reap import commands

    monkeypatch.setattr(commands, "Cluster", NoClusterWideRights)
    with pytest.raises(SystemExit) as e:
        cli.main(["status", "--all-namespaces"])
    err = capsys.readouterr().err
    assert e.value.code == 1 and len(err.strip().splitlines()) == 1
    assert "--namespace NS" in err and "womm doctor" not in err


def test_a_sync_run_whose_syncback_failed_is_brought_back_by_finish_and_left_alone_by_reap(tmp_path, monkeypatch):
    """Its results stay on the share server, its record and snapshot here: `womm finish ID` merges them."""
    from types import SimpleNamespace

    from womm import records

    monkeypatch.setenv("WOMM_HOME", str(tmp_path / "home"))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    record = {"id": "pendingx", "kind": "parallel", "mode": "sync", "command": ["parallel"], "cwd": str(tmp_path),
              "root": str(tmp_path), "namespace": "team", "image": "i", "share": "eager-syncback", "share_id": "s",
              "syncback_pending": True, **me(pid=dead.pid)}
    records.save_task(record)
    brought = []

    class Share:
        def bring_back(self, task):
            brought.append(task.id)

    monkeypatch.setattr(commands.shares, "for_task", lambda task, cluster, log: Share())
    monkeypatch.setattr(commands.taskobjects, "find", lambda cluster, all_namespaces=False, task_id=None: {})
    monkeypatch.setattr(commands.taskobjects, "delete", lambda cluster, task_id: None)
    monkeypatch.setattr(commands, "Cluster", SimpleNamespace(of=lambda record, args: SimpleNamespace(namespace="team")))
    args = SimpleNamespace(context=None, namespace=None, dry_run=False, all_hosts=False, force=False)
    commands._forget_gone({"pendingx": record}, set(), dry_run=False)
    assert records.load_task("pendingx") is not None  # the reaper leaves it
    commands.finish_one("pendingx", args, os.path.realpath(tmp_path), tasks.machine_id())
    assert brought == ["pendingx"] and records.load_task("pendingx") is None


def test_a_task_whose_objects_are_made_while_it_is_listed_reads_as_running(monkeypatch):
    """The Lease, made first, is listed last: a task created between two listings is never UNKNOWN."""
    from email.utils import formatdate

    from womm import kube

    ann = {taskobjects.ANNOTATIONS["host"]: "elsewhere", taskobjects.ANNOTATIONS["machine"]: "other-machine",
           taskobjects.ANNOTATIONS["pid"]: "1", taskobjects.ANNOTATIONS["command"]: '["echo", "hi"]'}
    meta = {"labels": {taskobjects.TASK: "t1"}, "annotations": ann, "namespace": "ns"}
    lease = {"metadata": {**meta, "managedFields": [{"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}]}}
    replicaset = {"metadata": {**meta, "annotations": {**ann, taskobjects.ANNOTATIONS["command"]: "[]"}},
                  "spec": {"replicas": 2}, "status": {}}

    class Cluster(kube.Cluster):
        def __init__(self):
            self.namespace, self.calls, self.last_date = "ns", 0, formatdate(usegmt=True)

        def request(self, method, path, query=None, **kw):
            self.calls += 1  # the task's objects are made right after the first listing
            made = self.calls > 1
            kind = path.rsplit("/", 1)[1]
            return {"items": {"leases": [lease] if made else [], "replicasets": [replicaset] if made else [],
                              "pods": []}[kind]}

    found = taskobjects.find(Cluster())
    assert found["t1"]["status"] == "RUNNING"
    assert found["t1"]["command"] == ["echo", "hi"]  # the Lease's annotations, the only ones with it


def test_a_task_deleted_while_it_is_listed_reads_as_ending(monkeypatch):
    """Its pods listed before its cleanup, its Lease (deleted last) gone by the time it is listed: ENDING, not UNKNOWN."""
    from email.utils import formatdate

    from womm import kube

    ann = {taskobjects.ANNOTATIONS["host"]: "elsewhere", taskobjects.ANNOTATIONS["machine"]: "other-machine",
           taskobjects.ANNOTATIONS["pid"]: "1"}
    pod = {"metadata": {"labels": {taskobjects.TASK: "t1", taskobjects.ROLE: "worker"}, "annotations": ann,
                        "namespace": "ns", "name": "t1-abc"}, "status": {"phase": "Running"}}

    class Cluster(kube.Cluster):
        def __init__(self):
            self.namespace, self.last_date = "ns", formatdate(usegmt=True)

        def request(self, method, path, query=None, **kw):
            kind = path.rsplit("/", 1)[1]  # the task's cleanup runs right after the pods are listed
            return {"items": [pod] if kind == "pods" else []}

    assert taskobjects.find(Cluster())["t1"]["status"] == "ENDING"
