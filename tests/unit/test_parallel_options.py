"""GNU parallel's options read as GNU parallel reads them.

Three kinds of checks: the module alone; the module against an oracle (GNU
parallel's own option table, read from /usr/bin/parallel, given to Getopt::Long
configured as GNU parallel does: parallel_getopt_oracle.pl), on chosen and on
generated command lines; and the module against the real program, with harmless
probes (--dry-run, or jobs that only print where their output goes).
"""

import json
import os
import random
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from womm.errors import UsageError
from womm_run import parallel_options as po
from womm_run.parallel_options import parse, refused

PARALLEL = shutil.which("parallel")
ORACLE = Path(__file__).with_name("parallel_getopt_oracle.pl")


def _version():
    if not PARALLEL or not shutil.which("perl"):
        return None
    out = subprocess.run([PARALLEL, "--version"], capture_output=True, text=True, timeout=30).stdout
    return out.split("\n", 1)[0]


VERSION = _version()
real = pytest.mark.skipif(
    VERSION != "GNU parallel 20221122",
    reason=f"needs GNU parallel 20221122 (the version the table is read from) and perl, not {VERSION}",
)


@pytest.fixture
def home(tmp_path):
    """An empty home with ~/.parallel, and an environment without GNU parallel's variables."""
    h = tmp_path / "home"
    (h / ".parallel").mkdir(parents=True)
    return h


def clean_env(home, **extra):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PARALLEL", "XDG_")) and k != "POSIXLY_CORRECT"}
    env.update(HOME=str(home), **extra)
    return env


def names(parsed):
    return [(opt.name, opt.value) for opt in parsed.options]


# ---------------------------------------------------------------- the real program


def run_parallel(argv, env, stdin="", cwd=None):
    return subprocess.run([PARALLEL, *argv], input=stdin, capture_output=True, text=True, env=env,
                          timeout=60, cwd=cwd)


def real_jobs(argv, env):
    """GNU parallel's number of job slots: -X spreads 8 arguments over them (up to 8), running nothing."""
    out = run_parallel([*argv, "-X", "--dry-run", "echo", ":::", *"12345678"], env)
    assert out.returncode == 0, out.stderr
    return len(out.stdout.splitlines())


def real_ungrouped(argv, env, command=("readlink /proc/self/fd/1", ":::", "1")):
    """Whether a job writes straight to GNU parallel's stdout (a pipe here) rather than to a temporary file."""
    out = run_parallel([*argv, *command], env)  # (readlink fails on a pipe, after printing it)
    assert out.stdout, out.stderr
    return out.stdout.startswith("pipe:")


def real_dry_run(argv, env, stdin=""):
    out = run_parallel(["--dry-run", *argv], env, stdin)
    assert out.returncode == 0, out.stderr
    return out.stdout.splitlines()


def real_remote(argv, env):
    """The ssh command lines GNU parallel would run, with a fake ssh that prints them, decoded:
    (the hosts, the names of the variables it would set remotely)."""
    out = run_parallel(["--ssh", "echo SSH", *argv, "true", ":::", "1"], env)
    hosts, variables = set(), set()
    for line in out.stdout.splitlines():
        words = line.split()
        if words[:1] == ["SSH"] and "exec" in words:
            hosts.add(words[1])
            code = bytes.fromhex("".join(w for w in words if re.fullmatch(r"[0-9a-f]{8,}", w))).decode()
            variables.update(re.findall(r'\$ENV\{"(\w+)"\}=', code))
    return hosts, variables


# ---------------------------------------------------------------- bundles


@pytest.mark.parametrize("argv, options", [
    (["-kj4"], [("keep-order", None), ("jobs", "4")]),
    (["-kuj", "4"], [("keep-order", None), ("ungroup", None), ("jobs", "4")]),
    (["-k", "-j4"], [("keep-order", None), ("jobs", "4")]),
    (["-j", "-4"], [("jobs", "-4")]),  # a required value takes the next word, whatever it is
    (["-jobs"], [("jobs", "obs")]),  # one dash is always a bundle
    (["-j=3"], [("jobs", "=3")]),
    (["-kill"], [("keep-order", None), ("replace", "ll")]),  # -i's optional value takes the rest of the bundle
    (["-l2k"], [("max-lines", "2"), ("keep-order", None)]),  # a number in a bundle takes only its digits
])
def test_bundles(argv, options, home):
    assert names(parse(argv, clean_env(home))) == options


