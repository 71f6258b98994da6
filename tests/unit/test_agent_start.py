"""The pod agent starts once per pod, on the pod's small CPU limit, while the pod's first slots wait
for it: it imports nothing heavy (womm_run.podagent's docstring)."""

import subprocess
import sys

import pytest

from womm_run import podagent

# Each of these would add a tenth to a third to the agent's start.
HEAVY = {"argparse", "dataclasses", "tempfile", "pathlib", "typing", "womm.store", "womm.tasks", "womm_run.cli"}


def _modules(code):
    out = subprocess.run([sys.executable, "-c", code + "; import sys; print(' '.join(sys.modules))"],
                         capture_output=True, text=True, check=True).stdout
    return set(out.split())


def test_the_agent_imports_nothing_heavy():
    already = _modules("pass")  # what this Python loads anyway (an editable install's finder, say)
    loaded = _modules("import womm_run.podagent") - already
    assert "womm_run.podagent" in loaded
    assert not loaded & HEAVY


@pytest.mark.parametrize("argv", [[], ["/run"], ["/run", "x"], ["/run", "2", "--push", "a", "b", "c"],
                                  ["/run", "2", "--pull", "a", "b", "c", "d"]])
def test_a_command_line_the_controller_never_gives_is_refused(argv):
    with pytest.raises(SystemExit) as e:
        podagent.main(argv)
    assert "usage" in str(e.value.code)


def test_an_early_agent_whose_job_container_does_not_run_ends_not_yet_and_takes_nothing_over(tmp_path, monkeypatch):
    monkeypatch.setattr(podagent, "EARLY_WAIT", 0.2)
    with pytest.raises(SystemExit) as e:
        podagent.main([str(tmp_path), "2", "--early"])
    assert e.value.code == podagent.NOT_YET
    assert list(tmp_path.iterdir()) == []  # no lock, no pid file: a running agent is left alone


def test_early_is_the_last_word_only():
    with pytest.raises(SystemExit) as e:
        podagent.main(["--early", "/run", "2"])
    assert "usage" in str(e.value.code)
