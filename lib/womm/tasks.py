"""A task: one `womm parallel` or `womm shell`, and the one spec its run is made from.

create() makes the record; everything that runs a task (the client, the leader of an
--async task, `womm shell`) reads what to run from it alone, and `womm status`,
`womm finish` and the reaper read it back. Fields:

  id, kind (parallel | shell), mode (sync | async), command, cwd, created
  host, pid, pid_start              the controller (a reused pid does not hide an orphan)
  namespace, context                where it runs
  image, share, share_id, pull_secret   from the directory's project record
  helper_image                      womm's own image: the pods' agents, the share's helpers
  pods, procs_per_pod, local_procs, cpu, mem   the job slots and the pods' size
  shell, retries                    what runs jobs in the pods (sh if the image lacks it);
                                    how often a job lost with its pod runs again
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


def create(kind, mode, project, cluster, cwd, command, pods, cpu, mem, procs_per_pod=1, local_procs=0,
           shell="sh", retries=3):
    from womm.settings import configured_image

    """Record a new task controlled by this process, run with project's image and share; the record."""
    pid = os.getpid()
    task = {
        "id": new_id(),
        "kind": kind,
        "mode": mode,
        "command": list(command),
        "cwd": os.path.realpath(cwd),
        "created": time.time(),
        "host": home.hostname(),
        "pid": pid,
        "pid_start": process_start(pid),
        "namespace": cluster.namespace,
        "context": cluster.context,
        "image": project["image"],
        "share": project.get("share", "none"),
        "share_id": project.get("share_id"),
        "pull_secret": project.get("pull_secret") or None,
        "helper_image": configured_image(cluster),
        "pods": pods,
        "procs_per_pod": procs_per_pod,
        "local_procs": local_procs,
        "cpu": cpu,
        "mem": mem,
        "shell": shell,
        "retries": retries,
    }
    records.save_task(task)
    return task


def pod_slots(task):
    """The job slots the task's pods give GNU parallel."""
    return task["pods"] * task["procs_per_pod"]


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