@pytest.mark.parametrize("argv, divides", [
    (["-kX", "echo"], True), (["-m", "echo"], True), (["--pipe", "--tee", "grep", "{}"], True),
    (["--xargs", "echo"], False), (["-k", "echo"], False), (["--pipe", "wc"], False),
])
def test_options_that_divide_the_work_by_the_slots(argv, divides, home):
    assert parse(argv, clean_env(home)).divides_by_slots == divides


@real
@pytest.mark.parametrize("argv, jobs", [
    (["-kj4"], 4), (["-kuj", "4"], 4), (["-k", "-j4"], 4), (["-j3"], 3), (["--jobs=3"], 3), (["+j", "3"], 3),
    (["--j", "3"], 3),  # --j is exactly j's name: no abbreviation of --joblog or --jobs
])
@pytest.mark.oracle
def test_real_program_reads_the_same_jobs(argv, jobs, home):
    env = clean_env(home)
    assert parse(argv, env).value("jobs") == str(jobs)
    assert real_jobs(argv, env) == jobs


@pytest.mark.oracle
@real
def test_real_program_fails_on_a_dash_equals_value(home):
    env = clean_env(home)
    assert parse(["-j=3"], env).value("jobs") == "=3"
    out = run_parallel(["-j=3", "echo", ":::", "1"], env)
    assert out.returncode == 255 and "Parsing of --jobs/-j/--max-procs/-P failed" in out.stderr


@pytest.mark.oracle
@real
@pytest.mark.parametrize("argv", [["-ku"], ["-uk"], ["--ungr"], ["--UNGROUP"], ["--U"], ["+u"], ["--tty"]])
def test_real_program_sees_the_same_ungrouped_output(argv, home):
    env = clean_env(home)
    assert parse(argv, env).ungrouped
    assert real_ungrouped(argv, env)


@pytest.mark.oracle
@real
@pytest.mark.parametrize("argv", [["-k"], ["--tty", "--group"], ["--", "readlink /proc/self/fd/1;", "echo", "-u"]])
def test_real_program_sees_the_same_grouped_output(argv, home):
    env = clean_env(home)
    parsed = parse(argv, env)
    assert not parsed.ungrouped
    command = (":::", "1") if "--" in argv else ("readlink /proc/self/fd/1", ":::", "1")
    assert not real_ungrouped(argv, env, command)


def test_line_buffered(home):
    env = clean_env(home)
    assert parse(["--lb"], env).line_buffered and parse(["--line-buffered"], env).line_buffered
    assert parse(["--ll"], env).line_buffered
    assert not parse(["-u"], env).line_buffered and not parse(["-u"], env).line_buffered


# ---------------------------------------------------------------- abbreviations


@pytest.mark.parametrize("argv, options", [
    (["--ungr"], [("ungroup", None)]),
    (["--sshloginf", "f"], [("sshloginfile", "f")]),
    (["--S", "12"], [("max-chars", "12")]),  # --S is -s, not -S: long names ignore case, -s is exact
    (["--P"], [("interactive", None)]),
    (["--keep"], [("keep-order", None)]),  # --keep-order and --keeporder are one option
    (["--colour-f"], [("color-failed", None)]),
])
def test_abbreviations(argv, options, home):
    assert names(parse(argv, clean_env(home))) == options


@pytest.mark.parametrize("given, message, candidates", [
    ("--sshl", "Option sshl is ambiguous (sshlogin, sshloginfile)", ("sshlogin", "sshloginfile")),
    ("--jo", "Option jo is ambiguous (joblog, jobs)", ("joblog", "jobs")),
    ("--colo", "Option colo is ambiguous (color, color-fail, color-failed, colorfail, colorfailed, colour, "
               "colour-fail, colour-failed, colourfail, colourfailed)", ("color", "color-failed")),
])
def test_ambiguous_abbreviations(given, message, candidates, home):
    parsed = parse([given, "3", "echo"], clean_env(home))
    assert [(p.given, p.message, p.candidates) for p in parsed.problems] == [(given, message, candidates)]
    assert parsed.options == () and parsed.command == ("3", "echo")  # Getopt::Long goes on after it


@pytest.mark.oracle
@real
@pytest.mark.parametrize("given", ["--sshl", "--jo", "--colo"])
def test_real_program_finds_the_same_ambiguity(given, home):
    env = clean_env(home)
    out = run_parallel([given, "3", "echo", ":::", "1"], env)
    assert out.returncode == 255
    assert out.stderr.splitlines()[0] == parse([given, "3"], env).problems[0].message


