"""--async: a leader pod runs GNU parallel and the controller inside the cluster.

The client uploads the share, hands the leader its task and input (a ConfigMap),
prints the task id, and leaves. The leader runs the task exactly as the client
would (womm_run.parallel.run), its output in its pod's log (`womm logs`), deletes
its workers at the end (after each pod sent its changes back, for syncback
shares) and stays, COMPLETE, until `womm finish`.
"""

import argparse
import json
import os
import sys

from womm import manifests, records
from womm.errors import WommError
from womm.kube import Cluster
from womm.shares import configured_image
from womm_run import parallel

MAX_INPUT = 900 * 1024  # a ConfigMap holds about 1 MiB


def reads_stdin(args):
    """Whether GNU parallel would read its input from stdin."""
    words = args.command + args.parallel_options
    if any(w in (":::", "::::", ":::+", "::::+") for w in args.command):
        return False
    return not any(w in ("-a", "--arg-file") or w.startswith("--arg-file=") for w in words)


def start(args, project, cwd):
    """The client of an --async task: start the leader, print the task id, leave."""
    cluster = Cluster(args.context or project.get("context"), args.namespace or project.get("namespace"))
    image = configured_image(cluster, "leader-image")
    data = b""
    if reads_stdin(args):
        data = sys.stdin.buffer.read(MAX_INPUT + 1)
        if len(data) > MAX_INPUT:
            raise WommError("the input is too large for --async (over 900 KiB): put it in a file "
                            "of the share and give it to GNU parallel with :::: FILE")
    task = parallel.new_task(args, project, cluster, cwd, mode="async")
    try:
        if project.get("share") in ("eager", "eager-syncback"):
            _upload(project, cluster, task)
        spec = {
            "task": task,
            "project": {k: project.get(k) for k in ("image", "share", "share_id", "pull_secret", "path")},
            "args": {
                "kube_pods": args.kube_pods, "procs_per_pod": args.procs_per_pod, "kube_cpu": args.kube_cpu,
                "kube_mem": args.kube_mem, "parallel_options": args.parallel_options, "command": args.command,
                "local_procs": 0,
            },
            "input": bool(data),
        }
        if data:
            cluster.request("POST", cluster.path("configmaps"), body=manifests.leader_input(task, data))
        cluster.request("POST", cluster.path("pods"), body=manifests.leader_pod(task, image, spec, bool(data)))
    except BaseException:
        from womm_run.pods import delete_task_objects

        delete_task_objects(cluster, task["id"], cluster.namespace)
        records.remove_task(task["id"])
        raise
    print(task["id"])
    print(f"womm: task {task['id']} runs in the cluster. Follow it with `womm logs {task['id']}`; "
          f"once it is COMPLETE, `womm finish {task['id']}` removes it.", file=sys.stderr)
    return 0


def _upload(project, cluster, task):
    from womm.eager import ShareServer, upload

    server = ShareServer(cluster).locate()
    if project["share"] == "eager-syncback":
        from womm import syncback

        syncback.save_snapshot(task["id"], task["cwd"])
    upload(server, project["share_id"], task["cwd"], task["id"])
    status, _, err = server.run(["womm-share-mark", project["share_id"], task["id"]])
    if status != 0:
        raise WommError(f"the share server: {err.decode(errors='replace').strip()}")


def main(args):
    """In the leader pod: run the task."""
    spec = json.loads(args.spec)
    task, project = spec["task"], spec["project"]
    run_args = argparse.Namespace(**spec["args"])
    cluster = Cluster()
    if spec.get("input"):
        fd = os.open("/womm/input/input", os.O_RDONLY)
        os.dup2(fd, 0)
        os.close(fd)
    else:
        fd = os.open(os.devnull, os.O_RDONLY)
        os.dup2(fd, 0)
        os.close(fd)
    share = None
    if project.get("share") in ("eager", "eager-syncback"):
        from womm.eager import EagerShare

        # The client uploaded the share already; the syncback's pull is `womm finish`'s.
        share = EagerShare(project, cluster, parallel.Reporter(task["id"]).log,
                           syncback=project["share"] == "eager-syncback", upload=False, pull=False)
    reporter = parallel.Reporter(task["id"])
    return parallel.run(run_args, project, cluster, "/tmp", task=task, reporter=reporter, share=share)
