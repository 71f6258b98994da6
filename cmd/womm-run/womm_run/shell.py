"""`womm shell`: a shell, or one command, in a pod of this directory's image and share.

Through a real terminal when there is one (window size, Ctrl-C to the remote
job); its exit status is the remote command's. `--local` runs the image on this
machine instead, through womm-setup (the testbed), and offers to save changes.
"""

import os
import shlex
import sys
import threading

from womm import kube, programs, records, shares, taskobjects, tasks
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
    cluster = Cluster.of(project, args)
    task = tasks.create("shell", "sync", project, cluster, cwd, ["shell", *command], pods=1,
                        cpu=args.kube_cpu, mem=args.kube_mem, retries=0, pending_timeout=args.kube_pending_timeout,
                        run_as=args.kube_run_as)
    reporter = Reporter(task.id)
    share = shares.for_task(task, cluster, reporter.log)
    first = FirstPod(share, task)
    pods = TaskPods(cluster, task, share, reporter.log, first.on_fatal)
    try:
        taskobjects.create_owner(cluster, task)
        task.save()
        taskobjects.keep_alive(cluster, task, pods.stopping, reporter.log)
        share.prepare(task, first.on_fatal)
        pods.start(first.on_ready)
        pods.create()
        reporter.progress("waiting for the pod")
        status = run_in_pod(cluster, first.wait(), task.cwd, command)
        share.bring_back(task)
        return status
    finally:
        with deferred_signals(reporter.log):
            end_task(task, pods, share, reporter)


class FirstPod:
    """The shell's pod: the first one ready, or the message that ends the wait for it."""

    def __init__(self, share, task):
        self.share, self.task = share, task
        self.pod = self.fatal = None
        self.decided = threading.Event()

    def on_ready(self, pod):
        if self.pod is not None:
            return  # handed on again by a new list of the pods: the shell has its pod
        self.share.attach_pod(pod, self.task)
        self.pod = pod
        self.decided.set()

    def on_fatal(self, message):
        self.fatal = self.fatal or message
        self.decided.set()

    def wait(self):
        self.decided.wait()
        if self.fatal:
            message, hinted = split_hint(self.fatal)
            raise WommError(message, doctor=hinted)
        return self.pod


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
            item = stream.recv(control=True)  # a pong: back to select(), which also waits for the keyboard
            if item is None:
                return None
            return item[1] if item[0] in (kube.STDOUT, kube.STDERR) else b""

        stream.keepalive()  # pinged while idle: a load balancer would forget a shell left alone
        terminal.relay(stream.send, stream.fileno(), recv, stream.resize, pending=stream.pending)
        status = stream.exit_status()
        stream.close()
    else:
        status = relay_stdio(stream)
    if stream.silent:
        raise WommError(f"the connection to pod {pod} heard nothing for {stream.silent} s, pings unanswered: "
                        "something on the way to the Kubernetes API dropped it")
    return 255 if status is None else status