@pytest.mark.oracle
@real
def test_real_program_reads_the_same_abbreviations(home):
    env = clean_env(home)
    assert real_jobs(["--S", "12"], env) == 4  # max-chars 12: "echo 1 2 3", "echo 4 5 6", "echo 7", "echo 8"
    assert real_jobs(["--keep", "-j1"], env) == 1
    (home / "logins").write_text("filehost\n")
    assert parse(["--sshloginf", "x"], env).value("sshloginfile") == "x"
    hosts, _ = real_remote(["--sshloginf", str(home / "logins")], env)
    assert hosts == {"filehost"}


# ---------------------------------------------------------------- refusals


@pytest.mark.parametrize("argv, reason", [
    (["-kj4"], "-kj4: -j (--jobs) is not for womm parallel: womm sets the job slots: "
               "--kube-pods x --procs-per-pod + --local-procs"),
    (["-P", "2"], "-P: -P (--max-procs) is not for womm parallel: womm sets the job slots: "
                  "--kube-pods x --procs-per-pod + --local-procs"),
    (["--slf", "f"], "--slf: --sshloginfile is not for womm parallel: "
                     "womm's job slots are the pods; --sshloginfile does not mix with them"),
    (["-kS", "h"], "-kS: -S (--sshlogin) is not for womm parallel: "
                   "womm's job slots are the pods; --sshlogin does not mix with them"),
    (["--sshl", "h"], "--sshl: GNU parallel cannot tell which option this abbreviates: -S (--sshlogin), "
                      "--sshloginfile"),
])
def test_refused(argv, reason, home):
    parsed = parse([*argv, "echo"], clean_env(home))
    assert refused(parsed) == reason
    with pytest.raises(UsageError, match=re.escape(reason)):
        po.check(parsed)


@pytest.mark.parametrize("argv", [
    ["--spreadstdin"], ["--pipep", "-a", "f"], ["--cat"],  # a job's stdin reaches its pod (womm_run.protocol's IN)
    ["-k", "--tag", "--joblog", "x", "--halt", "now,fail=1", "--results", "r", "-n", "2"],
    ["--block", "1M", "--tee", "--roundrobin"],  # without --pipe they do nothing to stdin
    ["--", "sort", "-u", "-j", "4", "-S", "x"],
    ["--tagstring", "-j"],
])
def test_not_refused(argv, home):
    assert refused(parse(argv, clean_env(home))) is None


def test_an_unknown_option_is_left_to_gnu_parallel(home):
    parsed = parse(["--frobnicate", "-Zk", "echo"], clean_env(home))
    assert [p.message for p in parsed.problems] == ["Unknown option: frobnicate", "Unknown option: Z"]
    assert names(parsed) == [("keep-order", None)] and refused(parsed) is None
    assert parsed.argv == ("--frobnicate", "-Zk", "echo")


def test_jobs_from_a_profile_or_parallel_are_overridden_by_womms_own(home):
    (home / ".parallel" / "config").write_text("-j 4\n")
    env = clean_env(home, PARALLEL="-P 3")
    parsed = parse(["-k", "echo"], env)
    assert names(parsed) == [("jobs", "4"), ("max-procs", "3"), ("keep-order", None)]
    assert refused(parsed) is None
    (home / ".parallel" / "config").write_text("-S host\n")
    assert refused(parse(["echo"], env)).startswith(f"-S (in {home}/.parallel/config): -S (--sshlogin) is not")


@pytest.mark.oracle
@real
def test_real_program_lets_the_command_line_override_jobs_from_a_profile_and_parallel(home):
    (home / ".parallel" / "config").write_text("-j 4\n")
    assert real_jobs([], clean_env(home)) == 4
    assert real_jobs([], clean_env(home, PARALLEL="-P 3")) == 3
    assert real_jobs(["-j", "2"], clean_env(home, PARALLEL="-P 3")) == 2


# ---------------------------------------------------------------- profiles and $PARALLEL


def test_profiles_then_parallel_then_the_command_line(home):
    (home / ".parallel" / "config").write_text("# the default profile\n--tag\n")
    (home / ".parallel" / "p1").write_text("-j\n3\n")  # an option and its value on two lines: one list
    (home / ".parallel" / "p2").write_text("  # a comment\n--env A\n")
    env = clean_env(home, PARALLEL="--env 'B C' -k")
    parsed = parse(["--profile", "p1", "-J", "p2", "--env", "D", "echo"], env)
    assert [(o.name, o.value, o.source) for o in parsed.options] == [
        ("jobs", "3", f"{home}/.parallel/p1"), ("env", "A", f"{home}/.parallel/p2"),
        ("env", "B C", "$PARALLEL"), ("keep-order", None, "$PARALLEL"),
        ("profile", "p1", "command line"), ("profile", "p2", "command line"), ("env", "D", "command line"),
    ]
    assert parsed.profiles == (f"{home}/.parallel/p1", f"{home}/.parallel/p2")  # -J: not the default one
    assert parsed.env_names == ["A", "B C", "D"]
    assert parse(["echo"], env).profiles == (f"{home}/.parallel/config",)


