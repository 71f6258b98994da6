"""`womm completion bash|zsh|fish`: a completion script for womm, made from the programs' own parsers.

A dispatcher builtin, like `womm help`, rather than a verb of one program: what it completes
is the dispatcher's own command line, `womm VERB ...`, whose verbs the dispatcher's table
(womm.programs) knows and whose options only the program owning each verb knows. No program
imports another, so the dispatcher asks each one: `womm-run parser-json` (a hidden verb every
program has, womm.cli) prints its parser as JSON; one parser `womm VERB ...` is rebuilt from
those (womm.cli.rebuild) and given to shtab, which writes the script. Task ids (`womm logs ID`,
`womm finish ID...`) are completed by a small shell function that lists ~/.womm/tasks when the
user presses TAB: no Python starts then.

This module is imported only for `womm completion`, and shtab only here: the dispatcher's
startup stays the standard library's.
"""

import json
import subprocess
import sys
from textwrap import dedent

from womm import cli, home, programs
from womm.errors import warn

TASK_IDS = "_womm_task_ids"
TIMEOUT = 20  # seconds for a program to print its parser


def task_id_completer():
    """shtab's `complete` for a task id: per shell, a function listing the names of the task records."""
    tasks = home.shell_tasks_dir
    return {
        "bash": TASK_IDS,
        "zsh": TASK_IDS,
        "fish": f"({TASK_IDS})",
        "preamble": {
            # shtab calls it with the word being completed, and reads one candidate a line.
            "bash": dedent(f"""\
                {TASK_IDS}() {{
                  {tasks("bash")}
                  local f
                  for f in "$womm_tasks"/*.json; do
                    [ -e "$f" ] || continue
                    f=${{f##*/}}; f=${{f%.json}}
                    case $f in "$1"*) printf '%s\\n' "$f" ;; esac
                  done
                }}"""),
            "zsh": dedent(f"""\
                {TASK_IDS}() {{
                  {tasks("zsh")}
                  local -a ids
                  ids=("$womm_tasks"/*.json(N:t:r))
                  compadd -a ids
                }}"""),
            "fish": dedent(f"""\
                function {TASK_IDS}
                  {tasks("fish")}
                  for f in $womm_tasks/*.json
                    string replace -r '^.*/(.*)\\.json$' '$1' -- $f
                  end
                end"""),
        },
    }


def program_parsers():
    """{program: its parser as JSON (or None, and a warning, when it cannot say)}, asked side by side."""
    running = {}
    for program in programs.PROGRAMS:
        if program == "womm":
            continue
        path, _ = programs.find(program)
        if path is None:
            _warn(f"{program} not found: its verbs are completed without their options")
            continue
        try:
            running[program] = subprocess.Popen([path, cli.PARSER_JSON], stdin=subprocess.DEVNULL,
                                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        except OSError as e:
            _warn(f"cannot run {path}: {e.strerror}: its verbs are completed without their options")
    found = {}
    for program, proc in running.items():
        try:
            out, err = proc.communicate(timeout=TIMEOUT)
            found[program] = json.loads(out) if proc.returncode == 0 else None
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            err = f"no answer within {TIMEOUT} s".encode()
            found[program] = None
        except ValueError:
            err, found[program] = b"it printed no JSON", None
        if found[program] is None:
            last = (err.decode(errors="replace").strip().splitlines() or [f"exit {proc.returncode}"])[-1]
            _warn(f"{program} {cli.PARSER_JSON}: {last}: its verbs are completed without their options")
    return found


def parser(root):
    """The parser of `womm VERB ...` as a whole: the dispatcher's (root), each verb filled in by its program's."""
    parsed = program_parsers()
    completers = {"task-id": task_id_completer()}
    verbs = cli.verb_parsers(root)
    for verb, sub in verbs.items():
        if verb not in programs.VERBS:
            continue
        node = ((parsed.get(programs.VERBS[verb].program) or {}).get("verbs") or {}).get(verb)
        if node:
            cli.rebuild(sub, node, completers)
    plugins = {name: path for name, path in programs.plugins().items() if name not in verbs}
    if plugins:
        group = root._subparsers._group_actions[0]  # noqa: SLF001 - argparse has no public accessor
        for name, path in plugins.items():
            group.add_parser(name, help=f"plugin: {path}", add_help=False)
    return root


def main(shell, dispatcher_parser):
    import shtab

    sys.stdout.write(shtab.complete(parser(dispatcher_parser), shell))
    return 0


def _warn(message):
    warn(message, "womm")
