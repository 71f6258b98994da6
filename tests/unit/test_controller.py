"""The controller with real GNU parallel, the real agent and runner.sh, in local processes instead of pods."""

import os
import shutil
import subprocess
import sys
import threading
import time
from types import SimpleNamespace

import pytest
from localpods import LocalCluster, LocalPod, LocalPods
from localpods import tree as localpods_tree

from womm import manifests
from womm.kube import ApiError
from womm.shares.base import NoShare
from womm_run import gnuparallel, protocol
from womm_run.localjobs import RunDir
from womm_run.podlink import NOT_YET, AgentDidNotStart, Attacher, not_running_yet
from womm_run.scheduler import PodSlot, Scheduler


class Harness:
    def __init__(self, tmp_path, n_pods=1, procs=2, local=0, retries=3, env_script=b"", task="t1", shell="sh",
                 max_pods=None, runner_sh=None):
        self.tmp = tmp_path
        self.shell, self.runner_sh = shell, runner_sh
        self.rundir = RunDir(task, max_slots=local + (max_pods or n_pods) * procs, local_slots=local)
        self.log = []
        self.sched = Scheduler(self.rundir, retries=retries, log=self.log.append)
        self.cluster = LocalCluster()
        self.pods = LocalPods(self.cluster)
        self.task = SimpleNamespace(id=task, procs_per_pod=procs, cwd=str(tmp_path), helper_image="local")
        self.attacher = Attacher(self.cluster, self.task, NoShare(str(tmp_path), None, None, None), self.sched,
                                 self.pods, env_script, log=self.log.append)
        self.n = 0
        for _ in range(n_pods):
            self.add_pod()

    def add_pod(self):
        name = f"pod{self.n}"
        self.n += 1
        self.cluster.pods[name] = LocalPod(self.tmp / "pods", name, self.tmp, self.shell, runner_sh=self.runner_sh)
        self.attacher.attach(name)
        return name

    def run(self, args, stdin=b"", env=None):
        out_path, err_path = self.tmp / "out", self.tmp / "err"
        argv = ["parallel", "-j", str(self.rundir.jobs_file), *args]
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            status = run_with_io(argv, self.rundir, self.sched, dict(env or os.environ), stdin, out, err)
        return status, out_path.read_bytes(), err_path.read_bytes()

    def close(self):
        self.pods.stopping.set()
        self.attacher.close()
        for pod in self.cluster.pods.values():
            pod.stop()
        self.rundir.close()


def run_with_io(argv, rundir, sched, env, stdin, out, err):
    # GNU parallel inherits our stdio; point it at files for the duration.
    saved = [os.dup(0), os.dup(1), os.dup(2)]
    r, w = os.pipe()
    writer = threading.Thread(target=lambda: (os.write(w, stdin), os.close(w)), daemon=True)
    writer.start()
    try:
        os.dup2(r, 0)
        os.dup2(out.fileno(), 1)
        os.dup2(err.fileno(), 2)
        proc = gnuparallel.start(argv, rundir, sched, env, "/bin/sh")
        try:
            rewindable = not any(a in ("-u", "--ungroup", "--line-buffer") for a in argv)
            return gnuparallel.serve(proc, rundir, sched, rewindable=rewindable)
        finally:
            gnuparallel.stop(proc)
    finally:
        for fd, orig in zip((0, 1, 2), saved, strict=True):
            os.dup2(orig, fd)
            os.close(orig)
        os.close(r)


def local(args, stdin=b""):
    p = subprocess.run(["parallel", *args], input=stdin, capture_output=True)
    return p.returncode, p.stdout, p.stderr


def run_unless_it_hangs(h, args, timeout=30):
    """h.run(args) in a thread: a hang fails the test at `timeout` s rather than stopping the suite."""
    result = []
    runner = threading.Thread(target=lambda: result.append(h.run(args)), daemon=True)
    runner.start()
    runner.join(timeout)
    try:
        assert result, "the run hung"
    finally:
        h.close()
    return result[0]


def run(args, tmp_path, stdin=b"", **kw):
    h = Harness(tmp_path, **kw)
    try:
        return (*h.run(args, stdin), h)
    finally:
        h.close()


def test_same_output_and_status_as_local_parallel(tmp_path):
    args = ["-k", "--tag", "echo {}; echo err {} >&2; exit {}", ":::", "0", "1", "2", "0"]
    status, out, err, _ = run(args, tmp_path)
    assert (status, out, err) == local(args)
    assert status == 2


def test_the_loop_takes_the_gil_back_within_half_a_millisecond_and_gives_the_old_interval_back(tmp_path):
    # The links' threads hand each job's exit to the loop: at Python's 5 ms a slot's next job waited.
    seen = []
    h = Harness(tmp_path)
    submit = h.sched.submit
    h.sched.submit = lambda job: (seen.append(sys.getswitchinterval()), submit(job))
    before = sys.getswitchinterval()
    try:
        status, _, _ = h.run(["true", ":::", "1", "2"])
    finally:
        h.close()
    assert status == 0 and seen and max(seen) <= 0.0005
    assert sys.getswitchinterval() == before


