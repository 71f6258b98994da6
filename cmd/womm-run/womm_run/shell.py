"""`womm shell`: a shell, or one command, in a pod of this directory's image and share.

Through a real terminal when there is one (window size, Ctrl-C to the remote
job); its exit status is the remote command's. `--local` runs the image on this
machine instead, through womm-setup (the testbed), and offers to save changes.
"""

import os
import shlex
import sys
import threading

from womm import programs, records, shares, taskobjects, tasks
from womm.errors import WommError, deferred_signals, split_hint
from womm.kube import Cluster, relay_stdio
from womm.report import Reporter
from womm_run.pods import TaskPods, end_task


def main(args):
    command = list(args.command)
    if command[:1] == ["--"]:
        command = command[1:]
    cwd = os.getcwd()
    project = records.require_project(cwd)
    if args.local:
        argv = ["womm-setup", "setup", "--edit-image", "--local-shell"]
        if command:
            argv += ["--run", shlex.join(command)]
        programs.exec_program(programs.require("womm-setup"), argv)
    cluster = Cluster(args.context or project.get("context"), args.namespace or project.get("namespace"))
    task = tasks.create("shell", "sync", project, cluster, cwd, ["shell", *command], pods=1,
                        cpu=args.kube_cpu, mem=args.kube_mem, retries=0, pending_timeout=args.kube_pending_timeout)
    reporter = Reporter(task["id"])
    share = shares.for_task(task, cluster, reporter.log)
    chosen, ready, fatal = [], threading.Event(), []

    def on_ready(pod):
        share.attach_pod(pod, task)
        chosen.append(pod)
        ready.set()

    def on_fatal(message):
        fatal.append(message)
        ready.set()

    pods = TaskPods(cluster, task, share, reporter.log, on_fatal)
    try:
        taskobjects.create_owner(cluster, task)
        records.save_task(task)
        taskobjects.keep_alive(cluster, task, pods.stopping, reporter.log)
        share.prepare(task, on_fatal)
        pods.start(on_ready)
        pods.create()
        reporter.progress("waiting for the pod")
        ready.wait()
        if fatal:
            message, hinted = split_hint(fatal[0])
            raise WommError(message, doctor=hinted)
        status = run_in_pod(cluster, chosen[0], task["cwd"], command)
        share.bring_back(task)
        return status
    finally:
        with deferred_signals(reporter.log):
            end_task(task, pods, share, reporter)


def run_in_pod(cluster, pod, cwd, command):
    """The command (or a login shell) in the job container, with a terminal if we have one."""
    # One word is a command line, for sh (as ssh takes it); several are the command's own words, as given.
    script = 'cd "$1" 2>/dev/null; shift; if [ $# -eq 1 ]; then exec sh -c "$1"; fi; if [ $# -gt 1 ]; then exec "$@"; fi; ' \
             'for s in bash sh; do command -v $s >/dev/null && exec $s -l; done'
    argv = ["sh", "-c", script, "womm-shell", cwd, *command]
    tty = sys.stdin.isatty() and sys.stdout.isatty()
    stream = cluster.exec_stream(pod, argv, container="job", tty=tty)
    if tty:
        from womm import terminal

        def recv():
            item = stream.recv()
            if item is None:
                return None
            return item[1] if item[0] in (1, 2) else b""

        terminal.relay(stream.send, stream.fileno(), recv, stream.resize, pending=stream.pending)
        status = stream.exit_status()
        stream.close()
        return 255 if status is None else status
    return relay_stdio(stream)