def test_plain_reads_nothing_but_the_command_line(home):
    (home / ".parallel" / "config").write_text("--tag\n")
    parsed = parse(["--plain", "echo"], clean_env(home, PARALLEL="-k"))
    assert names(parsed) == [("plain", None)] and parsed.profiles == ()
    # --plain or -J elsewhere than on the command line is just an option
    assert names(parse(["echo"], clean_env(home, PARALLEL="--plain -J x"))) == [
        ("tag", None), ("plain", None), ("profile", "x")]


def test_profile_words_after_its_options_go_before_the_command(home):
    (home / ".parallel" / "nice").write_text("-k nice -n 5\n")
    (home / ".parallel" / "hash").write_text("--tag # not a comment here\n")
    parsed = parse(["-J", "nice", "echo", ":::", "a"], clean_env(home, PARALLEL="-u -- time"))
    assert names(parsed)[:2] == [("keep-order", None), ("ungroup", None)]
    assert parsed.command == ("nice", "-n", "5", "time", "echo")
    assert parse(["-J", "hash", "echo"], clean_env(home)).command == ("#", "not", "a", "comment", "here", "echo")


def test_missing_profiles_are_ignored_and_paths_are_paths(home, tmp_path, monkeypatch):
    (tmp_path / "here").write_text("-k\n")
    (home / ".parallel" / "config").write_text("--tag\n")
    monkeypatch.chdir(tmp_path)
    env = clean_env(home)
    assert names(parse(["-J", "nosuch", "echo"], env)) == [("profile", "nosuch")]
    assert names(parse(["-J", "./here", "echo"], env))[0] == ("keep-order", None)
    assert names(parse(["-J", str(tmp_path / "here"), "echo"], env))[0] == ("keep-order", None)


def test_config_directories(home, tmp_path):
    for d in ("ph", "xh/parallel", "xd1/parallel", "xd2/parallel"):
        (tmp_path / d).mkdir(parents=True)
        (tmp_path / d / "p").write_text(f"--env {d.split('/')[0]}\n")
    (home / ".parallel" / "p").write_text("--env home\n")
    env = clean_env(home, PARALLEL_HOME=str(tmp_path / "ph"), XDG_CONFIG_HOME=str(tmp_path / "xh"),
                    XDG_CONFIG_DIRS=f"{tmp_path}/xd1:{tmp_path}/nosuch:{tmp_path}/xd2")
    assert parse(["-J", "p", "echo"], env).env_names == ["ph", "xh", "xd1", "xd2", "home"]


@pytest.mark.parametrize("value, words", [
    ("-kvj1 -S myssh\\ user@server", ["-kvj1", "-S", "myssh user@server"]),  # GNU parallel's own example
    ('--tagstring "a\\b"', ["--tagstring", "ab"]),  # \ escapes anything in double quotes
    ("--tagstring 'a\\'b'", ["--tagstring", "a\\'b"]),  # ... and stays in single quotes, not ending them
    ("a'b'\"c\"d ''", ["abcd", ""]),
    ("  -k\t\n-u  ", ["-k", "-u"]),
    ("-k 'unbalanced", []),  # an unbalanced quote: no words at all
    ("-k trailing\\", []),
    ("-k \\\\", ["-k", "\\"]),
])
def test_shell_words(value, words):
    assert po.shell_words(value) == words


@pytest.mark.parametrize("value", ["", "0"])
def test_a_false_parallel_is_ignored(value, home):
    assert parse(["echo"], clean_env(home, PARALLEL=value)).options == ()


