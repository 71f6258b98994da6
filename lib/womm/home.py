"""The ~/.womm layout. This module is the only place that builds a path under it.

    $WOMM_HOME (default ~/.womm)
    |-- settings.json                 user settings: image prefix, defaults
    |-- projects/<host>/<dir>-<hash>.json
    |                                 one record per directory set up with `womm setup`,
    |                                 keyed by host and real path
    |-- tasks/<id>.json               one record per task started from this home
    |-- run/<id>/                     a live task's runtime files (fifos, jobs file,
    |                                 the directory's snapshot for syncback)
    |-- shares/<share-id>.secret      the key that lets a task's pods read its share
    `-- logs/reap.log                 what `womm reap` did
         logs/share-<share-id>.log    one JSON line per sync of a share (rsync's figures)

The programs pass each other nothing but these files and WOMM_* variables.
"""

import hashlib
import os
import socket
from pathlib import Path


def root() -> Path:
    home = os.environ.get("WOMM_HOME")
    return Path(home) if home else Path.home() / ".womm"


def hostname() -> str:
    return os.environ.get("WOMM_HOSTNAME") or socket.gethostname()


def settings_file() -> Path:
    return root() / "settings.json"


def projects_dir(host: str | None = None) -> Path:
    return root() / "projects" / (host or hostname())


def project_file(directory, host: str | None = None) -> Path:
    real = os.path.realpath(directory)
    if not _is_utf8(real):
        from womm.errors import UsageError

        raise UsageError(f"the path of this directory is not UTF-8 ({os.fsencode(real)!r}): the pods see it at "
                         "the same path, and Kubernetes spells paths in UTF-8; rename it (file names inside "
                         "may be any bytes)")
    digest = hashlib.sha256(real.encode()).hexdigest()[:12]
    name = os.path.basename(real.rstrip("/")) or "root"
    return projects_dir(host) / f"{name}-{digest}.json"


def _is_utf8(path):
    try:
        path.encode("utf-8")
        return True
    except UnicodeEncodeError:  # undecodable bytes, kept by Python as surrogates
        return False


def tasks_dir() -> Path:
    return root() / "tasks"


def task_file(task_id: str) -> Path:
    return tasks_dir() / f"{task_id}.json"


def shell_tasks_dir(shell: str) -> str:
    """Shell code (in a function) that sets `womm_tasks` to tasks_dir() as that shell sees it when
    the code runs: a completion script is made once, and WOMM_HOME read at each TAB."""
    if shell == "fish":
        return 'set -l womm_tasks $HOME/.womm/tasks; test -n "$WOMM_HOME"; and set womm_tasks $WOMM_HOME/tasks'
    return 'local womm_tasks="${WOMM_HOME:-$HOME/.womm}/tasks"'  # bash, zsh


def run_dir(task_id: str) -> Path:
    return root() / "run" / task_id


def snapshot_file(task_id: str) -> Path:
    return run_dir(task_id) / "snapshot.json"


def share_secret_file(share_id: str) -> Path:
    return root() / "shares" / f"{share_id}.secret"


def logs_dir() -> Path:
    return root() / "logs"


def reap_log() -> Path:
    return logs_dir() / "reap.log"


def share_log(share_id: str) -> Path:
    return logs_dir() / f"share-{share_id}.log"


def describe():
    """(name, path, where it came from) for `womm --paths`."""
    source = "WOMM_HOME" if os.environ.get("WOMM_HOME") else "default"
    return [
        ("home", root(), source),
        ("settings", settings_file(), source),
        ("projects", projects_dir(), source),
        ("tasks", tasks_dir(), source),
        ("run", root() / "run", source),
        ("shares", root() / "shares", source),
        ("logs", logs_dir(), source),
    ]
