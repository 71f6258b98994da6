"""The design card, checked: programs never import each other, lib/ imports no program, no import circles."""

import ast
from pathlib import Path

TOP = Path(__file__).resolve().parents[2]
PACKAGES = {  # package: where it lives
    "womm": TOP / "lib" / "womm",
    "womm_dispatch": TOP / "cmd" / "womm" / "womm_dispatch",
    "womm_setup": TOP / "cmd" / "womm-setup" / "womm_setup",
    "womm_run": TOP / "cmd" / "womm-run" / "womm_run",
    "womm_fs": TOP / "cmd" / "womm-fs" / "womm_fs",
    "womm_reap": TOP / "cmd" / "womm-reap" / "womm_reap",
}


def modules():
    """{module name: path} of every womm module."""
    out = {}
    for package, root in PACKAGES.items():
        for path in root.rglob("*.py"):
            parts = [package, *path.relative_to(root).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


def imports(path, known):
    """The womm modules a module imports (at any depth of its code: lazy imports count too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        found |= {n for n in names if n in known}
    return found


def graph():
    known = modules()
    return {name: imports(path, known) for name, path in known.items()}


def top(name):
    return name.split(".")[0]


def test_programs_import_only_themselves_and_lib():
    for module, deps in graph().items():
        for dep in deps:
            if top(module) == "womm":
                assert top(dep) == "womm", f"lib module {module} imports the program module {dep}"
            else:
                assert top(dep) in ("womm", top(module)), f"{module} imports another program's {dep}"


def test_no_import_circles():
    g = graph()
    state = {}

    def visit(node, path):
        state[node] = "open"
        for dep in sorted(g[node]):
            if dep == node or (node.startswith(dep + ".")):
                continue  # a package's own submodule importing the package name is no edge of ours
            if state.get(dep) == "open":
                cycle = path[path.index(dep):] + [dep]
                raise AssertionError("import circle: " + " -> ".join(cycle))
            if dep not in state:
                visit(dep, path + [dep])
        state[node] = "done"

    for node in sorted(g):
        if node not in state:
            visit(node, [node])


def test_a_directory_whose_path_is_not_utf8_is_refused_in_one_line(tmp_path, monkeypatch):
    import os

    import pytest

    from womm import home
    from womm.errors import UsageError

    monkeypatch.setenv("WOMM_HOME", str(tmp_path / "h"))
    with pytest.raises(UsageError, match=r"not UTF-8 \(b'/x/bad\\xffdir'\)"):
        home.project_file(os.fsdecode(b"/x/bad\xffdir"))
    assert home.project_file("/x/caf\u00e9 [1]").name.startswith("caf\u00e9 [1]-")


def test_runner_sh_follows_the_pod_run_directorys_layout():
    """runner.sh is sh, not Python: it names womm.podrun's files itself, and this holds them together."""
    from womm import podrun

    runner = (PACKAGES["womm_run"] / "runner.sh").read_text()
    assert "womm.podrun" in runner  # its header points at the layout's owner
    for name in (podrun.CTL, podrun.RUNNER, podrun.ENV, podrun.JOBS, podrun.LOOPS, podrun.SETSID):
        assert f'"$run/{name}' in runner, name
    for name in (podrun.NEXT, podrun.ALIVE):
        assert f'"$1/{name}"' in runner, name
    for name in (*podrun.FIFOS, podrun.JOB, podrun.PID):
        assert f'"$j/{name}"' in runner, name
    agent = (PACKAGES["womm_run"] / "podagent.py").read_text()
    for name in ("ctl", "jobs", "runner", "loops", "next", "alive"):
        assert f'"{name}"' not in agent, name  # podrun's names only
