"""`womm <verb> ...` runs the program that owns the verb, the way git runs git-<name>.

The verbs and the search for programs are womm.programs'; this program only routes,
answers `womm help` and `womm completion` (womm_dispatch.completion), and says what went
wrong when there is nothing to run. The program
replaces this process, so exit codes and signals pass through untouched.

Startup cost matters here: import nothing beyond the standard library.
"""

import argparse
import difflib
import os
import sys

from womm import __version__, exitcodes, home, programs
from womm.errors import error

COMPLETION_SHELLS = ("bash", "zsh", "fish")


def build_parser():
    """The parser behind `womm --help` and womm(1); dispatch itself does not parse."""
    parser = argparse.ArgumentParser(
        prog="womm",
        description=(
            "Works On My Machine: run your scripts on a Kubernetes cluster the way GNU "
            "parallel runs them locally. womm dispatches each verb to the program that "
            "owns it (womm-setup, womm-run, womm-fs, womm-reap), as git runs git-<name>."
        ),
        epilog=(
            "Any program named womm-<name> on PATH is a plugin: `womm <name> ARGS` runs it. "
            "`womm help VERB` shows the verb's manual page; `womm VERB --help` its options."
        ),
    )
    parser.add_argument("--version", action="version", version=f"womm {__version__}")
    parser.add_argument(
        "--paths", action="store_true", help="print where womm keeps its files and exit"
    )
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", title="verbs")
    for verb, (program, summary) in programs.VERBS.items():
        verbs.add_parser(verb, help=f"{summary} ({program})", add_help=False)
    help_ = verbs.add_parser("help", help="show the manual page of a verb: womm help [VERB]", add_help=False)
    help_.add_argument("verb", nargs="?", metavar="VERB", choices=list(programs.VERBS), help="the verb")
    completion = verbs.add_parser(
        "completion", add_help=False,
        help="print a completion script for your shell: womm completion bash|zsh|fish",
        description="e.g. `womm completion bash > ~/.local/share/bash-completion/completions/womm`",
    )
    completion.add_argument("shell", choices=COMPLETION_SHELLS, help="the shell")
    return parser


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        _print_help(sys.stdout if argv else sys.stderr)
        return exitcodes.OK if argv else exitcodes.USAGE
    verb, args = argv[0], argv[1:]
    if verb in OWN:
        return OWN[verb](args)
    if verb.startswith("-"):
        return _usage_error(f"unknown option '{verb}'")
    if verb in programs.VERBS:
        program = programs.VERBS[verb].program
        args = [verb] + args
    else:
        program = f"womm-{verb}"
    path, broken = programs.find(program)
    if path is None:
        if broken:
            return _fail(f"'{broken}' exists but is not executable. Maybe {program} is broken?")
        if verb in programs.VERBS:
            return _fail(f"{program} not found beside {sys.argv[0]} nor on PATH: reinstall womm")
        return _unknown_verb(verb)
    try:
        programs.exec_program(path, [program] + args)
    except OSError as e:
        return _fail(f"cannot run {path}: {e.strerror}. Maybe {program} is broken?")


def _version(args):
    print(f"womm {__version__}")
    return exitcodes.OK


def _paths(args):
    for name, path, source in home.describe():
        print(f"{name:9} {path}  ({source})")
    return exitcodes.OK


def _completion(args):
    if len(args) != 1 or args[0] not in COMPLETION_SHELLS:
        error(f"usage: womm completion {'|'.join(COMPLETION_SHELLS)}", "womm")
        return exitcodes.USAGE
    from womm_dispatch import completion

    return completion.main(args[0], build_parser())


def _print_help(out):
    build_parser().print_help(out)
    extra = programs.plugins()
    if extra:
        print("\nplugins:", file=out)
        for name, path in extra.items():
            print(f"  {name:15} {path}", file=out)


def _verb_list():
    return "verbs: " + ", ".join(list(programs.VERBS) + ["help", "completion"] + sorted(programs.plugins()))


def _unknown_verb(verb):
    close = difflib.get_close_matches(verb, list(programs.VERBS) + list(programs.plugins()), n=3)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    error(f"'{verb}' is not a womm command.{hint}", "womm")
    print(_verb_list(), file=sys.stderr)
    return exitcodes.USAGE


def _usage_error(message):
    error(message, "womm")
    print(_verb_list(), file=sys.stderr)
    return exitcodes.USAGE


def _fail(message):
    error(message, "womm")
    return exitcodes.FAILURE


def _help(args):
    """`womm help [VERB]`: open the verb's manual page, as `git help` does."""
    verb = args[0] if args else None
    if verb is None:
        page = "womm"
    elif verb in programs.VERBS:
        page = programs.VERBS[verb].program
    elif verb in programs.plugins():
        os.execv(programs.plugins()[verb], [f"womm-{verb}", "--help"])
    else:
        return _unknown_verb(verb)
    dirs = programs.man_dirs()
    has_page = any(
        os.path.exists(os.path.join(d, "man1", f"{page}.1" + ext)) for d in dirs for ext in ("", ".gz")
    )
    man, _ = programs.find("man")
    if has_page and man:
        manpath = os.environ.get("MANPATH")
        # A trailing ':' keeps man's default search path after ours.
        os.environ["MANPATH"] = os.pathsep.join(dirs) + ":" + (manpath or "")
        os.execv(man, ["man", page])
    # No man page installed (or no man): the program's own help says the same.
    if page == "womm":
        _print_help(sys.stdout)
        return exitcodes.OK
    path, _ = programs.find(page)
    if path is None:
        return _fail(f"{page} not found: reinstall womm")
    os.execv(path, [page, verb, "--help"])


# The verbs this program answers itself.
OWN = {"--version": _version, "--paths": _paths, "help": _help, "completion": _completion}
