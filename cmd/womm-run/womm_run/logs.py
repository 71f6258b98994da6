"""`womm logs ID`: the output of an --async task so far, then followed to its end."""

import sys
import time

from womm import manifests, records
from womm.errors import WommError
from womm.kube import Cluster


def leader_pod(cluster, task_id):
    pods = cluster.core.list_namespaced_pod(
        cluster.namespace, label_selector=manifests.selector(task=task_id, role="leader")
    ).items
    return pods[0] if pods else None


def main(args):
    record = records.load_task(args.id) or {}
    cluster = Cluster(args.context or record.get("context"), args.namespace or record.get("namespace"))
    pod = leader_pod(cluster, args.id)
    if pod is None:
        raise WommError(f"task {args.id} has no leader in namespace {cluster.namespace}: "
                        "only --async tasks have logs (see `womm status`)")
    name = pod.metadata.name
    while pod.status.phase == "Pending":  # not started yet: say why if it cannot
        for s in pod.status.container_statuses or []:
            waiting = s.state and s.state.waiting
            if waiting and waiting.reason in ("ErrImagePull", "ImagePullBackOff", "InvalidImageName"):
                raise WommError(f"the leader of task {args.id} cannot start: {waiting.reason}: {waiting.message}")
        time.sleep(0.5)
        pod = cluster.core.read_namespaced_pod(name, cluster.namespace)
    follow = not args.no_follow
    response = cluster.core.read_namespaced_pod_log(
        name, cluster.namespace, follow=follow, _preload_content=False
    )
    out = sys.stdout.buffer
    for chunk in response.stream(65536):
        out.write(chunk)
        out.flush()
    if not follow:
        return 0
    pod = cluster.core.read_namespaced_pod(name, cluster.namespace)
    code = _exit_code(pod)
    while code is None:  # the log ends a moment before the pod's status says so
        time.sleep(0.3)
        pod = cluster.core.read_namespaced_pod(name, cluster.namespace)
        code = _exit_code(pod)
    print(f"womm: task {args.id} is COMPLETE (GNU parallel exited with {code}): "
          f"`womm finish {args.id}` removes it", file=sys.stderr)
    return code


def _exit_code(pod):
    for s in pod.status.container_statuses or []:
        if s.state and s.state.terminated:
            return s.state.terminated.exit_code
    return None
