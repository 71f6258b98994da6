"""A task's Kubernetes objects: their labels and annotations, its heartbeat, finding tasks by
them, deleting them.

Every object womm creates carries MANAGED_BY; a task's objects also carry its id and their
role, and annotations that say who started the task. Each task has one Lease, created first:
its controller (the client, or an --async task's leader) renews it every RENEW_EVERY seconds,
and every other object of the task names it as its owner, so that deleting it deletes them
all. A task whose Lease the API server has not seen renewed for LEASE_SECONDS is ORPHANED,
wherever its controller was: the age is the server's own clock against the server's own
record of the last renewal (managedFields), so no client's clock is ever compared.
`womm status`, `womm finish` and the reaper find tasks here, from the objects alone; cleanup
selects by label, never by name pattern. Objects are plain dicts, as the API sends them.
"""

import json
import os
import re
import threading
import time
from email.utils import parsedate_to_datetime

from womm import records, tasks

MANAGED_BY = {"app.kubernetes.io/managed-by": "womm"}
TASK = "womm.dev/task"
ROLE = "womm.dev/role"
HOST = "womm.dev/host"
SHARE = "womm.dev/share"

LEASE_SECONDS = 90
RENEW_EVERY = 30
RENEW_AGAIN = 5  # seconds after a failed renewal (each renewal also waits out the API's pushback itself)
COMMAND_CHARS = 1000  # of the command, in annotations: its ::: inputs (and what they expand) stay home

# Annotations: who controls the task (womm status, the reaper) and what it runs.
ANNOTATIONS = {  # task field: annotation
    "host": "womm.dev/host", "machine": "womm.dev/machine", "cwd": "womm.dev/cwd", "pid": "womm.dev/pid",
    "pid_start": "womm.dev/pid-start", "command": "womm.dev/command", "mode": "womm.dev/mode",
    "created": "womm.dev/created", "cpu": "womm.dev/cpu", "mem": "womm.dev/mem", "pods": "womm.dev/pods",
}
INPUT_SEPARATORS = (":::", "::::", ":::+", "::::+")


# A testbed container (womm setup) on this machine's Docker engine, and the process that owns it.
TESTBED = "womm.dev/testbed"
TESTBED_PID, TESTBED_PID_START = "womm.dev/pid", "womm.dev/pid-start"


def testbed_labels():
    """The labels of a testbed container started by this process."""
    pid = os.getpid()
    return {TESTBED: "1", TESTBED_PID: str(pid), TESTBED_PID_START: str(tasks.process_start(pid))}


def testbed_owner_alive(labels_):
    """Whether the process that started a testbed container (by its labels) still runs."""
    return tasks.controller_alive(labels_.get(TESTBED_PID), labels_.get(TESTBED_PID_START), tasks.machine_id())


def label_value(text):
    """A string made safe as a label value (63 chars of [A-Za-z0-9._-])."""
    value = re.sub(r"[^A-Za-z0-9._-]", "-", text)[:63].strip("-._")
    return value or "none"


def selector(**labels):
    """A label selector over womm's objects, e.g. selector(task=id)."""
    keys = {"task": TASK, "role": ROLE, "host": HOST, "share": SHARE}
    parts = [f"{k}={v}" for k, v in MANAGED_BY.items()]
    parts += [f"{keys[k]}={v}" for k, v in labels.items()]
    return ",".join(parts)


def labels(task, role="worker"):
    return {**MANAGED_BY, TASK: task.id, ROLE: role, HOST: label_value(task.host)}


def shown_command(command):
    """The command as annotations show it: its words up to the first input separator, shortened."""
    words = []
    for word in command:
        if word in INPUT_SEPARATORS:
            words.append(word + " ...")
            break
        words.append(word)
    text = json.dumps(words)
    return text if len(text) <= COMMAND_CHARS else json.dumps([json.dumps(words)[:COMMAND_CHARS] + "..."])


def annotations(task, command=False):
    """What the task's objects say of it. The command (shortened) only where asked: on its Lease,
    which those who may only read pods (and the built-in `view` role) cannot read, for commands
    carry secrets often enough (`Authorization: Bearer ...`)."""
    def text(field):
        value = getattr(task, field)
        if field == "command":
            return shown_command(value or [])
        if field == "created":
            return repr(value)
        return "" if value is None else str(value)

    return {key: text(field) for field, key in ANNOTATIONS.items() if command or field != "command"}


