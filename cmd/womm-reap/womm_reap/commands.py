"""`womm status`, `womm finish` and `womm reap`.

Tasks are found from their objects (womm.taskobjects): labels say which task and
role, annotations who started it (host, directory, controller pid and its start
time). Local records under ~/.womm/tasks fill in what only this host knows, and
let the reaper find tasks whose objects are gone.
"""

import argparse
import fcntl
import json
import os
import shlex
import shutil
import sys
import time

from womm import cli, exitcodes, home, records, shares, taskobjects, tasks
from womm.errors import UsageError, WommError, describe, error
from womm.kube import Cluster
from womm.report import say

COLUMNS = ["ID", "AGE", "STATUS", "CPU", "MEM", "HEALTH", "PWD", "COMMAND"]


# ---------------------------------------------------------------- status

def _here_cluster(args):
    """The cluster and namespace to look in: the options, else this directory's, else the context's."""
    project = records.find_project(os.getcwd()) or {}
    return Cluster.of(project, args)


def status(args):
    from womm.kube import ApiError

    cluster = _here_cluster(args)
    try:
        found = taskobjects.find(cluster, args.all_namespaces)
    except ApiError as e:
        if e.status == 403 and args.all_namespaces:
            # Not a misconfiguration `womm doctor` could fix: rights across namespaces are the cluster's.
            raise WommError("--all-namespaces needs the right to list womm's objects in every namespace, which "
                            f"this user does not have ({e}): look in one namespace at a time (--namespace NS)",
                            doctor=False) from None
        raise
    me = tasks.machine_id()
    rows = [t for t in found.values() if args.all_hosts or t.get("machine") == me]
    rows.sort(key=lambda t: t.get("created") or 0)
    if args.output == "json":
        print(json.dumps([_json_row(t) for t in rows], indent=1))
        return exitcodes.OK
    columns = COLUMNS[:]
    if args.all_hosts:
        columns.insert(1, "HOST")
    if args.all_namespaces:
        columns.insert(1, "NAMESPACE")
    table = [columns] + [[_cell(t, c) for c in columns] for t in rows]
    if len(table) == 1:
        print("no tasks", file=sys.stderr)
        return exitcodes.OK
    _print_table(table)
    return exitcodes.OK


def _json_row(t):
    return {
        "id": t["id"], "namespace": t.get("namespace"), "host": t.get("host"), "status": t["status"],
        "mode": t.get("mode"), "created": t.get("created"), "age_seconds": _age(t),
        "cpu": t.get("cpu"), "mem": t.get("mem"), "pods": t.get("pods"), "pods_ready": t.get("pods_ready"),
        "jobs_done": t.get("done"), "cwd": t.get("cwd"), "command": t.get("command"),
        "pid": t.get("pid"),
    }


def _age(t):
    return None if not t.get("created") else max(0, int(time.time() - t["created"]))


def _health(t):
    health = f"{t.get('pods_ready', 0)}/{t.get('pods') or '?'}"
    return health + (f" {t['done']} done" if t.get("done") is not None else "")


def _command(t):
    return " ".join(shlex.quote(w) if w[:1] != "'" else w for w in (t.get("command") or [])) or "?"


# What each column shows of a task (as taskobjects.find builds it).
CELLS = {
    "ID": lambda t: t["id"],
    "HOST": lambda t: t.get("host") or "?",
    "NAMESPACE": lambda t: t.get("namespace") or "?",
    "AGE": lambda t: _human_age(_age(t)),
    "STATUS": lambda t: t["status"],
    "CPU": lambda t: str(t.get("cpu") or "-"),
    "MEM": lambda t: str(t.get("mem") or "-"),
    "HEALTH": _health,
    "PWD": lambda t: t.get("cwd") or "?",
    "COMMAND": _command,
}


def _cell(t, column):
    return CELLS[column](t)


def _human_age(seconds):
    if seconds is None:
        return "?"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _print_table(table):
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    right = {"CPU", "MEM"}
    lines = []
    for n, row in enumerate(table):
        cells = [c.rjust(w) if table[0][i] in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))]
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    print("\n".join(lines))


# ---------------------------------------------------------------- finish

def finish(args):
    here = os.path.realpath(os.getcwd())
    me = tasks.machine_id()
    failed = 0
    for task_id in args.ids:
        try:
            finish_one(task_id, args, here, me)
        except WommError as e:
            error(f"{task_id}: {e}")
            failed += 1
    return exitcodes.FAILURE if failed else exitcodes.OK


def _cluster_for(task_id, args):
    record = records.load_task(task_id) or {}
    if not record:
        return _here_cluster(args), record
    return Cluster.of(record, args), record


def finish_one(task_id, args, here, me, reason=None, log=None):
    cluster, record = _cluster_for(task_id, args)
    found = taskobjects.find(cluster, task_id=task_id).get(task_id)
    if found is None and not record:
        raise WommError(f"no task {task_id} in namespace {cluster.namespace} (see `womm status`)")
    t = {**record, **(found or {})}
    force = getattr(args, "force", False)
    if not force:
        if t.get("machine") and t["machine"] != me:
            raise UsageError(f"task {task_id} was started on {t.get('host') or 'another machine'}: "
                             "finish it there, or use --force")
        if t.get("cwd") and os.path.realpath(t["cwd"]) != here and reason is None:
            raise UsageError(f"task {task_id} belongs to {t['cwd']}: finish it there, or use --force")
        if found and found["status"] == "RUNNING":
            raise UsageError(f"task {task_id} is still running: wait for it (or Ctrl-C it), or use --force")
    if (t.get("mode") == "async" and found and found["status"] == "COMPLETE") or record.get("syncback_pending"):
        _bring_back(cluster, record, log)
    taskobjects.delete(cluster, task_id)
    tasks.forget(task_id)
    (log or print)(f"finished {task_id}" + (f" ({reason})" if reason else ""))


