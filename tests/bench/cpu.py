"""Where the CPU goes, by process, on the local test cluster; and pinning the cluster to its own core.

The cluster's processes are told apart by their cgroup (tests/cluster/up starts each component in
its own, /womm-cluster/NAME; the pods live under /kubepods and node 2's under /womm-node2); the
client's are the descendants of the command the bench started. A process's CPU is its own time plus
that of the children it reaped (/proc/PID/stat's utime, stime, cutime, cstime): a job's short-lived
processes are counted with their long-lived parent (GNU parallel's job.sh with GNU parallel's
children, a pod's jobs with its runner).
"""

import os
import subprocess
import sys
import tempfile
import time

TICK = os.sysconf("SC_CLK_TCK")
CLUSTER_CGROUPS = ("/womm-cluster/", "/kubepods", "/womm-node2")
JOBS = "client: GNU parallel's children (womm: job.sh; local: the jobs)"


def _read(path, mode="r"):
    try:
        with open(path, mode) as f:
            return f.read()
    except OSError:
        return None


def _stat(pid):
    """(comm, ppid, starttime, own seconds, reaped children's seconds) of a process, or None."""
    text = _read(f"/proc/{pid}/stat")
    if text is None:
        return None
    comm = text[text.index("(") + 1:text.rindex(")")]
    fields = text[text.rindex(")") + 2:].split()
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    return comm, int(fields[1]), int(fields[19]), (utime + stime) / TICK, (cutime + cstime) / TICK


def _cgroup(pid):
    text = _read(f"/proc/{pid}/cgroup") or ""
    for line in text.splitlines():
        _, controllers, path = line.split(":", 2)
        if "pids" in controllers.split(",") or controllers == "":
            return path
    return ""


def cluster_pids():
    """The pids of every process of the local cluster: its components and its pods."""
    return [int(p) for p in os.listdir("/proc") if p.isdigit() and _cgroup(p).startswith(CLUSTER_CGROUPS)]


def set_affinity(pids, cpus):
    """Every thread of each process onto cpus (threads come and go: what fails is skipped)."""
    for pid in pids:
        for tid in os.listdir(f"/proc/{pid}/task") if os.path.isdir(f"/proc/{pid}/task") else ():
            try:
                os.sched_setaffinity(int(tid), cpus)
            except OSError:
                pass


def pin_cluster(cpus):
    """The cluster's processes onto cpus; the pods' processes started later inherit it from their
    runtime's. Returns how many processes were moved."""
    pids = cluster_pids()
    set_affinity(pids, cpus)
    return len(pids)


def unpin_cluster():
    set_affinity(cluster_pids(), set(range(os.cpu_count())))


class Sample:
    """Every process's CPU at one moment, keyed by (pid, start time) so that a reused pid is another
    process; with what each one is (its group) as `classify` names it."""

    def __init__(self, client_root):
        self.procs = {}
        stats = {}
        for p in os.listdir("/proc"):
            if p.isdigit():
                st = _stat(p)
                if st is not None:
                    stats[int(p)] = st
        children = {}
        for pid, st in stats.items():
            children.setdefault(st[1], []).append(pid)
        client, todo = set(), [client_root]
        while todo:
            pid = todo.pop()
            if pid in stats and pid not in client:
                client.add(pid)
                todo.extend(children.get(pid, ()))
        for pid, (comm, _, start, own, reaped) in stats.items():
            self.procs[(pid, start)] = (self._group(pid, comm, pid in client), own, reaped)

    @staticmethod
    def _group(pid, comm, in_client):
        if in_client:
            if comm == "parallel" or comm == "perl":
                return "client: GNU parallel"
            if comm == "job.sh":
                return JOBS
            if comm.startswith("python") or comm.startswith("womm"):
                return "client: womm's controller"
            return "client: other"
        cgroup = _cgroup(pid)
        if cgroup.startswith("/womm-cluster/"):
            name = cgroup.split("/")[2].removeprefix("node2-")
            return "cluster: " + {"containerd": "runtime (containerd, shims)", "kube-proxy": "kube-proxy",
                                  "registry-relay": "other"}.get(name, name)
        if cgroup.startswith(CLUSTER_CGROUPS):
            cmdline = (_read(f"/proc/{pid}/cmdline", "rb") or b"").replace(b"\0", b" ")
            # The runner first: its command line is its whole script, whose comments name the agent.
            if b"womm-runner" in cmdline:
                return "cluster: pods' runners and jobs"
            if b"womm_run.podagent" in cmdline:
                return "cluster: pods' agents"
            if b"containerd-shim" in cmdline or comm.startswith("runc"):
                return "cluster: runtime (containerd, shims)"
            return "cluster: other pods"
        return "other"


def spent(before, after):
    """Seconds of CPU by group between two Samples. The children a long-lived process reaped count
    with it; GNU parallel's are split out as job.sh (its only children here)."""
    groups = {}
    for key, (group, own, reaped) in after.procs.items():
        was = before.procs.get(key)
        d_own, d_reaped = (own - was[1], reaped - was[2]) if was else (own, reaped)
        if group == "client: GNU parallel":
            groups[JOBS] = groups.get(JOBS, 0) + d_reaped
            d_reaped = 0
        groups[group] = groups.get(group, 0) + d_own + d_reaped
    return groups


def measured(cmd, jobs, stdin_path, env, work, cpus=None):
    """Run cmd (given a --joblog; on the CPUs cpus when given) with stdin_path on its stdin (None: none);
    returns (whole seconds, first-to-last jobs/s, jobs between the samples, CPU by group between them,
    its stdout)."""
    joblog = os.path.join(work, "joblog")
    if os.path.exists(joblog):
        os.unlink(joblog)
    at = cmd.index("--") if "--" in cmd else len(cmd) - 1  # options before the command
    cmd = cmd[:at] + ["--joblog", joblog] + cmd[at:]
    with open(stdin_path or os.devnull, "rb") as stdin, tempfile.TemporaryFile() as stdout:
        t0 = time.monotonic()
        proc = subprocess.Popen(cmd, stdin=stdin, stdout=stdout, stderr=subprocess.PIPE, env=env, cwd=work,
                                preexec_fn=cpus and (lambda: os.sched_setaffinity(0, cpus)))
        samples, counts = [], []
        done, offset = 0, 0
        for fraction in (0.1, 0.9):
            while done < fraction * jobs and proc.poll() is None:
                time.sleep(0.05)
                if time.monotonic() - t0 > 600:
                    proc.kill()
                    sys.exit(f"bench: {' '.join(cmd[:3])} ran no {fraction:.0%} of its jobs in 600 s")
                try:
                    with open(joblog, "rb") as f:
                        f.seek(offset)
                        more = f.read()
                except FileNotFoundError:
                    continue
                offset += len(more)
                done += more.count(b"\n")
            samples.append(Sample(proc.pid))
            counts.append(done)
        err = proc.stderr.read()
        proc.wait()
        whole = time.monotonic() - t0
        stdout.seek(0)
        out = stdout.read()
    if proc.returncode != 0:
        sys.exit(f"bench: {cmd[:3]} failed ({proc.returncode}): {err[-500:]}")
    rows = [r.split(b"\t") for r in open(joblog, "rb").read().splitlines()[1:]]
    ends = sorted(float(r[2]) + float(r[3]) for r in rows)
    return whole, (len(ends) - 1) / (ends[-1] - ends[0]), counts[1] - counts[0], spent(*samples), out
