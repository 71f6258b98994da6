#!/usr/bin/env python3
"""Per-job cost of `womm parallel`, measured on the local cluster (not a pass/fail test).

    tests/cluster/up && eval "$(tests/cluster/env)" && python3 tests/bench/bench_parallel.py

Prints one figure per line:
  - jobs/s of plain local GNU parallel with 8 slots (2,000 `true` jobs)
  - jobs/s of a kubectl-exec-per-job baseline: GNU parallel running one
    `kubectl exec` per job over the same 4 pods x 2 slots (the product page's design)
  - jobs/s of womm over 4 pods x 2 slots, for the whole command (pods' start included)
    and from its first job's output to its end
  - the ratios the README quotes
  - API requests per job, from the API server's own metrics (minus the cluster's
    background rate, measured right before over the same time)
  - from the command to the first job's output, against the time a pod of the same
    image takes to start by itself
With --pinned, as a real cluster would see it: the cluster (its components and every pod) on one
core, the client (GNU parallel, job.sh, womm's controller) on the other, and for ROUNDS alternating
rounds of 2,000 `true` jobs over 8 slots, local `parallel -j8` on the client's core against womm:
jobs/s from the first job to the last and for the whole command, and the CPU per job of each side
by process (between 10% and 90% of the jobs), medians at the end. Each round starts once the
previous womm round's pods are gone (their teardown would take the cluster's core from the next
pods' start: a cost of the run before, not of this one). The cluster is unpinned after.
Needs: womm installed (womm on PATH), GNU parallel, kubectl.
"""

import argparse
import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cpu  # noqa: E402
from benchlib import api_requests, delta, prepare, sh  # noqa: E402

NAMESPACE = "womm-bench"


def timed(cmd, input=None, env=None, cwd=None):
    t = time.monotonic()
    proc = subprocess.run(cmd, input=input, env=env, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"bench: {cmd[:3]} failed ({proc.returncode}): {proc.stderr[-500:]}")
    return time.monotonic() - t, proc