@pytest.mark.oracle
@real
def test_real_program_reads_profiles_as_parsed(home, tmp_path):
    (home / ".parallel" / "config").write_text("-j 4\n")
    (home / ".parallel" / "p3").write_text("-j\n3\n")
    (home / ".parallel" / "hash").write_text("-k # keep\n")
    (home / ".parallel" / "nice").write_text("nice\n")
    env = clean_env(home)
    for argv, jobs in ((["-J", "p3"], 3), (["-J", "nosuch"], None), (["--plain"], None), ([], 4)):
        parsed = parse(argv, env)
        assert parsed.value("jobs") == (str(jobs) if jobs else None)
        if jobs:
            assert real_jobs(argv, env) == jobs
        else:  # the default: the number of CPU threads
            assert real_jobs(argv, env) == min(8, os.cpu_count())
    for profile in ("hash", "nice"):
        parsed = parse(["-J", profile, "echo", ":::", "1"], env)
        assert real_dry_run(["-J", profile, "echo", ":::", "1"], env) == [" ".join(parsed.command) + " 1"]
    (home / ".parallel" / "remote").write_text("-S profilehost --env A\n")
    parsed = parse(["-J", "remote"], env)
    hosts, variables = real_remote(["-J", "remote"], env | {"A": "1", "B": "2"})
    assert hosts == set(parsed.values("sshlogin")) == {"profilehost"}
    assert variables & {"A", "B"} == set(parsed.env_names) == {"A"}


@pytest.mark.oracle
@real
@pytest.mark.parametrize("value, tag", [('--tagstring "a\\b"', "ab"), ("--tagstring 'a\\'b'", "a\\'b"),
                                        ("--tagstring my\\ tag", "my tag")])
def test_real_program_splits_parallel_as_parsed(value, tag, home):
    env = clean_env(home, PARALLEL=value)
    assert parse([], env).value("tag-string") == tag
    assert run_parallel(["echo", ":::", "1"], env).stdout == f"{tag}\t1\n"


@pytest.mark.oracle
@real
def test_real_program_ignores_what_is_ignored(home):
    (home / ".parallel" / "config").write_text("-j 4\n")
    (home / ".parallel" / "p3").write_text("-j 3\n")
    for value in ("-j 1 'unbalanced", "0", "-J p3", "--plain"):
        env = clean_env(home, PARALLEL=value)
        assert parse([], env).value("jobs") == "4"
        assert real_jobs([], env) == 4


# ---------------------------------------------------------------- where options end


@pytest.mark.parametrize("argv, command, sources", [
    (["-k", "--", "sort", "-u", ":::", "a"], ("sort", "-u"), [(":::", False, ("a",))]),
    (["-k", "::: ", "a"], ("::: ", "a"), []),
    (["-k", ":::", "a", "b", "::::+", "f", ":::+", "c"], (),
     [(":::", False, ("a", "b")), ("::::+", True, ("f",)), (":::+", False, ("c",))]),
    (["-", "-k"], ("-", "-k"), []),
    (["echo", ":::"], ("echo",), []),  # a separator that is the last word is dropped
    (["echo", ":::", "a", ":::"], ("echo",), [(":::", False, ("a",)), (":::", False, ())]),  # but not here
    (["--arg-sep", ",,", "echo", ",,", "a", ":::", "b"], ("echo",), [(",,", False, ("a", ":::", "b"))]),
    (["--tagstring", "--", "echo"], ("echo",), []),  # -- as a value does not end options
    (["-k-", "-u"], ("-u",), []),  # the rest of the bundle is "--"
])
def test_options_end(argv, command, sources, home):
    parsed = parse(argv, clean_env(home))
    assert parsed.command == command
    assert [(s.separator, s.files, s.words) for s in parsed.sources] == sources
    assert parsed.has_command == bool(command)


@real
@pytest.mark.parametrize("argv, stdin, command, inputs, lines", [
    (["-k", "--", "sort", "-u", ":::", "a"], "", ["sort", "-u"], [["a"]], ["sort -u a"]),
    (["-k", ":::", "echo a", "echo b"], "", [], [["echo a", "echo b"]], ["echo a", "echo b"]),  # inputs as commands
    (["echo", ":::"], "in\n", ["echo"], [], ["echo in"]),  # the last ::: dropped: the input is stdin
    (["echo", ":::", "a", ":::"], "", ["echo"], [["a"], []], ["echo a ''"]),  # an empty source among others
    (["-k-", "-u", ":::", "x"], "", ["-u"], [["x"]], ["-u x"]),
    (["--tagstring", "--", "echo", ":::", "x"], "", ["echo"], [["x"]], ["--\techo x"]),  # --dry-run prints the tag
    (["--arg-sep", ",,", "echo", ",,", "a", ":::", "b"], "", ["echo"], [["a", ":::", "b"]],
     ["echo a", "echo ':::'", "echo b"]),
])
@pytest.mark.oracle
def test_real_program_finds_the_same_command_and_inputs(argv, stdin, command, inputs, lines, home):
    env = clean_env(home)
    parsed = parse(argv, env)
    assert (list(parsed.command), [list(s.words) for s in parsed.sources]) == (command, inputs)
    assert real_dry_run(argv, env, stdin) == lines


