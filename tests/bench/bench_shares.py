#!/usr/bin/env python3
"""What the lazy and eager shares cost, measured on the local cluster (not a pass/fail test).

    tests/cluster/up && eval "$(tests/cluster/env)" && python3 tests/bench/bench_shares.py [--quick]

Prints one figure per line:
  - lazy share, a 200 MB file of random bytes read (`cat big.bin | md5sum`) by 1 job in 1 pod, then by
    4 jobs in 4 pods at once: first read's start to last read's end (pods' start left out: each job
    waits, through the share, for the others before reading); then 4 pods / 1 pod (target: <= 1.4).
    Each is run --repeat times (default 3), alternating, and the median taken: on 2 shared cores
    one read varies by half its time from run to run.
  - for each of those runs, the bytes this machine served: wchar of its `womm-fs serve-sftp`
    (/proc/PID/io, sampled while it runs); and the sshfs mounts the pods left on this node.
  - eager-syncback share of 10,000 small files, first run of `true ::: 1`: the whole command, and
    the snapshot and upload (the command's start to the upload's end; rsync's own part).
  - a second run, nothing changed: its upload, what syncback brought back, and how many local
    entries changed (size, mtime, ctime or inode): "syncback of 10,000 unchanged files sends nothing".
rsync's times and figures come from a shim first on womm's PATH: the real rsync, with --stats, logged.
The pods and this machine share one clock (one node). --quick: 4 MB and 200 files, a smoke run.
Needs: womm on PATH, GNU parallel, rsync, kubectl, Docker (`womm build-images`). The namespace
stays (womm deletes its tasks; the share server serves the next run).
"""

import argparse
import hashlib
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time

NAMESPACE = "womm-bench-shares"


def timed(cmd, env, cwd, timeout=600):
    t = time.monotonic()
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.terminate()  # not SIGKILL: womm deletes its task on SIGTERM
        _, err = proc.communicate()
        sys.exit(f"bench: {' '.join(cmd[:4])} still running after {timeout} s: {err[-800:]}")
    if proc.returncode != 0:
        sys.exit(f"bench: {' '.join(cmd[:4])} failed ({proc.returncode}): {err[-800:]}")
    return time.monotonic() - t, out, err


def mb(n):
    return f"{n / 1e6:.1f} MB"


class Served:
    """Bytes written by this machine's SFTP server of `directory`: the lazy share's answers to the cache."""

    def __init__(self, directory):
        self.directory, self.pid, self.wchar = directory.encode(), None, 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()

    def _find(self):
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    argv = f.read().split(b"\0")
            except OSError:
                continue
            if b"serve-sftp" in argv and self.directory in argv and b"--listen" not in argv:
                return pid

    def _sample(self):
        # The server ends with the run: its last sample stands (the jobs outlive their reads by 1 s).
        while not self.stop.wait(0.1):
            self.pid = self.pid or self._find()
            if not self.pid:
                continue
            try:
                with open(f"/proc/{self.pid}/io") as f:
                    self.wchar = int(re.search(r"^wchar: (\d+)", f.read(), re.M).group(1))
            except OSError:
                return  # gone: its pid is not read again (it may be another process's by now)

    def done(self):
        self.stop.set()
        self.thread.join()
        return self.wchar


def lazy_read(n, work, env, args, md5):
    """(seconds from the first read's start to the last read's end, spread of the starts, bytes served)."""
    # A barrier through the share: each job announces itself, then waits (at most ~60 s) for the others.
    # The sleep after the read keeps the server (and its sampling) alive until every read's bytes are counted.
    job = ("touch .go.{}; i=0; until [ $(ls -a | grep -c '^\\.go\\.') -ge " + str(n) + " ] || [ $i -ge 3000 ]; "
           "do sleep 0.02; i=$((i+1)); done; "
           "s=$(date +%s.%N); m=$(cat big.bin | md5sum); echo {} $s $(date +%s.%N) $m; sleep 1")
    served = Served(work)
    _, out, err = timed(["womm", "parallel", "--kube-pods", str(n), "--procs-per-pod", "1", "--kube-cpu", args.kube_cpu,
                         "--kube-mem", "256Mi", "--", job, ":::", *map(str, range(1, n + 1))], env, work)
    wchar = served.done()
    rows = [line.split() for line in out.splitlines()]
    if len(rows) != n or any(len(r) < 4 or r[3] != md5 for r in rows):
        sys.exit(f"bench: the jobs did not all read the file right:\n{out}{err[-500:]}")
    for name in os.listdir(work):
        if name.startswith(".go."):
            os.unlink(os.path.join(work, name))
    starts, ends = [float(r[1]) for r in rows], [float(r[2]) for r in rows]
    return max(ends) - min(starts), max(starts) - min(starts), wchar


