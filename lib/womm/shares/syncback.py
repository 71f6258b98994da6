"""Syncback: the cluster's changes come back, and no local file is lost, overwritten, or escaped.

1. When the run starts, a snapshot of the directory: for every entry, its type, size,
   mtime and ctime (nanoseconds), inode, and a link's target. A same-size edit in the same
   second, or one whose mtime was put back (`cp -p`, `tar`), still changes the ctime.
2. As each job ends, its pod sends what changed in its copy to the task's own results on
   the share server (compared with the task's own base there): a job GNU parallel counts
   as succeeded has its results on the server, whatever happens to its pod afterwards.
3. At the end (or at `womm finish` for --async), rsync brings the task's results into a
   staging directory under ~/.womm/run/<task>/, never into the directory itself.
4. merge() applies them, entry by entry, and never follows a symlink of the directory:
   each parent is opened component by component with O_NOFOLLOW, each file written
   beside its place and renamed over it atomically, after a last look at what is there:
   - the same as the snapshot's (the cluster sent back what it was given): nothing;
   - the local entry unchanged since the snapshot, or absent from both: the cluster's
     version replaces it (or is created);
   - the local entry changed since the snapshot, is of another kind, or lies under a
     symlink: it stays, and the cluster's version lands beside it as
     NAME.womm-cluster-<task>;
   - a symlink comes back as a symlink, never written through; one whose target leads
     out of the directory is not made (it is reported).
   Nothing is ever deleted locally. The report says what came back, what was kept, and
   what conflicted.
"""

import json
import os
import shutil
import stat
import subprocess

from womm import home
from womm.errors import WommError

FLAGS_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _entry(st, path):
    """What the snapshot keeps of one lstat: enough to see any change to it."""
    kind = "dir" if stat.S_ISDIR(st.st_mode) else "link" if stat.S_ISLNK(st.st_mode) else "file"
    target = os.readlink(path) if kind == "link" else None
    return [kind, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, target]


def walk(directory):
    """{relative path: entry} of everything under directory, not following symlinks."""
    out = {}
    for root, dirs, files in os.walk(directory):
        for name in files + dirs:
            path = os.path.join(root, name)
            try:
                out[os.path.relpath(path, directory)] = _entry(os.lstat(path), path)
            except OSError:
                continue
    return out


def save_snapshot(task_id, directory):
    path = home.snapshot_file(task_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(walk(directory)))
    os.replace(tmp, path)


def load_snapshot(task_id):
    try:
        return json.loads(home.snapshot_file(task_id).read_text())
    except (OSError, ValueError):
        raise WommError(f"the snapshot of task {task_id}'s directory is missing: cannot sync back safely") from None


def pull(server, share_id, task, directory):
    """Bring the task's results into the local directory; the merge report."""
    staging = home.run_dir(task["id"]) / "syncback"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    # Links as links (-l), times to the nanosecond (-t): what merge() compares with the snapshot.
    proc = subprocess.run(
        ["rsync", "-rlt", "-e", server.rsh(), f"{server.pod}:/shares/{share_id}/tasks/{task['id']}/results/",
         str(staging) + "/"],
        capture_output=True, text=True,
    )
    if proc.returncode != 0:
        raise WommError(f"syncback from the share server failed: {(proc.stderr.strip().splitlines() or ['?'])[-1]}"
                        f"; the cluster's files are still there: run `womm finish {task['id']}` to retry")
    try:
        return merge(staging, directory, load_snapshot(task["id"]), task["id"])
    finally:
        shutil.rmtree(staging, ignore_errors=True)


class Local:
    """The local directory, reached without following any of its symlinks."""

    def __init__(self, directory):
        self.root = os.path.realpath(directory)
        self.fd = os.open(self.root, FLAGS_DIR)

    def parent(self, rel, create=False):
        """(an fd of rel's parent directory, None), opened one component at a time with O_NOFOLLOW
        (missing ones made, with create); or (None, the first component that is a symlink or not a
        directory, or missing)."""
        fd = os.dup(self.fd)
        parts = os.path.dirname(rel).split(os.sep) if os.path.dirname(rel) else []
        for i, part in enumerate(parts):
            try:
                nxt = os.open(part, FLAGS_DIR, dir_fd=fd)
            except FileNotFoundError:
                try:
                    if not create:
                        raise
                    os.mkdir(part, 0o777, dir_fd=fd)
                    nxt = os.open(part, FLAGS_DIR, dir_fd=fd)
                except OSError:
                    os.close(fd)
                    return None, i
            except OSError:  # ELOOP or ENOTDIR: a symlink, or a file, stands where a directory was
                os.close(fd)
                return None, i
            os.close(fd)
            fd = nxt
        return fd, None

    def inside(self, rel, target):
        """Whether a symlink at rel with this target resolves (as text) inside the directory."""
        base = os.path.join(self.root, os.path.dirname(rel))
        resolved = os.path.normpath(os.path.join(base, target))
        return resolved == self.root or resolved.startswith(self.root + os.sep)

    def close(self):
        os.close(self.fd)


def merge(staging, directory, snapshot, tag):
    """Apply the staged entries to directory by the rules above; the report."""
    from womm import excludes

    report = {"updated": [], "created": [], "conflicts": [], "refused": []}
    never = excludes.excluded()
    local = Local(directory)
    try:
        for rel, staged in sorted(walk(staging).items()):
            if excludes.matches(rel, never):
                report["refused"].append((rel, "secret"))
                continue
            src = os.path.join(staging, rel)
            _merge_one(local, rel, src, staged, snapshot.get(rel), tag, report)
    finally:
        local.close()
    return report


