"""--async: a leader pod runs GNU parallel and the controller inside the cluster.

The client prepares the share (uploads it), hands the leader its task record and
input (a ConfigMap), prints the task id, and leaves. The leader runs the task exactly
as the client would (womm_run.parallel.run), its output in its pod's log (`womm logs`),
deletes its workers at the end (after each pod sent its changes back, for syncback
shares) and stays, COMPLETE, until `womm finish`, which brings the changes back.
"""

import json
import os
import sys

from womm import manifests, records, shares, taskobjects, tasks
from womm.errors import UsageError, WommError
from womm.kube import Cluster
from womm.report import Reporter, say
from womm_run import parallel

MAX_INPUT = 900 * 1024  # a ConfigMap holds about 1 MiB, the task record included
INPUT = "/womm/task/input"  # where the leader finds GNU parallel's stdin (manifests.leader_pod)


def reads_stdin(args):
    """Whether GNU parallel would read its input from stdin."""
    words = args.command + args.parallel_options
    if any(w in (":::", "::::", ":::+", "::::+") for w in args.command):
        return False
    return not any(w in ("-a", "--arg-file") or w.startswith("--arg-file=") for w in words)


def start(args):
    """The client of an --async task: start the leader, print the task id, leave."""
    parallel.check_parallel_options(args.parallel_options)
    project = records.require_project(os.getcwd())
    shares.for_project(project, None, say).check_async()
    if args.local_procs:
        raise UsageError("--async cannot use --local-procs: the task must not need this machine")
    cluster = Cluster(args.context or project.get("context"), args.namespace or project.get("namespace"))
    data = b""
    if reads_stdin(args):
        data = sys.stdin.buffer.read(MAX_INPUT + 1)
        if len(data) > MAX_INPUT:
            raise WommError("the input is too large for --async (over 900 KiB): put it in a file "
                            "of the share and give it to GNU parallel with :::: FILE")
    task = parallel.new_task(args, project, cluster, "async")
    try:
        taskobjects.create_owner(cluster, task)  # the leader renews it
        records.save_task(task)
        share = shares.for_task(task, cluster, Reporter(task["id"]).log)
        share.prepare(task)
        share.wait_prepared()
        body = manifests.leader_task(task, data)
        if len(json.dumps(body)) > MAX_INPUT + 100 * 1024:
            raise WommError("the task is too large for --async (its command and input are over 1 MiB): put the "
                            "inputs in a file of the share and give it to GNU parallel with :::: FILE")
        cluster.request("POST", cluster.path("configmaps"), body=body)
        cluster.request("POST", cluster.path("pods"), body=manifests.leader_pod(task, task["helper_image"]))
    except BaseException:
        taskobjects.delete(cluster, task["id"])
        records.remove_task(task["id"])
        raise
    print(task["id"])
    say(f"task {task['id']} runs in the cluster. Follow it with `womm logs {task['id']}`; "
        f"once it is COMPLETE, `womm finish {task['id']}` removes it.")
    return 0


def main(args):
    """In the leader pod: run the task its record describes."""
    with open(args.task) as f:
        task = json.load(f)
    parallel.ensure_open_files(tasks.pod_slots(task), task["pods"])
    fd = os.open(INPUT if os.path.exists(INPUT) else os.devnull, os.O_RDONLY)
    os.dup2(fd, 0)
    os.close(fd)
    return parallel.run(task, Cluster(), Reporter(task["id"]))
