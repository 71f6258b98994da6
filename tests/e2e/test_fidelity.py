"""GNU parallel, all of it: each scenario through womm and through local GNU parallel, on the same
input, with as many job slots; output bytes and exit status compared. Where womm must differ,
the scenario says why (and compares what must not differ)."""

from __future__ import annotations

import os
import subprocess

import pytest

pytestmark = pytest.mark.e2e

SLOTS = 2  # one pod of two slots; local GNU parallel gets -j2: -X and -m pack by the number of slots

FILE_100K = "".join(f"line {i}\n" for i in range(20000))

SCENARIOS = {  # name: (GNU parallel's arguments, stdin)
    "keep-order": (["-k", "echo", "{}", ":::", "a", "b", "c"], None),
    "tag": (["-k", "--tag", "echo", ":::", "a", "b"], None),
    "tagstring": (["-k", "--tagstring", "<{}>", "echo", "x{}", ":::", "1", "2"], None),
    "max-args": (["-k", "-n", "2", "echo", ":::", "1", "2", "3", "4", "5"], None),
    "numbered-args": (["-k", "-N", "2", "echo", "{1}-{2}", ":::", "1", "2", "3", "4"], None),
    "xargs": (["-k", "-X", "echo", "x{}y", ":::", "a", "b", "c", "d"], None),  # spread over every slot
    "multiple-args": (["-k", "-m", "echo", ":::", "a", "b", "c", "d", "e"], None),
    "colsep": (["-k", "--colsep", ",", "echo", "{2}{1}"], "a,b\nc,d\n"),
    "header": (["-k", "--header", ":", "echo", "{x}", ":::", "x", "1", "2"], None),
    "replacement-strings": (["-k", "echo", "{.} {/} {//} {/.} {#} {%} {1} {= s/a/b/ =}", ":::", "/x/y/a.txt"], None),
    "combinations": (["-k", "echo", ":::", "a", "b", ":::", "1", "2"], None),
    "linked-inputs": (["-k", "echo", "{1}{2}", ":::", "a", "b", ":::+", "1", "2"], None),
    "quoting": (["-k", "echo", ":::", "a b", "c'd", "$HOME", "x;y", "q\"r", "*"], None),
    # The first job fails while the second runs (killed at once), the third never starts.
    "halt-now": (["--halt", "now,fail=1", "case {} in f) sleep 0.5; exit 1;; esac; sleep {}", ":::", "f", "5", "0"],
                 None),
    # The first job fails after both slots have their job, the second is let finish, the third
    # never starts (a first job failing at once may end before GNU parallel starts the second).
    "halt-soon": (["-k", "--halt", "soon,fail=1", "case {} in f) sleep 0.5; exit 1;; esac; sleep {}; echo {}", ":::",
                   "f", "2", "0"], None),
    "retries": (["-k", "--retries", "3", "echo try {}; exit 1", ":::", "x"], None),
    "timeout": (["-k", "--timeout", "2", "sleep {}; echo {}", ":::", "0.1", "4"], None),
    "big-and-binary-output": (["-k", "head -c 3000000 /dev/zero | tr '\\0' {}; printf '\\000\\377\\n'", ":::", "x",
                               "y"], None),
    "line-buffer": (["-k", "--line-buffer", "echo {}; sleep 0.2; echo {}", ":::", "a", "b"], None),
    "exit-status": (["-k", "echo {}; exit {}", ":::", "0", "1", "2"], None),  # -k: jobs at once end in any order
    "pipe": (["-k", "--pipe", "--block", "100k", "wc", "-l"], FILE_100K),
    "spreadstdin": (["-k", "--spreadstdin", "-N", "3", "cat"], "1\n2\n3\n4\n5\n6\n7\n"),
    "pipe-cat": (["-k", "--pipe", "--cat", "-N", "2", "wc -l < {}"], "1\n2\n3\n4\n"),
    "pipe-fifo": (["-k", "--pipe", "--fifo", "-N", "2", "cat {}"], "1\n2\n3\n4\n"),
    "pipe-tee": (["-k", "--pipe", "--tee", "grep", "{}", ":::", "1", "2"], "1\n2\n11\n21\n"),
    "commands-from-input": (["-k"], "echo a\necho b\nexit 3\n"),
}