def _bring_back(cluster, record, log):
    """An --async task's results into its directory (syncback shares), before its objects go.

    Its local record says the share; without it (another host's task) there is nothing to bring back here.
    """
    if record:
        task = tasks.Task.from_record(record)
        shares.for_task(task, cluster, log or say).bring_back(task)


# ---------------------------------------------------------------- reap

def parse_ttl(text):
    try:
        return cli.duration(text)
    except argparse.ArgumentTypeError as e:
        raise UsageError(f"--ttl: {e}") from None


def print_cron(args):
    exe = os.path.abspath(sys.argv[0])
    if not os.path.isabs(sys.argv[0]) or not os.path.exists(exe):
        exe = shutil.which("womm-reap") or exe
    env = [f"PATH={shlex.quote(os.path.dirname(exe) + ':/usr/local/bin:/usr/bin:/bin')}"]
    kubeconfig = os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
    env.append("KUBECONFIG=" + shlex.quote(":".join(os.path.abspath(p) for p in kubeconfig.split(":"))))
    if os.environ.get("WOMM_HOME"):
        env.append("WOMM_HOME=" + shlex.quote(os.path.abspath(os.environ["WOMM_HOME"])))
    options = ""
    if args.context:
        options += f" --context {shlex.quote(args.context)}"
    if args.namespace:
        options += f" --namespace {shlex.quote(args.namespace)}"
    print(f"*/15 * * * * {' '.join(env)} {shlex.quote(exe)} reap{options}")
    return exitcodes.OK


def reap(args):
    if args.print_cron:
        return print_cron(args)
    ttl = parse_ttl(args.ttl)
    home.logs_dir().mkdir(parents=True, exist_ok=True)
    lock = open(home.root() / "reap.lock", "a")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return 0  # another reaper is at it
    try:
        return _reap(args, ttl)
    finally:
        lock.close()


def _act(line):
    """Say what the reaper did, and keep it in its log."""
    print(line, flush=True)
    with open(home.reap_log(), "a") as f:
        f.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {line}\n")


def _reap(args, ttl):
    me = tasks.machine_id()
    # Where to look: the namespaces of this host's records, and the current one.
    local = {t["id"]: t for t in records.list_tasks() if t.get("machine", me) == me}
    places = {(t.get("context"), t.get("namespace")) for t in local.values()}
    places.add((args.context, args.namespace))
    seen, handled, errors = set(), set(), 0
    for context, namespace in sorted(places, key=lambda p: (p[0] or "", p[1] or "")):
        try:
            found = taskobjects.find(Cluster.of({"context": context, "namespace": namespace}, args))
        except WommError as e:
            error(str(e))
            errors += 1
            continue
        seen |= set(found)
        for tid, t in sorted(found.items()):
            why = _why_reap(t, me, args.all_hosts, ttl)
            if why and tid not in handled:
                handled.add(tid)
                errors += _finish_reaped(tid, why, args, me)
    _forget_gone(local, seen, args.dry_run)
    errors += _reap_testbeds(args.dry_run, _act)
    return exitcodes.FAILURE if errors else exitcodes.OK


def _why_reap(t, me, all_hosts, ttl):
    """Why the reaper finishes the task found (None: it does not)."""
    if t.get("machine") != me and not all_hosts:
        return None
    if t["status"] == "ORPHANED":
        return "orphaned"
    if t["status"] == "COMPLETE" and time.time() - (t.get("created") or 0) > ttl:
        return "complete, older than the TTL"
    return None


def _finish_reaped(tid, why, args, me):
    """Finish a task the reaper chose; the errors (0 or 1)."""
    if args.dry_run:
        _act(f"would finish {tid} ({why})")
        return 0
    try:
        finish_one(tid, _Force(args), None, me, reason=why, log=_act)
    except Exception as e:  # noqa: BLE001 - report, go on with the others
        error(f"finishing {tid}: {describe(e)}")
        return 1
    return 0


def _forget_gone(local, seen, dry_run):
    """This host's records whose objects are gone and whose controller is dead."""
    for tid, t in local.items():
        if tid in seen or tasks.controller_alive(t.get("pid"), t.get("pid_start"), t.get("machine")):
            continue
        if t.get("syncback_pending"):
            continue  # its results wait on the share server for `womm finish ID`, in its directory
        if dry_run:
            _act(f"would forget {tid} (its objects are gone)")
            continue
        tasks.forget(tid)
        _act(f"forgot {tid} (its objects are gone)")


class _Force:
    """finish's arguments for the reaper: it decided already."""

    def __init__(self, args):
        self.context, self.namespace, self.force = args.context, args.namespace, True


def _reap_testbeds(dry_run, act):
    """Testbed containers whose womm setup is gone."""
    try:
        import docker

        client = docker.from_env(timeout=30)
        containers = client.containers.list(all=True, filters={"label": taskobjects.TESTBED})
    except Exception:  # noqa: BLE001 - no docker here: nothing of ours to reap
        return exitcodes.OK
    errors = 0
    for c in containers:
        labels = c.labels or {}
        if taskobjects.testbed_owner_alive(labels):
            continue
        if dry_run:
            act(f"would remove testbed container {c.name}")
            continue
        try:
            c.remove(force=True)
            act(f"removed testbed container {c.name}")
        except Exception as e:  # noqa: BLE001
            error(f"removing {c.name}: {describe(e)}")
            errors += 1
    return errors