def test_stdin_input_multiline_commands_and_odd_bytes(tmp_path):
    cmd = "printf '%s|' {} 'a\\\\b' \"$PARALLEL_SEQ\"\necho '\\.' ."
    args = ["-k", cmd]
    stdin = b"x y\nz'q\n\xff\n.\n"
    status, out, err, _ = run(args, tmp_path, stdin=stdin)
    assert (status, out, err) == local(args, stdin)


def test_output_without_trailing_newline_and_binary(tmp_path):
    args = ["-k", "printf 'no newline {}'; head -c 300000 /dev/urandom | od -An | head -c 200000; "
                  "printf '\\000\\377\\n'", ":::", "a", "b"]
    status, out, err, _ = run(args, tmp_path)
    lstatus, lout, lerr = local(args)
    assert (status, err) == (lstatus, lerr) == (0, b"")
    assert len(out) == len(lout) and out.count(b"\0\xff\n") == 2


def test_job_stdin_reaches_the_pod_binary_safe_and_whole(tmp_path):
    data = bytes(range(256)) * 40000 + b"tail\n"  # 10 MB: many windows of it
    args = ["--pipe", "--block", "3M", "-k", "wc -c; cksum"]
    status, out, err, _ = run(args, tmp_path, stdin=data)
    assert (status, out, err) == local(args, data)


@pytest.mark.parametrize("args", [
    ["--pipe", "-N", "2", "-k", "wc -l"],
    ["--pipe", "--cat", "-N", "2", "-k", "wc -l < {}"],
    ["--pipe", "--fifo", "-N", "2", "-k", "cat {}"],  # --pipe's wrapper around --fifo's runs here
])
def test_pipe_and_its_wrappers_as_local_parallel(tmp_path, args):
    data = b"".join(b"%d\n" % i for i in range(7))
    status, out, err, _ = run(args, tmp_path, stdin=data)
    assert (status, out, err) == local(args, data)


def test_pipes_wrapper_runs_nothing_without_input(tmp_path):
    """GNU parallel's own wrapper, as a command: with no byte on its stdin it ends with 0, running
    nothing, here as with GNU parallel (seen through, not run by perl)."""
    wrapper = ("perl -e 'if(sysread(STDIN,$buf,1)){open($fh,\"|-\",@ARGV)||die;syswrite($fh,$buf);while($read="
               "sysread(STDIN,$buf,59000)){syswrite($fh,$buf);}close$fh;exit($?&127?128+($?&127):1+$?>>8)}' "
               "sh -c 'echo ran {}; exit 3'")
    args = ["-k", wrapper, ":::", "1", "2"]
    status, out, err, h = run(args, tmp_path)
    assert (status, out, err) == local(args) == (0, b"", b"")
    assert h.sched.done == 0  # not one went to a pod


def test_local_slots_run_locally(tmp_path):
    args = ["-k", "echo {} $PARALLEL_JOBSLOT", ":::", "1", "2", "3"]
    status, out, _, h = run(args, tmp_path, n_pods=0, local=1)
    assert status == 0 and out == b"1 1\n2 1\n3 1\n"
    assert h.sched.done == 0


def _jobs_with_a_counted_setsid(tmp_path, runner_sh):
    """Three jobs printing their pid, process group and session, with a setsid in the run directory
    that counts its uses (podrun.SETSID, the helper image's static busybox)."""
    h = Harness(tmp_path, n_pods=0, max_pods=1, shell="sh", runner_sh=runner_sh)  # a bare name, as the task says it
    run = tmp_path / "pods" / "pod0"
    run.mkdir(parents=True)
    used = tmp_path / "setsid-used"
    # As busybox's: a bare program name runs its own applet of that name (its sh, its wc), not the image's.
    (run / "setsid").write_text(f'#!/bin/sh\necho used >> {used}\n'
                                'case $1 in */*) exec setsid "$@" ;; esac\nexec setsid /bin/false\n')
    (run / "setsid").chmod(0o755)
    try:
        h.add_pod()
        status, out, _ = h.run(["-k", "echo {} $$ $(ps -o pgid=,sid= -p $$)", ":::", "a", "b", "c"])
    finally:
        h.close()
    jobs = [line.split() for line in out.decode().splitlines()]
    assert status == 0 and [job[0] for job in jobs] == ["a", "b", "c"], out
    return used.read_text().count("used"), [job[1:] for job in jobs]


def test_without_bash_the_runner_starts_jobs_through_the_setsid_the_womm_container_put_in_the_run_directory(
        tmp_path):
    """The helper image's static setsid (podrun.SETSID) is preferred to the image's own: a third of a
    job start's CPU."""
    uses, jobs = _jobs_with_a_counted_setsid(tmp_path, "dash")
    assert uses == 4  # the runner's check that it runs, then each job
    assert len({sid for _, _, sid in jobs}) == 3  # each job a session of its own


