"""A task: one `womm parallel` or `womm shell`, and the one spec its run is made from.

create() makes the Task and its record; everything that runs a task (the client, the leader
of an --async task, `womm shell`) reads what to run from it alone, and `womm status`,
`womm finish` and the reaper read the record back. Each default is defined here, once.
forget() removes what a task keeps on this machine.
"""

import dataclasses
import os
import secrets
import shutil
import string
import time

from womm import home, records

RETRIES = 3  # times a job lost with its pod runs again (--kube-retries)
PENDING_TIMEOUT = 300  # seconds for the first pod to start (clusters that autoscale take minutes)
CPU = "1"  # a pod's CPUs (--kube-cpu), requested and its limit
MEM = "512Mi"  # a pod's memory (--kube-mem), requested and its limit


@dataclasses.dataclass
class Task:
    """A task's spec, as its record keeps it."""

    id: str
    kind: str  # parallel | shell
    mode: str  # sync | async
    command: list
    cwd: str  # where the jobs run
    root: str  # the directory shared: the project's (cwd or a parent, as git finds its repository)
    namespace: str
    image: str
    platform: str | None = None  # "os/arch" the image was built for: its pods go to such nodes (None: any)
    context: str | None = None
    created: float = 0.0
    # the controller: its host's name (for people), its machine (/etc/machine-id: two hosts may
    # share a name), its pid and that process's start ("BOOT_ID:TICKS", immune to clock steps;
    # a reused pid does not hide an orphan)
    host: str = ""
    machine: str = ""
    pid: int = 0
    pid_start: str | None = None
    share: str = "none"  # a kind of womm.shares; share_id names the project's share
    share_id: str | None = None
    pull_secret: str | None = None
    helper_image: str | None = None  # womm's own image: the pods' agents, the share's helpers
    pods: int = 1
    procs_per_pod: int = 1
    local_procs: int = 0
    cpu: str = CPU
    mem: str = MEM
    shell: str = "sh"  # what runs jobs in the pods (sh if the image lacks it)
    retries: int = RETRIES
    pending_timeout: float = PENDING_TIMEOUT
    helper_pull_secret: str | None = None  # what pods pull the helper image with (womm-config's)
    agent_cpu: str | None = None  # womm's containers in each worker pod (womm.manifests' defaults)
    agent_mem: str | None = None
    run_as: str | None = None  # "UID:GID" every container of the worker pods runs as; None: the images' users
    owner: dict | None = None  # the owner reference its objects carry (womm.taskobjects' Lease)
    protocol: int | None = None  # the pod protocol of the womm that made it (womm_run.protocol)

    @property
    def pod_slots(self):
        """The job slots the task's pods give GNU parallel."""
        return self.pods * self.procs_per_pod

    def record(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_record(cls, record):
        """The Task of a record (what is not a field, such as `done`, is left out)."""
        from womm.errors import WommError

        names = {f.name for f in dataclasses.fields(cls)}
        try:
            return cls(**{k: v for k, v in record.items() if k in names})
        except TypeError:
            raise WommError(f"the record of task {record.get('id', '?')} is incomplete") from None

    def save(self):
        records.save_task(self.record())


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


def create(kind, mode, project, cluster, cwd, command, pods, cpu=CPU, mem=MEM, **spec):
    """Record a new task controlled by this process, run with project's image and share; the Task.
    spec: the other fields (procs_per_pod, local_procs, shell, retries, pending_timeout, protocol)."""
    from womm.settings import configured_image, configured_pull_secret, resolve

    pid = os.getpid()
    task = Task(
        id=new_id(), kind=kind, mode=mode, command=list(command), cwd=os.path.realpath(cwd),
        root=project.get("path") or os.path.realpath(cwd), namespace=cluster.namespace, image=project["image"],
        platform=project.get("platform"), context=cluster.context, created=time.time(), host=home.hostname(),
        machine=machine_id(), pid=pid, pid_start=process_start(pid), share=project.get("share", "none"),
        share_id=project.get("share_id"), pull_secret=project.get("pull_secret") or None,
        helper_image=configured_image(cluster), pods=pods,
        cpu=cpu, mem=mem, helper_pull_secret=configured_pull_secret(cluster), agent_cpu=resolve("agent-cpu"),
        agent_mem=resolve("agent-mem"), **{k: v for k, v in spec.items() if v is not None},
    )
    task.save()
    return task


def forget(task_id):
    """Remove what a task keeps on this machine: its run directory and its record."""
    shutil.rmtree(home.run_dir(task_id), ignore_errors=True)
    records.remove_task(task_id)


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
