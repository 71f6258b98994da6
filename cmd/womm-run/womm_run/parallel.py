"""`womm parallel`: GNU parallel with the pods of a task as job slots.

The order of a run: the task record, GNU parallel (its jobs wait for slots), the
share's upload, the pods' ReplicaSet (pods join as they become ready), the
share's syncback, then the deletion of everything the task created, whatever
happened.
"""

import os
import shutil
import signal
import sys
import threading

from womm import home, records, shares, tasks
from womm.errors import UsageError, WommError, describe
from womm.kube import Cluster
from womm_run import controller
from womm_run.pods import TaskPods
from womm_run.slots import RunDir

# GNU parallel options womm decides itself, or cannot honour.
REFUSED = {
    "-j": "womm sets the job slots: --kube-pods x --procs-per-pod + --local-procs",
    "--jobs": "womm sets the job slots: --kube-pods x --procs-per-pod + --local-procs",
    "-P": "womm sets the job slots: --kube-pods x --procs-per-pod + --local-procs",
    "--max-procs": "womm sets the job slots: --kube-pods x --procs-per-pod + --local-procs",
    "-S": "womm's job slots are the pods; --sshlogin does not mix with them",
    "--sshlogin": "womm's job slots are the pods; --sshlogin does not mix with them",
    "--sshloginfile": "womm's job slots are the pods; --sshloginfile does not mix with them",
    "--slf": "womm's job slots are the pods; --slf does not mix with them",
    "--pipe": "womm cannot send a job's stdin to a pod yet: use input files on the share",
    "--pipepart": "womm cannot send a job's stdin to a pod yet: use input files on the share",
}


def check_parallel_options(options):
    for token in options:
        name = token.split("=", 1)[0]
        for refused, why in REFUSED.items():
            if name == refused or (len(refused) == 2 and token.startswith(refused) and not token.startswith("--")):
                raise UsageError(f"{refused} is not for womm parallel: {why}")


def local_shell():
    return os.environ.get("PARALLEL_SHELL") or os.environ.get("SHELL") or "/bin/sh"


class Reporter:
    """womm's own messages: on stderr, never on stdout (that is the jobs' output)."""

    def __init__(self, task_id=None):
        self.task_id = task_id
        self.tty = sys.stderr.isatty()

    def log(self, message):
        prefix = f"womm: task {self.task_id}: " if self.task_id else "womm: "
        print(prefix + message, file=sys.stderr, flush=True)

    def progress(self, message):
        if self.tty:
            self.log(message)


def main(args):
    if args.citation:
        _require("parallel")
        os.execvp("parallel", ["parallel", "--citation"])
    check_parallel_options(args.parallel_options)
    _require("parallel")
    cwd = os.getcwd()
    project = records.load_project(cwd)
    if project is None:
        raise WommError(f"{cwd} is not set up for womm: run `womm setup` here first")
    if args.async_:
        if project.get("share") == "lazy":
            raise UsageError("--async does not work with a lazy share: the pods would lose it with this client "
                             "(choose an eager share with `womm setup`)")
        if args.local_procs:
            raise UsageError("--async cannot use --local-procs: the task must not need this machine")
        from womm_run import leader

        return leader.start(args, project, cwd)
    cluster = Cluster(args.context or project.get("context"), args.namespace or project.get("namespace"))
    return run(args, project, cluster, cwd)


def new_task(args, project, cluster, cwd, mode="sync"):
    command = ["parallel", *args.parallel_options, "--", *args.command]
    return tasks.create(
        "parallel", mode, command, cwd, cluster,
        image=project["image"], share=project.get("share", "none"), pods=args.kube_pods,
        cpu=args.kube_cpu, mem=args.kube_mem, procs_per_pod=args.procs_per_pod,
        pull_secret=project.get("pull_secret") or None,
    )


def run(args, project, cluster, cwd, task=None, reporter=None, share=None):
    """Run the task here (the client, or the leader of an --async task); GNU parallel's status."""
    task = task or new_task(args, project, cluster, cwd)
    command = task["command"]
    reporter = reporter or Reporter()
    reporter.task_id = task["id"]
    share = share or shares.for_project(project, cluster, reporter.log)
    slots = args.kube_pods * args.procs_per_pod
    rundir = RunDir(task["id"], max_slots=args.local_procs + slots, local_slots=args.local_procs)
    scheduler = controller.Scheduler(rundir, log=reporter.log)
    fatal = []
    proc_holder = {}

    def on_fatal(message):
        if not fatal:
            fatal.append(message)
            proc = proc_holder.get("proc")
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGINT)

    pods = TaskPods(
        cluster, task, share, scheduler, controller.new_token(), args.procs_per_pod,
        os.path.basename(local_shell()), reporter.log, on_fatal,
    )
    proc = None
    try:
        # GNU parallel starts while the pods do: its jobs wait for their slots.
        proc = proc_holder["proc"] = controller.start_parallel(
            [command[0], "-j", str(rundir.jobs_file), *command[1:]], rundir, scheduler, os.environ, local_shell(),
        )
        share.before_run(task, on_fatal)
        pods.start()  # the watch first: it sees the pods from their creation on
        pods.create()
        reporter.progress(f"replicaset.apps/womm-task-{task['id']} created ({args.kube_pods} pods in {cluster.namespace})")
        progress = threading.Thread(target=_record_progress, args=(task, scheduler, pods.stopping), daemon=True)
        progress.start()
        status = controller.serve_parallel(proc, rundir, scheduler)
        if fatal:
            raise WommError(fatal[0] + "; nothing ran")
        share.after_run(task, pods)
        return status
    finally:
        if proc is not None:
            controller.stop_parallel(proc)
        _cleanup(task, pods, rundir, share, reporter)


def _record_progress(task, scheduler, stopping, every=2.0):
    """Keep the task record's count of finished jobs current, for `womm status`."""
    last = None
    while not stopping.wait(every):
        done = scheduler.done
        if done != last:
            last = done
            try:
                with records.update_task(task["id"]) as record:
                    if record:
                        record["done"] = done
            except OSError:
                pass


def _cleanup(task, pods, rundir, share, reporter):
    # Whatever happened, the task's objects go; a second Ctrl-C waits until they have.
    blocked = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
    signal.pthread_sigmask(signal.SIG_BLOCK, blocked)
    try:
        rundir.close()  # releases any job.sh still waiting
        share.close()
        try:
            pods.delete(role="worker" if task["mode"] == "async" else None)
        except Exception as e:  # noqa: BLE001 - keep the record so that finish/reap can retry
            reporter.log(f"could not delete the task's objects ({describe(e)}): run `womm finish {task['id']}`")
            return
        shutil.rmtree(home.run_dir(task["id"]), ignore_errors=True)
        records.remove_task(task["id"])
        reporter.progress(f"replicaset.apps \"womm-task-{task['id']}\" deleted")
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, blocked)


def _require(program):
    if shutil.which(program) is None:
        raise WommError(f"{program} not found on PATH: install GNU {program} (e.g. apt-get install {program})")
