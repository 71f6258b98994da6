"""The controller with real GNU parallel and real agents, in local processes instead of pods."""

import os
import shutil
import subprocess
import threading
import time

import pytest
from localpods import LocalTransport

from womm_run import controller
from womm_run.slots import RunDir

pytestmark = pytest.mark.skipif(shutil.which("parallel") is None, reason="needs GNU parallel")


def start(n_workers, tmp_path, local=0, task="t1"):
    rundir = RunDir(task, max_slots=local + n_workers, local_slots=local)
    sched = controller.Scheduler(rundir)
    token = controller.new_token()
    workers = []
    for i in range(n_workers):
        w = controller.Worker(f"w{i}", LocalTransport(token, tmp_path), token, sched)
        w.start()
        sched.add_worker(w)
        workers.append(w)
    return rundir, sched, workers


def run(args, tmp_path, n_workers=2, local=0, stdin=b"", capture=True):
    rundir, sched, workers = start(n_workers, tmp_path, local)
    out_path, err_path = tmp_path / "out", tmp_path / "err"
    argv = ["parallel", "-j", str(rundir.jobs_file), *args]
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        env = dict(os.environ)
        status = _run_with_io(argv, rundir, sched, env, stdin, out, err)
    for w in workers:
        w.transport.close()
    rundir.close()
    return status, out_path.read_bytes(), err_path.read_bytes(), sched


def _run_with_io(argv, rundir, sched, env, stdin, out, err):
    # run_parallel inherits our stdio; point it at files for the duration.
    saved = [os.dup(0), os.dup(1), os.dup(2)]
    r, w = os.pipe()
    os.write(w, stdin)
    os.close(w)
    try:
        os.dup2(r, 0)
        os.dup2(out.fileno(), 1)
        os.dup2(err.fileno(), 2)
        return run_parallel(argv, rundir, sched, env)
    finally:
        for fd, orig in zip((0, 1, 2), saved, strict=True):
            os.dup2(orig, fd)
            os.close(orig)
        os.close(r)


def run_parallel(argv, rundir, sched, env):
    """GNU parallel, started and served to its end, as womm_run.parallel.run does; its exit status."""
    proc = controller.start_parallel(argv, rundir, sched, env, "/bin/sh")
    try:
        return controller.serve_parallel(proc, rundir, sched)
    finally:
        controller.stop_parallel(proc)


def local(args, stdin=b""):
    p = subprocess.run(["parallel", *args], input=stdin, capture_output=True)
    return p.returncode, p.stdout, p.stderr


def test_same_output_and_status_as_local_parallel(tmp_path):
    args = ["-k", "--tag", "echo {}; echo err {} >&2; exit {}", ":::", "0", "1", "2", "0"]
    status, out, err, _ = run(args, tmp_path)
    assert (status, out, err) == local(args)
    assert status == 2


def test_stdin_input_multiline_commands_and_odd_bytes(tmp_path):
    cmd = "printf '%s|' {} 'a\\\\b' \"$PARALLEL_SEQ\"\necho '\\.' ."
    args = ["-k", cmd]
    stdin = b"x y\nz'q\n\xff\n.\n"
    status, out, err, _ = run(args, tmp_path, stdin=stdin)
    assert (status, out, err) == local(args, stdin)


def test_output_without_trailing_newline_and_binary(tmp_path):
    args = ["-k", "printf 'no newline {}'; head -c 3000 /dev/zero | tr '\\0' '\\n'", ":::", "a", "b"]
    assert run(args, tmp_path)[:3] == local(args)


def test_local_slots_run_locally(tmp_path):
    args = ["-k", "echo {} $PARALLEL_JOBSLOT", ":::", "1", "2", "3"]
    status, out, _, sched = run(args, tmp_path, n_workers=0, local=1)
    assert status == 0 and out == b"1 1\n2 1\n3 1\n"
    assert sched.done == 0


def test_halt_kills_the_remote_job_and_its_children(tmp_path):
    marker = tmp_path / "still-running"
    # job 2 starts a grandchild that would touch the marker after 2 s
    args = ["--halt", "now,fail=1",
            f"if [ {{}} = 1 ]; then sleep 0.5; exit 1; else sh -c 'sleep 2; touch {marker}'; fi",
            ":::", "1", "2"]
    status, _, _, _ = run(args, tmp_path)
    assert status == 1
    time.sleep(2.5)
    assert not marker.exists()


def test_lost_worker_reruns_its_job_and_output_appears_once(tmp_path):
    rundir, sched, workers = start(2, tmp_path)
    victim = workers[0]

    def kill_soon():
        time.sleep(0.6)
        victim.transport.kill()

    threading.Thread(target=kill_soon, daemon=True).start()
    argv = ["parallel", "-j", str(rundir.jobs_file), "-k", "echo start {}; sleep 1; echo end {}", ":::", "1", "2", "3"]
    with open(tmp_path / "o", "wb") as out, open(tmp_path / "e", "wb") as err:
        status = _run_with_io(argv, rundir, sched, dict(os.environ), b"", out, err)
    assert status == 0
    assert (tmp_path / "o").read_bytes() == b"".join(b"start %d\nend %d\n" % (i, i) for i in (1, 2, 3))
    assert sched.rerun >= 1