def from_annotations(ann):
    """The task fields that annotations carry (numbers parsed; what is unreadable is None)."""
    def num(field, kind=float):
        try:
            return kind(ann.get(ANNOTATIONS[field]))
        except (TypeError, ValueError):
            return None

    try:
        command = json.loads(ann.get(ANNOTATIONS["command"], "[]"))
    except ValueError:
        command = []
    return {
        "host": ann.get(ANNOTATIONS["host"]),
        "machine": ann.get(ANNOTATIONS["machine"]),
        "cwd": ann.get(ANNOTATIONS["cwd"]),
        "pid": num("pid", int),
        "pid_start": ann.get(ANNOTATIONS["pid_start"]) or None,
        "command": command,
        "mode": ann.get(ANNOTATIONS["mode"], "sync"),
        "created": num("created"),
        "cpu": ann.get(ANNOTATIONS["cpu"]),
        "mem": ann.get(ANNOTATIONS["mem"]),
        "pods": num("pods", int),
    }


# ---------------------------------------------------------------- the heartbeat and owner

def lease(task):
    """The task's heartbeat, renewed by its controller, and the owner of all its other objects."""
    now = _micro_time()
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": f"womm-task-{task.id}", "labels": labels(task, role="owner"),
                     "annotations": annotations(task, command=True)},
        "spec": {"holderIdentity": f"{task.machine}/{task.pid}/{task.pid_start}",
                 "leaseDurationSeconds": LEASE_SECONDS, "acquireTime": now, "renewTime": now},
    }


def create_owner(cluster, task):
    """Create the task's Lease; the owner reference its other objects carry (also kept in the task)."""
    made = cluster.request("POST", cluster.path("leases"), body=lease(task))
    task.owner = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "name": made["metadata"]["name"],
                     "uid": made["metadata"]["uid"]}
    return task.owner


def renew(cluster, task):
    # Setting renewTime twice is as good as once: sent again after a reset, like a PUT.
    cluster.request("PATCH", cluster.path("leases", f"womm-task-{task.id}"),
                    body={"spec": {"renewTime": _micro_time()}}, content_type="application/merge-patch+json",
                    timeout=10, idempotent=True)


def keep_alive(cluster, task, stopping, log=None):
    """Renew the task's Lease every RENEW_EVERY seconds until stopping is set (a daemon thread).

    A renewal that fails (the API throttling, away, or slow) is tried again after RENEW_AGAIN
    seconds, not RENEW_EVERY: a live client keeps trying for the whole LEASE_SECONDS before its
    task reads as ORPHANED elsewhere (womm status, the reaper), and says so once per outage.
    """
    def loop():
        wait, failing = RENEW_EVERY, False
        while not stopping.wait(wait):
            try:
                renew(cluster, task)
            except Exception as e:  # noqa: BLE001 - the next renewal may reach the API again
                if log and not failing:
                    from womm.errors import describe

                    log(f"could not renew the task's heartbeat: {describe(e)}; trying again")
                wait, failing = RENEW_AGAIN, True
                continue
            if failing and log:
                log("the task's heartbeat is renewed again")
            wait, failing = RENEW_EVERY, False

    threading.Thread(target=loop, name="heartbeat", daemon=True).start()


def _micro_time():
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e6):06d}Z"


def heartbeat_age(lease, server_date):
    """Seconds since the API server last saw the Lease written, by the server's own clock; None if unknown."""
    from datetime import datetime

    if not server_date:
        return None
    times = [m.get("time") for m in (lease["metadata"].get("managedFields") or []) if m.get("time")]
    if not times:
        return None
    last = max(datetime.fromisoformat(t.replace("Z", "+00:00")) for t in times)
    return (parsedate_to_datetime(server_date) - last).total_seconds()


# ---------------------------------------------------------------- finding and deleting

