"""GNU parallel's wrappers around a job's command, as the real GNU parallel writes them.

GNU parallel runs each job as `$PARALLEL_SHELL -c COMMAND`; here PARALLEL_SHELL is a script
that writes COMMAND down, so the wrappers checked are the ones this machine's GNU parallel
writes, not copies of them.
"""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from womm_run import wrappers

PARALLEL = shutil.which("parallel")
JOB_SH = Path(wrappers.__file__).with_name("job.sh")

pytestmark = pytest.mark.skipif(not PARALLEL or not shutil.which("bzip2"), reason="needs GNU parallel")


def wrapped(tmp_path, args, stdin=b"", env=None):
    """The commands GNU parallel hands its shell for `parallel ARGS`, each wrapper and what it
    calls the shell with in turn: the recording shell records its command, then runs it (so a
    wrapper calls it again). Outside of this function (no $OUT) it prints its command and $WOMM_T."""
    out = tmp_path / "commands"
    out.mkdir(exist_ok=True)
    # Named as job.sh is in a run directory, so that job.sh knows the wrappers that call it.
    (tmp_path / "run").mkdir(exist_ok=True)
    shell = tmp_path / "run" / "job.sh"
    shell.write_text("""#!/bin/sh
if [ -z "$OUT" ]; then printf "%s|%s" "$2" "$WOMM_T"; exit; fi
printf %s "$2" > "$OUT/$$"
exec /bin/sh -c "$2" > /dev/null
""")
    shell.chmod(0o755)
    for f in out.iterdir():
        f.unlink()
    subprocess.run([PARALLEL, "-j2", *args], input=stdin, cwd=tmp_path, check=True, capture_output=True, timeout=30,
                   env={**os.environ, **(env or {}), "PARALLEL_SHELL": str(shell), "OUT": str(out)})
    return [f.read_bytes() for f in out.iterdir()]


def starting(commands, prefix):
    return [c for c in commands if c.startswith(prefix)]


PIPE_PREFIX = b"perl -e 'if(sysread(STDIN,$buf,1)){"


@pytest.mark.parametrize("inner, command", [(["wc -l"], b"wc -l"), (["--cat", "wc -l < {}"], b"cat > $PARALLEL_TMP;")])
def test_pipe_runs_its_command_in_the_pod_only_with_input(tmp_path, inner, command):
    """--pipe's wrapper copies the job's stdin through perl (here) to the command, run only if there is
    a byte: the command goes to the pod, its stdin job.sh's, marked to wait for that byte."""
    found = [wrappers.unwrap(w) for w in starting(wrapped(tmp_path, ["--pipe", *inner], b"1\n2\n"), PIPE_PREFIX)]
    assert found and all(u.command.startswith(command) and u.only_with_input for u in found)
    assert all(wrappers.unwrap(u.command).command == u.command for u in found)  # nothing left to see through


def test_cat_runs_in_the_pod_and_removes_its_file(tmp_path):
    (command,) = starting(wrapped(tmp_path, ["--pipe", "--cat", "wc -l < {}"], b"1\n2\n"), b"cat > ")
    u = wrappers.unwrap(command)
    assert u.command.startswith(b"cat > $PARALLEL_TMP;wc -l < $PARALLEL_TMP; ")
    assert u.command.endswith(wrappers._AFTER) and u.env == (b"PARALLEL_TMP",)


def test_fifo_is_made_in_the_pod(tmp_path):
    (command,) = starting(wrapped(tmp_path, ["--pipe", "--fifo", "cat {}"], b"1\n"), wrappers.FIFO_PREFIX)
    u = wrappers.unwrap(command)
    assert u.command.startswith(b'mkfifo "$PARALLEL_TMP" || exit 255; (cat $PARALLEL_TMP) & ')
    assert u.env == (b"PARALLEL_TMP",)


def test_tee_reads_the_local_fifo(tmp_path):
    commands = starting(wrapped(tmp_path, ["--pipe", "--tee", "grep", "{}", ":::", "1", "2"], b"1\n2\n"), b"(rm ")
    found = [wrappers.unwrap(c) for c in commands]
    assert sorted(u.command for u in found) == [b"grep 1", b"grep 2"]
    assert all(u.remove and u.stdin_file.startswith(b"/") for u in found)


def test_pipepart_reads_byte_ranges_of_the_file(tmp_path):
    (tmp_path / "my file").write_bytes(b"a\n" * 1000)
    commands = starting(wrapped(tmp_path, ["--pipepart", "-a", "my file", "--block", "1k", "wc", "-l"]), b"<")
    found = [wrappers.unwrap(c) for c in commands]
    assert {u.command for u in found} == {b"wc -l"} and all(u.stdin_file == b"my file" for u in found)
    ranges = sorted(r for u in found for r in u.ranges)
    assert ranges[0][0] == 0 and sum(length for _, length in ranges) == 2000


@pytest.mark.parametrize("value", ["short", "it's \"$x\"\nline two", "x" * 2000])
def test_the_env_wrapper_runs_here_and_calls_the_job_shell_again(tmp_path, value):
    """--env's wrapper (plain perl, or compressed when long or multi-line) is not a job: job.sh runs
    it here, and it calls the job shell again with the user's command."""
    commands = wrapped(tmp_path, ["--env", "WOMM_T", "echo", "{}", ":::", "a"], env={"WOMM_T": value})
    (command,) = starting(commands, b"perl")
    assert wrappers.unwrap(command).command == command  # not one of the controller's
    env = {k: v for k, v in os.environ.items() if k not in ("OUT", "WOMM_T")}
    r = subprocess.run(["sh", str(JOB_SH), "-c", command], capture_output=True, timeout=30,
                       env={**env, "PARALLEL_JOBSLOT": "1", "WOMM_LOCAL_SLOTS": "0",
                            "WOMM_RUN_DIR": str(tmp_path / "run")})
    assert (r.returncode, r.stdout) == (0, b"echo a|" + value.encode()), r.stderr


@pytest.mark.parametrize("options, here", [([], False), (["--env", "WOMM_T"], True), (["--fifo"], True)])
def test_job_sh_hands_pipes_wrapper_over_unless_it_wraps_one_that_runs_here(tmp_path, options, here):
    """--pipe's wrapper goes to the controller, except around --env's wrapper (which must run here)
    or --fifo's (which calls the job shell again): then it runs here, as before."""
    commands = wrapped(tmp_path, ["--pipe", *options, "cat {}" if "--fifo" in options else "wc -l"], b"1\n",
                       env={"WOMM_T": "two\nlines"})
    command = starting(commands, PIPE_PREFIX)[0]
    run = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if k not in ("OUT", "WOMM_T")}
    r = subprocess.run(["sh", str(JOB_SH), "-c", command], input=b"1\n", capture_output=True, timeout=30,
                       env={**env, "PARALLEL_JOBSLOT": "1", "WOMM_LOCAL_SLOTS": "0", "WOMM_RUN_DIR": str(run)})
    if here:  # it ran, and called the (recording) job shell with what it wraps (which reads no input:
        # perl may then die of SIGPIPE writing it, 141)
        assert r.returncode in (0, 141) and r.stdout.startswith(b"perl -e '") and not (run / "submit").exists(), r
    else:  # handed to the controller (none here: no answer comes, 255)
        assert r.returncode == 255 and (run / "submit").exists(), r