def test_under_bash_each_job_leads_a_process_group_of_its_own_with_no_setsid_to_exec(tmp_path):
    """As the pod's manifest starts the runner where the image has bash: its job control makes each
    job a process group's leader as it forks it; setsid runs only for the runner's check."""
    uses, jobs = _jobs_with_a_counted_setsid(tmp_path, None)
    assert uses == 1
    assert all(pid == pgid for pid, pgid, _ in jobs) and len({pgid for _, pgid, _ in jobs}) == 3, jobs


@pytest.mark.parametrize("bash", ["none", "broken", "bash"])
def test_the_job_container_runs_the_runner_under_bash_where_the_image_has_a_working_one(tmp_path, bash):
    """manifests.UNDER_BASH, with the runner's arguments; an image whose bash does not run gets its sh."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("sh", "dash"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    if bash == "broken":
        (bin_dir / "bash").write_text("#!/nonexistent/interpreter\n")
        (bin_dir / "bash").chmod(0o755)
    elif bash == "bash":
        (bin_dir / "bash").symlink_to(shutil.which("bash"))
    script = 'echo "${BASH_VERSION:+bash} $0 $*"'
    out = subprocess.run([str(bin_dir / "sh"), "-c", manifests.UNDER_BASH, script, "RUN", "DIR"], capture_output=True,
                         text=True, env={"PATH": str(bin_dir)}).stdout
    assert out.split() == [*(["bash"] if bash == "bash" else []), "womm-runner", "RUN", "DIR"]


def test_the_images_bash_env_is_not_the_runners(tmp_path, monkeypatch):
    """bash reads $BASH_ENV at its start, sh does not: the runner under bash reads none (POSIX mode), so
    what the file exports reaches no sh job, and its `set -e` does not end the slot's loop at a job
    that fails."""
    bash_env = tmp_path / "bash_env"
    bash_env.write_text("set -e\nFROM_BASH_ENV=1; export FROM_BASH_ENV\n")
    monkeypatch.setenv("BASH_ENV", str(bash_env))  # the image's environment, which the runner inherits
    h = Harness(tmp_path, procs=1)
    status, out, _ = run_unless_it_hangs(h, ["-k", 'echo "{} [$FROM_BASH_ENV] $PPID"; exit {}', ":::", "3", "0"])
    lines = [line.split() for line in out.decode().splitlines()]
    assert status == 1 and [line[:2] for line in lines] == [["3", "[]"], ["0", "[]"]], out
    assert lines[0][2] == lines[1][2] and h.sched.rerun == 0  # the same loop ran both: nothing lost


@pytest.mark.parametrize("runner_sh", [None, "dash"])
def test_a_job_that_stops_itself_as_a_terminal_would_goes_on(tmp_path, runner_sh):
    """With setsid the job's group was orphaned and the kernel discarded SIGTSTP, SIGTTIN and SIGTTOU;
    under bash's job control the group is not, and the runner has the job ignore them."""
    args = ["-k", "kill -TSTP $$; kill -TTIN $$; kill -TTOU $$; echo {} went on", ":::", "1", "2"]
    h = Harness(tmp_path, procs=1, runner_sh=runner_sh)
    status, out, _ = run_unless_it_hangs(h, args, timeout=20)
    assert (status, out) == (0, b"1 went on\n2 went on\n")


@pytest.mark.parametrize("runner_sh", [None, "dash"])
def test_env_variables_named_as_the_runners_own_do_not_replace_what_the_job_runs(tmp_path, runner_sh):
    """--env of cmd, shell or setsid (or --env _ with them exported): the job gets them, and still runs
    its own command in the runner's shell."""
    env_script = b"cmd='echo hijacked'; export cmd\nshell=/bin/false; export shell\nsetsid=/bin/false; export setsid\n"
    h = Harness(tmp_path, env_script=protocol.env(env_script, b""), runner_sh=runner_sh)
    status, out, _ = run_unless_it_hangs(h, ["-k", 'echo {} "[$cmd]" "[$shell]"', ":::", "1"], timeout=20)
    assert (status, out) == (0, b"1 [echo hijacked] [/bin/false]\n")


def test_variables_bash_holds_read_only_are_not_sent_and_the_others_are(tmp_path):
    """Assigning them fails under bash, which runs the pods' runner where the image has it: every job
    failed with `UID: readonly variable`."""
    from womm_run import jobenv

    env = {b"UID": b"4242", b"SHELLOPTS": b"errexit", b"PPID": b"1", b"WOMM_T_VAR": b"kept"}
    payload = jobenv.frame_payload(env, [b"UID", b"SHELLOPTS", b"PPID", b"WOMM_T_VAR"])
    h = Harness(tmp_path, env_script=payload)
    status, out, err = run_unless_it_hangs(h, ["-k", 'echo {} "$WOMM_T_VAR"', ":::", "1", "2"], timeout=20)
    assert (status, out, err) == (0, b"1 kept\n2 kept\n", b"")
    assert b"UID" not in jobenv.scripts(env, [b"UID"])[0]


