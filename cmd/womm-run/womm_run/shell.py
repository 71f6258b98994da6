"""`womm shell`: a shell, or one command, in a pod of this directory's image and share.

Through a real terminal when there is one (window size, Ctrl-C to the remote
job); its exit status is the remote command's. `--local` runs the image on this
machine instead, through womm-setup (the testbed), and offers to save changes.
"""

import os
import shlex
import sys
import threading

from womm import records, shares, tasks
from womm.dispatch import find_program
from womm.errors import WommError
from womm.kube import Cluster, relay_stdio
from womm_run import controller
from womm_run.parallel import Reporter, _cleanup
from womm_run.pods import TaskPods
from womm_run.slots import RunDir


def main(args):
    command = list(args.command)
    if command[:1] == ["--"]:
        command = command[1:]
    cwd = os.getcwd()
    project = records.load_project(cwd)
    if project is None:
        raise WommError(f"{cwd} is not set up for womm: run `womm setup` here first")
    if args.local:
        program, _ = find_program("womm-setup")
        if program is None:
            raise WommError("womm-setup not found beside womm nor on PATH: reinstall womm")
        argv = [program, "setup", "--edit-image", "--local-shell"]
        if command:
            argv += ["--run", shlex.join(command)]
        os.execv(program, argv)
    cluster = Cluster(args.context or project.get("context"), args.namespace or project.get("namespace"))
    task = tasks.create(
        "shell", "sync", ["shell", *command], cwd, cluster, image=project["image"],
        share=project.get("share", "none"), pods=1, cpu=args.kube_cpu, mem=args.kube_mem,
        pull_secret=project.get("pull_secret") or None,
    )
    reporter = Reporter(task["id"])
    share = shares.for_project(project, cluster, reporter.log)
    rundir = RunDir(task["id"], max_slots=0, local_slots=0)
    ready = threading.Event()
    fatal = []

    class OnePod(controller.Scheduler):
        """The shell needs a pod, not job slots: note when it is ready."""

        def add_worker(self, worker):
            worker.transport.close()

    def on_fatal(message):
        fatal.append(message)
        ready.set()

    pods = TaskPods(cluster, task, share, OnePod(rundir), controller.new_token(), 1, "sh", reporter.log, on_fatal)
    try:
        share.before_run(task, on_fatal)
        pods.create()
        reporter.progress("waiting for the pod")
        pods.start()
        while not pods.first_ready.wait(0.2):
            if fatal:
                raise WommError(fatal[0])
        pod = sorted(pods.ready_pods)[0]
        status = run_in_pod(cluster, pod, task["cwd"], command)
        share.after_run(task, pods)
        return status
    finally:
        _cleanup(task, pods, rundir, share, reporter)


def run_in_pod(cluster, pod, cwd, command):
    """The command (or a login shell) in the job container, with a terminal if we have one."""
    script = 'cd "$1" 2>/dev/null; shift; if [ $# -gt 0 ]; then exec sh -c "$*"; fi; ' \
             'for s in bash sh; do command -v $s >/dev/null && exec $s -l; done'
    argv = ["sh", "-c", script, "womm-shell", cwd, *command]
    tty = sys.stdin.isatty() and sys.stdout.isatty()
    stream = cluster.exec_stream(pod, argv, container="job", tty=tty)
    if tty:
        from womm import terminal

        sock = stream.ws.sock.sock

        def recv():
            item = stream.recv()
            if item is None:
                return None
            return item[1] if item[0] in (1, 2) else b""

        terminal.relay(stream.send, sock.fileno(), recv, stream.resize, pending=sock.pending)
        status = stream.exit_status()
        stream.close()
        return 255 if status is None else status
    return relay_stdio(stream)

