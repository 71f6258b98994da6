"""womm-run's command line: womm's options, GNU parallel's, and the command after --."""

import pytest

from womm.errors import UsageError
from womm_run import cli
from womm_run.parallel import check_parallel_options


def parallel_parser():
    return cli.build_parser()._subparsers._group_actions[0].choices["parallel"]


def parse(*argv):
    return cli.parse_parallel(parallel_parser(), list(argv))


def test_womm_options_anywhere_before_the_separator():
    a = parse("-k", "--kube-pods", "3", "--tag", "--kube-mem=1Gi", "--procs-per-pod", "2", "--", "wc", "-l", "{}")
    assert (a.kube_pods, a.kube_mem, a.procs_per_pod, a.kube_cpu) == (3, "1Gi", 2, "1")
    assert a.parallel_options == ["-k", "--tag"]
    assert a.command == ["wc", "-l", "{}"]


def test_parallel_options_keep_their_values_and_order():
    a = parse("--joblog", "j.log", "-n", "2", "--kube-pods", "1", "--", "echo", ":::", "a", "b")
    assert a.parallel_options == ["--joblog", "j.log", "-n", "2"]
    assert a.command == ["echo", ":::", "a", "b"]


def test_everything_after_the_separator_is_the_command():
    a = parse("--kube-pods", "1", "--", "echo", "--kube-pods", "--")
    assert a.command == ["echo", "--kube-pods", "--"]


@pytest.mark.parametrize("argv, message", [
    (["--kube-pods", "2", "echo", "x"], "separate the command"),
    (["--", "echo"], "--kube-pods N is required"),
    (["--kube-pods", "2", "--"], "no command"),
    (["--kube-pods", "0", "--", "echo"], "at least 1"),
    (["--kube-pods", "two", "--", "echo"], "not a number"),
])
def test_usage_errors(argv, message):
    with pytest.raises(UsageError, match=message):
        parse(*argv)


def test_citation_needs_nothing_else():
    assert parse("--citation").citation


@pytest.mark.parametrize("option", ["-j4", "-j", "--jobs=3", "--jobs", "-P", "-S", "--sshlogin=x", "--pipe"])
def test_options_womm_decides_are_refused(option):
    with pytest.raises(UsageError):
        check_parallel_options([option, "4"])


def test_harmless_options_pass():
    check_parallel_options(["-k", "--tag", "--joblog", "x", "--halt", "now,fail=1", "--results", "r", "-n", "2"])


def test_async_input_detection():
    from womm_run.leader import reads_stdin

    def ns(options, command):
        return type("A", (), {"parallel_options": options, "command": command})()

    assert reads_stdin(ns([], ["wc", "-l", "{}"]))
    assert not reads_stdin(ns([], ["echo", ":::", "a"]))
    assert not reads_stdin(ns(["-a", "in.txt"], ["echo"]))


def test_pod_sizes_come_from_the_option_then_the_environment_then_settings(monkeypatch, tmp_path):
    monkeypatch.setenv("WOMM_HOME", str(tmp_path))
    (tmp_path / "settings.json").write_text('{"schema": 1, "kube-mem": "2Gi", "kube-cpu": "3"}')
    monkeypatch.setenv("WOMM_KUBE_CPU", "250m")
    a = parse("--kube-pods", "1", "--", "true")
    assert (a.kube_cpu, a.kube_mem) == ("250m", "2Gi")
    a = parse("--kube-pods", "1", "--kube-cpu", "0.5", "--", "true")
    assert a.kube_cpu == "0.5"


@pytest.mark.parametrize("option, value", [("--kube-cpu", "abc"), ("--kube-cpu", "1.5.2"), ("--kube-mem", "5XB"),
                                           ("--kube-mem", "1e3")])
def test_pod_sizes_are_checked_before_any_request(option, value, monkeypatch, tmp_path):
    monkeypatch.setenv("WOMM_HOME", str(tmp_path))
    with pytest.raises(UsageError, match=f"{option} {value}: not "):
        parse("--kube-pods", "1", option, value, "--", "true")
