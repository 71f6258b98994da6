"""A task's Kubernetes objects: their labels and annotations, finding tasks by them, deleting them.

Every object womm creates carries MANAGED_BY; a task's objects (its workers' ReplicaSet
and pods, an --async task's leader pod and input) also carry its id and their role, and
annotations that say who started the task. `womm status`, `womm finish` and the reaper
find tasks here, from the objects alone; cleanup selects by label, never by name pattern.
Objects are plain dicts, as the API sends them (womm.kube's raw requests).
"""

import json
import re

from womm import records, tasks

MANAGED_BY = {"app.kubernetes.io/managed-by": "womm"}
TASK = "womm.dev/task"
ROLE = "womm.dev/role"
HOST = "womm.dev/host"
SHARE = "womm.dev/share"

# Annotations: who controls the task (womm status, the reaper) and what it runs.
ANNOTATIONS = {  # task field: annotation
    "host": "womm.dev/host", "cwd": "womm.dev/cwd", "pid": "womm.dev/pid", "pid_start": "womm.dev/pid-start",
    "command": "womm.dev/command", "mode": "womm.dev/mode", "created": "womm.dev/created",
    "cpu": "womm.dev/cpu", "mem": "womm.dev/mem", "pods": "womm.dev/pods",
}


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
    return {**MANAGED_BY, TASK: task["id"], ROLE: role, HOST: label_value(task["host"])}


def annotations(task):
    def text(field):
        value = task.get(field)
        if field == "command":
            return json.dumps(value)
        if field in ("pid_start", "created"):
            return repr(value)
        return "" if value is None else str(value)

    return {key: text(field) for field, key in ANNOTATIONS.items()}


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
        "cwd": ann.get(ANNOTATIONS["cwd"]),
        "pid": num("pid", int),
        "pid_start": num("pid_start"),
        "command": command,
        "mode": ann.get(ANNOTATIONS["mode"], "sync"),
        "created": num("created"),
        "cpu": ann.get(ANNOTATIONS["cpu"]),
        "mem": ann.get(ANNOTATIONS["mem"]),
        "pods": num("pods", int),
    }


def find(cluster, all_namespaces=False, task_id=None):
    """{id: task} of the tasks in the cluster, built from their objects, each with its status."""
    query = {"labelSelector": selector(**({"task": task_id} if task_id else {}))}
    ns = None if all_namespaces else cluster.namespace
    sets = cluster.request("GET", cluster.path("replicasets", namespace=ns, all_namespaces=all_namespaces), query)
    pods = cluster.request("GET", cluster.path("pods", namespace=ns, all_namespaces=all_namespaces), query)
    found = {}
    for kind, items in (("ReplicaSet", sets["items"]), ("Pod", pods["items"])):
        for obj in items:
            meta = obj["metadata"]
            labels_ = meta.get("labels") or {}
            tid = labels_.get(TASK)
            if not tid:
                continue
            t = found.setdefault(tid, {"id": tid, "namespace": meta.get("namespace"), "pods_ready": 0, "leader": None})
            ann = meta.get("annotations") or {}
            if ANNOTATIONS["host"] in ann:
                t.update(from_annotations(ann))
            status = obj.get("status") or {}
            if kind == "ReplicaSet":
                t["pods_ready"] = status.get("readyReplicas") or 0
                t["pods"] = obj["spec"].get("replicas")
            elif labels_.get(ROLE) == "leader":
                t["leader"] = status.get("phase")
                ends = [(s.get("state") or {}).get("terminated") for s in status.get("containerStatuses") or []]
                if ends and all(ends):
                    # The kubelet reports the container's end a moment before the pod's phase.
                    t["leader"] = "Succeeded" if all(e.get("exitCode") == 0 for e in ends) else "Failed"
                t["leader_pod"] = meta["name"]
    for t in found.values():
        t["status"] = status_of(t)
        local = records.load_task(t["id"])
        if local and "done" in local:
            t["done"] = local["done"]
    return found


def status_of(t):
    """RUNNING, COMPLETE (an async task whose leader ended), ORPHANED, or UNKNOWN (another host's)."""
    if t.get("mode") == "async":
        if t.get("leader") in ("Succeeded", "Failed"):
            return "COMPLETE"
        return "RUNNING" if t.get("leader") else "ORPHANED"
    alive = tasks.controller_alive(t.get("pid"), t.get("pid_start"), t.get("host"))
    if alive is None:
        return "UNKNOWN"
    return "RUNNING" if alive else "ORPHANED"


def delete(cluster, task_id, role=None, namespace=None):
    """Delete all of a task's objects (of one role: the leader spares itself), by label.

    ReplicaSets first, or they would replace the pods deleted after them; one
    deletecollection request per kind.
    """
    query = {"labelSelector": selector(task=task_id, **({"role": role} if role else {})),
             "propagationPolicy": "Background", "gracePeriodSeconds": 1}
    kinds = ["replicasets", "pods"] + (["configmaps"] if role is None else [])
    for kind in kinds:
        cluster.request("DELETE", cluster.path(kind, namespace=namespace), query)