# ---------------------------------------------------------------- values


@pytest.mark.parametrize("argv, options, command", [
    (["--env", "A", "--env", "B"], [("env", "A"), ("env", "B")], ()),
    (["--env=A,B"], [("env", "A,B")], ()),
    (["-a", "f", "--arg-file=g", "--argfile", "h"], [("arg-file", "f"), ("arg-file", "g"), ("arg-file", "h")], ()),
    (["--argf", "h", "echo"], [], ("h", "echo")),  # --argfile or --argfilesep: ambiguous
    (["--tagstring", "-x", "echo"], [("tag-string", "-x")], ("echo",)),
    (["--tagstring=", "echo"], [], ("echo",)),  # an empty required value is missing
    (["-e", "echo", "{}"], [("eof", "echo")], ("{}",)),  # an optional value takes a plain next word
    (["-e", "-k", "echo"], [("eof", ""), ("keep-order", None)], ("echo",)),  # ... not an option
    (["-e", "--", "echo"], [("eof", "")], ("echo",)),
    (["-i", "-", "echo"], [("replace", "-")], ("echo",)),
    (["--eof=", "echo"], [("eof", "")], ("echo",)),
    (["-l", "echo"], [("max-lines", "0")], ("echo",)),  # -l takes only a number
    (["-l", "-0", "echo"], [("max-lines", "-0")], ("echo",)),
    (["--nice", "5", "--nice", "x", "echo"], [("nice", "5")], ("echo",)),
    (["--tmpl", "a=b", "echo"], [("template", "a=b")], ("echo",)),
])
def test_values(argv, options, command, home):
    parsed = parse(argv, clean_env(home))
    assert names(parsed) == options
    assert parsed.command == command


def test_facts(home, tmp_path):
    env = clean_env(home)
    p = parse(["--env", "A,B", "--env=C", "--record-env", "-a", "in", "--tty", "--joblog", "j", "--res", "r",
               "--joblog", "j2", "echo", "::::", "f1", "f2", ":::", "x"], env)
    assert p.env_names == ["A", "B", "C"] and p.record_env and p.tty
    assert (p.joblog, p.results) == ("j2", "r")
    assert p.arg_files == ["in", "f1", "f2"] and not p.reads_stdin
    assert p.ungrouped and p.stdin_data is None
    assert parse(["echo"], env).reads_stdin and parse(["-a", "-", "echo"], env).reads_stdin
    assert not parse(["echo", ":::", "a"], env).reads_stdin
    assert parse(["--pipe", "-a", "f", "wc"], env).reads_stdin
    assert parse(["--fifo", "wc"], env).stdin_data == "pipe"
    assert parse(["--groupby", "1", "wc"], env).stdin_data == "pipe"
    assert parse(["--pipepart", "--cat", "-a", "f", "wc"], env).stdin_data == "pipepart"
    assert not parse(["--pipepart", "-a", "f", "wc"], env).reads_stdin
    assert not parse(["--nonall", "uptime"], env).reads_stdin
    assert parse(["--dry-run", "-u", "echo"], env).ungrouped is False


@pytest.mark.oracle
@real
def test_real_program_reads_the_same_values(home, tmp_path):
    env = clean_env(home, A="1", B="2", C="3")
    for argv in (["--env", "A", "--env", "B"], ["--env=A,B"], ["--env=A", "--env", "B"]):
        parsed = parse(["-S", "h", *argv], env)
        hosts, variables = real_remote(["-S", "h", *argv], env)
        assert hosts == {"h"} and variables & {"A", "B", "C"} == set(parsed.env_names) == {"A", "B"}
    (tmp_path / "f").write_text("f1\nf2\n")
    (tmp_path / "g").write_text("g1\n")
    argv = ["-a", "f", "--arg-file=g", "echo"]
    assert parse(argv, env).arg_files == ["f", "g"]
    out = run_parallel(["--dry-run", *argv], env, cwd=tmp_path)
    assert out.stdout.splitlines() == ["echo f1 g1", "echo f2 g1"]
    out = run_parallel(["--tagstring", "-x", "echo", ":::", "a"], env)
    assert out.stdout == "-x\ta\n"
    assert real_dry_run(["-e", "echo", "{}"], env, stdin="a\nb\n") == ["a", "b"]
    assert real_dry_run(["-e", "x", "echo"], env, stdin="a\nx\nb\n") == ["echo a"]
    assert real_dry_run(["-l", "echo"], env, stdin="a\nb\n") == ["echo a", "echo b"]
    assert real_dry_run(["-kill", "echo", "ll", ":::", "a"], env) == ["echo a"]  # -i's replace string is "ll"
    stdin_data = run_parallel(["--cat", "cat {}", ":::", "x"], env, stdin="data\n")
    assert stdin_data.stdout == "data\n"  # --cat implies --pipe
    assert run_parallel(["--tee", "cat; echo {}", ":::", "x"], env, stdin="data\n").stdout == "x\n"  # no --pipe


