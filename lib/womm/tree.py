"""Walking and removing a directory tree: without recursion, and without following a symlink.

A tree the cluster sent (syncback's staging) may be thousands of levels deep: os.walk and
shutil.rmtree recurse once per level (RecursionError), these keep a list of directories instead.
"""

import os
import stat


def walk(top):
    """(relative path, os.DirEntry) of everything under top, parents before children.

    A symlink is yielded, never entered. A directory that cannot be listed is not entered (its own
    entry was yielded): a walk of what the cluster made goes on past what it cannot read.
    """
    pending = [""]
    while pending:
        rel = pending.pop()
        try:
            with os.scandir(os.path.join(top, rel) if rel else top) as entries:
                found = list(entries)
        except OSError:
            continue
        for entry in found:
            sub = os.path.join(rel, entry.name) if rel else entry.name
            yield sub, entry
            try:
                if entry.is_dir(follow_symlinks=False):
                    pending.append(sub)
            except OSError:
                continue


def rmtree(top):
    """Remove top and everything under it, symlinks as themselves; what cannot be removed stays."""
    try:
        if not stat.S_ISDIR(os.lstat(top).st_mode):
            os.unlink(top)
            return
    except FileNotFoundError:
        return
    dirs = [top]
    for rel, entry in walk(top):
        path = os.path.join(top, rel)
        try:
            if entry.is_dir(follow_symlinks=False):
                dirs.append(path)
            else:
                os.unlink(path)
        except OSError:
            pass
    for path in reversed(dirs):  # children were listed after their parents
        try:
            os.rmdir(path)
        except OSError:
            pass
