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
from womm_run import parallel, pods, protocol

MAX_INPUT = 900 * 1024  # a ConfigMap holds about 1 MiB, the task record included
TASK_DIR = "/womm/task"  # where the leader finds its task's ConfigMap (manifests.leader_pod)
INPUT = f"{TASK_DIR}/input"  # GNU parallel's stdin


def travelling_argv(parsed, limit):
    """GNU parallel's command line for the leader, which has neither this directory, nor its
    profiles and $PARALLEL: the options spelled in full, the input files (-a, ::::) read here
    and shipped with the task. (its argv, {key in the task's ConfigMap: bytes})."""
    files, total = {}, 0

    def ship(path):
        nonlocal total
        if path == "-":
            return path
        try:
            with open(path, "rb") as f:
                data = f.read(limit + 1)
        except OSError as e:
            raise WommError(f"cannot read the input file {path}: {e.strerror}") from None
        total += len(data)
        if total > limit:
            raise WommError(f"the input files are too large for --async (over {limit // 1024} KiB): put them "
                            "in the share and read them in the jobs")
        key = f"arg-{len(files)}"
        files[key] = data
        return f"{TASK_DIR}/{key}"

    words = []
    for opt in parsed.options:
        if opt.name == "arg-file":
            words += ["--arg-file", ship(opt.value)]
        else:
            words += opt.words()
    words = ["--plain", *[w for w in words if w != "--plain"]]
    rest = list(parsed.command)
    for source in parsed.sources:
        rest += [source.separator, *(ship(w) if source.files else w for w in source.words)]
    return [*words, "--", *rest], files


def start(args):
    """The client of an --async task: start the leader, print the task id, leave."""
    project = records.require_project(os.getcwd())
    shares.for_project(project, None, say).check_async()
    if args.local_procs:
        raise UsageError("--async cannot use --local-procs: the task must not need this machine")
    cluster = Cluster.of(project, args)
    argv, files = travelling_argv(args.parsed, MAX_INPUT)
    data = b""
    if args.parsed.reads_stdin:
        data = sys.stdin.buffer.read(MAX_INPUT + 1)
        if len(data) > MAX_INPUT:
            raise WommError("the input is too large for --async (over 900 KiB): put it in a file "
                            "and give it to GNU parallel with :::: FILE")
    task = parallel.new_task(args, project, cluster, "async", argv=argv)
    try:
        taskobjects.create_owner(cluster, task)  # the leader renews it
        task.save()
        reporter = Reporter(task.id)
        share = shares.for_task(task, cluster, reporter.log)
        share.prepare(task)
        share.wait_prepared()
        # The workers are made here: the leader's account may make no pod (nor ReplicaSet).
        cluster.request("POST", cluster.path("replicasets"), body=pods.admit(cluster, task, share, reporter.log))
        task.save()
        body = manifests.leader_task(task, data, files)
        if len(json.dumps(body)) > MAX_INPUT + 100 * 1024:
            raise WommError("the task is too large for --async (its command and input are over 1 MiB): put the "
                            "inputs in a file of the share and give it to GNU parallel with :::: FILE")
        cluster.request("POST", cluster.path("secrets"), body=body)
        cluster.request("POST", cluster.path("pods"), body=manifests.leader_pod(task, task.helper_image))
    except BaseException:
        taskobjects.delete(cluster, task.id)
        tasks.forget(task.id)
        raise
    print(task.id)
    say(f"task {task.id} runs in the cluster. Follow it with `womm logs {task.id}`; "
        f"once it is COMPLETE, `womm finish {task.id}` removes it.")
    return 0


def main(args):
    """In the leader pod: run the task its record describes."""
    with open(args.task) as f:
        record = json.load(f)
    if record.get("protocol") != protocol.PROTOCOL:
        # The client's womm made the record, the helper image's runs it: both must speak alike.
        raise WommError(f"this task was made by a womm of pod protocol {record.get('protocol') or 1}, and this "
                        f"helper image's womm speaks {protocol.PROTOCOL}: make the helper image the client's "
                        "with `womm build-images`, then `womm cluster-setup --apply` (or set helper-image to it)")
    task = tasks.Task.from_record(record)
    parallel.ensure_open_files(task.pod_slots, task.pods)
    fd = os.open(INPUT if os.path.exists(INPUT) else os.devnull, os.O_RDONLY)
    os.dup2(fd, 0)
    os.close(fd)
    return parallel.Run(task, Cluster(), Reporter(task.id)).run()