def run_both(womm, d, args, stdin, env=None):
    """Both runs, their output as bytes (outputs may be binary)."""
    data = (stdin or "").encode()
    ours = womm("parallel", "--kube-pods", "1", "--procs-per-pod", str(SLOTS), "--kube-cpu", "0.5", *args,
                cwd=d, input=data, check=False, env=env)
    theirs = subprocess.run(["parallel", "-j", str(SLOTS), *args], cwd=d, input=data,
                            capture_output=True, env={**os.environ, **(env or {})})
    return ours, theirs


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_as_gnu_parallel(womm, tmp_path, name):
    d = womm.setup_dir(tmp_path / "proj", "none")
    args, stdin = SCENARIOS[name]
    ours, theirs = run_both(womm, d, args, stdin)
    assert ours.returncode == theirs.returncode, ours.stderr.decode(errors="replace")
    assert ours.stdout == theirs.stdout
    # GNU parallel's own warnings (a timeout, a halt) come from GNU parallel, here and there alike.
    assert ours.stderr == theirs.stderr


def test_pipepart_on_a_file_as_gnu_parallel(womm, tmp_path):
    d = womm.setup_dir(tmp_path / "proj", "none")
    (d / "big.txt").write_text(FILE_100K * 5)
    ours, theirs = run_both(womm, d, ["-k", "--pipepart", "-a", "big.txt", "--block", "200k", "wc", "-lc"], None)
    assert (ours.returncode, ours.stdout) == (theirs.returncode, theirs.stdout) == (0, theirs.stdout)


def test_joblog_results_and_resume_as_gnu_parallel(womm, tmp_path):
    d = womm.setup_dir(tmp_path / "proj", "none")
    rows = {}
    for who in ("ours", "theirs"):
        log, res = tmp_path / f"{who}.log", tmp_path / f"{who}-results"
        args = ["-k", "--joblog", str(log), "--results", str(res), "echo {}; exit {}", ":::", "0", "1"]
        first = run_both(womm, d, args, None)[0 if who == "ours" else 1]
        again = run_both(womm, d, ["--resume", *args], None)[0 if who == "ours" else 1]
        assert (first.returncode, again.returncode, again.stdout) == (1, 0, b"")
        # Start times and run times differ from run to run; the rest is the same.
        rows[who] = [(r[0], r[1], r[6], r[7], r[8]) for r in (line.split("\t") for line in log.read_text().splitlines())]
        rows[who + "-results"] = sorted((str(p.relative_to(res)), p.read_bytes()) for p in res.rglob("*") if p.is_file())
    assert rows["ours"] == rows["theirs"]
    assert rows["ours-results"] == rows["theirs-results"]


def test_files_hold_what_gnu_parallel_would_write(womm, tmp_path):
    """--files prints the names of temporary files: other names each run, so their contents are compared."""
    d = womm.setup_dir(tmp_path / "proj", "none")
    ours, theirs = run_both(womm, d, ["-k", "--files", "echo", "{}", ":::", "a", "b"], None)
    contents = [[open(f).read() for f in out.stdout.decode().split()] for out in (ours, theirs)]
    assert contents[0] == contents[1] == ["a\n", "b\n"]


def test_env_variables_and_exported_functions_reach_the_pods(womm, tmp_path):
    d = womm.setup_dir(tmp_path / "proj", "none")
    # GNU parallel runs jobs with the shell that started it (found among its ancestors: under CI,
    # the sh of tests/run), womm with $SHELL: PARALLEL_SHELL makes it bash for both.
    env = {"SHELL": "/bin/bash", "PARALLEL_SHELL": "/bin/bash", "WOMM_E2E_VAR": "it's \"$x\"\nline two",
           "BASH_FUNC_myf%%": "() {  echo \"myf $1\"\n}"}
    ours, theirs = run_both(womm, d, ["-k", "--env", "WOMM_E2E_VAR", 'myf {}; echo "$WOMM_E2E_VAR"', ":::", "a"],
                            None, env=env)
    assert (ours.returncode, ours.stdout) == (theirs.returncode, theirs.stdout) == (0, theirs.stdout)
    assert ours.stdout == b"myf a\nit's \"$x\"\nline two\n"


