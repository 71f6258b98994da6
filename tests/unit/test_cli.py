"""womm-run's command line: womm's options, GNU parallel's, and the command after --."""

import pytest

from womm.errors import UsageError
from womm_run import cli


def parallel_parser():
    return cli.build_parser()._subparsers._group_actions[0].choices["parallel"]


def parse(*argv):
    return cli.parse_parallel(parallel_parser(), list(argv))


def test_womm_options_among_gnu_parallels():
    a = parse("-k", "--kube-pods", "3", "--tag", "--kube-mem=1Gi", "--procs-per-pod", "2", "--", "wc", "-l", "{}")
    assert (a.kube_pods, a.kube_mem, a.procs_per_pod, a.kube_cpu) == (3, "1Gi", 2, "1")
    assert a.parallel_argv == ["-k", "--tag", "--", "wc", "-l", "{}"]
    assert a.parsed.command == ("wc", "-l", "{}")


def test_parallel_options_keep_their_values_and_order():
    a = parse("--joblog", "j.log", "-n", "2", "--kube-pods", "1", "--", "echo", ":::", "a", "b")
    assert a.parallel_argv == ["--joblog", "j.log", "-n", "2", "--", "echo", ":::", "a", "b"]


def test_everything_after_the_separator_is_the_command():
    a = parse("--kube-pods", "1", "--", "echo", "--kube-pods", "--")
    assert a.parsed.command == ("echo", "--kube-pods", "--")


def test_no_separator_and_no_command_as_gnu_parallel():
    """`womm parallel --kube-pods 2 echo x` and `printf 'echo a\\n' | womm parallel --kube-pods 1`."""
    assert parse("--kube-pods", "2", "echo", "x").parsed.command == ("echo", "x")
    a = parse("--kube-pods", "1")
    assert not a.parsed.has_command and a.parallel_argv == []


@pytest.mark.parametrize("argv, message", [
    (["--", "echo"], "--kube-pods N is required"),
    (["--kube-pods", "0", "--", "echo"], "at least 1"),
    (["--kube-pods", "two", "--", "echo"], "not a number"),
])
def test_usage_errors(argv, message):
    with pytest.raises(UsageError, match=message):
        parse(*argv)


def test_citation_needs_nothing_else():
    assert parse("--citation").citation


@pytest.mark.parametrize("options", [["-j4"], ["-kj4"], ["--jobs=3"], ["--jo", "3"], ["-P", "2"], ["-S", "x"],
                                     ["--sshlogin=x"], ["--sshl", "x"]])
def test_options_womm_decides_are_refused_however_written(options):
    with pytest.raises(UsageError):
        parse("--kube-pods", "1", *options, "--", "true")


def test_job_stdin_options_and_harmless_ones_pass():
    for options in (["-k", "--tag", "--joblog", "x", "--halt", "now,fail=1", "--results", "r", "-n", "2"],
                    ["--pipe", "--block", "1M"], ["--spreadstdin"], ["--pipepart", "-a", "f"], ["--cat", "--pipe"]):
        parse("--kube-pods", "1", *options, "--", "true")


def test_ungrouped_output_is_seen_in_bundles_not_in_the_command():
    assert parse("--kube-pods", "1", "-ku", "--", "true").parsed.ungrouped
    assert not parse("--kube-pods", "1", "-k", "--", "sort", "-u").parsed.ungrouped


def test_async_input_detection():
    assert parse("--kube-pods", "1", "--", "wc", "-l", "{}").parsed.reads_stdin
    assert not parse("--kube-pods", "1", "--", "echo", ":::", "a").parsed.reads_stdin
    assert not parse("--kube-pods", "1", "-a", "in.txt", "--", "echo").parsed.reads_stdin


def test_async_input_files_travel_with_the_task(tmp_path):
    from womm_run.leader import TASK_DIR, travelling_argv

    (tmp_path / "in.txt").write_text("1\n2\n")
    (tmp_path / "more.txt").write_text("3\n")
    a = parse("--kube-pods", "1", "-k", "-a", str(tmp_path / "in.txt"), "--", "echo", "::::", str(tmp_path / "more.txt"))
    argv, files = travelling_argv(a.parsed, 1 << 20)
    assert files == {"arg-0": b"1\n2\n", "arg-1": b"3\n"}
    assert argv[0] == "--plain" and f"{TASK_DIR}/arg-0" in argv and argv[-2:] == ["::::", f"{TASK_DIR}/arg-1"]


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


def test_a_local_failure_is_not_called_the_servers():
    from womm.errors import describe

    assert describe(FileNotFoundError(2, "No such file or directory", "/x/.jobs.1")) == \
        "No such file or directory: /x/.jobs.1"
    assert describe(ConnectionRefusedError(111, "Connection refused")).startswith("cannot talk to the server")