@pytest.mark.parametrize("runner_sh", [None, "dash"])
def test_a_jobs_kill_0_reaches_its_own_process_group_only(tmp_path, runner_sh):
    """A script's `kill 0` (its cleanup, say) signals the job's own group: not its slot's loop, not the
    runner, so no job is lost and the slot goes on."""
    args = ["-k", "if [ {} = 2 ]; then kill -TERM 0; fi; echo {} $PPID", ":::", "1", "2", "3"]
    h = Harness(tmp_path, procs=1, runner_sh=runner_sh)
    status, out, _ = run_unless_it_hangs(h, args, timeout=20)
    lines = [line.split() for line in out.decode().splitlines()]
    assert status == 1 and [line[0] for line in lines] == ["1", "3"], out  # job 2 died of its TERM
    assert lines[0][1] == lines[1][1] and h.sched.rerun == 0  # one loop ran them all, nothing lost


@pytest.mark.parametrize("runner_sh", [None, "dash"])
def test_a_job_stopped_and_continued_is_not_taken_for_ended(tmp_path, runner_sh):
    """bash's `wait` returns when a job it started with job control is stopped: the runner turns it
    off once the job is forked, and the job's status is its end's."""
    args = ["-k", "(sleep 0.3; kill -CONT $$) & kill -STOP $$; echo {} went on; exit 3", ":::", "1", "2"]
    h = Harness(tmp_path, procs=1, runner_sh=runner_sh)
    status, out, _ = run_unless_it_hangs(h, args, timeout=20)
    assert (status, out) == (2, b"1 went on\n2 went on\n")
    assert h.sched.rerun == 0


def test_a_slots_jobs_are_children_of_one_loop(tmp_path):
    """The runner forks once per job: the slot's loop is each job's parent (a wrapper per job was a
    second fork at every job)."""
    status, out, _, _ = run(["-k", "echo $PPID; : {}", ":::", "1", "2", "3", "4"], tmp_path, procs=1)
    parents = out.split()
    assert status == 0 and len(parents) == 4 and len(set(parents)) == 1, out


@pytest.mark.parametrize("runner_sh", ["dash", "bash"])
def test_jobs_ignore_sigint_and_sigquit_whatever_sh_runs_the_runner(tmp_path, runner_sh):
    """As a command started with `&` by a shell without job control: with the loop's subshell and
    exec, bash gave the job back the dispositions it started with, dash kept them ignored."""
    status, out, _, _ = run(["-k", "grep SigIgn /proc/self/status; : {}", ":::", "1"], tmp_path, runner_sh=runner_sh)
    ignored = int(out.split()[1], 16)
    assert status == 0 and ignored & 0b110 == 0b110, out  # bits of SIGINT (2) and SIGQUIT (3)


def test_a_loop_that_dies_between_jobs_is_replaced(tmp_path):
    """A job's leftover process kills the slot's loop ($PPID to the job) while it waits for its next
    job: the agent sees it go and starts another, rather than giving the next job to nobody."""
    marker = tmp_path / "killed"
    first = f"(sleep 0.2; kill -9 $PPID; touch {marker}) >/dev/null 2>&1 &"
    args = ["-k", "--delay", "1", f"if [ {{}} = 1 ]; then {first} fi; echo {{}}", ":::", "1", "2", "3"]
    h = Harness(tmp_path, procs=1)
    status, out, _ = run_unless_it_hangs(h, args)
    assert (status, out) == (0, b"1\n2\n3\n") and marker.exists()
    assert h.sched.rerun == 0  # no job was lost: the loop died between jobs


def test_halt_kills_the_remote_job_and_its_children(tmp_path):
    marker = tmp_path / "still-running"
    # job 2 starts a grandchild that would touch the marker a second later
    args = ["--halt", "now,fail=1",
            f"if [ {{}} = 1 ]; then sleep 0.3; exit 1; else sh -c 'sleep 1; touch {marker}'; fi",
            ":::", "1", "2"]
    status, _, _, _ = run(args, tmp_path)
    assert status == 1
    time.sleep(1.5)
    assert not marker.exists()


@pytest.mark.slow
def test_a_job_that_ignores_term_is_killed_and_its_slot_reused(tmp_path):
    marker = tmp_path / "survived"
    # GNU parallel's --timeout TERMs job 1 at 1 s or a little later, the pod KILLs its tree 1 s after:
    # well before the grandchild would touch the marker.
    args = ["--timeout", "1", "-k",
            f"if [ {{}} = 1 ]; then trap '' TERM; sh -c \"trap '' TERM; sleep 3.5; touch {marker}\" & sleep 4; fi; "
            "echo {}", ":::", "1", "2", "3"]
    t = time.monotonic()
    status, out, _, _ = run(args, tmp_path, procs=1)
    assert status == 1 and out == b"2\n3\n"  # the one slot served jobs 2 and 3 after the kill
    time.sleep(max(0, 4 - (time.monotonic() - t)))
    assert not marker.exists()  # the TERM-ignoring tree was killed


