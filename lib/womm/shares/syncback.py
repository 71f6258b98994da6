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
   - the same as the snapshot's (the cluster sent back what it was given), or as what
     is there now (an earlier merge of the same results brought it): nothing;
   - the local entry unchanged since the snapshot, or absent from both: the cluster's
     version replaces it (or is created);
   - the local entry changed since the snapshot, is of another kind, or lies under a
     symlink: it stays, and the cluster's version lands beside it as
     NAME.womm-cluster-<task>;
   - a secret (womm.excludes), or a protected path (womm.protect: .git, .envrc, ...
     where tools run what they find), or what a symlink among them leads to, or an
     entry in (or making) a directory git takes for a repository, here or with what
     comes back where it lands: never written; the protected ones said once, together;
     an entry of the cluster's with a name this merge gives conflicting copies
     (NAME.womm-cluster-<task>) is refused (two would land in one directory);
   - a symlink comes back as a symlink, never written through; its target is resolved
     one component at a time against the directory: one that climbs out of it, passes
     through a symlink, or has `..` after a name (whose meaning depends on what the
     name turns out to be) is not made;
   - a file's mode loses setuid, setgid and sticky bits and what the umask takes away.
   Nothing is ever deleted locally. An entry that fails (a name too long for its
   conflict copy, say) is reported and the others still come back; nothing recurses
   (womm.tree), so no depth stops it; and since what is already there counts as done,
   a merge that stopped for any reason can be run again. The report says what came
   back, what was kept, and what conflicted or was not brought back.
"""

import fcntl
import json
import os
import shutil
import stat
import subprocess

from womm import excludes, home, protect, store, tree
from womm.errors import WommError
from womm.report import printable

FLAGS_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _entry(st, path):
    """What the snapshot keeps of one lstat: enough to see any change to it."""
    kind = "dir" if stat.S_ISDIR(st.st_mode) else "link" if stat.S_ISLNK(st.st_mode) else "file"
    target = os.readlink(path) if kind == "link" else None
    return [kind, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, target]


def walk(directory):
    """{relative path: entry} of everything under directory, not following symlinks (nor recursing)."""
    out = {}
    for rel, entry in tree.walk(directory):
        try:
            out[rel] = _entry(entry.stat(follow_symlinks=False), os.path.join(directory, rel))
        except OSError:
            continue
    return out


def save_snapshot(task_id, directory):
    store.write_bytes(home.snapshot_file(task_id), json.dumps(walk(directory)).encode())


def load_snapshot(task_id):
    try:
        return json.loads(home.snapshot_file(task_id).read_text())
    except (OSError, ValueError):
        raise WommError(f"the snapshot of task {task_id}'s directory is missing: cannot sync back safely") from None


def pull(server, share_id, task, directory):
    """Bring the task's results into the local directory; the merge report."""
    staging = home.run_dir(task.id) / "syncback"
    tree.rmtree(staging)
    staging.mkdir(parents=True)
    # Links as links (-l), times to the nanosecond (-t): what merge() compares with the snapshot.
    proc = subprocess.run(
        ["rsync", "-rlt", *server.rsync_options(), f"{server.pod}:/shares/{share_id}/tasks/{task.id}/results/",
         str(staging) + "/"],
        capture_output=True, text=True,
    )
    if proc.returncode != 0:
        said = printable((proc.stderr.strip().splitlines() or ["?"])[-1][-1000:])
        raise WommError(f"syncback from the share server failed: {said}"
                        f"; the cluster's files are still there: run `womm finish {task.id}` to retry")
    try:
        unmunge(staging)
        return merge(staging, directory, load_snapshot(task.id), task.id)
    finally:
        tree.rmtree(staging)


MUNGED = "/rsyncd-munged/"  # rsync's prefix for the symlinks a daemon without chroot receives


def unmunge(staging):
    """The share server keeps the symlinks pods send it "munged" (womm-fs-server: its defence without
    chroot); what comes back through the exec API has them so: they become what the pods made."""
    for _, entry in tree.walk(staging):
        if entry.is_symlink() and (target := os.readlink(entry.path)).startswith(MUNGED):
            os.unlink(entry.path)
            os.symlink(target[len(MUNGED):], entry.path)


