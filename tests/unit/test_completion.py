"""`womm completion`: scripts made from the programs' own parsers (asked as JSON), and a real bash completing with them."""

import argparse
import os
import shutil
import subprocess
import sys

import pytest

from womm import cli

PROGRAMS = {"womm-setup": "womm_setup", "womm-run": "womm_run", "womm-fs": "womm_fs", "womm-reap": "womm_reap"}


@pytest.fixture
def installed(dispatcher):
    """womm and its four programs in one directory, as pip installs them."""
    for program, package in PROGRAMS.items():
        path = dispatcher.parent / program
        path.write_text(f"#!{sys.executable}\nimport sys\nfrom {package}.cli import main\nsys.exit(main())\n")
        path.chmod(0o755)
    return dispatcher


def completion(womm, shell, tmp_path):
    env = {"PATH": "/usr/bin:/bin", "WOMM_HOME": str(tmp_path / "home-when-made"), "HOME": str(tmp_path)}
    proc = subprocess.run([str(womm), "completion", shell], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc


# Drives bash's programmable completion as readline would: the words, the cursor, then the function
# the script registered for `womm` (read back from `complete -p`), whose COMPREPLY is printed.
DRIVER = r"""
compopt() { :; }  # a stub: outside a real TAB, bash's compopt refuses to run
source "$1"; shift
COMP_LINE="$1"; COMP_POINT=${#COMP_LINE}
read -ra COMP_WORDS <<< "$COMP_LINE"
[[ $COMP_LINE == *" " ]] && COMP_WORDS+=("")
COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))
function=$(complete -p womm | sed -n 's/.* -F \([^ ]*\) .*/\1/p')
"$function" womm "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
printf '%s\n' "${COMPREPLY[@]}"
"""


@pytest.fixture
def bash_complete(installed, tmp_path):
    script = tmp_path / "womm.bash"
    script.write_text(completion(installed, "bash", tmp_path).stdout)

    def complete(line, womm_home=None):
        env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
        if womm_home:
            env["WOMM_HOME"] = str(womm_home)
        proc = subprocess.run(["bash", "--norc", "--noprofile", "-c", DRIVER, "driver", str(script), line],
                              capture_output=True, text=True, env=env, timeout=30)
        assert proc.returncode == 0, proc.stderr
        return [word for word in proc.stdout.splitlines() if word]

    return complete


needs_bash = pytest.mark.skipif(shutil.which("bash") is None, reason="no bash here")


@needs_bash
def test_bash_completes_verbs(bash_complete):
    assert bash_complete("womm par") == ["parallel"]
    everything = bash_complete("womm ")
    assert {"setup", "parallel", "doctor", "status", "finish", "help", "completion"} <= set(everything)
    assert "parser-json" not in everything and "rsh" not in everything  # hidden verbs stay hidden


@needs_bash
def test_bash_completes_task_ids_from_womm_home_at_tab_time(bash_complete, tmp_path):
    home = tmp_path / "other-home"
    (home / "tasks").mkdir(parents=True)
    for task in ("k3x9ab", "k3y2cd", "zz0001"):
        (home / "tasks" / f"{task}.json").write_text("{}")
    (home / "tasks" / "not-a-task.tmp").write_text("")
    assert bash_complete("womm logs ", womm_home=home) == ["k3x9ab", "k3y2cd", "zz0001"]
    assert bash_complete("womm logs k3x", womm_home=home) == ["k3x9ab"]
    assert bash_complete("womm finish k3x9ab ", womm_home=home) == ["k3x9ab", "k3y2cd", "zz0001"]
    assert bash_complete("womm logs ", womm_home=tmp_path / "empty") == []


@needs_bash
def test_bash_completes_options_and_their_choices(bash_complete):
    assert bash_complete("womm parallel --kube-p") == ["--kube-pods", "--kube-pending-timeout"]
    assert bash_complete("womm setup --share ") == ["lazy", "eager", "eager-syncback", "none"]
    assert bash_complete("womm doctor -o ") == ["text", "json"]
    assert bash_complete("womm share ") == ["status", "sync"]
    assert bash_complete("womm completion ") == ["bash", "zsh", "fish"]
    assert "--all-namespaces" in bash_complete("womm status --")


def test_zsh_and_fish_scripts(installed, tmp_path):
    zsh = completion(installed, "zsh", tmp_path).stdout
    assert zsh.startswith("#compdef womm")
    assert "_womm_task_ids() {" in zsh and "(N:t:r)" in zsh and "compdef _shtab_womm -N womm" in zsh
    assert ":_womm_task_ids" in zsh and "doctor:" in zsh and "eager-syncback" in zsh
    fish = completion(installed, "fish", tmp_path).stdout
    assert "function _womm_task_ids" in fish and '-ka "(_womm_task_ids)"' in fish
    assert "complete -c womm" in fish and "-a parallel" in fish and "-l kube-pods" in fish


def test_a_program_that_cannot_say_leaves_its_verbs_bare(installed, tmp_path):
    (installed.parent / "womm-reap").unlink()
    proc = completion(installed, "bash", tmp_path)
    assert "womm-reap not found" in proc.stderr
    assert "finish" in proc.stdout and "--kube-pods" in proc.stdout


def test_usage(installed, tmp_path):
    proc = subprocess.run([str(installed), "completion", "tcsh"], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and proc.stderr == "womm: error: usage: womm completion bash|zsh|fish\n"


def test_the_dispatcher_imports_no_completion_machinery():
    code = ("import sys; import womm_dispatch.cli; "
            "print(sorted(m for m in ('shtab', 'womm_dispatch.completion', 'json') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_every_program_prints_its_parser(installed):
    for program in PROGRAMS:
        proc = subprocess.run([str(installed.parent / program), cli.PARSER_JSON], capture_output=True, text=True,
                              timeout=30)
        assert proc.returncode == 0, proc.stderr
        import json

        node = json.loads(proc.stdout)
        assert node["prog"] == program and node["verbs"]


def test_a_parser_survives_json():
    import json

    from womm_reap.cli import build_parser

    node = json.loads(json.dumps(cli.parser_json(build_parser())))
    finish = node["verbs"]["finish"]
    ids = next(a for a in finish["arguments"] if a["dest"] == "ids")
    assert (ids["nargs"], ids["metavar"], ids["complete"]) == ("+", "ID", "task-id")
    status = node["verbs"]["status"]
    output = next(a for a in status["arguments"] if a["dest"] == "output")
    assert (output["options"], output["choices"]) == (["-o", "--output"], ["table", "json"])
    assert "reap" in node["verbs"] and cli.PARSER_JSON not in node["verbs"]

    rebuilt = cli.rebuild(argparse.ArgumentParser(prog="womm", add_help=False), node, {"task-id": "F"})
    args = rebuilt.parse_args(["finish", "a1", "b2", "--force", "-n", "ns"])
    assert (args.verb, args.ids, args.force, args.namespace) == ("finish", ["a1", "b2"], True, "ns")
    with pytest.raises(SystemExit):
        rebuilt.parse_args(["status", "-o", "yaml"])  # the choices came along
    finish_ids = next(a for a in cli.verb_parsers(rebuilt)["finish"]._actions if a.dest == "ids")
    assert finish_ids.complete == "F"


def test_the_hidden_verb_is_not_in_the_help(installed):
    env = dict(os.environ, PATH="/usr/bin:/bin")
    out = subprocess.run([str(installed.parent / "womm-fs"), "--help"], capture_output=True, text=True,
                         env=env, timeout=30).stdout
    assert cli.PARSER_JSON not in out and "doctor" in out