def when_a_job_started(tmp_path, then):
    """Run then() once some job has touched started.N in tmp_path (in a thread)."""
    def wait():
        while not list(tmp_path.glob("started.*")):
            time.sleep(0.02)
        then()

    threading.Thread(target=wait, daemon=True).start()


def test_a_lost_stream_reruns_its_jobs_and_output_appears_once(tmp_path):
    h = Harness(tmp_path, n_pods=2, procs=1)
    try:
        when_a_job_started(tmp_path, lambda: h.cluster.streams[0][1].kill())
        status, out, _ = h.run(["-k", f"echo start {{}}; touch {tmp_path}/started.{{}}; sleep 1; echo end {{}}",
                                ":::", "1", "2", "3"])
        assert status == 0
        assert out == b"".join(b"start %d\nend %d\n" % (i, i) for i in (1, 2, 3))
        assert h.sched.rerun >= 1
        assert any("attached again" in m for m in h.log)  # the pod still runs: its stream came back
    finally:
        h.close()



def test_a_pipe_job_lost_with_a_window_of_its_stdin_in_flight_is_given_it_again_whole(tmp_path):
    """A --pipe block larger than the window, its stream broken while the job holds a window of it
    unread (and unacknowledged): the next attempt gets the block again from its first byte, as it was
    read from GNU parallel's pipe, and the output is local GNU parallel's."""
    data = bytes(range(256)) * 12000 + b"tail\n"  # 3 MB: blocks of three windows
    args = ["--pipe", "--block", "3M", "-k", f"touch {tmp_path}/started.$PARALLEL_SEQ; sleep 0.5; wc -c; cksum"]
    h = Harness(tmp_path, n_pods=2, procs=1)
    try:
        when_a_job_started(tmp_path, lambda: h.cluster.streams[0][1].kill())
        status, out, _ = h.run(args, stdin=data)
        assert h.sched.rerun >= 1
    finally:
        h.close()
    assert (status, out, b"") == local(args, data)

def test_a_restarted_job_container_reruns_its_jobs(tmp_path):
    h = Harness(tmp_path, n_pods=1, procs=2)
    try:
        when_a_job_started(tmp_path, lambda: h.cluster.pods["pod0"].restart_job_container())
        status, out, _ = h.run(["-k", f"touch {tmp_path}/started.{{}}; sleep 1; echo {{}}", ":::", "1", "2", "3", "4"])
        assert status == 0 and out == b"1\n2\n3\n4\n"
        assert h.sched.rerun >= 1
    finally:
        h.close()


def test_a_job_lost_every_time_fails_as_a_job_after_its_retries(tmp_path):
    """A job that takes its job container down with it each time: bounded, and --joblog shows it."""
    joblog = tmp_path / "joblog"
    # It kills the wrapper that runner.sh started it in: to the agent the job vanished, as with its container.
    args = ["--joblog", str(joblog), "if [ {} = bad ]; then kill -9 $PPID; sleep 1; fi; echo {}", ":::", "ok", "bad"]
    status, out, _, h = run(args, tmp_path, n_pods=1, procs=1, retries=2)
    assert status == 1 and out == b"ok\n"
    rows = [r.split("\t") for r in joblog.read_text().splitlines()[1:]]
    assert sorted(r[6] for r in rows) == ["0", "255"]
    assert any("failed: lost 3 times" in m for m in h.log), h.log


def test_a_loop_killed_before_it_says_started_is_a_lost_attempt_not_a_hang(tmp_path):
    """A job may kill its wrapper (the runner's loop for its slot) before the wrapper said "started":
    the agent held the status fifo read-write until then, saw no end, and the slot waited for ever (a
    CI run hung so). Here the runner's env script does it, at every attempt: in the job's process
    before it runs the command, it kills that process's parent."""
    kill_the_loop = b"sh -c 'read -r _ _ _ loop _ < /proc/$PPID/stat; kill -9 $loop'\n"
    h = Harness(tmp_path, env_script=protocol.env(kill_the_loop, b""), retries=2)
    status, out, err = run_unless_it_hangs(h, ["echo", ":::", "a"])
    assert (status, out) == (1, b"")
    assert any("running it again" in m for m in h.log), h.log


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


