"""What never leaves this machine: the files where secrets live, whatever directory is shared.

A share (eager, lazy) leaves them out, syncback never writes them, and `womm setup` removes
them from the testbed before it becomes an image. The list is the setting `share-exclude`
(settings.json, or WOMM_SHARE_EXCLUDE, comma-separated); each entry is a name matched at any
depth, or a path ending (`.docker/config.json`).

Names are matched as bytes are: on a file system that folds case (not Linux's own; a mounted
vfat, or ext4 with casefold) `.SSH` is the same directory as `.ssh` and would not be matched.
The same pattern matching, and scan(), serve the protected paths (womm.protect).
"""

import os
import stat

from womm import tree

DEFAULT = (
    ".ssh", ".kube", ".womm", ".netrc", ".git-credentials", ".docker/config.json", ".gnupg", ".aws",
    ".azure", ".config/gcloud", ".pgpass", ".password-store", ".vault-token",
)


def excluded():
    """The list in effect (the setting, else DEFAULT)."""
    from womm.settings import resolve_list

    return resolve_list("share-exclude", DEFAULT)


def matches(rel, patterns):
    """Whether the relative path rel is, or lies under, an entry of patterns."""
    return Rules(patterns).covers(rel)


def _parts(rel):
    rel = rel.strip("/")
    return tuple(rel.split("/")) if rel else ()


class Rules:
    """What one list covers, for the lazy server and syncback: its patterns (names at any depth, path
    endings) and paths anchored at the top of the directory (what scan() found there)."""

    def __init__(self, patterns=(), anchored=(), held=()):
        self.patterns = [_parts(p) for p in patterns if _parts(p)]
        self.anchored = {_parts(a) for a in anchored}
        # Renaming a path that ends in the beginning of a pattern (`.docker` of `.docker/config.json`)
        # makes or unmakes a covered path beneath it; so does renaming a parent of an anchored path.
        # held: covered paths whose parents may not be renamed either (a directory holding a secret).
        self.starts = {p[:k] for p in self.patterns for k in range(1, len(p))}
        self.above = {a[:k] for a in self.anchored | {_parts(h) for h in held} for k in range(len(a) + 1)}
        self.by_first = {}  # each request asks: a lookup per component, not a scan of every pattern
        for p in self.patterns:
            self.by_first.setdefault(p[0], []).append(p)

    def __bool__(self):
        return bool(self.patterns or self.anchored)

    def covers(self, rel):
        """Whether rel is, or lies under, a pattern or an anchored path."""
        parts = _parts(rel)
        for i, part in enumerate(parts):
            for p in self.by_first.get(part, ()):
                if parts[i:i + len(p)] == p:
                    return True
        return any(parts[:len(a)] == a for a in self.anchored)

    def moves(self, rel):
        """Whether renaming rel (from it, or to it) could change what is covered."""
        parts = _parts(rel)
        if parts in self.above or self.covers(rel):
            return True
        return any(parts[-len(s):] == s for s in self.starts if len(parts) >= len(s))

    def root(self, rel):
        """The shortest leading part of rel that is covered (to name it once), or None."""
        parts = _parts(rel)
        for k in range(1, len(parts) + 1):
            if self.covers("/".join(parts[:k])):
                return "/".join(parts[:k])
        return None


class Found:
    """What one list covers in a directory, beyond its names: the topmost entries matched (paths),
    what symlinks among them lead to inside the directory (targets), and the files among them
    that have other names (device and inode of each, for hard links)."""

    def __init__(self):
        self.paths, self.targets, self.inodes = set(), set(), set()

    def rules(self, patterns, hold=False):
        """Rules for the patterns and what was found; hold: no directory holding a match may be renamed."""
        return Rules(patterns, self.targets, self.paths if hold else ())


def scan(directory, lists, home=None):  # noqa: C901 - one walk serves every list: the tree is read once
    """[Found] for each pattern list in directory; the first list (the secrets) is also looked for
    at the top of home (a link in directory may lead there). One walk, without recursion."""
    root = os.path.realpath(directory)
    pats = [[_parts(p) for p in patterns if _parts(p)] for patterns in lists]
    found = [Found() for _ in lists]
    covered = {"": (False,) * len(lists)}  # directories under a match, by list
    for rel, entry in tree.walk(root):
        above = covered.get(os.path.dirname(rel)) or (False,) * len(lists)
        parts = tuple(rel.split("/"))
        here = tuple(above[i] or any(parts[-len(p):] == p for p in pats[i] if len(parts) >= len(p))
                     for i in range(len(lists)))
        for i, hit in enumerate(here):
            if hit:
                if not above[i]:
                    found[i].paths.add(rel)
                _note(found[i], root, os.path.join(root, rel), entry)
        if any(here):
            try:
                if entry.is_dir(follow_symlinks=False):
                    covered[rel] = here
            except OSError:
                pass
    if home and lists and _inside(root, os.path.realpath(home)) is None:
        for p in lists[0]:
            top = os.path.join(home, p)
            if _inside(root, os.path.realpath(os.path.dirname(top))) is not None:
                continue  # walked above
            try:
                st = os.lstat(top)
            except OSError:
                continue
            _note(found[0], root, top, st)
            real = os.path.realpath(top)
            if os.path.isdir(real) and _inside(root, real) is None:
                for rel, entry in tree.walk(real):
                    _note(found[0], root, os.path.join(real, rel), entry)
    return found


def _inside(root, path):
    """path relative to root ("" for root itself), or None if it is not inside."""
    if path == root:
        return ""
    if path.startswith(root.rstrip("/") + "/"):
        return path[len(root.rstrip("/")) + 1:]
    return None


def _note(found, root, path, entry):
    """One covered entry (an os.DirEntry or an lstat result): its target if a link, its inode if linked."""
    try:
        mode = entry.st_mode if isinstance(entry, os.stat_result) else entry.stat(follow_symlinks=False).st_mode
        if stat.S_ISLNK(mode):
            target = os.path.realpath(path)
            rel = _inside(root, target)
            if rel is not None:
                found.targets.add(rel)
            st = os.stat(target)
        elif stat.S_ISREG(mode):
            st = entry if isinstance(entry, os.stat_result) else entry.stat(follow_symlinks=False)
        else:
            return
    except OSError:
        return
    if stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
        found.inodes.add((st.st_dev, st.st_ino))


def aliases(directory, inodes):
    """The relative paths in directory of these files (device, inode) by whatever name."""
    if not inodes:
        return set()
    root = os.path.realpath(directory)
    numbers = {ino for _, ino in inodes}
    out = set()
    for rel, entry in tree.walk(root):
        try:
            if entry.inode() in numbers and not entry.is_dir(follow_symlinks=False):
                st = entry.stat(follow_symlinks=False)
                if (st.st_dev, st.st_ino) in inodes:
                    out.add(rel)
        except OSError:
            continue
    return out


def rsync_args(patterns, directory=None):
    """rsync's --exclude options for the patterns; given the directory, also for the other names its
    secrets have there (hard links to them, what symlinks among them lead to), anchored at its top."""
    args = [f"--exclude={p}" for p in patterns]
    if directory is not None:
        (found,) = scan(directory, [patterns], home=os.path.expanduser("~"))
        for rel in sorted(found.targets | aliases(directory, found.inodes)):
            args.append("--exclude=/" + _literal(rel))
    return args


def _literal(rel):
    # rsync reads a backslash as an escape only in a pattern that has a wildcard.
    if any(c in rel for c in "*?["):
        return "".join("\\" + c if c in "*?[]\\" else c for c in rel)
    return rel


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