# ---------------------------------------------------------------- womm's own options among GNU parallel's


def test_extra_options_are_taken_out_where_gnu_parallel_reads_options(home):
    extra = {"--kube-pods": True, "--async": False}
    parsed = parse(["-k", "--kube-pods", "3", "--tag", "--async", "--kube-pods=4", "echo", "--kube-pods", "5"],
                   clean_env(home), extra=extra)
    assert parsed.extra == ("--kube-pods", "3", "--async", "--kube-pods=4")
    assert parsed.argv == ("-k", "--tag", "echo", "--kube-pods", "5")
    assert parsed.command == ("echo", "--kube-pods", "5")
    # a value is a value, even womm's option name; after -- it is the command's
    parsed = parse(["--joblog", "--kube-pods", "3", "--", "--async"], clean_env(home), extra=extra)
    assert parsed.extra == () and parsed.value("joblog") == "--kube-pods"
    assert parsed.command == ("3", "--", "--async")  # the command began at 3


def test_an_optional_value_stays_unset_when_a_womm_option_is_taken_out(home):
    extra = {"--kube-pods": True}
    parsed = parse(["-ki", "--kube-pods", "3", "echo"], clean_env(home), extra=extra)
    assert names(parsed) == [("keep-order", None), ("replace", "")]
    assert parsed.argv == ("-ki", "", "echo")  # without the "", GNU parallel's -i would take echo
    assert names(parse(list(parsed.argv), clean_env(home))) == names(parsed)
    parsed = parse(["-l", "--kube-pods", "3", "7"], clean_env(home), extra=extra)
    assert parsed.argv == ("-l", "0", "7") and parsed.command == ("7",)


def test_no_command_at_all(home):
    parsed = parse(["--kube-pods", "1"], clean_env(home), extra={"--kube-pods": True})
    assert parsed.argv == () and not parsed.has_command and parsed.reads_stdin


def test_normalized_reads_back_the_same(home):
    (home / ".parallel" / "config").write_text("-kj4 nice\n")
    env = clean_env(home, PARALLEL="--env A -e")
    parsed = parse(["-u", "--tmpl", "a=b", "--res", "r", "-l", "echo", ":::", "x"], env)
    assert parsed.normalized() == ["--plain", "--keep-order", "--jobs", "4", "--env", "A", "--eof=",
                                   "--ungroup", "--template", "a=b", "--results", "r", "--max-lines=0"]
    again = parse([*parsed.normalized(), "--", *parsed.words], env)
    assert names(again)[1:] == names(parsed) and again.command == parsed.command == ("nice", "echo")
    assert again.sources == parsed.sources


@pytest.mark.oracle
@real
def test_real_program_reads_normalized_as_the_original(home):
    (home / ".parallel" / "config").write_text("-j 3 nice\n")
    env = clean_env(home, PARALLEL="--tagstring '<{}>' -e")
    parsed = parse(["-k", "echo", ":::", "a", "b"], env)
    again = [*parsed.normalized(), "--", *parsed.words]
    assert real_dry_run(again, env) == real_dry_run(["-k", "echo", ":::", "a", "b"], env) == [
        "<a>\tnice echo a", "<b>\tnice echo b"]
    assert real_jobs(parsed.normalized(), env) == 3


def test_posixly_correct(home):
    env = clean_env(home, POSIXLY_CORRECT="1")
    parsed = parse(["--ungr", "--UNGROUP", "+k", "echo"], env)
    assert [p.message for p in parsed.problems] == ["Unknown option: ungr"]
    assert names(parsed) == [("ungroup", None)] and parsed.command == ("+k", "echo")


@pytest.mark.oracle
@real
def test_real_program_posixly_correct(home):
    env = clean_env(home, POSIXLY_CORRECT="1")
    out = run_parallel(["--ungr", "echo", ":::", "1"], env)
    assert out.returncode == 255 and out.stderr.startswith("Unknown option: ungr")
    assert real_dry_run(["+k", "echo", ":::", "1"], env) == ["+k echo 1"]


