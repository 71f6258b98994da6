"""What never leaves this machine: the files where secrets live, whatever directory is shared.

A share (eager, lazy) leaves them out, syncback never writes them, and `womm setup` removes
them from the testbed before it becomes an image. The list is the setting `share-exclude`
(settings.json, or WOMM_SHARE_EXCLUDE, comma-separated); each entry is a name matched at any
depth, or a path ending (`.docker/config.json`).
"""

import os

DEFAULT = (
    ".ssh", ".kube", ".womm", ".netrc", ".git-credentials", ".docker/config.json", ".gnupg", ".aws",
    ".azure", ".config/gcloud", ".pgpass", ".password-store", ".vault-token",
)


def excluded():
    """The list in effect (the setting, else DEFAULT)."""
    from womm.settings import resolve

    value = resolve("share-exclude")
    if value is None:
        return list(DEFAULT)
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",")]
    return [v.strip("/") for v in value if v and v.strip("/")]


def matches(rel, patterns):
    """Whether the relative path rel is, or lies under, an excluded entry."""
    parts = rel.strip("/").split("/")
    for pattern in patterns:
        pp = pattern.split("/")
        for i in range(len(parts) - len(pp) + 1):
            if parts[i:i + len(pp)] == pp:
                return True
    return False


def rsync_args(patterns):
    return [f"--exclude={p}" for p in patterns]


def present(directory, patterns):
    """The excluded entries there are at the top of directory (to say once what is left out)."""
    return [p for p in patterns if os.path.lexists(os.path.join(directory, p))]


def say_once(directory, log):
    """Tell the user, once per directory, which of its secrets its share leaves out."""
    from womm import records

    found = present(directory, excluded())
    if not found:
        return
    with records.update_project(directory) as project:
        if not project or project.get("excludes_said") == found:
            return
        project["excludes_said"] = found
    log(f"not sharing {', '.join(found)}: secrets stay on this machine "
        "(the share-exclude setting changes the list)")
