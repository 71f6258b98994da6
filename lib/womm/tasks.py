"""A task: one `womm parallel` or `womm shell`, its record, and whether its controller lives.

A controller is identified by its pid AND that process's start time, so a
reused pid does not hide an orphan.
"""

import os
import secrets
import string
import time

from womm import home, records


def new_id():
    return "".join(secrets.choice(string.ascii_lowercase) for _ in range(8))


def process_start(pid):
    """The start time of process pid (seconds since the epoch, psutil's create_time), or None."""
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None


def create(kind, mode, command, cwd, cluster, **extra):
    """Record a new task controlled by this process; returns the record."""
    pid = os.getpid()
    task = {
        "id": new_id(),
        "kind": kind,
        "mode": mode,
        "command": list(command),
        "cwd": os.path.realpath(cwd),
        "host": home.hostname(),
        "pid": pid,
        "pid_start": process_start(pid),
        "namespace": cluster.namespace,
        "context": cluster.context,
        "created": time.time(),
        **extra,
    }
    records.save_task(task)
    return task


def controller_alive(pid, pid_start, host):
    """True if the controller process of a task on this host still runs (and is that process)."""
    if host != home.hostname():
        return None  # unknowable from here
    try:
        pid = int(pid)
        pid_start = float(pid_start)
    except (TypeError, ValueError):
        return False
    start = process_start(pid)
    return start is not None and abs(start - pid_start) < 1.0
