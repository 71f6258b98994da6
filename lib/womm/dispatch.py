"""`womm <verb> ...` runs the program that owns the verb, the way git runs git-<name>.

Built-in verbs map to one of the womm-* programs (BUILTINS); any other
`womm-<name>` found on PATH is a plugin, reachable as `womm <name>`. Builtins
always win. The program is looked up in WOMM_EXEC_PATH, then beside this
program (and beside its symlink target), then on PATH, and replaces this
process (os.execv), so exit codes and signals pass through untouched.

Startup cost matters here: import nothing beyond the standard library.
"""

import argparse
import difflib
import os
import sys

from womm import __version__, home

# verb: (program, the verb as that program knows it, one-line summary)
BUILTINS = {
    "setup": ("womm-setup", "setup", "make this directory work in a testbed; save it as the pods' image"),
    "clear-prefix": ("womm-setup", "clear-prefix", "forget the registry prefix images are pushed to"),
    "parallel": ("womm-run", "parallel", "GNU parallel with Kubernetes pods as job slots"),
    "run": ("womm-run", "run", "same as parallel"),
    "shell": ("womm-run", "shell", "a shell (or one command) in a pod, or locally with --local"),
    "logs": ("womm-run", "logs", "replay and follow the output of an --async task"),
    "cluster-setup": ("womm-fs", "cluster-setup", "print (or --apply) what a namespace needs for womm"),
    "build-images": ("womm-fs", "build-images", "build and push the share server and leader images"),
    "share": ("womm-fs", "share", "inspect or sync this directory's share"),
    "status": ("womm-reap", "status", "list the tasks using the cluster"),
    "finish": ("womm-reap", "finish", "remove everything of finished or orphaned tasks"),
    "reap": ("womm-reap", "reap", "for cron: finish orphaned and expired tasks"),
}