def test_exported_functions_and_env_variables_reach_the_jobs(tmp_path):
    from womm_run import jobenv

    env = dict(os.environb)
    env[b"BASH_FUNC_myf%%"] = b"() {  echo \"myf $1 $WOMM_T_VAR\"\n}"
    env[b"WOMM_T_VAR"] = b"it's $x \"q\"\nline2"
    payload = jobenv.frame_payload(env, [b"WOMM_T_VAR"])
    h = Harness(tmp_path, env_script=payload, shell="bash")
    try:
        status, out, err = h.run(["-k", "bash -c 'myf {}'", ":::", "a", "b"])
    finally:
        h.close()
    assert (status, err) == (0, b"")
    assert out == b"myf a it's $x \"q\"\nline2\nmyf b it's $x \"q\"\nline2\n"


@pytest.mark.slow
def test_slots_added_within_one_second_all_reach_gnu_parallel(tmp_path):
    """Pods often become ready together; GNU parallel sees -j file changes by whole-second mtimes."""
    h = Harness(tmp_path, n_pods=1, procs=1, max_pods=4)  # room for 4 pods' slots, 1 ready

    def add_three():
        time.sleep(0.7)  # GNU parallel has read the file (1 slot) and started jobs
        for _ in range(3):
            h.add_pod()

    threading.Thread(target=add_three, daemon=True).start()
    try:
        status, out, err = h.run(["sleep 0.2; echo {%}", ":::", *map(str, range(40))])
    finally:
        h.close()
    assert status == 0, err
    assert set(out.decode().split()) == {"1", "2", "3", "4"}


def test_each_jobs_file_version_has_a_later_whole_second(tmp_path, monkeypatch):
    monkeypatch.setenv("WOMM_HOME", str(tmp_path))
    rundir = RunDir("t-mtime", max_slots=4, local_slots=0)
    seen = []
    for n in (1, 2, 3, 4):
        rundir.set_jobs(n)
        seen.append(os.stat(rundir.jobs_file).st_mtime)
    rundir.close()
    assert all(int(b) > int(a) for a, b in zip(seen, seen[1:], strict=False))


def test_the_jobs_file_written_from_several_threads_at_once(tmp_path, monkeypatch):
    """Pods' threads (add_slots) and the main thread (GNU parallel's start) write it together."""
    import threading

    monkeypatch.setenv("WOMM_HOME", str(tmp_path))
    rundir = RunDir("t-race", max_slots=64, local_slots=0)
    errors = []

    def writer(n):
        try:
            for _ in range(200):
                rundir.set_jobs(n)
        except OSError as e:
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(1, 9)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rundir.close()
    assert errors == []


def test_a_replacement_pod_ready_before_its_predecessor_ends_adds_no_slot(tmp_path, monkeypatch):
    """GNU parallel must never hear of more slots than the task has fifos for."""
    monkeypatch.setenv("WOMM_HOME", str(tmp_path))
    rundir = RunDir("t-cap", max_slots=3, local_slots=1)

    class Link:
        pod = "p"

    sched = Scheduler(rundir)
    for _ in range(2):  # 2 pods' slots, then the replacement's while the old ones still stream
        sched.add_slots([PodSlot(Link(), 1)])
    sched.add_slots([PodSlot(Link(), 1), PodSlot(Link(), 2)])
    rundir.close()
    assert sched.granted == 2
    assert rundir.jobs_file.read_text().strip() == "3"


def test_frames_round_trip_in_any_pieces():
    data = b"".join(protocol.encode(k, s, j, p) for k, s, j, p in
                    [(protocol.OUT, 1, 7, b"x" * 70000), (protocol.EXIT, 65535, 2**32 - 1, b"0"), (protocol.PING, 0, 0, b"")])
    d = protocol.Decoder()
    got = []
    for i in range(0, len(data), 13):
        got += d.feed(data[i:i + 13])
    assert [(k, s, j, len(p)) for k, s, j, p in got] == [(protocol.OUT, 1, 7, 70000), (protocol.EXIT, 65535, 2**32 - 1, 1),
                                                           (protocol.PING, 0, 0, 0)]


def test_the_functions_a_command_uses_are_named_for_the_no_bash_warning():
    from womm_run import jobenv

    environ = {b"BASH_FUNC_myf%%": b"() {  echo x\n}", b"BASH_FUNC_which%%": b"() {  :\n}", b"HOME": b"/h"}
    assert jobenv.used_functions(environ, [b"myf {}; echo", b":::", b"a"]) == ["myf"]
    assert jobenv.used_functions(environ, [b"echo", b"{}"]) == []  # a profile's `which` is no news


def test_a_fatal_end_says_how_far_it_got_with_the_doctor_hint_last():
    from womm.errors import with_hint
    from womm_run.parallel import _ended

    e = _ended("pod p cannot start: ErrImagePull: x; run `womm doctor`", 0)
    assert with_hint(None, e) == "pod p cannot start: ErrImagePull: x; nothing ran; run `womm doctor`"
    assert str(_ended("lost the Kubernetes API: refused", 3)) == "lost the Kubernetes API: refused (3 jobs had finished)"


