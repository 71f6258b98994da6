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

from womm import cli, home, records, shares, taskobjects, tasks
from womm.errors import UsageError, WommError
from womm.kube import Cluster
from womm.report import say

COLUMNS = ["ID", "AGE", "STATUS", "CPU", "MEM", "HEALTH", "PWD", "COMMAND"]


# ---------------------------------------------------------------- status

def _here_cluster(args):
    """The cluster and namespace to look in: the options, else this directory's, else the context's."""
    project = records.find_project(os.getcwd()) or {}
    return Cluster(args.context or project.get("context"), args.namespace or project.get("namespace"))


def status(args):
    cluster = _here_cluster(args)
    found = taskobjects.find(cluster, args.all_namespaces)
    me = tasks.machine_id()
    rows = [t for t in found.values() if args.all_hosts or t.get("machine") == me]
    rows.sort(key=lambda t: t.get("created") or 0)
    if args.output == "json":
        print(json.dumps([_json_row(t) for t in rows], indent=1))
        return 0
    columns = COLUMNS[:]
    if args.all_hosts:
        columns.insert(1, "HOST")
    if args.all_namespaces:
        columns.insert(1, "NAMESPACE")
    table = [columns] + [[_cell(t, c) for c in columns] for t in rows]
    if len(table) == 1:
        print("no tasks", file=sys.stderr)
        return 0
    _print_table(table)
    return 0


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


def _cell(t, column):
    if column == "ID":
        return t["id"]
    if column == "HOST":
        return t.get("host") or "?"
    if column == "NAMESPACE":
        return t.get("namespace") or "?"
    if column == "AGE":
        return _human_age(_age(t))
    if column == "STATUS":
        return t["status"]
    if column == "CPU":
        return str(t.get("cpu") or "-")
    if column == "MEM":
        return str(t.get("mem") or "-")
    if column == "HEALTH":
        health = f"{t.get('pods_ready', 0)}/{t.get('pods') or '?'}"
        if t.get("done") is not None:
            health += f" {t['done']} done"
        return health
    if column == "PWD":
        return t.get("cwd") or "?"
    if column == "COMMAND":
        return " ".join(shlex.quote(w) if w[:1] != "'" else w for w in (t.get("command") or [])) or "?"
    return ""


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
            print(f"womm-reap: error: {task_id}: {e}", file=sys.stderr)
            failed += 1
    return 1 if failed else 0


def _cluster_for(task_id, args):
    record = records.load_task(task_id) or {}
    if not record:
        return _here_cluster(args), record
    return Cluster(args.context or record.get("context"), args.namespace or record.get("namespace")), record


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
    if t.get("mode") == "async" and found and found["status"] == "COMPLETE":
        _bring_back(cluster, t, log)
    taskobjects.delete(cluster, task_id)
    shutil.rmtree(home.run_dir(task_id), ignore_errors=True)
    records.remove_task(task_id)
    (log or print)(f"finished {task_id}" + (f" ({reason})" if reason else ""))


def _bring_back(cluster, t, log):
    """An --async task's results into its directory (syncback shares), before its objects go.

    Its local record says the share; without it (another host's task) there is nothing to bring back here.
    """
    if t.get("cwd") and t.get("share"):
        shares.for_task(t, cluster, log or say).bring_back(t)


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
    return 0


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


def _reap(args, ttl):
    me = tasks.machine_id()
    errors = 0

    def act(line):
        print(line, flush=True)
        with open(home.reap_log(), "a") as f:
            f.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {line}\n")

    # Where to look: the namespaces of this host's records, and the current one.
    local = {t["id"]: t for t in records.list_tasks() if t.get("machine", me) == me}
    places = {(t.get("context"), t.get("namespace")) for t in local.values()}
    places.add((args.context, args.namespace))
    seen, handled = set(), set()
    for context, namespace in sorted(places, key=lambda p: (p[0] or "", p[1] or "")):
        try:
            cluster = Cluster(args.context or context, args.namespace or namespace)
            found = taskobjects.find(cluster)
        except WommError as e:
            print(f"womm-reap: error: {e}", file=sys.stderr)
            errors += 1
            continue
        for tid, t in sorted(found.items()):
            seen.add(tid)
            if (t.get("machine") != me and not args.all_hosts) or tid in handled:
                continue
            why = None
            if t["status"] == "ORPHANED":
                why = "orphaned"
            elif t["status"] == "COMPLETE" and time.time() - (t.get("created") or 0) > ttl:
                why = "complete, older than the TTL"
            if not why:
                continue
            handled.add(tid)
            if args.dry_run:
                act(f"would finish {tid} ({why})")
                continue
            try:
                finish_one(tid, _Force(args), None, me, reason=why, log=act)
            except Exception as e:  # noqa: BLE001 - report, go on with the others
                print(f"womm-reap: error: finishing {tid}: {e}", file=sys.stderr)
                errors += 1
    # Records whose objects are gone and whose controller is dead.
    for tid, t in local.items():
        if tid in seen or tasks.controller_alive(t.get("pid"), t.get("pid_start"), t.get("machine")):
            continue
        if args.dry_run:
            act(f"would forget {tid} (its objects are gone)")
            continue
        shutil.rmtree(home.run_dir(tid), ignore_errors=True)
        records.remove_task(tid)
        act(f"forgot {tid} (its objects are gone)")
    errors += _reap_testbeds(args.dry_run, act)
    return 1 if errors else 0


class _Force:
    """finish's arguments for the reaper: it decided already."""

    def __init__(self, args):
        self.context, self.namespace, self.force = args.context, args.namespace, True


def _reap_testbeds(dry_run, act):
    """Testbed containers whose womm setup is gone."""
    try:
        import docker

        client = docker.from_env(timeout=30)
        containers = client.containers.list(all=True, filters={"label": "womm.dev/testbed"})
    except Exception:  # noqa: BLE001 - no docker here: nothing of ours to reap
        return 0
    errors = 0
    for c in containers:
        labels = c.labels or {}
        if tasks.controller_alive(labels.get("womm.dev/pid"), labels.get("womm.dev/pid-start"), tasks.machine_id()):
            continue
        if dry_run:
            act(f"would remove testbed container {c.name}")
            continue
        try:
            c.remove(force=True)
            act(f"removed testbed container {c.name}")
        except Exception as e:  # noqa: BLE001
            print(f"womm-reap: error: removing {c.name}: {e}", file=sys.stderr)
            errors += 1
    return errors