PROGRAMS = ("womm-setup", "womm-run", "womm-fs", "womm-reap")


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
    for verb, (program, _, summary) in BUILTINS.items():
        verbs.add_parser(verb, help=f"{summary} ({program})", add_help=False)
    verbs.add_parser("help", help="show the manual page of a verb: womm help [VERB]", add_help=False)
    return parser


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        _print_help(sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    verb, args = argv[0], argv[1:]
    if verb == "--version":
        print(f"womm {__version__}")
        return 0
    if verb == "--paths":
        for name, path, source in home.describe():
            print(f"{name:9} {path}  ({source})")
        return 0
    if verb == "help":
        return _help(args[0] if args else None)
    if verb.startswith("-"):
        return _usage_error(f"unknown option '{verb}'")

    if verb in BUILTINS:
        program, program_verb, _ = BUILTINS[verb]
        args = [program_verb] + args
    else:
        program = f"womm-{verb}"
    path, broken = find_program(program)
    if path is None:
        if broken:
            return _fail(f"'{broken}' exists but is not executable. Maybe {program} is broken?")
        if verb in BUILTINS:
            return _fail(f"{program} not found beside {sys.argv[0]} nor on PATH: reinstall womm")
        return _unknown_verb(verb)
    _export_exec_path(path)
    try:
        os.execv(path, [program] + args)
    except OSError as e:
        return _fail(f"cannot run {path}: {e.strerror}. Maybe {program} is broken?")


def search_dirs():
    """Where programs are looked for, in order, without duplicates."""
    dirs = []
    exec_path = os.environ.get("WOMM_EXEC_PATH")
    if exec_path:
        dirs += exec_path.split(os.pathsep)
    me = sys.argv[0] or ""
    if os.sep in me:
        dirs.append(os.path.dirname(os.path.abspath(me)))
        dirs.append(os.path.dirname(os.path.realpath(me)))
    dirs += os.environ.get("PATH", os.defpath).split(os.pathsep)
    seen, out = set(), []
    for d in dirs:
        key = os.path.realpath(d or ".")
        if key not in seen:
            seen.add(key)
            out.append(d or ".")
    return out


def find_program(name):
    """(path, None) of the first executable `name`, or (None, path of a non-executable one)."""
    broken = None
    for d in search_dirs():
        path = os.path.join(d, name)
        if os.path.isfile(path):
            if os.access(path, os.X_OK):
                return path, None
            broken = broken or path
    return None, broken


def plugins():
    """{name: path} of womm-<name> programs on PATH that are not builtins (first one wins)."""
    found = {}
    for d in search_dirs():
        try:
            entries = sorted(os.listdir(d))
        except OSError:
            continue
        for entry in entries:
            if not entry.startswith("womm-") or entry in PROGRAMS:
                continue
            name = entry[len("womm-"):]
            path = os.path.join(d, entry)
            if name and name not in BUILTINS and name not in found:
                if os.path.isfile(path) and os.access(path, os.X_OK):
                    found[name] = path
    return found


def _export_exec_path(path):
    # Nested calls (womm-run calling womm-fs, say) must reach this same install.
    directory = os.path.dirname(os.path.abspath(path))
    current = os.environ.get("WOMM_EXEC_PATH", "").split(os.pathsep)
    if directory not in current:
        os.environ["WOMM_EXEC_PATH"] = os.pathsep.join([directory] + [d for d in current if d])


def _print_help(out):
    build_parser().print_help(out)
    extra = plugins()
    if extra:
        print("\nplugins:", file=out)
        for name, path in extra.items():
            print(f"  {name:15} {path}", file=out)


def _verb_list():
    return "verbs: " + ", ".join(list(BUILTINS) + ["help"] + sorted(plugins()))


def _unknown_verb(verb):
    close = difflib.get_close_matches(verb, list(BUILTINS) + list(plugins()), n=3)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    print(f"womm: error: '{verb}' is not a womm command.{hint}", file=sys.stderr)
    print(_verb_list(), file=sys.stderr)
    return 2


def _usage_error(message):
    print(f"womm: error: {message}", file=sys.stderr)
    print(_verb_list(), file=sys.stderr)
    return 2


def _fail(message):
    print(f"womm: error: {message}", file=sys.stderr)
    return 1


def man_dirs():
    """Directories holding womm's man pages: the install prefix's, then a source checkout's."""
    dirs = [os.path.join(sys.prefix, "share", "man")]
    for d in search_dirs()[:3]:
        dirs.append(os.path.join(os.path.dirname(os.path.abspath(d)), "share", "man"))
    checkout = os.path.join(os.path.dirname(__file__), "..", "..", "build")
    dirs.append(os.path.abspath(checkout))
    return [d for d in dict.fromkeys(dirs) if os.path.isdir(os.path.join(d, "man1"))]


def _help(verb):
    """`womm help [VERB]`: open the verb's manual page, as `git help` does."""
    if verb is None:
        page = "womm"
    elif verb in BUILTINS:
        page = BUILTINS[verb][0]
    elif verb in plugins():
        os.execv(plugins()[verb], [f"womm-{verb}", "--help"])
    else:
        return _unknown_verb(verb)
    dirs = man_dirs()
    has_page = any(
        os.path.exists(os.path.join(d, "man1", f"{page}.1" + ext)) for d in dirs for ext in ("", ".gz")
    )
    man, _ = find_program("man")
    if has_page and man:
        manpath = os.environ.get("MANPATH")
        # A trailing ':' keeps man's default search path after ours.
        os.environ["MANPATH"] = os.pathsep.join(dirs) + ":" + (manpath or "")
        os.execv(man, ["man", page])
    # No man page installed (or no man): the program's own help says the same.
    if page == "womm":
        _print_help(sys.stdout)
        return 0
    path, _ = find_program(page)
    if path is None:
        return _fail(f"{page} not found: reinstall womm")
    os.execv(path, [page, BUILTINS[verb][1], "--help"])


if __name__ == "__main__":
    sys.exit(main())
