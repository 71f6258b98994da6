#!/usr/bin/env python3
"""Where the time of one `womm parallel` goes, phase by phase (a bench tool, not a test).

    eval "$(tests/cluster/env)"; cd A_SET_UP_DIRECTORY
    seq 2000 | python3 .../tests/bench/timeline.py --kube-pods 4 --procs-per-pod 2 -- true >/dev/null

Runs womm-run's `parallel` in this process with a few of its functions wrapped to note when they
start and end, then prints on stderr the phases of the whole command: womm's start (Python and
its imports), the task's objects (the Lease, the ReplicaSet), the pods' start (from the
ReplicaSet to the first pod's slots, its agent's start included, and how many early tries it
took: womm_run.pods), GNU parallel's run, and the end (the deletions). With --trace, every wrapped
call as it happens; with --no-early, no early tries (each pod's agent once the pod is said to be ready).
A function it wraps that womm no longer has is an error here, not a silent gap.
"""

import functools
import sys
import time

T0 = time.monotonic()
TRACE = "--trace" in sys.argv[1:3]
if TRACE:
    sys.argv.remove("--trace")
NO_EARLY = "--no-early" in sys.argv[1:3]  # the pods' agents only once each pod is said to be ready
if NO_EARLY:
    sys.argv.remove("--no-early")
marks = []  # (seconds since start, what)


def note(what):
    marks.append((time.monotonic() - T0, what))
    if TRACE:
        print(f"timeline {marks[-1][0]:7.3f} {what}", file=sys.stderr)


def wrap(owner, name, describe=lambda *a, **k: ""):
    original = getattr(owner, name)  # AttributeError: womm changed, and so must this

    @functools.wraps(original)
    def noted(*args, **kwargs):
        what = f"{name} {describe(*args, **kwargs)}".rstrip()
        note("> " + what)
        try:
            return original(*args, **kwargs)
        finally:
            note("< " + what)

    setattr(owner, name, noted)


def first(prefix, after=0.0):
    return next((t for t, what in marks if what.startswith(prefix) and t >= after), None)


def last(prefix):
    return max((t for t, what in marks if what.startswith(prefix)), default=None)


def summary(ended):
    def line(what, start, end):
        if start is not None and end is not None:
            print(f"timeline: {what:<44} {start:6.2f} → {end:6.2f} s  ({end - start:5.2f} s)", file=sys.stderr)

    lease, rs = first("> request POST /apis/coordination"), first("< request POST /apis/apps")
    line("womm's start (Python, imports, settings)", 0.0, lease)
    line("the task's objects (Lease ... ReplicaSet)", lease, rs)
    line("the first pod's start, to its first slots", rs, first("< add_slots"))
    tries, pods = sum(w.startswith("> attach_early") for _, w in marks), sum(w == "> add_slots" for _, w in marks)
    print(f"timeline: {tries} early tries for {pods} pods (ReplicaSet → the first: "
          f"{(first('> attach_early') or rs) - rs:.2f} s)", file=sys.stderr)
    line("every pod's slots", rs, last("< add_slots"))
    line("GNU parallel", first("> start"), last("< serve"))
    line("the end (links closed, objects deleted)", last("< serve"), last("< end_task"))
    line("after that, until womm-run returns", last("< end_task"), ended)
    line("whole (from this process's start)", 0.0, ended)


def main():
    note("python started")
    from womm import kube
    from womm_run import gnuparallel, parallel, podlink, pods, scheduler
    from womm_run.cli import main as womm_run

    note("imported")
    if NO_EARLY:
        pods.EARLY_FOR = 0
    wrap(kube.Cluster, "request", lambda self, method, path, *a, **k: f"{method} {path}")
    wrap(kube.Cluster, "exec_stream", lambda self, pod, command, *a, **k: f"{pod} {command[0]}")
    wrap(podlink.Attacher, "attach", lambda self, pod: pod)
    wrap(podlink.Attacher, "attach_early", lambda self, pod: pod)
    wrap(scheduler.Scheduler, "add_slots")
    wrap(gnuparallel, "start")
    wrap(gnuparallel, "serve")
    wrap(parallel, "end_task")
    sys.argv = ["womm-run", "parallel", *sys.argv[1:]]
    try:
        womm_run()
    except SystemExit as e:
        status = e.code
    else:
        status = 0
    summary(time.monotonic() - T0)
    sys.exit(status)


if __name__ == "__main__":
    main()
