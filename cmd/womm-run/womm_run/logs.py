"""`womm logs ID`: the output of an --async task so far, then followed to its end."""

import sys
import time

from womm import records, taskobjects
from womm.errors import WommError
from womm.kube import Cluster
from womm.report import say

CANNOT_START = ("ErrImagePull", "ImagePullBackOff", "InvalidImageName")


def leader_pod(cluster, task_id):
    query = {"labelSelector": taskobjects.selector(task=task_id, role="leader")}
    pods = cluster.request("GET", cluster.path("pods"), query)["items"]
    return pods[0] if pods else None


def main(args):
    record = records.load_task(args.id) or {}
    cluster = Cluster(args.context or record.get("context"), args.namespace or record.get("namespace"))
    pod = leader_pod(cluster, args.id)
    if pod is None:
        raise WommError(f"task {args.id} has no leader in namespace {cluster.namespace}: "
                        "only --async tasks have logs (see `womm status`)")
    path = cluster.path("pods", pod["metadata"]["name"])
    while pod["status"].get("phase") == "Pending":  # not started yet: say why if it cannot
        for s in pod["status"].get("containerStatuses") or []:
            waiting = (s.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") in CANNOT_START:
                raise WommError(f"the leader of task {args.id} cannot start: {waiting['reason']}: {waiting.get('message')}")
        time.sleep(0.5)
        pod = cluster.request("GET", path)
    follow = not args.no_follow
    out = sys.stdout.buffer
    for chunk in cluster.stream(path + "/log", {"follow": "true" if follow else None}):
        out.write(chunk)
        out.flush()
    if not follow:
        return 0
    code = _exit_code(cluster.request("GET", path))
    while code is None:  # the log ends a moment before the pod's status says so
        time.sleep(0.3)
        code = _exit_code(cluster.request("GET", path))
    say(f"task {args.id} is COMPLETE (GNU parallel exited with {code}): `womm finish {args.id}` removes it")
    return code


def _exit_code(pod):
    for s in pod["status"].get("containerStatuses") or []:
        terminated = (s.get("state") or {}).get("terminated")
        if terminated:
            return terminated.get("exitCode")
    return None
