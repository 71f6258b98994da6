"""womm's programs and their verbs, and how one program finds and runs another.

VERBS is the one table of built-in verbs: the dispatcher routes `womm <verb>` with it,
each program builds its parser's verbs from it, and the man pages come from those
parsers. Any other `womm-<name>` program is a plugin, reachable as `womm <name>`;
builtins always win.

A program is looked up in WOMM_EXEC_PATH, then beside the running program (and
beside its symlink target), then on PATH, as git looks up git-<name>. The directory
a program was found in is exported in WOMM_EXEC_PATH, so that nested calls (womm-run
calling womm-fs, say) reach the same installation.

Standard library only: the dispatcher imports this on every call.
"""

import os
import sys
from typing import NamedTuple


class Verb(NamedTuple):
    program: str
    summary: str


# The programs (the dispatcher and the four it dispatches to), each with its man page's summary.
PROGRAMS = {
    "womm": "Works On My Machine: scale your scripts onto Kubernetes",
    "womm-setup": "the testbed that becomes the pods' image",
    "womm-run": "GNU parallel with Kubernetes pods as job slots; womm shell; womm logs",
    "womm-fs": "cluster setup, the share server, the shares, and womm doctor",
    "womm-reap": "womm status, womm finish, and the reaper for cron",
}

VERBS = {
    "setup": Verb("womm-setup", "make this directory work in a testbed; save it as the pods' image"),
    "clear-prefix": Verb("womm-setup", "forget the registry prefix images are pushed to"),
    "parallel": Verb("womm-run", "GNU parallel with Kubernetes pods as job slots"),
    "run": Verb("womm-run", "same as parallel"),
    "shell": Verb("womm-run", "a shell (or one command) in a pod, or locally with --local"),
    "logs": Verb("womm-run", "replay and follow the output of an --async task"),
    "cluster-setup": Verb("womm-fs", "print (or --apply) what a namespace needs for womm"),
    "build-images": Verb("womm-fs", "build and push womm's helper image"),
    "share": Verb("womm-fs", "inspect or sync this directory's share"),
    "doctor": Verb("womm-fs", "check what a run needs here: tools, cluster, permissions, share server, image"),
    "status": Verb("womm-reap", "list the tasks using the cluster"),
    "finish": Verb("womm-reap", "remove everything of finished or orphaned tasks"),
    "reap": Verb("womm-reap", "for cron: finish orphaned and expired tasks"),
}


def verbs_of(program):
    """{verb: summary} of one program's built-in verbs, in the table's order."""
    return {verb: v.summary for verb, v in VERBS.items() if v.program == program}


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


def find(name):
    """(path, None) of the first executable `name`, or (None, path of a non-executable one)."""
    broken = None
    for d in search_dirs():
        path = os.path.join(d, name)
        if os.path.isfile(path):
            if os.access(path, os.X_OK):
                return path, None
            broken = broken or path
    return None, broken


def require(name):
    """The path of womm program `name`; WommError when it is missing."""
    from womm.errors import WommError

    path, broken = find(name)
    if path is None:
        if broken:
            raise WommError(f"'{broken}' exists but is not executable. Maybe {name} is broken?")
        raise WommError(f"{name} not found beside womm nor on PATH: reinstall womm")
    return path


def plugins():
    """{name: path} of womm-<name> programs on the search path that are not builtins (first one wins)."""
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
            if name and name not in VERBS and name not in found:
                if os.path.isfile(path) and os.access(path, os.X_OK):
                    found[name] = path
    return found


def exec_program(path, argv):
    """Replace this process with the program at path (exit codes and signals pass through)."""
    export_exec_path(path)
    os.execv(path, argv)


def export_exec_path(path):
    directory = os.path.dirname(os.path.abspath(path))
    current = os.environ.get("WOMM_EXEC_PATH", "").split(os.pathsep)
    if directory not in current:
        os.environ["WOMM_EXEC_PATH"] = os.pathsep.join([directory] + [d for d in current if d])


def man_dirs():
    """Directories holding womm's man pages: the install prefix's, then a source checkout's."""
    dirs = [os.path.join(sys.prefix, "share", "man")]
    for d in search_dirs()[:3]:
        dirs.append(os.path.join(os.path.dirname(os.path.abspath(d)), "share", "man"))
    checkout = os.path.join(os.path.dirname(__file__), "..", "..", "build")
    dirs.append(os.path.abspath(checkout))
    return [d for d in dict.fromkeys(dirs) if os.path.isdir(os.path.join(d, "man1"))]
