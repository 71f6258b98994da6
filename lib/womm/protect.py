"""What the cluster may read but never change on this machine: the places tools run code from.

git runs what `.git/config` names (core.fsmonitor, core.sshCommand, ...) and `.git/hooks/*` on the
user's next `git status` or commit; direnv runs `.envrc` on `cd`; editors run tasks and settings
from `.vscode/` and `.idea/`; a shell runs its startup files. A write there from a job in the cluster
would be code run on the user's machine, so the lazy server refuses every change beneath them
(and to what their symlinks lead to in the directory, and to other hard links of their files), and
syncback does not bring changes to them back. The list is the setting `share-protect`
(WOMM_SHARE_PROTECT, comma-separated), matched as `share-exclude` is (womm.excludes): a name at any
depth, or a path ending. Where the list applies, so does git_dir_of(): no directory git would take for
a repository (a bare one needs no `.git`) is made or changed from the cluster.

Also here: the permissions a file from the cluster gets (mode()).
"""

DEFAULT = (
    # version control: hooks, and commands named in its configuration
    ".git", ".gitmodules", ".hg", ".husky", ".githooks",
    # tools that run what a directory holds when one enters or opens it
    ".envrc", ".direnv", ".vscode", ".idea", ".pre-commit-config.yaml", ".exrc", ".nvimrc", ".nvim.lua",
    # a shared home: what a login or a shell runs
    ".profile", ".bashrc", ".bash_profile", ".bash_login", ".bash_logout", ".zshenv", ".zshrc", ".zprofile",
    ".zlogin", ".zlogout", ".gitconfig", ".config/git", ".config/fish", ".config/autostart", ".config/systemd",
    ".local/bin",
)


def protected(directory=None):
    """The list in effect (the setting, else DEFAULT), and what the directory's git repository's own
    config names in it (git_doors): git runs what is there, or reads commands from it."""
    from womm.settings import resolve_list

    found = list(resolve_list("share-protect", DEFAULT))
    for door in git_doors(directory) if directory else ():
        if door not in found:
            found.append(door)
    return found


def git_doors(directory):
    """Paths within `directory` (relative to it) that the config of the git repository it is in names:
    core.hooksPath (relative to the work tree's top) and the files it includes (include.path and
    includeIf's, relative to the config's own directory). Read as git reads plain `key = value` lines."""
    import os

    directory = os.path.abspath(directory)
    top = directory
    while not os.path.lexists(os.path.join(top, ".git")):
        parent = os.path.dirname(top)
        if parent == top:
            return []
        top = parent
    config = os.path.join(_git_common_dir(os.path.join(top, ".git")), "config")
    named = []
    for section, key, value in _config_entries(config):
        if (section, key) == ("core", "hookspath"):
            named.append(os.path.join(top, os.path.expanduser(value)))
        elif key == "path" and (section == "include" or section.startswith("includeif")):
            named.append(os.path.join(os.path.dirname(config), os.path.expanduser(value)))
    doors = []
    for path in named:
        inside = os.path.relpath(os.path.normpath(path), directory)
        if inside != "." and not inside.startswith(".."):
            doors.append(inside)
    return doors


def _git_common_dir(dot_git):
    """The directory holding the repository's config: .git itself, or where a worktree's (or a
    submodule's) `.git` file leads, and on to its commondir."""
    import os

    if os.path.isdir(dot_git):
        return dot_git
    try:
        with open(dot_git, encoding="utf-8", errors="replace") as f:
            line = f.readline(4096).strip()
    except OSError:
        return dot_git
    if not line.startswith("gitdir:"):
        return dot_git
    git_dir = os.path.join(os.path.dirname(dot_git), line[len("gitdir:"):].strip())
    try:
        with open(os.path.join(git_dir, "commondir"), encoding="utf-8", errors="replace") as f:
            return os.path.normpath(os.path.join(git_dir, f.readline(4096).strip()))
    except OSError:
        return git_dir


def _config_entries(config):
    """(section, key, value) of a git config file's `key = value` lines, section and key lower case
    (a subsection dropped: `includeIf "gitdir:~/x/"` is includeif)."""
    try:
        with open(config, encoding="utf-8", errors="replace") as f:
            lines = f.read(1 << 20).splitlines()
    except OSError:
        return []
    entries, section = [], ""
    for line in lines:
        line = line.strip()
        if line.startswith("[") and "]" in line:
            section = line[1:line.index("]")].split('"')[0].split(".")[0].strip().lower()
            line = line[line.index("]") + 1:].strip()  # `[core] hooksPath = x` on one line
        key, eq, value = line.partition("=")
        if eq and section:
            value = value.split(" #")[0].split(" ;")[0].strip()
            value = value[1:-1] if len(value) > 1 and value[0] == value[-1] == '"' else value
            entries.append((section, key.strip().lower(), value))
    return entries


# git takes a directory for a repository when it holds HEAD beside objects/ and refs/, or beside a
# commondir file that names a repository elsewhere (setup.c, is_git_directory), and then runs what its
# config names. A shell prompt runs git in every directory one enters: `cd results` would be enough.
GIT_DIR_NAMES = frozenset({"HEAD", "objects", "refs", "commondir"})


def git_dir_of(rel, has):
    """The directory (relative to the share, "" for itself) that rel is, lies in, or would complete by
    its name, which git takes for a repository; None if there is none. has(directory, name): whether
    that directory holds an entry of that name, of any kind (names are enough: HEAD's content and the
    entries' kinds can change after the check). rel's name is compared case-folded: on a file system
    that folds case, `Refs` is refs to git."""
    parts = rel.split("/") if rel else []
    for depth in range(len(parts) + 1):
        directory = "/".join(parts[:depth])
        adding = parts[-1].casefold() if depth == len(parts) - 1 else None

        def holds(name, directory=directory, adding=adding):
            return name.casefold() == adding or has(directory, name)

        if holds("HEAD") and (holds("commondir") or (holds("objects") and holds("refs"))):
            return directory
    return None


def umask():
    """This process's umask, read without changing it (os.umask would, for every thread, for a moment)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o022


def mode(requested, keep=0, mask=None):
    """The permission bits an entry from the cluster gets: no setuid, setgid or sticky bit, and no write
    for group or others that the umask (mask) takes away, unless the local entry has it already (keep)."""
    if mask is None:
        mask = umask()
    return requested & 0o777 & ~(mask & ~keep)
