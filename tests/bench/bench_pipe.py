#!/usr/bin/env python3
"""Job stdin through womm: --pipe and --pipepart throughput beside local GNU parallel (not a test).

    tests/cluster/up && eval "$(tests/cluster/env)" && python3 tests/bench/bench_pipe.py

Makes a file of SIZE MB of text lines, then, in one run, for each of `--pipe` (the file on stdin)
and `--pipepart -a FILE`, runs `wc -l` over blocks of 1 MB through local `parallel -jSLOTS` and
through womm (PODS pods x PROCS slots: the same number of slots; 2 x 1 unless told), and prints
MB/s for both (the whole command; womm's includes its pods' start, also printed alone; and from the
first job's end to the last's, by the joblog, which no start is in), whether the line counts agree, and the
CPU per MB of each process group (tests/bench/cpu.py) between 10% and 90% of the blocks. womm's exec
streams go by SPDY where the API server takes it; --websocket runs womm once more over WebSocket
(WOMM_EXEC_TRANSPORT=websocket) in the same run, for comparison.
Needs: womm on PATH, GNU parallel.
"""

import argparse
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cpu  # noqa: E402
from benchlib import prepare  # noqa: E402

NAMESPACE = "womm-bench-pipe"


def timed(cmd, stdin_path, cwd, env=None):
    with open(stdin_path, "rb") if stdin_path else open(os.devnull, "rb") as f:
        t = time.monotonic()
        p = subprocess.run(cmd, stdin=f, capture_output=True, cwd=cwd, env=env)
    if p.returncode != 0:
        sys.exit(f"bench: {' '.join(cmd[:5])} failed ({p.returncode}): {p.stderr[-500:].decode(errors='replace')}")
    return time.monotonic() - t, sum(int(n) for n in p.stdout.split())


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mb", type=int, default=100)
    ap.add_argument("--pods", type=int, default=2)
    ap.add_argument("--procs-per-pod", type=int, default=1, help="job slots per pod (local: as many in all)")
    ap.add_argument("--kube-cpu", default="0.5")
    ap.add_argument("--websocket", action="store_true", help="also run womm with its exec streams over WebSocket")
    args = ap.parse_args()
    home, work, env = prepare(NAMESPACE)
    big = os.path.join(work, "big.txt")
    line = b"womm bench line, some words to count on the way: 0123456789\n"
    with open(big, "wb") as f:
        f.write(line * (args.size_mb * 2**20 // len(line)))
    mb = os.path.getsize(big) / 2**20
    lines = os.path.getsize(big) // len(line)
    womm = ["womm", "parallel", "--kube-pods", str(args.pods), "--kube-cpu", args.kube_cpu, "--kube-mem", "256Mi",
            "--procs-per-pod", str(args.procs_per_pod)]
    slots = args.pods * args.procs_per_pod
    t_start, _ = timed(womm + ["--", "true", ":::", "1"], None, work, env)  # the pods' start alone
    print(f"{mb:.0f} MB, {lines} lines; {slots} slots; a womm run of one `true` job: {t_start:.2f} s")
    blocks = round(mb)
    for name, opts, stdin in (("--pipe", ["--pipe", "--block", "1M"], big),
                              ("--pipepart", ["--pipepart", "-a", big, "--block", "1M"], None)):
        t_local, rate_local, window_local, cpu_local, out = cpu.measured(
            ["parallel", "-j", str(slots), *opts, "--", "wc", "-l"], blocks, stdin, os.environ, work)
        n_local = sum(int(n) for n in out.split())
        runs = [("womm", env)] + [("womm over WebSocket", dict(env, WOMM_EXEC_TRANSPORT="websocket"))] * args.websocket
        measured = []
        for label, run_env in runs:
            t_womm, rate, window, cpu_womm, out = cpu.measured(womm + [*opts, "--", "wc", "-l"], blocks, stdin, run_env, work)
            n_womm = sum(int(n) for n in out.split())
            print(f"{name}: local {mb / t_local:.0f} MB/s ({t_local:.2f} s), {label} {mb / t_womm:.1f} MB/s "
                  f"({t_womm:.2f} s, {mb / max(0.01, t_womm - t_start):.1f} MB/s without the pods' start); lines "
                  f"{'agree' if n_local == n_womm == lines else f'DIFFER: {n_local} {n_womm} {lines}'}")
            # From the first job's end to the last's (the joblog), blocks of about 1 MB: no start in it.
            print(f"  first job's end to the last's: local {rate_local * mb / blocks:.1f} MB/s, {label} "
                  f"{rate * mb / blocks:.1f} MB/s ({rate / rate_local:.2f}x)")
            measured.append((cpu_womm, window))
        print("  CPU ms per MB (each block about 1 MB), by process: local, " + ", ".join(label for label, _ in runs))
        columns = [(cpu_local, window_local), *measured]
        for group in sorted(set().union(*(c for c, _ in columns))):
            figures = [1000 * c.get(group, 0) / max(1, w) for c, w in columns]
            if max(figures) >= 0.05:
                print(f"    {group:70} " + " ".join(f"{f:7.2f}" for f in figures))
    subprocess.run(["kubectl", "delete", "namespace", NAMESPACE, "--wait=false"], capture_output=True)


if __name__ == "__main__":
    main()
