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
from womm_run import gnuparallel, jobenv, parallel_options, protocol
from womm_run.localjobs import RunDir
from womm_run.podlink import Attacher
from womm_run.pods import TaskPods, end_task
from womm_run.scheduler import Scheduler


def local_shell():
    return os.environ.get("PARALLEL_SHELL") or os.environ.get("SHELL") or "/bin/sh"


def main(args):
    require("parallel")
    if args.citation:
        return gnuparallel.citation()
    ensure_open_files(args.local_procs + args.kube_pods * args.procs_per_pod, args.kube_pods)
    project = records.require_project(os.getcwd())
    cluster = Cluster.of(project, args)
    task = new_task(args, project, cluster, "sync")
    return Run(task, cluster, Reporter(task.id)).run()


def new_task(args, project, cluster, mode, argv=None):
    """The task of a `womm parallel` command line (for this client, or for an --async leader)."""
    return tasks.create(
        "parallel", mode, project, cluster, os.getcwd(), ["parallel", *(argv or args.parallel_argv)],
        pods=args.kube_pods, procs_per_pod=args.procs_per_pod, local_procs=args.local_procs,
        cpu=args.kube_cpu, mem=args.kube_mem, shell=os.path.basename(local_shell()), retries=args.kube_retries,
        pending_timeout=args.kube_pending_timeout, run_as=args.kube_run_as, protocol=protocol.PROTOCOL,
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


class Run:
    """One run of a task here (the client, or the leader of an --async task).

    Its parts: the share, GNU parallel's local side (the run directory, the Scheduler), the
    task's pods and their links. A fatal event (no pod can start, the API is gone) from any
    thread ends it: the first is kept, and GNU parallel is interrupted.
    """

    def __init__(self, task, cluster, reporter):
        self.task, self.cluster, self.reporter = task, cluster, reporter
        self.fatal = None  # the message of the first fatal event
        self.proc = None  # GNU parallel, once started
        self.keep = False  # the task's local record and snapshot stay for `womm finish` (a syncback to try again)
        self.share = shares.for_task(task, cluster, reporter.log)
        self.rundir = RunDir(task.id, max_slots=task.local_procs + task.pod_slots, local_slots=task.local_procs)
        self.scheduler = Scheduler(self.rundir, retries=task.retries, log=reporter.log,
                                   show_commands=task.mode != "async")
        self.pods = TaskPods(cluster, task, self.share, reporter.log, self.on_fatal)
        self.pods.jobs_done = lambda: self.scheduler.done
        self.parsed = parallel_options.parse(task.command[1:])
        names = [os.fsencode(n) for n in self.parsed.env_names_expanded()]
        used = jobenv.used_functions(os.environb, [os.fsencode(w) for w in task.command[1:]])
        self.attacher = Attacher(cluster, task, self.share, self.scheduler, self.pods,
                                 jobenv.frame_payload(os.environb, names), reporter.log, functions=used)

    def on_fatal(self, message):
        if self.fatal is None:
            self.fatal = message
            proc = self.proc
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGINT)

    def run(self):
        """GNU parallel's exit status; WommError if a fatal event ended the run."""
        task = self.task
        in_cluster = task.mode == "async"  # the leader: its client prepared the share, `womm finish` brings it back
        ended_well = False
        try:
            if not in_cluster:  # a leader's client made the Lease
                taskobjects.create_owner(self.cluster, task)
                task.save()
            taskobjects.keep_alive(self.cluster, task, self.pods.stopping, self.reporter.log)
            if not in_cluster:
                self.share.prepare(task, self.on_fatal)
            self.pods.start(self.attacher.attach, None if self.share.needs_ready_pods else self.attacher.attach_early)
            self.pods.create(make=not in_cluster)
            self.reporter.progress(f"replicaset.apps/womm-task-{task.id} created ({task.pods} pods in "
                                   f"{self.cluster.namespace})")
            threading.Thread(target=_record_progress, args=(task, self.scheduler, self.pods.stopping),
                             daemon=True).start()
            status = self._parallel()
            if not in_cluster and (self.scheduler.done or not self.fatal):
                self._bring_back()
            if self.fatal:
                raise _ended(self.fatal, self.scheduler.done)
            ended_well = True
            return status
        finally:
            with deferred_signals(self.reporter.log):  # a second Ctrl-C or SIGTERM waits for the cleanup
                if self.proc is not None:
                    gnuparallel.stop(self.proc)
                self.attacher.close()
                self.rundir.close()
                try:
                    end_task(task, self.pods, self.share, self.reporter, keep=self.keep)
                except WommError as e:
                    if ended_well:
                        raise
                    self.reporter.log(str(e))  # the run's own error stands; this one is said before it

    def _bring_back(self):
        """What the jobs that ended left, even when the run ends badly. If it cannot come back now, the
        results stay on the share server and the task's record and snapshot here: `womm finish ID`
        merges them then, as it does an --async task's."""
        try:
            self.share.bring_back(self.task)
        except WommError:
            if self.share.syncs_back:
                self.keep = True
                with records.update_task(self.task.id) as record:
                    record["syncback_pending"] = True
            raise

    def _parallel(self):
        """Start GNU parallel and serve its jobs until it exits; its status.

        It starts once it has slots to run jobs in (so that --timeout, --joblog's times and --halt
        see jobs that run, not jobs waiting for a pod), and is told of more as pods come; of all
        at once when it divides its work by them (-X, --tee)."""
        command = self.task.command
        if not self.task.local_procs:
            while not self.scheduler.some_live.wait(0.5):
                if self.fatal:
                    raise _ended(self.fatal, 0)
        if self.parsed.divides_by_slots:
            self.scheduler.grant_all()
        self.proc = gnuparallel.start(
            [command[0], "-j", str(self.rundir.jobs_file), *command[1:]], self.rundir, self.scheduler, os.environ,
            local_shell(), pass_fds=gnuparallel.inherited_fds(),
        )
        if self.fatal:  # it came while GNU parallel started: on_fatal did not see it
            self.proc.send_signal(signal.SIGINT)
        rewindable = not (self.parsed.ungrouped or self.parsed.line_buffered)
        return gnuparallel.serve(self.proc, self.rundir, self.scheduler, rewindable=rewindable)


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
                with records.update_task(task.id) as record:
                    if record:
                        record["done"] = done
            except OSError:
                pass


def require(program):
    if shutil.which(program) is None:
        raise WommError(f"{program} not found on PATH: install GNU {program} (e.g. apt-get install {program})",
                        doctor=True)