SHIM = """#!/bin/sh
# womm's rsync, timed and with its figures (--stats), for bench_shares.py
start=$(date +%s.%N)
out=$(REAL --stats "$@"); rc=$?
printf '%s\\n' "$out"
printf '%s\\n' "=== $start $(date +%s.%N) $rc $*" "$out" >> LOG
exit $rc
"""


def rsync_calls(log):
    """{"upload"|"pull": (start, end, figures)} of the rsyncs logged by the shim (then forgotten)."""
    calls = {}
    with open(log) as f:
        text = f.read()
    os.unlink(log)
    for chunk in re.split(r"^=== ", text, flags=re.M)[1:]:
        head, _, out = chunk.partition("\n")
        start, end, _rc, argv = head.split(" ", 3)
        kind = "upload" if "/base/" in argv else "pull" if "/results/" in argv else None
        figures = {key: int(m.group(1).replace(",", "")) for key, pattern in (
            ("files", r"regular files transferred: ([\d,]+)"), ("data", r"Total transferred file size: ([\d,]+)"),
            ("sent", r"Total bytes sent: ([\d,]+)"), ("received", r"Total bytes received: ([\d,]+)"))
            if (m := re.search(pattern, out))}
        if kind:
            calls[kind] = (float(start), float(end), figures)
    return calls


