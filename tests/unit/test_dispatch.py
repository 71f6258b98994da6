"""The womm dispatcher: lookup order, plugins, exit codes and signals passed through."""

import os
import signal
import subprocess

import pytest


def run(dispatcher, *args, env=None, path_dirs=()):
    environ = dict(os.environ)
    environ["PATH"] = os.pathsep.join([str(d) for d in path_dirs] + ["/usr/bin", "/bin"])
    environ.update(env or {})
    return subprocess.run([str(dispatcher), *args], env=environ, capture_output=True, text=True, timeout=30)


def echo_where(fake_bin, dir_name, program="womm-run"):
    return fake_bin(dir_name, program, f'echo "{dir_name} $*"\n')


def test_exec_path_first_then_beside_then_path(dispatcher, fake_bin, tmp_path):
    beside = echo_where(fake_bin, "install")
    on_path = echo_where(fake_bin, "path")
    in_exec = echo_where(fake_bin, "exec")
    assert beside.parent == dispatcher.parent

    out = run(dispatcher, "parallel", "x", env={"WOMM_EXEC_PATH": str(in_exec.parent)}, path_dirs=[on_path.parent])
    assert out.stdout == "exec parallel x\n"

    out = run(dispatcher, "parallel", "x", path_dirs=[on_path.parent])
    assert out.stdout == "install parallel x\n"

    beside.unlink()
    out = run(dispatcher, "parallel", "x", path_dirs=[on_path.parent])
    assert out.stdout == "path parallel x\n"


def test_symlinked_dispatcher_finds_siblings_beside_its_target(dispatcher, fake_bin, tmp_path):
    echo_where(fake_bin, "install", "womm-reap")
    link_dir = tmp_path / "elsewhere"
    link_dir.mkdir()
    (link_dir / "womm").symlink_to(dispatcher)
    out = run(link_dir / "womm", "status", "-A")
    assert out.stdout == "install status -A\n"


def test_verbs_map_to_their_program(dispatcher, fake_bin):
    for program in ("womm-setup", "womm-run", "womm-fs", "womm-reap"):
        fake_bin("install", program, f'echo "{program} $*"\n')
    expect = {
        "setup": "womm-setup setup", "clear-prefix": "womm-setup clear-prefix",
        "parallel": "womm-run parallel", "run": "womm-run run", "shell": "womm-run shell",
        "logs": "womm-run logs", "cluster-setup": "womm-fs cluster-setup",
        "status": "womm-reap status", "finish": "womm-reap finish", "reap": "womm-reap reap",
    }
    for verb, line in expect.items():
        assert run(dispatcher, verb, "a b", "c").stdout == f"{line} a b c\n"


def test_plugin_gets_args_and_its_exit_code_passes_through(dispatcher, fake_bin):
    plugin = fake_bin("path", "womm-hello", 'printf "%s|" "$@"; echo; exit 7\n')
    out = run(dispatcher, "hello", "one", "two words", path_dirs=[plugin.parent])
    assert out.returncode == 7
    assert out.stdout == "one|two words|\n"


def test_program_replaces_the_dispatcher_and_signals_pass_through(dispatcher, fake_bin, tmp_path):
    plugin = fake_bin("path", "womm-selfkill", 'echo $$; kill -TERM $$\nsleep 5\n')
    env = dict(os.environ, PATH=f"{plugin.parent}:/usr/bin:/bin")
    proc = subprocess.Popen([str(dispatcher), "selfkill"], env=env, stdout=subprocess.PIPE, text=True)
    pid_seen = int(proc.stdout.readline())
    assert proc.wait(timeout=30) == -signal.SIGTERM
    assert pid_seen == proc.pid  # exec'd, not a child


def test_signal_sent_to_womm_reaches_the_program(dispatcher, fake_bin):
    plugin = fake_bin("path", "womm-wait", "trap 'echo got-int; exit 42' INT\necho ready\nwhile :; do sleep 0.05; done\n")
    env = dict(os.environ, PATH=f"{plugin.parent}:/usr/bin:/bin")
    # SIGINT as a terminal's shell leaves it: a background job of a script inherits it ignored, and a
    # non-interactive sh may not trap a signal ignored on entry.
    proc = subprocess.Popen([str(dispatcher), "wait"], env=env, stdout=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert proc.stdout.readline() == "ready\n"
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) == 42
    assert proc.stdout.read() == "got-int\n"


def test_builtins_win_over_plugins(dispatcher, fake_bin):
    fake_bin("install", "womm-reap", 'echo "builtin $*"\n')
    shadow = fake_bin("path", "womm-status", 'echo plugin\n')
    out = run(dispatcher, "status", path_dirs=[shadow.parent])
    assert out.stdout == "builtin status\n"


def test_unknown_verb_lists_verbs_and_exits_2(dispatcher):
    out = run(dispatcher, "parralel")
    assert out.returncode == 2
    assert "'parralel' is not a womm command" in out.stderr
    assert "Did you mean 'parallel'" in out.stderr
    assert "verbs: setup" in out.stderr and "reap" in out.stderr
    assert "Traceback" not in out.stderr


def test_plugins_on_path_are_listed_in_help(dispatcher, fake_bin):
    plugin = fake_bin("path", "womm-hello", "exit 0\n")
    out = run(dispatcher, "--help", path_dirs=[plugin.parent, plugin.parent])
    assert out.returncode == 0
    plugin_lines = [line for line in out.stdout.splitlines() if line.split()[:1] == ["hello"]]
    assert len(plugin_lines) == 1  # a directory twice on PATH lists it once
    for verb in ("setup", "parallel", "shell", "logs", "cluster-setup", "status", "finish", "reap", "help"):
        assert verb in out.stdout


def test_not_executable_program_is_called_broken(dispatcher, fake_bin):
    fake_bin("path", "womm-hello", "exit 0\n", mode=0o644)
    out = run(dispatcher, "hello", path_dirs=[fake_bin("path", "womm-x", "").parent])
    assert out.returncode == 1
    assert "not executable" in out.stderr and "broken" in out.stderr


def test_version(dispatcher):
    from womm import __version__

    out = run(dispatcher, "--version")
    assert out.stdout == f"womm {__version__}\n"


def test_exec_path_is_exported_for_nested_calls(dispatcher, fake_bin):
    fake_bin("install", "womm-fs", 'echo "$WOMM_EXEC_PATH"\n')
    out = run(dispatcher, "cluster-setup")
    assert out.stdout.strip().split(os.pathsep)[0] == str(dispatcher.parent)


@pytest.mark.parametrize("args", [[], ["--bogus"]])
def test_no_verb_or_bad_option_is_a_usage_error(dispatcher, args):
    out = run(dispatcher, *args)
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