def test_inputs_from_a_process_substitution(womm, tmp_path):
    from womm_fixtures import WOMM, womm_env

    d = womm.setup_dir(tmp_path / "proj", "none")
    script = f'"{WOMM}" parallel --kube-pods 1 -k -- echo :::: <(seq 3) ::: x'
    r = subprocess.run(["bash", "-c", script], cwd=d, env=womm_env(womm.home), capture_output=True, text=True,
                       timeout=300)
    assert (r.returncode, r.stdout) == (0, "1 x\n2 x\n3 x\n"), r.stderr


def test_a_lazy_share_in_a_directory_with_spaces_and_brackets(womm, tmp_path):
    d = womm.setup_dir(tmp_path / "My Project [1]", "lazy")
    (d / "in put.txt").write_text("a\nb\n")
    r = womm("parallel", "--kube-pods", "1", "--", "wc -l < 'in put.txt'; pwd; : {}", ":::", "x", cwd=d)
    assert r.stdout.splitlines() == ["2", str(d)]


def test_shell_words_pass_through_as_given(womm, tmp_path):
    d = womm.setup_dir(tmp_path / "proj", "none")
    r = womm("shell", "--", "printf", "<%s>", "a b", "c", cwd=d, input="")
    assert r.stdout == "<a b><c>"


def test_async_reads_its_input_files(womm, tmp_path):
    d = womm.setup_dir(tmp_path / "proj", "eager")
    (d / "in.txt").write_text("one\ntwo\n")
    task = womm("parallel", "--async", "--kube-pods", "1", "--kube-cpu", "0.5", "-k", "--", "echo", "::::",
                "in.txt", cwd=d).stdout.strip()
    logs = womm("logs", task, cwd=d, timeout=300)
    assert logs.stdout == "one\ntwo\n"
    womm("finish", task, cwd=d)


@pytest.mark.parametrize("share", ["eager", "lazy"])
def test_file_names_of_any_bytes(womm, tmp_path, share):
    d = womm.setup_dir(tmp_path / "proj", share)
    name = os.fsdecode(b"f\xff 'q' [1].txt")
    (d / name).write_bytes(b"xyz")
    r = womm("parallel", "--kube-pods", "1", "--", "wc -c < {}; echo {}", ":::", name, cwd=d, input=b"")
    assert r.stdout == b"3\n" + os.fsencode(name) + b"\n", r.stderr


def test_a_directory_whose_path_is_not_utf8_is_refused_in_one_line(womm, tmp_path):
    bad = tmp_path / os.fsdecode(b"bad\xffdir")
    bad.mkdir()
    r = womm("setup", "--share", "none", "--yes", cwd=bad, check=False)
    assert r.returncode == 2 and len(r.stderr.splitlines()) == 1 and "not UTF-8" in r.stderr


def test_a_million_lines_through_pipe_over_two_pods(womm, tmp_path):
    d = womm.setup_dir(tmp_path / "proj", "none")
    data = "".join(f"{i}\n" for i in range(1, 1000001)).encode()
    r = womm("parallel", "--kube-pods", "2", "--kube-cpu", "0.5", "--pipe", "--block", "1M", "--", "wc", "-l",
             cwd=d, input=data, timeout=600)
    counts = [int(n) for n in r.stdout.split()]
    assert sum(counts) == 1000000 and len(counts) > 1, r.stderr


def test_env_underscore_carries_what_record_env_did_not_see(womm, tmp_path):
    d = womm.setup_dir(tmp_path / "proj", "none")
    config = tmp_path / "parallel-home"
    config.mkdir()
    (config / "ignored_vars").write_text("\n".join(os.environ) + "\n")  # as `parallel --record-env` here
    env = {"PARALLEL_HOME": str(config), "WOMM_E2E_NEW": "new $x 'y'"}
    ours, theirs = run_both(womm, d, ["--env", "_", 'echo "$WOMM_E2E_NEW"', ":::", "a"], None, env=env)
    assert (ours.returncode, ours.stdout) == (theirs.returncode, theirs.stdout) == (0, b"new $x 'y' a\n")
