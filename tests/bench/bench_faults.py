#!/usr/bin/env python3
"""How long womm takes to recover from a fault, on the local cluster (not a pass/fail test).

    tests/cluster/up && eval "$(tests/cluster/env)" && python3 tests/bench/bench_faults.py [--api-restart]

Prints:
  - a pod deleted (grace 0) while its job runs: seconds from the delete to the job running again
    in another pod (the job prints when it started; the lost attempt's output is discarded)
  - with --api-restart: the API server killed (-9) mid-run and started again by tests/cluster/up:
    seconds from the API answering again to womm's "attached again", and the run's end (exit 0,
    every job once). Kills the local cluster's API server: run it alone.
Needs: womm on PATH, the local cluster (its tests/cluster/ scripts for --api-restart).
"""

import argparse
import os
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import prepare, sh  # noqa: E402

NAMESPACE = "womm-bench-faults"
# Whether `sleep 8` runs in the container (images need not have ps).
RUNNING_SLEEP = "for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline 2>/dev/null; echo; done | grep -q '^sleep 8'"
TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def start(cmd, env, cwd):
    """The process, and its stderr lines as they come, each with the time it came."""
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                            cwd=cwd, text=True)
    lines = []
    threading.Thread(target=lambda: [lines.append((time.time(), line)) for line in proc.stderr], daemon=True).start()
    return proc, lines


def pods(phase="Running"):
    out = sh(["kubectl", "-n", NAMESPACE, "get", "pods", "-l", "womm.dev/role=worker",
              f"--field-selector=status.phase={phase}", "-o", "name"]).stdout.split()
    return [p.split("/", 1)[1] for p in out]


def wait(what, check, seconds=120):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    sys.exit(f"bench: no {what} within {seconds} s")


def pod_loss(womm, env, work):
    # Job 1 in one pod; a spare pod idle: deleting the first, the job runs again in the spare.
    proc, _ = start(womm + ["--kube-pods", "2", "--", "echo {} $(date +%s.%N); sleep 8", ":::", "1"], env, work)
    wait("job running", lambda: len(pods()) == 2 and os.path.exists(work))
    time.sleep(3)
    victim = next(p for p in pods() if subprocess.run(
        ["kubectl", "-n", NAMESPACE, "exec", p, "-c", "job", "--", "sh", "-c", RUNNING_SLEEP],
        capture_output=True).returncode == 0)
    t = time.time()
    sh(["kubectl", "-n", NAMESPACE, "delete", "pod", victim, "--grace-period=0", "--force", "--wait=false"])
    out, _ = proc.communicate(timeout=120)
    started = float(out.split()[1])
    print(f"a pod deleted while its job ran: the job ran again in another pod {started - t:.2f} s later "
          f"(exit {proc.returncode})")


def api_restart(womm, env, work):
    proc, lines = start(womm + ["--kube-pods", "2", "--procs-per-pod", "2", "--", "sleep 1; echo {}", ":::",
                                *map(str, range(60))], env, work)
    wait("pods", lambda: len(pods()) == 2)
    time.sleep(5)
    state = os.environ.get("WOMM_CLUSTER_STATE", "/var/lib/womm-cluster")
    pid = int(open(os.path.join(state, "pids", "kube-apiserver.pid")).read())
    os.kill(pid, signal.SIGKILL)
    t_kill = time.time()
    time.sleep(3)
    answered = []

    def poll():  # when the API server answers again (tests/cluster/up goes on with its checks)
        while not answered:
            if subprocess.run(["kubectl", "get", "--raw", "/readyz"], capture_output=True).returncode == 0:
                answered.append(time.time())
            time.sleep(0.2)

    threading.Thread(target=poll, daemon=True).start()
    subprocess.run([os.path.join(TOP, "tests", "cluster", "up")], check=True, capture_output=True)
    out, _ = proc.communicate(timeout=600)
    again = [t for t, line in lines if "attached again" in line]
    once = sorted(out.split()) == sorted(map(str, range(60)))
    print(f"API server killed, answering again after {answered[0] - t_kill:.1f} s: womm attached its pods again "
          f"{again[0] - answered[0] if again else float('nan'):.1f} s after that; exit {proc.returncode}, "
          f"every job once: {once}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--api-restart", action="store_true", help="also kill and restart the API server")
    args = ap.parse_args()
    home, work, env = prepare(NAMESPACE)
    womm = ["womm", "parallel", "--kube-cpu", "0.2", "--kube-mem", "64Mi"]
    pod_loss(womm, env, work)
    if args.api_restart:
        api_restart(womm, env, work)
    subprocess.run(["kubectl", "delete", "namespace", NAMESPACE, "--wait=false"], capture_output=True)


if __name__ == "__main__":
    main()