def test_a_job_whose_stdin_has_ended_is_one_message_to_its_pod(tmp_path):
    """JOB and the end of an empty stdin go together: each message costs the API server, the kubelet
    and the runtime on its way (womm_run.podlink). Where the end has not come yet, JOB goes alone."""
    from womm_run.localjobs import Job, Stdin
    from womm_run.podlink import PodLink

    sent = []
    link = PodLink(SimpleNamespace(), "p")
    link.stream = SimpleNamespace(send=lambda data, head=b"": sent.append(head + data))
    ended, open_ = Stdin(-1, str(tmp_path)), Stdin(-1, str(tmp_path))
    ended.eof = True
    for stdin in (ended, open_):
        job = Job(1, 3, 7, b"echo x", -1, -1, -1, {}, stdin)
        job.new_attempt(5, None)
        link.start(2, job)
    first, second = ([(k, s, n, p) for k, s, n, p in protocol.Decoder().feed(data)] for data in sent)
    assert first == [(protocol.JOB, 2, 5, protocol.job(7, 3, b"echo x")), (protocol.IN, 2, 5, b"")]
    assert second == [(protocol.JOB, 2, 5, protocol.job(7, 3, b"echo x"))]


def test_the_agent_writes_what_one_loop_queued_in_one_message(tmp_path):
    from womm_run import podagent

    r, w = os.pipe()
    agent = podagent.Agent(str(tmp_path), 2, stdin=-1, stdout=w)
    os.set_blocking(w, False)
    agent.send(protocol.OUT, 1, 7, b"last words")
    agent.send(protocol.EXIT, 1, 7, b"0")
    os.set_blocking(r, False)
    try:
        early = os.read(r, 1 << 16)
    except BlockingIOError:
        early = b""
    assert early == b"", "nothing written before the loop's flush"
    agent._flush()
    data = os.read(r, 1 << 16)
    assert [(k, s, n, p) for k, s, n, p in protocol.Decoder().feed(data)] == [
        (protocol.OUT, 1, 7, b"last words"), (protocol.EXIT, 1, 7, b"0")]
    os.close(r)
    os.close(w)




def test_a_trickling_stdin_is_kept_gathered_and_given_again_in_whole_chunks(tmp_path):
    """A job's stdin that comes a few bytes at a time (a --tee fifo fed line by line) is not kept read
    by read (a page each), and its replay to a new attempt is not a frame per read."""
    from womm_run.localjobs import Stdin

    r, w = os.pipe()
    stdin = Stdin(r, str(tmp_path))
    line = b"%099d\n" % 7
    for _ in range(5000):
        os.write(w, line)
        assert stdin.read_more()
    os.close(w)
    while not stdin.eof:
        stdin.read_more()
    assert stdin.size == 500_000 and len(stdin._pieces) <= stdin.size // Stdin.SMALL + 1

    def replay(stdin):
        chunks, at = [], 0
        while at < stdin.size:
            chunks.append(bytes(stdin.chunk(at, 256 << 10)))
            at += len(chunks[-1])
        return chunks

    chunks = replay(stdin)
    assert b"".join(chunks) == line * 5000 and len(chunks) <= stdin.size // Stdin.SMALL + 1
    stdin.close()
    # Sent as it comes (a piece of each read), then given again: the small pieces joined.
    r, w = os.pipe()
    stdin = Stdin(r, str(tmp_path))
    for _ in range(5000):
        os.write(w, line)
        stdin.read_more()
        assert bytes(stdin.chunk(stdin.size - len(line), 256 << 10)) == line
    chunks = replay(stdin)
    assert b"".join(chunks) == line * 5000 and len(chunks) == 2
    os.close(w)
    stdin.close()

def _vm_data_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmData:"))


def _all_ended(pids):
    """Whether each process has ended (a zombie its parent has not waited for yet, or gone)."""
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rpartition(")")[2].split()[0] != "Z":
                    return False
        except (OSError, IndexError):  # gone, or going while read
            pass
    return True


def test_the_runner_forgets_the_kills_it_started(tmp_path):
    """A shell keeps each background job it started until `jobs` (or `wait`) reports it: a runner
    that never asked grew by each job its pod ran (dash: 40 bytes, and a longer table scan at each
    fork). Its loops wait for each of their jobs; what it starts itself is a background KILL for each
    `kill`, after the grace (0 here)."""
    pod = LocalPod(tmp_path, "pod0", tmp_path, stderr=subprocess.DEVNULL, grace=0)
    try:
        os.mkfifo(os.path.join(pod.run, "ctl"))
        with open(os.path.join(pod.run, "ctl"), "w") as ctl:
            # In batches, each ended before the next, so that how many run at once (a table the shell
            # keeps however it asks) does not depend on this machine's speed.
            def start(batches, size=100):
                for b in range(batches):
                    # The runner has reached a batch's end when the loop started after it has made
                    # `alive` (a plain file here; and then ends: its `next` is empty).
                    mark = os.path.join(pod.run, "loops", f"mark-{b}")
                    os.makedirs(mark)
                    open(os.path.join(mark, "next"), "w").close()
                    ctl.write("kill 2147483646\n" * size + f"loop mark-{b}\n")
                    ctl.flush()
                    while not os.path.exists(os.path.join(mark, "alive")):
                        time.sleep(0.002)
                    while not _all_ended(localpods_tree(pod.runner.pid)[1:]):
                        time.sleep(0.002)
                    shutil.rmtree(mark)
            start(5)
            before = _vm_data_kb(pod.runner.pid)
            start(200)
            grown = _vm_data_kb(pod.runner.pid) - before
    finally:
        pod.stop()
    assert grown < 100, f"the runner grew by {grown} kB over 20,000 kills"