class Local:
    """The local directory, reached without following any of its symlinks."""

    def __init__(self, directory):
        self.root = os.path.realpath(directory)
        self.fd = os.open(self.root, FLAGS_DIR)
        self.umask = protect.umask()

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

    def link_refused(self, rel, target):  # noqa: C901 - one pass over the components, its rules side by side
        """Why a symlink at rel with this target is not made; None if it may be.

        The target is resolved one component at a time against the directory as it is: `..` may
        climb to the directory's top, no higher, and only before the first name (after a name, what
        `..` means depends on whether that name is a symlink); no component may be a symlink (where
        it leads is not this link's to check). A name not there yet is taken as it is: this merge
        makes a symlink there only by these same rules, so a chain of them stays inside."""
        if target.startswith("/"):
            if target != self.root and not target.startswith(self.root + "/"):
                return "leads out of the directory"
            parts, rest = [], target[len(self.root):]
        else:
            parts, rest = (os.path.dirname(rel).split("/") if os.path.dirname(rel) else []), target
        named, known = False, True
        for c in rest.split("/"):
            if c in ("", "."):
                continue
            if c == "..":
                if named:
                    return "has .. after a name"
                if not parts:
                    return "leads out of the directory"
                parts.pop()
                continue
            named = True
            parts.append(c)
            if known:
                try:
                    st = os.lstat(os.path.join(self.root, *parts))
                except OSError:
                    known = False  # not there: the rest are names
                    continue
                if stat.S_ISLNK(st.st_mode):
                    return f"goes through the symlink {'/'.join(parts)}"
                known = stat.S_ISDIR(st.st_mode)
        return None

    def close(self):
        os.close(self.fd)


def merge(staging, directory, snapshot, tag):
    """Apply the staged entries to directory by the rules above; the report."""
    report = {"updated": [], "created": [], "conflicts": [], "refused": [], "protected": [], "failed": []}
    lists = excludes.excluded(), protect.protected(directory)
    found = excludes.scan(directory, lists, home=os.path.expanduser("~"))
    secrets, guarded = found[0].rules(lists[0]), found[1].rules(lists[1])
    local, entries, suffix = Local(directory), walk(staging), f".womm-cluster-{tag}"

    def holds(where, name):  # here, or once merged (where is a destination: see _destination)
        staged = os.path.join(*(p.removesuffix(suffix) for p in where.split(os.sep)), name) if where else name
        return staged in entries or os.path.lexists(os.path.join(local.root, where, name))

    # One merge at a time in the directory, and no lazy server of another run here changes it meanwhile
    # (womm.sftp takes the same lock): what is checked is what is there when the entry lands.
    try:
        fcntl.flock(local.fd, fcntl.LOCK_EX)  # (in the try: a Ctrl-C while it waits closes the fd too)
        for rel, staged in sorted(entries.items()):
            if secrets.covers(rel):
                report["refused"].append((rel, "secret"))
                continue
            before = snapshot.get(rel)
            if _same_content(staged, before):
                continue
            if guarded.covers(rel):
                report["protected"].append((rel, guarded.root(rel)))
                continue
            if any(p.endswith(suffix) for p in rel.split(os.sep)):
                report["refused"].append((rel, f"a name this merge gives conflicting copies ({suffix})"))
                continue
            try:
                repository = protect.git_dir_of(_destination(local, rel, suffix), holds) if lists[1] else None
                if repository is not None:
                    report["protected"].append((rel, repository or "."))
                    continue
                _merge_one(local, rel, os.path.join(staging, rel), staged, before, tag, report)
            except OSError as e:  # this entry only: the others still come back
                report["failed"].append((rel, e.strerror or str(e)))
    finally:
        local.close()  # and its lock with it
    return report


def _destination(local, rel, suffix):
    """Where rel lands: rel, or beneath its first component that is a symlink or a file here, renamed
    with the suffix (as _merge_under_a_link puts it)."""
    parts = rel.split(os.sep)
    fd = os.dup(local.fd)
    try:
        for i, part in enumerate(parts[:-1]):
            try:
                nxt = os.open(part, FLAGS_DIR, dir_fd=fd)
            except FileNotFoundError:
                break  # made as a directory
            except OSError:
                parts[i] += suffix
                break
            os.close(fd)
            fd = nxt
    finally:
        os.close(fd)
    return os.sep.join(parts)


def _same_content(staged, before):
    """The cluster's entry is the one it was given: same kind, size and time (or link target)."""
    if before is None or staged[0] != before[0]:
        return False
    if staged[0] == "link":
        return staged[5] == before[5]
    return staged[0] == "dir" or (staged[1] == before[1] and staged[2] == before[2])