def find(cluster, all_namespaces=False, task_id=None):
    """{id: task} of the tasks in the cluster, built from their objects, each with its status."""
    query = {"labelSelector": selector(**({"task": task_id} if task_id else {}))}
    ns = None if all_namespaces else cluster.namespace

    def listing(kind):
        return cluster.request("GET", cluster.path(kind, namespace=ns, all_namespaces=all_namespaces), query)["items"]

    found = {}
    # The Lease last: it is made before a task's other objects and deleted after them, so a task seen
    # by its ReplicaSet or pods has its Lease in the listing that follows, even one created meanwhile
    # (listed first, a task starting then read as UNKNOWN); and its annotations, the only ones
    # with the command, are read last.
    for kind in ("pods", "replicasets", "leases"):
        items = listing(kind)
        now = cluster.last_date  # the server's clock, as it answered this listing
        for obj in items:
            meta = obj["metadata"]
            tid = (meta.get("labels") or {}).get(TASK)
            if not tid:
                continue
            t = found.setdefault(tid, {"id": tid, "namespace": meta.get("namespace"), "pods_ready": 0, "leader": None,
                                       "ending": True})
            ann = meta.get("annotations") or {}
            if ANNOTATIONS["host"] in ann:
                t.update(from_annotations(ann))
            SEEN_IN[kind](t, obj, now)
    for t in found.values():
        t["status"] = status_of(t)
        local = records.load_task(t["id"])
        if local and "done" in local:
            t["done"] = local["done"]
    return found


def _lease_seen(t, lease_, now):
    t["ending"] = False
    t["heartbeat_age"] = heartbeat_age(lease_, now)


def _replicaset_seen(t, rs, now):
    t["pods_ready"] = (rs.get("status") or {}).get("readyReplicas") or 0
    t["pods"] = rs["spec"].get("replicas")


def _pod_seen(t, pod, now):
    if (pod["metadata"].get("labels") or {}).get(ROLE) != "leader":
        return
    status = pod.get("status") or {}
    t["leader"] = status.get("phase")
    ends = [(s.get("state") or {}).get("terminated") for s in status.get("containerStatuses") or []]
    if ends and all(ends):
        # The kubelet reports the container's end a moment before the pod's phase.
        t["leader"] = "Succeeded" if all(e.get("exitCode") == 0 for e in ends) else "Failed"
    t["leader_pod"] = pod["metadata"]["name"]


# What find() learns of a task from each kind of its objects.
SEEN_IN = {"leases": _lease_seen, "replicasets": _replicaset_seen, "pods": _pod_seen}


def status_of(t):
    """RUNNING, COMPLETE (an async task whose leader ended), ORPHANED, ENDING, or UNKNOWN.

    ENDING: seen without its Lease, which is made first and deleted last: the task is being deleted
    (its controller's cleanup, or the garbage collector, removes the objects left).
    This machine's sync tasks: whether their controller process lives (the fast path).
    Others: whether their heartbeat is fresh; UNKNOWN without one.
    """
    if t.get("ending"):
        return "ENDING"
    if t.get("mode") == "async":
        if t.get("leader") in ("Succeeded", "Failed"):
            return "COMPLETE"
        return "RUNNING" if t.get("leader") else "ORPHANED"
    alive = tasks.controller_alive(t.get("pid"), t.get("pid_start"), t.get("machine"))
    if alive is not None:
        return "RUNNING" if alive else "ORPHANED"
    age = t.get("heartbeat_age")
    if age is None:
        return "UNKNOWN"
    return "RUNNING" if age < LEASE_SECONDS else "ORPHANED"


def delete(cluster, task_id, role=None, namespace=None, timeout=10):
    """Delete all of a task's objects (of one role: the leader spares itself and the Lease), by label.

    ReplicaSets first, or they would replace the pods deleted after them; then the pods, Secrets
    and NetworkPolicies at once (every command waits for this: one round trip, not three); the
    Lease last (what its deletion leaves, the garbage collector removes). One deletecollection
    request per kind; the first failure is raised, after the others of its step have ended.
    """
    query = {"labelSelector": selector(task=task_id, **({"role": role} if role else {})),
             "propagationPolicy": "Background", "gracePeriodSeconds": 1}
    steps = [["replicasets"], ["pods"]] if role else [["replicasets"], ["pods", "secrets", "networkpolicies"], ["leases"]]

    def one(kind, failed):
        try:
            cluster.request("DELETE", cluster.path(kind, namespace=namespace), query, timeout=timeout)
        except Exception as e:  # noqa: BLE001 - raised in the caller's thread
            failed.append(e)

    for kinds in steps:
        failed = []
        threads = [threading.Thread(target=one, args=(kind, failed), daemon=True) for kind in kinds[1:]]
        for t in threads:
            t.start()
        one(kinds[0], failed)
        for t in threads:
            t.join()
        if failed:
            raise failed[0]