def test_an_early_attach_waits_for_the_job_container_and_the_ready_pods_attach_then_starts_no_second_agent(tmp_path):
    h = Harness(tmp_path, n_pods=0, max_pods=1)
    try:
        # Refused (no such pod here): quietly, nothing is left of the attempt, and no early try will do better.
        assert h.attacher.attach_early("pod0") is None
        assert h.attacher.links == {} and h.log == []
        # The agent's container runs, the job container's runner not yet: the early agent waits for it.
        pod = h.cluster.pods["pod0"] = LocalPod(tmp_path / "pods", "pod0", tmp_path, started=False)
        threading.Timer(0.5, pod.start_job_container).start()
        assert h.attacher.attach_early("pod0") is True
        assert len(h.cluster.streams) == 1
        h.attacher.attach("pod0")  # the pod said ready: already attached
        assert len(h.cluster.streams) == 1 and h.log == []
        # -k: the pod's slots run the two at once, and either may end first.
        assert h.run(["-k", "echo", ":::", "a", "b"])[:2] == (0, b"a\nb\n")
    finally:
        h.close()


def test_an_early_try_is_tried_again_only_where_the_pods_containers_do_not_run_yet():
    not_found = b'{"kind": "Status", "code": 500, "message": "Internal error occurred: unable to upgrade connection: ' \
                b'container not found (\\"womm\\")"}'
    assert not_running_yet(AgentDidNotStart("no", exit_status=NOT_YET))
    assert not_running_yet(AgentDidNotStart("no", status='{"status": "Failure", "message": "container not found"}'))
    assert not_running_yet(ApiError(500, "Internal Server Error", not_found))
    assert not_running_yet(ApiError(500, "Internal Server Error", b'container not found ("womm")'))  # over SPDY
    assert not_running_yet(ApiError(500, "Internal Server Error", b'container not found\n' + b"x" * 300))  # the body
    created = '{"status": "Failure", "message": "error executing command in container: failed to exec in ' \
              'container: container is in CONTAINER_CREATED state"}'
    assert not_running_yet(AgentDidNotStart("no", status=created))  # created, not started yet
    assert not not_running_yet(AgentDidNotStart("no", exit_status=1))  # another womm's agent: "usage: ..."
    assert not not_running_yet(ApiError(403, "Forbidden", b'{"kind": "Status", "message": "pods is forbidden"}'))
    assert not not_running_yet(ApiError(429, "Too Many Requests"))
    assert not not_running_yet(OSError("no pod"))


def test_a_jobs_stdin_is_given_on_as_it_was_read_not_copied(tmp_path):
    """What the controller sends of a --pipe block is what it read from GNU parallel's pipe (a copy of a
    megabyte per block less), in memory and once spilled to a file alike, and whole in order."""
    from womm_run.localjobs import Stdin

    r, w = os.pipe()
    data = os.urandom(3 * Stdin.CHUNK + 1000)
    threading.Thread(target=lambda: (os.write(w, data), os.close(w)), daemon=True).start()
    stdin = Stdin(r, str(tmp_path))
    while not stdin.eof:
        stdin.read_more()
    first = stdin.chunk(0, 1 << 20)
    assert first is stdin.chunk(0, 1 << 20), "a piece read, not a copy of it"
    assert isinstance(stdin.chunk(10, 100), memoryview) and bytes(stdin.chunk(10, 100)) == data[10:110]

    def whole(stdin):
        out, at = b"", 0
        while at < stdin.size:
            piece = stdin.chunk(at, 100000)
            assert 0 < len(piece) <= 100000
            out, at = out + bytes(piece), at + len(piece)
        return out

    assert whole(stdin) == data
    r, w = os.pipe()
    threading.Thread(target=lambda: (os.write(w, data), os.close(w)), daemon=True).start()
    spilled = Stdin(r, str(tmp_path))
    spilled.SPILL = 2 * Stdin.CHUNK  # past it, what was read so far moves to a file
    while not spilled.eof:
        spilled.read_more()
    assert spilled._file is not None and whole(spilled) == data
    stdin.close(), spilled.close()