def test_throughput_against_local_parallel(tmp_path):
    """Not a benchmark (tests/bench is): just that per-job cost is in the same league."""
    n = 300
    t = time.monotonic()
    local(["-j4", "true", ":::", *map(str, range(n))])
    t_local = time.monotonic() - t
    t = time.monotonic()
    status, _, _, sched = run(["true", ":::", *map(str, range(n))], tmp_path, n_workers=4)
    t_womm = time.monotonic() - t
    assert status == 0 and sched.done == n
    print(f"local {n / t_local:.0f} jobs/s, womm with local agents {n / t_womm:.0f} jobs/s")
    assert t_womm < 6 * t_local + 2


def test_results_joblog_and_retries_as_local(tmp_path):
    flaky = tmp_path / "flaky"
    # Fails on its first attempt, succeeds on the second: --retries 2 makes it pass.
    cmd = f"if [ {{}} = b ] && [ ! -e {flaky} ]; then touch {flaky}; exit 1; fi; echo {{}}"
    ours = tmp_path / "ours"
    status, out, _, _ = run(["-k", "--retries", "2", "--results", str(ours), cmd, ":::", "a", "b"], tmp_path)
    flaky.unlink()
    theirs = tmp_path / "theirs"
    local_status, local_out, _ = local(["-k", "--retries", "2", "--results", str(theirs), cmd, ":::", "a", "b"])
    assert (status, out) == (local_status, local_out) == (0, b"")
    assert (ours / "1" / "b" / "stdout").read_bytes() == b"b\n"
    for path in sorted(p.relative_to(theirs) for p in theirs.rglob("*") if p.is_file()):
        assert (ours / path).read_bytes() == (theirs / path).read_bytes(), path


def test_joblog_records_remote_exit_status(tmp_path):
    joblog = tmp_path / "joblog"
    status, _, _, _ = run(["--joblog", str(joblog), "exit {}", ":::", "0", "3"], tmp_path)
    rows = [r.split("\t") for r in joblog.read_text().splitlines()[1:]]
    assert status == 1
    assert sorted((r[-1], r[6]) for r in rows) == [("exit 0", "0"), ("exit 3", "3")]


def test_slots_added_within_one_second_all_reach_gnu_parallel(tmp_path):
    """Pods often become ready together; GNU parallel sees -j file changes by whole-second mtimes."""
    rundir = RunDir("t-slots", max_slots=4, local_slots=0)  # room for 4 pods' slots, 1 ready
    sched = controller.Scheduler(rundir)
    token = controller.new_token()
    workers = []

    def add_worker():
        w = controller.Worker(f"w{len(workers)}", LocalTransport(token, tmp_path), token, sched)
        w.start()
        sched.add_worker(w)
        workers.append(w)

    def add_three():
        time.sleep(0.7)  # GNU parallel has read the file (1 slot) and started jobs
        for _ in range(3):
            add_worker()

    add_worker()

    threading.Thread(target=add_three, daemon=True).start()
    out_path, err_path = tmp_path / "out", tmp_path / "err"
    argv = ["parallel", "-j", str(rundir.jobs_file), "sleep 0.2; echo {%}", ":::", *map(str, range(40))]
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        status = _run_with_io(argv, rundir, sched, dict(os.environ), b"", out, err)
    for w in workers:
        w.transport.close()
    rundir.close()
    assert status == 0, err_path.read_text()
    assert set(out_path.read_text().split()) == {"1", "2", "3", "4"}


def test_each_jobs_file_version_has_a_later_whole_second(tmp_path, monkeypatch):
    monkeypatch.setenv("WOMM_HOME", str(tmp_path))
    rundir = RunDir("t-mtime", max_slots=4, local_slots=0)
    seen = []
    for n in (1, 2, 3, 4):
        rundir.set_jobs(n)
        seen.append(os.stat(rundir.jobs_file).st_mtime)
    rundir.close()
    assert all(int(b) > int(a) for a, b in zip(seen, seen[1:], strict=False))


def test_a_replacement_pod_ready_before_its_predecessor_ends_adds_no_slot(tmp_path, monkeypatch):
    """GNU parallel must never hear of more slots than the task has fifos for."""
    monkeypatch.setenv("WOMM_HOME", str(tmp_path))
    rundir = RunDir("t-cap", max_slots=3, local_slots=1)

    class Idle:
        lost = False
        job = None

    sched = controller.Scheduler(rundir)
    for _ in range(4):  # 2 pods' slots, then the replacement's while the old ones still stream
        sched.add_worker(Idle())
    rundir.close()
    assert sched.slots == 2
    assert rundir.jobs_file.read_text().strip() == "3"
