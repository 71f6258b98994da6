"""`womm parallel`: GNU parallel with the pods of a task as job slots.

The order of a run: the task record, GNU parallel (its jobs wait for slots), the
share's upload, the pods' ReplicaSet (pods join as they become ready), the
share's syncback, then the deletion of everything the task created, whatever
happened. run() is the same for the client and for an --async task's leader:
the task record says everything.
"""

import os
import shutil
import signal
import threading

from womm import records, shares, taskobjects, tasks
from womm.errors import UsageError, WommError, deferred_signals, split_hint
from womm.kube import Cluster
from womm.report import Reporter
from womm_run import controller, jobenv, parallel_options
from womm_run.podlink import Attacher
from womm_run.pods import TaskPods, end_task
from womm_run.slots import RunDir


def local_shell():
    return os.environ.get("PARALLEL_SHELL") or os.environ.get("SHELL") or "/bin/sh"


def main(args):
    if args.citation:
        require("parallel")
        os.execvp("parallel", ["parallel", "--citation"])
    require("parallel")
    ensure_open_files(args.local_procs + args.kube_pods * args.procs_per_pod, args.kube_pods)
    project = records.require_project(os.getcwd())
    cluster = Cluster(args.context or project.get("context"), args.namespace or project.get("namespace"))
    task = new_task(args, project, cluster, "sync")
    return run(task, cluster, Reporter(task["id"]))


def new_task(args, project, cluster, mode, argv=None):
    """The task of a `womm parallel` command line (for this client, or for an --async leader)."""
    return tasks.create(
        "parallel", mode, project, cluster, os.getcwd(), ["parallel", *(argv or args.parallel_argv)],
        pods=args.kube_pods, procs_per_pod=args.procs_per_pod, local_procs=args.local_procs,
        cpu=args.kube_cpu, mem=args.kube_mem, shell=os.path.basename(local_shell()), retries=args.kube_retries,
        pending_timeout=args.kube_pending_timeout,
    )


FDS_PER_SLOT = 5  # GNU parallel holds ~4 files per running job; the controller a pidfd, stdio (4) and a fifo
FDS_BASE = 128


def ensure_open_files(slots, pods):
    """Raise the soft RLIMIT_NOFILE (GNU parallel inherits it) to what `slots` job slots need, up to the
    hard limit; refuse, before anything is made, when even that is too low."""
    import resource

    need = FDS_BASE + FDS_PER_SLOT * slots + 2 * pods
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= need:
        return
    if hard != resource.RLIM_INFINITY and hard < need:
        fit = max(0, (hard - FDS_BASE - 2 * pods) // FDS_PER_SLOT)
        raise UsageError(f"{slots} job slots need {need} open files, and this shell allows {hard} "
                         f"(`ulimit -Hn`): {fit} slots fit; raise the limit (e.g. `ulimit -n {need}`, "
                         "or LimitNOFILE in systemd, nofile in /etc/security/limits.conf)")
    resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))


def run(task, cluster, reporter):
    """Run the task here (the client, or the leader of an --async task); GNU parallel's status."""
    command = task["command"]
    in_cluster = task["mode"] == "async"  # the leader: its client prepared the share, `womm finish` brings it back
    share = shares.for_task(task, cluster, reporter.log)
    rundir = RunDir(task["id"], max_slots=task["local_procs"] + tasks.pod_slots(task), local_slots=task["local_procs"])
    scheduler = controller.Scheduler(rundir, retries=task.get("retries", 3), log=reporter.log)
    fatal = []
    proc_holder = {}

    def on_fatal(message):
        if not fatal:
            fatal.append(message)
            proc = proc_holder.get("proc")
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGINT)

    pods = TaskPods(cluster, task, share, reporter.log, on_fatal)
    pods.jobs_done = lambda: scheduler.done
    parsed = parallel_options.parse(command[1:])
    names = [os.fsencode(n) for n in parsed.env_names_expanded()]
    attacher = Attacher(cluster, task, share, scheduler, pods, jobenv.frame_payload(os.environb, names), reporter.log,
                        functions=jobenv.used_functions(os.environb, [os.fsencode(w) for w in command[1:]]))
    proc = None
    try:
        if not in_cluster:  # a leader's client made the Lease
            taskobjects.create_owner(cluster, task)
            records.save_task(task)
        taskobjects.keep_alive(cluster, task, pods.stopping, reporter.log)
        if not in_cluster:
            share.prepare(task, on_fatal)
        pods.start(attacher.attach)
        pods.create()
        reporter.progress(f"replicaset.apps/womm-task-{task['id']} created ({task['pods']} pods in {cluster.namespace})")
        threading.Thread(target=_record_progress, args=(task, scheduler, pods.stopping), daemon=True).start()
        # GNU parallel starts once it has slots to run jobs in (so that --timeout, --joblog's
        # times and --halt see jobs that run, not jobs waiting for a pod), and is told of more
        # as pods come; of all at once when it divides its work by them (-X, --tee).
        if not task["local_procs"]:
            while not scheduler.some_live.wait(0.5):
                if fatal:
                    raise _ended(fatal[0], 0)
        if parsed.divides_by_slots:
            scheduler.grant_all()
        proc = proc_holder["proc"] = controller.start_parallel(
            [command[0], "-j", str(rundir.jobs_file), *command[1:]], rundir, scheduler, os.environ, local_shell(),
            pass_fds=controller.inherited_fds(),
        )
        rewindable = not (parsed.ungrouped or parsed.line_buffered)
        status = controller.serve_parallel(proc, rundir, scheduler, rewindable=rewindable)
        if not in_cluster and (scheduler.done or not fatal):
            share.bring_back(task)  # what the jobs that ended left, even when the run ends badly
        if fatal:
            raise _ended(fatal[0], scheduler.done)
        return status
    finally:
        with deferred_signals(reporter.log):  # a second Ctrl-C or SIGTERM waits for the cleanup
            if proc is not None:
                controller.stop_parallel(proc)
            attacher.close()
            rundir.close()
            end_task(task, pods, share, reporter)


def _ended(fatal, done):
    """The error a fatal event ends the run with, saying how far it got (`womm doctor`'s hint last)."""
    message, hinted = split_hint(fatal)
    return WommError(message + (f" ({done} jobs had finished)" if done else "; nothing ran"), doctor=hinted)


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


def require(program):
    if shutil.which(program) is None:
        raise WommError(f"{program} not found on PATH: install GNU {program} (e.g. apt-get install {program})",
                        doctor=True)
