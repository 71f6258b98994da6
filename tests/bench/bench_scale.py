#!/usr/bin/env python3
"""womm at many job slots, beside local GNU parallel on the same jobs (not a pass/fail test).

    tests/cluster/up && eval "$(tests/cluster/env)" && python3 tests/bench/bench_scale.py

For each layout (pods x slots per pod: 4x2, 8x8, 16x16, 50x20 by default) it runs the same
jobs (`sleep S`, each printing when it started and ended) through local `parallel -jSLOTS`
and through womm, with the open-file limit at 1024 (as on most laptops), and prints a row:

  slots, jobs, local jobs/s, womm jobs/s (whole command, pods' start included), womm jobs/s
  from its first job's start to its last one's end, the ramp (command to all slots busy),
  the fraction of slots busy in steady state (after the ramp, until the last job starts),
  client CPU per job (womm's process tree, GNU parallel included; local: GNU parallel's),
  womm's peak client memory (its Python process), exec streams opened (API server's count),
  and API requests per job.

Then `--check`'s run (50 pods x 20 slots, 3,000 jobs of `sleep 3; echo {}`) says whether
every job's line came once. Needs: womm on PATH, GNU parallel, kubectl, psutil.
"""

import argparse
import os
import resource
import subprocess
import sys
import threading
import time

import psutil

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import api_requests, delta, prepare, sh  # noqa: E402

NAMESPACE = "womm-bench-scale"
LAYOUTS = [(4, 2), (8, 8), (16, 16), (50, 20)]
# Each job prints its input, then when it started and ended (the pods share this machine's clock).
JOB = 'a=$(date +%s.%N); sleep {S}; echo "{{}} $a $(date +%s.%N)"'


def limit_files(n):
    def limit():
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        resource.setrlimit(resource.RLIMIT_NOFILE, (n if hard == resource.RLIM_INFINITY else min(n, hard), hard))
    return limit


def run(cmd, stdin, env, cwd, nofile):
    """(seconds, stdout, CPU seconds of all children so far, peak RSS in MB of the process, its start)."""
    t0, wall0 = time.monotonic(), time.time()
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                            cwd=cwd, text=True, preexec_fn=limit_files(nofile))
    peak = [0]

    def watch():  # the client's own memory, sampled (the dispatcher execs womm-run: same pid)
        p = psutil.Process(proc.pid)
        while proc.returncode is None:
            try:
                peak[0] = max(peak[0], p.memory_info().rss)
            except psutil.Error:
                return
            time.sleep(0.2)

    threading.Thread(target=watch, daemon=True).start()
    out, err = proc.communicate(stdin)
    elapsed = time.monotonic() - t0
    if proc.returncode != 0:
        sys.exit(f"bench: {' '.join(cmd[:4])} failed ({proc.returncode}): {err[-800:]}")
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # cumulative: the caller takes differences
    return elapsed, out, usage.ru_utime + usage.ru_stime, peak[0] / 2**20, wall0


def spans(out):
    rows = [line.split() for line in out.splitlines()]
    return [(float(r[1]), float(r[2])) for r in rows]


def busy_fraction(intervals, slots):
    """Mean running jobs / slots, from when every slot first had a job to when the last job started."""
    starts = sorted(s for s, _ in intervals)
    if len(starts) <= slots:
        return float("nan"), starts[-1]
    lo, hi = starts[slots - 1], starts[-1]
    if hi <= lo:
        return float("nan"), lo
    busy = sum(max(0.0, min(e, hi) - max(s, lo)) for s, e in intervals)
    return busy / (slots * (hi - lo)), lo


def execs(counts):
    return sum(v for (verb, what), v in counts.items() if what == "pods/exec")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layouts", default=",".join(f"{p}x{s}" for p, s in LAYOUTS), help="PODSxSLOTS,...")
    ap.add_argument("--jobs-per-slot", type=int, default=3)
    ap.add_argument("--sleep", default="1", help="seconds each job sleeps")
    ap.add_argument("--kube-cpu", default="0.02", help="CPU per pod (its jobs only sleep; 50 must fit on 2 cores)")
    ap.add_argument("--nofile", type=int, default=1024, help="the soft open-file limit womm starts with")
    ap.add_argument("--check", action="store_true", help="also 50x20, 3,000 jobs of `sleep 3; echo {}`")
    args = ap.parse_args()
    home, work, env = prepare(NAMESPACE)
    womm = ["womm", "parallel", "--kube-cpu", args.kube_cpu, "--kube-mem", "64Mi"]
    sh(womm + ["--kube-pods", "1", "--", "true", ":::", "1"], cwd=work, env=env)  # the image on the node

    print("slots  jobs  local/s  womm/s  womm-steady/s  ramp-s  busy  cpu-ms/job(local womm)  client-MB  execs/pod  "
          "api/job")
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = usage.ru_utime + usage.ru_stime  # what the set-up above used is not the first run's
    for layout in args.layouts.split(","):
        pods, per = map(int, layout.split("x"))
        slots = pods * per
        n = slots * args.jobs_per_slot
        job = JOB.format(S=args.sleep)
        stdin = "".join(f"{i}\n" for i in range(n))
        t_local, _, c, _, _ = run(["parallel", "-j", str(slots), job], stdin, os.environ, work, 1 << 16)
        cpu_local, cpu = c - cpu, c
        before = api_requests()
        t_womm, out, c, mb, wall0 = run(womm + ["--kube-pods", str(pods), "--procs-per-pod", str(per), "--", job],
                                     stdin, env, work, args.nofile)
        cpu_womm, cpu = c - cpu, c
        during = delta(api_requests(), before)
        intervals = spans(out)
        assert len(intervals) == n, (len(intervals), n)
        first, last = min(s for s, _ in intervals), max(e for _, e in intervals)
        busy, all_busy = busy_fraction(intervals, slots)
        ramp = all_busy - wall0
        print(f"{slots:5d} {n:5d} {n / t_local:8.1f} {n / t_womm:7.1f} {n / (last - first):14.1f} {ramp:7.1f} "
              f"{busy:5.0%} {1000 * cpu_local / n:10.1f} {1000 * cpu_womm / n:6.1f} {mb:15.0f} "
              f"{execs(during) / pods:6.1f} {sum(during.values()) / n:8.3f}", flush=True)

    if args.check:
        n, job = 3000, "sleep 3; echo {}"
        _, out, _, mb, _ = run(womm + ["--kube-pods", "50", "--procs-per-pod", "20", "--", job],
                               "".join(f"{i}\n" for i in range(n)), env, work, 1024)
        lines = out.splitlines()
        once = sorted(lines) == sorted(map(str, range(n)))
        print(f"check 50x20, {n} jobs under `ulimit -Sn 1024`: exit 0, every line once: {once}, client {mb:.0f} MB")

    subprocess.run(["kubectl", "delete", "namespace", NAMESPACE, "--wait=false"], capture_output=True)


if __name__ == "__main__":
    main()