def tree(directory):
    """Every entry's (size, mtime, ctime, inode), the directory itself included."""
    out = {}
    for root, _, files in os.walk(directory):
        for path in [root, *(os.path.join(root, name) for name in files)]:
            st = os.lstat(path)
            out[os.path.relpath(path, directory)] = (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
    return out


def eager_run(work, env, args, log):
    """(whole command's seconds, its start, the rsync calls, womm's stderr) of one `true ::: 1`."""
    t0 = time.time()
    elapsed, _, err = timed(["womm", "parallel", "--kube-pods", "1", "--kube-cpu", args.kube_cpu,
                           "--kube-mem", "256Mi", "--", "true", ":::", "1"], env, work)
    calls = rsync_calls(log)
    if set(calls) != {"upload", "pull"}:
        sys.exit(f"bench: expected an upload and a syncback pull, saw {sorted(calls)}: {err[-500:]}")
    return elapsed, t0, calls, err


def main():  # noqa: C901 - a bench's steps, read top to bottom
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    ap.add_argument("--size-mb", type=int, help="the lazy share's file (default 200; --quick 4)")
    ap.add_argument("--files", type=int, help="the eager share's files (default 10000; --quick 200)")
    ap.add_argument("--image", default=os.environ.get("WOMM_TEST_BASE_IMAGE"), help="the pods' image")
    ap.add_argument("--helper-image", help="womm's helper image (default: built now by `womm build-images`)")
    ap.add_argument("--kube-cpu", help="CPU per pod: 4 pods must fit on the node (default 0.4; --quick 0.2)")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each lazy read, alternating (median)")
    args = ap.parse_args()
    args.size_mb = args.size_mb or (4 if args.quick else 200)
    args.files = args.files or (200 if args.quick else 10000)
    args.kube_cpu = args.kube_cpu or ("0.2" if args.quick else "0.4")
    registry = os.environ.get("WOMM_TEST_REGISTRY")
    for tool in ("womm", "parallel", "rsync", "kubectl"):
        if not shutil.which(tool):
            sys.exit(f"bench: {tool} not on PATH")
    if not (args.image and registry and os.environ.get("WOMM_TEST_BASE_IMAGE")):
        sys.exit('bench: eval "$(tests/cluster/env)" first (WOMM_TEST_REGISTRY, WOMM_TEST_BASE_IMAGE)')
    prefix = f"{registry}/womm-bench/"

    # A namespace still going away from a previous run cannot be set up again: wait for it to go.
    deadline = time.monotonic() + 180
    while subprocess.run(["kubectl", "get", "namespace", NAMESPACE, "-o", "jsonpath={.status.phase}"],
                         capture_output=True, text=True).stdout == "Terminating" and time.monotonic() < deadline:
        time.sleep(2)
    subprocess.run(["kubectl", "create", "namespace", NAMESPACE], capture_output=True)
    scratch = tempfile.mkdtemp(prefix="womm-bench-shares-")
    home, shims, lazy, eager = (os.path.join(scratch, d) for d in ("home", "bin", "lazy", "eager"))
    for d in (shims, lazy, eager):
        os.mkdir(d)
    log = os.path.join(scratch, "rsync.log")
    with open(os.path.join(shims, "rsync"), "w") as f:
        f.write(SHIM.replace("REAL", shlex.quote(shutil.which("rsync"))).replace("LOG", shlex.quote(log)))
    os.chmod(os.path.join(shims, "rsync"), 0o755)
    # The user's own womm settings stay out: only this run's WOMM_HOME (and the helper image if given).
    env = {k: v for k, v in os.environ.items() if not k.startswith("WOMM_") or k[5:10] in ("TEST_", "DEBUG")}
    env.update(WOMM_HOME=home, PATH=f"{shims}:{os.environ['PATH']}")
    try:
        if args.helper_image:
            env["WOMM_HELPER_IMAGE"] = args.helper_image
        else:
            timed(["womm", "build-images", "--prefix", prefix, "--base-image", os.environ["WOMM_TEST_BASE_IMAGE"]],
                  env, scratch, timeout=1800)
        timed(["womm", "cluster-setup", "--apply", "--namespace", NAMESPACE], env, scratch)
        setup = ["--image", args.image, "--namespace", NAMESPACE, "--prefix", prefix, "--yes"]

        # 1. lazy share: one file read by 1 pod, then by 4 at once
        timed(["womm", "setup", "--share", "lazy", *setup], env, lazy)
        size, digest = args.size_mb * 1_000_000, hashlib.md5()
        with open(os.path.join(lazy, "big.bin"), "wb") as f:
            for _ in range(args.size_mb):
                chunk = os.urandom(1_000_000)
                digest.update(chunk)
                f.write(chunk)
        runs = {1: [], 4: []}
        for _ in range(args.repeat):
            for n in runs:
                runs[n].append(lazy_read(n, lazy, env, args, digest.hexdigest()))
        results = {n: sorted(r)[len(r) // 2] for n, r in runs.items()}  # the run of the median span
        for n, (span, spread, served) in results.items():
            print(f"lazy share, {mb(size)} read by {n} job(s) in {n} pod(s) at once: {span:.2f} s, the median of "
                  f"{', '.join(f'{r[0]:.2f}' for r in runs[n])} (first read's start to last read's end; reads "
                  f"started within {spread:.2f} s)")
            print(f"lazy share, {n} pod(s): this machine served {mb(served)} = {served / size:.2f}x the file")
        print(f"lazy share, 4 pods / 1 pod: {results[4][0] / results[1][0]:.2f}x (target: at most 1.4)")
        time.sleep(10)  # the pods' deletion; a mount left behind keeps its pod (and namespace) from going
        with open("/proc/mounts") as f:
            left = sum(line.startswith(f"womm:{lazy} ") for line in f)
        print(f"lazy share: sshfs mounts the 5 pods left on this machine (the node), 10 s after: {left}")

        # 2 and 3. eager-syncback share of many small files: a first run, then one with nothing changed
        timed(["womm", "setup", "--share", "eager-syncback", *setup], env, eager)
        for i in range(args.files):
            sub = os.path.join(eager, f"d{i // 100:03d}")
            os.makedirs(sub, exist_ok=True)
            with open(os.path.join(sub, f"f{i % 100:02d}"), "w") as f:
                f.write(f"file {i}\n")
        elapsed, t0, calls, _ = eager_run(eager, env, args, log)
        start, end, up = calls["upload"]
        print(f"eager-syncback, {args.files} files, first run of `true`: {elapsed:.2f} s (whole command)")
        print(f"eager share, snapshot and upload of {args.files} files: {end - t0:.2f} s from the command's start "
              f"to the upload's end; rsync itself {end - start:.2f} s ({up.get('files')} files, "
              f"{up.get('sent', 0):,} bytes sent)")

        before = tree(eager)
        elapsed, t0, calls, err = eager_run(eager, env, args, log)
        after = tree(eager)
        start, end, up = calls["upload"]
        pstart, pend, pull = calls["pull"]
        changed = sum(before.get(k) != v for k, v in after.items()) + len(before.keys() - after.keys())
        print(f"eager-syncback, second run, nothing changed: {elapsed:.2f} s (whole command); upload "
              f"{end - start:.2f} s: {up.get('files')} files, {up.get('sent', 0):,} bytes sent")
        print(f"syncback of {args.files} unchanged files: {pull.get('files')} files, {pull.get('data')} bytes of "
              f"file data brought back ({pull.get('received')} bytes received in all, {pend - pstart:.2f} s)")
        print(f"syncback of {args.files} unchanged files: {changed} of {len(before)} local entries changed"
              + ("; womm: nothing changed in the cluster" if "syncback: nothing changed" in err else ""))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