def _merge_one(local, rel, src, staged, before, tag, report):
    kind, target = staged[0], staged[5]
    if kind == "link":
        why = local.link_refused(rel, target)
        if why:
            report["refused"].append((rel, f"a link to {target}, which {why}"))
            return
    parent, bad = local.parent(rel, create=True)
    if parent is None:
        _merge_under_a_link(local, rel, src, kind, target, bad, tag, report)
        return
    name = os.path.basename(rel)
    try:
        if kind == "dir":
            _ensure_dir(parent, name)
            return
        now = _lstat(parent, name)
        if now is not None and _same_content(staged, now):
            return  # already here: an earlier merge of these results brought it
        # Absent here (created by the cluster, or deleted here meanwhile: nothing is lost), or as it was.
        if now is None or (before is not None and _unchanged(now, before)):
            if _install(local, parent, name, src, kind, target, expect=now):
                report["updated" if now is not None else "created"].append(rel)
                return
        beside = name + f".womm-cluster-{tag}"
        _install(local, parent, beside, src, kind, target, expect=_lstat(parent, beside))
        report["conflicts"].append((rel, os.path.join(os.path.dirname(rel), beside)))
    finally:
        os.close(parent)


def _merge_under_a_link(local, rel, src, kind, target, bad, tag, report):
    """Component `bad` of rel is a symlink (or a file) here: the cluster's entry goes under that
    component renamed NAME.womm-cluster-TAG."""
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
            _install(local, parent, os.path.basename(beside), src, kind, target, expect=_lstat(parent, parts[-1]))
        here, there = os.sep.join(rel.split(os.sep)[:bad + 1]), os.sep.join(parts[:bad + 1])
        if (here, there) not in report["conflicts"]:  # one line for the link, not one per file under it
            report["conflicts"].append((here, there))
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


def _install(local, parent, name, src, kind, target, expect):
    """Put the staged entry at name in parent atomically: a temporary entry beside it, a last look
    (name still is `expect`, None for absent), then a rename over it. False if it changed meanwhile."""
    tmp = f".womm-sync-{os.getpid()}-{name}"[:255]
    _remove_tmp(parent, tmp)
    try:
        if kind == "link":
            os.symlink(target, tmp, dir_fd=parent)
        else:
            _copy(local, parent, tmp, src)
    except BaseException:
        _remove_tmp(parent, tmp)
        raise
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


def _copy(local, parent, tmp, src):
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=parent)
    try:
        with open(src, "rb") as f, os.fdopen(fd, "wb", closefd=False) as out:
            shutil.copyfileobj(f, out, 1 << 20)
            out.flush()
            os.fsync(fd)
        st = os.stat(src)
        os.chmod(fd, protect.mode(st.st_mode, mask=local.umask))  # no setuid, nothing the umask forbids
        os.utime(fd, ns=(st.st_atime_ns, st.st_mtime_ns))
    finally:
        os.close(fd)


def _remove_tmp(parent, tmp):
    try:
        os.unlink(tmp, dir_fd=parent)
    except FileNotFoundError:
        pass


def print_report(report, log):
    updated, created, conflicts, refused = (report[k] for k in ("updated", "created", "conflicts", "refused"))
    protected, failed = report.get("protected", []), report.get("failed", [])
    if not (updated or created or conflicts or refused or protected or failed):
        log("syncback: nothing changed in the cluster")
        return
    left = len(refused) + len(protected) + len(failed)
    log(f"syncback: {len(updated)} updated, {len(created)} created, {len(conflicts)} kept local"
        + (f", {left} not brought back" if left else ""))
    for rel, beside in conflicts:
        log(f"syncback: {printable(rel)} changed here during the run (or is not what it was): kept; "
            f"the cluster's version is {printable(beside)}")
    if protected:
        roots = sorted({root for _, root in protected})
        log(f"syncback: {len(protected)} changes under {', '.join(printable(r) for r in roots)} not brought back: "
            "tools run what is there (the share-protect setting)")
    reasons = {"under a link": "it lies under a link", "secret": "where secrets live (share-exclude)"}
    for rel, why in refused:
        log(f"syncback: {printable(rel)}: not brought back: {printable(reasons.get(why, why))}")
    for rel, why in failed:
        log(f"syncback: {printable(rel)}: not brought back: {printable(why)}")