def _same_content(staged, before):
    """The cluster's entry is the one it was given: same kind, size and time (or link target)."""
    if before is None or staged[0] != before[0]:
        return False
    if staged[0] == "link":
        return staged[5] == before[5]
    return staged[0] == "dir" or (staged[1] == before[1] and staged[2] == before[2])


def _merge_one(local, rel, src, staged, before, tag, report):
    if _same_content(staged, before):
        return
    kind, target = staged[0], staged[5]
    if kind == "link" and not local.inside(rel, target):
        report["refused"].append((rel, target))
        return
    parent, bad = local.parent(rel, create=True)
    if parent is None:
        # A component is a symlink (or a file) here: the cluster's entry goes under that
        # component renamed NAME.womm-cluster-TAG.
        parts = rel.split(os.sep)
        parts[bad] += f".womm-cluster-{tag}"
        beside = os.sep.join(parts)
        parent, _ = local.parent(beside, create=True)
        if parent is None:
            report["refused"].append((rel, "under a link"))
            return
        try:
            if kind == "dir":
                _ensure_dir(parent, os.path.basename(beside))
            else:
                _install(parent, os.path.basename(beside), src, kind, target, expect=_lstat(parent, parts[-1]))
            here, there = os.sep.join(rel.split(os.sep)[:bad + 1]), os.sep.join(parts[:bad + 1])
            if (here, there) not in report["conflicts"]:  # one line for the link, not one per file under it
                report["conflicts"].append((here, there))
        finally:
            os.close(parent)
        return
    name = os.path.basename(rel)
    try:
        if kind == "dir":
            _ensure_dir(parent, name)
            return
        now = _lstat(parent, name)
        # Absent here (created by the cluster, or deleted here meanwhile: nothing is lost), or as it was.
        if now is None or (before is not None and _unchanged(now, before)):
            if _install(parent, name, src, kind, target, expect=now):
                report["updated" if now is not None else "created"].append(rel)
                return
        beside = name + f".womm-cluster-{tag}"
        _install(parent, beside, src, kind, target, expect=_lstat(parent, beside))
        report["conflicts"].append((rel, os.path.join(os.path.dirname(rel), beside)))
    finally:
        os.close(parent)


def _lstat(parent, name):
    """The entry at name in parent (not followed), as the snapshot has it; None if there is none."""
    try:
        st = os.stat(name, dir_fd=parent, follow_symlinks=False)
    except FileNotFoundError:
        return None
    kind = "dir" if stat.S_ISDIR(st.st_mode) else "link" if stat.S_ISLNK(st.st_mode) else "file"
    target = os.readlink(name, dir_fd=parent) if kind == "link" else None
    return [kind, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, target]


def _unchanged(now, before):
    return list(now[:5]) == list(before[:5]) and now[5] == before[5]


def _same(now, expect):
    return (now is None and expect is None) or (now is not None and expect is not None and _unchanged(now, expect))


def _ensure_dir(parent, name):
    """A directory at name (made if missing); True if made."""
    if _lstat(parent, name) is None:
        os.mkdir(name, 0o777, dir_fd=parent)
        return True
    return False


def _install(parent, name, src, kind, target, expect):
    """Put the staged entry at name in parent atomically: a temporary entry beside it, a last look
    (name still is `expect`, None for absent), then a rename over it. False if it changed meanwhile."""
    tmp = f".womm-sync-{os.getpid()}-{name}"[:255]
    _remove_tmp(parent, tmp)
    if kind == "link":
        os.symlink(target, tmp, dir_fd=parent)
    else:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=parent)
        try:
            with open(src, "rb") as f, os.fdopen(fd, "wb", closefd=False) as out:
                shutil.copyfileobj(f, out, 1 << 20)
                out.flush()
                os.fsync(fd)
            st = os.stat(src)
            os.chmod(fd, stat.S_IMODE(st.st_mode) & 0o777)  # never setuid, setgid or sticky from the cluster
            os.utime(fd, ns=(st.st_atime_ns, st.st_mtime_ns))
        finally:
            os.close(fd)
    if not _same(_lstat(parent, name), expect):
        _remove_tmp(parent, tmp)
        return False
    if expect is None:
        # Nothing may be there: link() fails where rename() would replace what just appeared.
        try:
            os.link(tmp, name, src_dir_fd=parent, dst_dir_fd=parent, follow_symlinks=False)
        except FileExistsError:
            _remove_tmp(parent, tmp)
            return False
        _remove_tmp(parent, tmp)
        return True
    os.rename(tmp, name, src_dir_fd=parent, dst_dir_fd=parent)
    return True


def _remove_tmp(parent, tmp):
    try:
        os.unlink(tmp, dir_fd=parent)
    except FileNotFoundError:
        pass


def print_report(report, log):
    updated, created, conflicts, refused = (report[k] for k in ("updated", "created", "conflicts", "refused"))
    if not (updated or created or conflicts or refused):
        log("syncback: nothing changed in the cluster")
        return
    log(f"syncback: {len(updated)} updated, {len(created)} created, {len(conflicts)} kept local"
        + (f", {len(refused)} not brought back" if refused else ""))
    for rel, beside in conflicts:
        log(f"syncback: {rel} changed here during the run (or is not what it was): kept; "
            f"the cluster's version is {beside}")
    reasons = {"under a link": "it lies under a link", "secret": "where secrets live (share-exclude)"}
    for rel, why in refused:
        log(f"syncback: {rel}: not brought back: " + reasons.get(why, f"a link to {why}, outside the directory"))