def pod_start_time(image):
    """Seconds from creating a pod of `image` (already on the node) to it Running, seen by a watch."""
    import threading

    from kubernetes import client, config, watch

    config.load_kube_config()
    core = client.CoreV1Api()
    name = f"bench-start-{int(time.time())}"
    running = threading.Event()

    def watcher():
        for event in watch.Watch().stream(core.list_namespaced_pod, NAMESPACE, field_selector=f"metadata.name={name}",
                                          timeout_seconds=120):
            if event["object"].status.phase == "Running":
                running.set()
                return

    t = threading.Thread(target=watcher, daemon=True)
    t.start()
    time.sleep(1)  # the watch is established
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
           "spec": {"terminationGracePeriodSeconds": 0, "containers": [{
               "name": "c", "image": image, "command": ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]}]}}
    start = time.monotonic()
    core.create_namespaced_pod(NAMESPACE, pod)
    running.wait(120)
    elapsed = time.monotonic() - start
    core.delete_namespaced_pod(name, NAMESPACE, grace_period_seconds=0)
    return elapsed


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=2000)
    ap.add_argument("--baseline-jobs", type=int, default=200, help="jobs for the (slow) kubectl exec baseline")
    ap.add_argument("--image", default=os.environ.get("WOMM_TEST_BASE_IMAGE"))
    ap.add_argument("--kube-cpu", default=None, help="CPU per pod: 4 pods must fit on the nodes (default 0.4; "
                    "pinned 250m)")
    ap.add_argument("--pinned", action="store_true", help="the cluster on one core, the client on the other")
    ap.add_argument("--rounds", type=int, default=5, help="alternating rounds of --pinned")
    ap.add_argument("--unpin", action="store_true", help="only give the cluster's processes every core again")
    args = ap.parse_args()
    if args.unpin:
        cpu.unpin_cluster()
        return
    args.kube_cpu = args.kube_cpu or ("250m" if args.pinned else "0.4")
    for tool in ("womm", "parallel", "kubectl"):
        if not shutil.which(tool):
            sys.exit(f"bench: {tool} not on PATH")
    if not args.image:
        sys.exit("bench: give --image (or eval tests/cluster/env for WOMM_TEST_BASE_IMAGE)")

    home, work, env = prepare(NAMESPACE, args.image)
    jobs_input = "".join(f"{i}\n" for i in range(args.jobs))
    womm_cmd = ["womm", "parallel", "--kube-pods", "4", "--procs-per-pod", "2", "--kube-cpu", args.kube_cpu,
                "--kube-mem", "128Mi", "--", "true"]

    # Warm up: the image on the node, the pods' first start.
    timed(womm_cmd[:-1] + ["true", ":::", "1"], env=env, cwd=work)
    if args.pinned:
        try:
            pinned(args, womm_cmd, jobs_input, env, work)
        finally:
            cpu.unpin_cluster()
            subprocess.run(["kubectl", "delete", "namespace", NAMESPACE, "--wait=false"], capture_output=True)
            shutil.rmtree(home, ignore_errors=True)
            shutil.rmtree(work, ignore_errors=True)
        return

    # 1. local GNU parallel, 8 slots
    t_local, _ = timed(["parallel", "-j8", "true"], input=jobs_input)
    local_rate = args.jobs / t_local
    print(f"local GNU parallel -j8: {args.jobs} jobs in {t_local:.2f} s = {local_rate:.0f} jobs/s")

    # 2. womm, with the API server's request count around it
    idle_before = api_requests()
    time.sleep(10)
    idle_rate = sum(delta(api_requests(), idle_before).values()) / 10
    before = api_requests()
    t0 = time.monotonic()
    proc = subprocess.Popen(womm_cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env, cwd=work, text=True)
    out, err = proc.communicate(jobs_input)
    t_womm = time.monotonic() - t0
    after = api_requests()
    if proc.returncode != 0:
        sys.exit(f"bench: womm failed: {err[-500:]}")
    during = delta(after, before)
    requests = sum(during.values()) - idle_rate * t_womm
    womm_rate = args.jobs / t_womm

    # 2b. steady state: the same with a joblog, from the first job's end to the last one's
    joblog = os.path.join(work, "joblog")
    timed(womm_cmd[:-2] + ["--joblog", joblog, "--", "true"], input=jobs_input, env=env, cwd=work)
    rows = [r.split("\t") for r in open(joblog).read().splitlines()[1:]]
    ends = sorted(float(r[2]) + float(r[3]) for r in rows)
    steady = (len(ends) - 1) / (ends[-1] - ends[0]) if len(ends) > 1 else float("nan")

    print(f"womm 4 pods x 2 slots: {args.jobs} jobs in {t_womm:.2f} s = {womm_rate:.0f} jobs/s "
          f"(whole command, pods' start included)")
    print(f"womm 4 pods x 2 slots, first to last job: {steady:.0f} jobs/s")

    # 3. the kubectl-exec-per-job baseline, on the pods of a womm task kept alive by a sleeping job
    keeper = subprocess.Popen(womm_cmd[:-1] + ["sleep 600", ":::", *map(str, range(8))], env=env, cwd=work,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pods = []
    deadline = time.monotonic() + 120
    while len(pods) < 4 and time.monotonic() < deadline:
        time.sleep(1)
        out = sh(["kubectl", "-n", NAMESPACE, "get", "pods", "-l", "womm.dev/role=worker",
                  "--field-selector=status.phase=Running", "-o", "name"]).stdout.split()
        pods = [p.split("/", 1)[1] for p in out]
    pods_arg = " ".join(pods)
    baseline_cmd = ["parallel", "-j8", f"p=({pods_arg}); kubectl -n {NAMESPACE} exec ${{p[$(( {{%}} % {len(pods)} ))]}} -c job -- true"]
    t_base, _ = timed(baseline_cmd, input="".join(f"{i}\n" for i in range(args.baseline_jobs)),
                      env=dict(os.environ, SHELL="/bin/bash", PARALLEL_SHELL="/bin/bash"))
    keeper.send_signal(2)
    keeper.wait(60)
    base_rate = args.baseline_jobs / t_base
    print(f"kubectl exec per job, 4 pods x 2 slots: {args.baseline_jobs} jobs in {t_base:.2f} s = {base_rate:.1f} jobs/s")

    print(f"womm / kubectl-exec baseline: {womm_rate / base_rate:.1f}x (first to last job: {steady / base_rate:.1f}x)")
    print(f"womm / local GNU parallel: {womm_rate / local_rate:.0%} (first to last job: {steady / local_rate:.0%})")
    print(f"API requests per job: {requests / args.jobs:.4f} ({requests:.0f} requests beyond the cluster's "
          f"background of {idle_rate:.1f}/s; {sum(during.values()) / args.jobs:.4f} counting everything)")
    top = sorted(during.items(), key=lambda kv: -kv[1])
    print("API requests during the run, by kind: " + ", ".join(f"{v:.0f} {verb} {what}" for (verb, what), v in top))

    # 4. latency to the first output, against a pod's own start
    pod_time = pod_start_time(args.image)
    t = time.monotonic()
    p = subprocess.Popen(["womm", "parallel", "--kube-pods", "1", "--kube-cpu", args.kube_cpu, "--kube-mem", "128Mi",
                          "--", "echo", "first", ":::", "1"], stdout=subprocess.PIPE, env=env, cwd=work, text=True)
    p.stdout.readline()
    first = time.monotonic() - t
    p.wait()
    print(f"pod start by itself (create to Running): {pod_time:.2f} s")
    print(f"womm command to first job output: {first:.2f} s ({first - pod_time:+.2f} s beyond the pod's start)")

    subprocess.run(["kubectl", "delete", "namespace", NAMESPACE, "--wait=false"], capture_output=True)
    shutil.rmtree(home, ignore_errors=True)
    shutil.rmtree(work, ignore_errors=True)


CLIENT_CPUS, CLUSTER_CPUS = {0}, {1}


def median(values):
    values = sorted(values)
    return values[len(values) // 2] if len(values) % 2 else (values[len(values) // 2 - 1] + values[len(values) // 2]) / 2


def pods_gone(namespace, patience=120):
    """Returns once the namespace has no worker pods left (a womm run's end marks them deleted; the
    kubelets then stop them)."""
    t0 = time.monotonic()
    while sh(["kubectl", "-n", namespace, "get", "pods", "-l", "womm.dev/role=worker", "-o", "name"]).stdout.strip():
        if time.monotonic() - t0 > patience:
            sys.exit(f"bench: pods still in {namespace} after {patience} s")
        time.sleep(0.5)


def pinned(args, womm_cmd, jobs_input, env, work):
    moved = cpu.pin_cluster(CLUSTER_CPUS)
    os.sched_setaffinity(0, CLIENT_CPUS)
    print(f"pinned: the cluster's {moved} processes (components and pods; pods started later inherit it) on CPU "
          f"{','.join(map(str, sorted(CLUSTER_CPUS)))}; the client (and this bench) on CPU "
          f"{','.join(map(str, sorted(CLIENT_CPUS)))}. Pods: {args.kube_cpu} CPU each, limits equal to requests; "
          f"their agents' CPU limit: the same, at least 100m")
    stdin_path = os.path.join(work, "jobs.txt")
    with open(stdin_path, "w") as f:
        f.write(jobs_input)
    local_cmd = ["parallel", "-j8", "true"]
    results = {"local": [], "womm": []}
    for r in range(args.rounds):
        order = ("local", "womm") if r % 2 == 0 else ("womm", "local")
        for which in order:
            cmd = local_cmd if which == "local" else womm_cmd
            pods_gone(NAMESPACE)
            whole, rate, window, groups, _ = cpu.measured(cmd, args.jobs, stdin_path, env, work, CLIENT_CPUS)
            results[which].append((whole, rate, window, groups))
            client, cluster = (1000 * sum(s for g, s in groups.items() if g.startswith(side)) / window
                               for side in ("client", "cluster"))
            print(f"round {r + 1} {which:5}: whole {args.jobs / whole:6.1f} jobs/s, first to last {rate:6.1f} jobs/s; "
                  f"CPU per job: client {client:.2f} ms, cluster {cluster:.2f} ms", flush=True)
    local, womm = results["local"], results["womm"]
    print(f"medians of {args.rounds} rounds ({args.jobs} `true` jobs, 8 slots; womm 4 pods x 2 slots):")
    print(f"  first to last job: local {median(r[1] for r in local):.1f} jobs/s, womm {median(r[1] for r in womm):.1f}"
          f" jobs/s: {median(w[1] / lo[1] for w, lo in zip(womm, local, strict=True)):.2f}x local")
    print(f"  whole command: local {median(args.jobs / r[0] for r in local):.1f} jobs/s, womm "
          f"{median(args.jobs / r[0] for r in womm):.1f} jobs/s (pods' start included): "
          f"{median(lo[0] / w[0] for w, lo in zip(womm, local, strict=True)):.2f}x local")

    def per_job(rounds, prefix):
        return median(sum(s for g, s in groups.items() if g.startswith(prefix)) / window * 1000
                      for _, _, window, groups in rounds)

    local_client, womm_client, womm_cluster = per_job(local, "client"), per_job(womm, "client"), per_job(womm, "cluster")
    print(f"  CPU per job: local GNU parallel {local_client:.2f} ms (jobs included); womm's client {womm_client:.2f} ms "
          f"({womm_client / local_client:.2f}x local), womm's cluster {womm_cluster:.2f} ms")
    print("  by process (each line a median of its own, so they need not add up):")
    names = sorted({g for _, _, _, groups in womm for g in groups} | {g for _, _, _, groups in local for g in groups})
    for name in names:
        if name == "other":
            continue
        lo, wo = per_job(local, name), per_job(womm, name)
        if lo >= 0.005 or wo >= 0.005:
            print(f"    {name:70} local {lo:5.2f} ms   womm {wo:5.2f} ms")
    print(f"  outside both (this machine's other processes, the bench's sampling): local {per_job(local, 'other'):.2f}"
          f" ms, womm {per_job(womm, 'other'):.2f} ms")


if __name__ == "__main__":
    main()