# ---------------------------------------------------------------- the oracle


def oracle(cases, posix=False):
    env = clean_env(Path("/nonexistent"))
    if posix:
        env["POSIXLY_CORRECT"] = "1"
    out = subprocess.run(["perl", str(ORACLE), PARALLEL], input=json.dumps(cases), capture_output=True,
                         text=True, env=env, timeout=120, check=True)
    return json.loads(out.stdout)


def as_oracle(parsed):
    options = []
    for opt in parsed.options:
        value = opt.value
        if value is None:
            value = "1"
        elif po._SPECS[opt.name].kind == "=i":
            value = str(int(value.replace("_", "")))
        options.append([opt.name, value])
    return {"options": options, "rest": list(parsed.words), "problems": [p.message for p in parsed.problems]}


@pytest.mark.oracle
@real
def test_the_table_is_gnu_parallels():
    out = subprocess.run(["perl", str(ORACLE), PARALLEL, "--table"], capture_output=True, text=True, timeout=60,
                         check=True)
    theirs = set()
    for spec, ref in json.loads(out.stdout):
        names_, kind = re.fullmatch(r"([^=:]+)((?:[=:][sif])?)", spec).groups()
        theirs.add((tuple(names_.split("|")), (kind or "-") + ("%" if ref == "HASH" else "")))
    ours = {(spec.names, spec.kind) for spec in po._SPECS.values()}
    assert ours == theirs


WORDS = [
    "-kj4", "-k", "-u", "-ku", "-kuj", "4", "-j", "--jobs", "--jobs=3", "-j=3", "--jo", "--sshl", "--sshlogin",
    "--sshloginf", "x", "--", "-", ":::", "+u", "+k", "--S", "--U", "--UNGROUP", "-i", "-e", "-E", "-l", "-l2k",
    "-l.k", "2", "2.5", "-0", "--nice", "--nice=3", "--nice=x", "--template", "a=b", "ab", "--tmpl=c=d",
    "--tagstring", "-x", "--env=A", "--env", "--ungroup=1", "-Zk", "-H5k", "-Hk", "--max-lines=abc", "--max-lines",
    "--eof=", "--tagstring=", "--=x", "+", "-kill", "-jobs", "--colo", "--re", "-vvv", "--v", "--X", "--P", "--0",
    "--_test", "--shell_quote", "--ssh-delay", "1e3", ".5", "echo", "-ab", "--A", "-a", "--arg-file=g", "--no-k",
    "--nok", "--no", "+jobs=3", "---x", "-k-", "-k+", "--Joblog", "\n", "-\n", "-i-x", "--ssh-delay=1.5e", "",
    "-J", "--prof", "--plain", "--tmpl", "--ctag", "--ct", "+5", "-5",
]


def generated(count, seed):
    rng = random.Random(seed)
    return [[rng.choice(WORDS) for _ in range(rng.randint(1, 6))] for _ in range(count)]


CHOSEN = [
    ["-kj4", "echo"], ["-kuj", "4", "--", "sort", "-u"], ["--sshl", "x"], ["--jo", "3"], ["--ungr"],
    ["-kill"], ["--S", "12"], ["+j", "3"], ["-i", "--", "echo"], ["-l", "-0"], ["-H5k"], ["-Hk", "x"],
    ["--tmpl", "a"], ["--tmpl", "a=b=c"], ["--env=", "x"], ["-e"], ["-l"], ["--nice"], ["-kj"],
]


@pytest.mark.oracle
@real
@pytest.mark.parametrize("posix", [False, True])
def test_getopt_long_agrees(posix, home):
    cases = CHOSEN + generated(600, seed=20221122 + posix)
    env = clean_env(home, **({"POSIXLY_CORRECT": "1"} if posix else {}))
    for argv, expected in zip(cases, oracle(cases, posix), strict=True):
        assert as_oracle(parse(argv, env)) == expected, argv


def test_env_underscore_is_every_variable_record_env_did_not_see(home):
    env = {**clean_env(home), "WOMM_NEW": "1", "PATH": "/bin"}
    assert parse(["--env", "_", "echo"], env).env_names_expanded(env, str(home)) == ["_"]  # no record: GNU parallel fails
    (home / ".parallel" / "ignored_vars").write_text("PATH\nHOME\n")
    names = parse(["--env", "A,_", "echo"], env).env_names_expanded(env, str(home))
    assert names[0] == "A" and "WOMM_NEW" in names and "PATH" not in names and "_" not in names
