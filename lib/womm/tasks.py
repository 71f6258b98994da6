"""A task: one `womm parallel` or `womm shell`, and the one spec its run is made from.

create() makes the record; everything that runs a task (the client, the leader of an
--async task, `womm shell`) reads what to run from it alone, and `womm status`,
`womm finish` and the reaper read it back. Fields:

  id, kind (parallel | shell), mode (sync | async), command, created
  cwd, root                         where the jobs run, and the directory shared (its project's:
                                    cwd or one of its parents, as git finds its repository)
  host, machine, pid, pid_start     the controller: its host's name (for people), its machine
                                    (/etc/machine-id: two hosts may share a name), its pid
                                    and that process's start ("BOOT_ID:TICKS", immune to clock
                                    steps; a reused pid does not hide an orphan)
  namespace, context                where it runs
  image, share, share_id, pull_secret   from the directory's project record
  helper_image                      womm's own image: the pods' agents, the share's helpers
  pods, procs_per_pod, local_procs, cpu, mem   the job slots and the pods' size
  shell, retries, pending_timeout   what runs jobs in the pods (sh if the image lacks it);
                                    how often a job lost with its pod runs again; how long
                                    (seconds) the first pod may take to start
"""

import os
import secrets
import string
import time

from womm import home, records


def new_id():
    return "".join(secrets.choice(string.ascii_lowercase) for _ in range(8))


def machine_id():
    """This machine, as systemd names it (WOMM_MACHINE_ID overrides, for tests)."""
    if os.environ.get("WOMM_MACHINE_ID"):
        return os.environ["WOMM_MACHINE_ID"]
    for path in ("/etc/machine-id", "/var/lib/dbus/machine-id"):
        try:
            with open(path) as f:
                value = f.read().strip()
            if value:
                return value
        except OSError:
            pass
    return "host-" + home.hostname()


def process_start(pid):
    """When process pid started, as "BOOT_ID:TICKS" (clock ticks since boot): a wall-clock step
    changes nothing, a reboot or a reused pid changes it. None if there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot = f.read().strip()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: count fields after its last ')'.
    ticks = stat[stat.rindex(b")") + 2:].split()[19]
    return f"{boot}:{int(ticks)}"


def create(kind, mode, project, cluster, cwd, command, pods, cpu, mem, procs_per_pod=1, local_procs=0,
           shell="sh", retries=3, pending_timeout=None):
    from womm.settings import configured_image

    """Record a new task controlled by this process, run with project's image and share; the record."""
    pid = os.getpid()
    task = {
        "id": new_id(),
        "kind": kind,
        "mode": mode,
        "command": list(command),
        "cwd": os.path.realpath(cwd),
        "root": project.get("path") or os.path.realpath(cwd),
        "created": time.time(),
        "host": home.hostname(),
        "machine": machine_id(),
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
        "pending_timeout": pending_timeout,
    }
    records.save_task(task)
    return task


def pod_slots(task):
    """The job slots the task's pods give GNU parallel."""
    return task["pods"] * task["procs_per_pod"]


def controller_alive(pid, pid_start, machine):
    """True if the controller process of a task of this machine still runs (and is that process);
    None for another machine's task: unknowable from here (its heartbeat says)."""
    if machine != machine_id():
        return None
    try:
        pid = int(pid)
    except (TypeError, ValueError):
        return False
    return pid_start is not None and process_start(pid) == str(pid_start)
