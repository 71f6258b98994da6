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
