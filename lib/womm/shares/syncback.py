"""Syncback: the cluster's changes come back, and no local file is ever lost.

1. When the run starts, a snapshot of the directory: (size, mtime) of every file.
2. After the last job, each pod sends its changes to the share server.
3. rsync brings the share's files that differ from the local ones into a staging
   directory under ~/.womm/run/<task>/ (never into the directory itself).
4. merge() decides, file by file, against the snapshot:
   - the cluster did not change it (same as the snapshot): nothing to do;
   - the local file did not change since the start: replaced (atomically);
   - the local file is gone: the cluster's version is created;
   - the local file changed too: it stays, and the cluster's version is saved
     beside it as NAME.womm-cluster-<task>. Both are reported.
   Nothing is ever deleted locally.
Times are compared to the second, which is why a run refuses to start when the
clocks differ by more than two seconds.
"""

import json
import os
import shutil
import subprocess
import tempfile
import threading

from womm import home, manifests
from womm.errors import WommError


def _walk(directory):
    """{relative path: (size, mtime in seconds, is symlink)} of files and symlinks."""
    out = {}
    for root, dirs, files in os.walk(directory):
        for name in files + [d for d in dirs if os.path.islink(os.path.join(root, d))]:
            path = os.path.join(root, name)
            try:
                st = os.lstat(path)
            except OSError:
                continue
            rel = os.path.relpath(path, directory)
            out[rel] = (st.st_size, int(st.st_mtime), os.path.islink(path))
    return out


def save_snapshot(task_id, directory):
    path = home.snapshot_file(task_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(_walk(directory)))
    os.replace(tmp, path)


def load_snapshot(task_id):
    try:
        return {k: tuple(v) for k, v in json.loads(home.snapshot_file(task_id).read_text()).items()}
    except (OSError, ValueError):
        raise WommError(f"the snapshot of task {task_id}'s directory is missing: cannot sync back safely") from None


def collect_from_pods(server, share_id, task, pods, log):
    """Each pod sends what its jobs changed to the share server (in parallel)."""
    errors = []

    def push(pod):
        stream = server.cluster.exec_stream(
            pod, ["womm-share-push", server.ip, share_id, task["cwd"]], container=manifests.SHARE_CONTAINER,
        )
        status, _, err = stream.collect()
        if status != 0:
            errors.append(f"{pod}: {err.decode(errors='replace').strip() or status}")

    threads = [threading.Thread(target=push, args=(pod,)) for pod in pods]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for e in errors:
        log(f"syncback: could not collect the changes of pod {e}")


def pull(server, share_id, task):
    """Bring the share's changes into the local directory; the merge report."""
    directory = task["cwd"]
    staging = home.run_dir(task["id"]) / "syncback"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    proc = subprocess.run(
        ["rsync", "-rlpt", "--compare-dest", os.path.abspath(directory), "-e", server.rsh(),
         f"{server.pod}:/shares/{share_id}/tree/", str(staging) + "/"],
        capture_output=True, text=True,
    )
    if proc.returncode != 0:
        raise WommError(f"syncback from the share server failed: {proc.stderr.strip().splitlines()[-1:]}"
                        f"; the cluster's files are still there: run `womm finish {task['id']}` to retry")
    try:
        return merge(staging, directory, load_snapshot(task["id"]), task["id"])
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def merge(staging, directory, snapshot, tag):
    """Apply the staged files to directory by the rules above; {"updated", "created", "conflicts"}."""
    report = {"updated": [], "created": [], "conflicts": []}
    for rel, (size, mtime, is_link) in sorted(_walk(staging).items()):
        if snapshot.get(rel) == (size, mtime, is_link):
            continue  # the cluster left it as it was sent
        src = os.path.join(staging, rel)
        dst = os.path.join(directory, rel)
        try:
            now = os.lstat(dst)
            local = (now.st_size, int(now.st_mtime), os.path.islink(dst))
        except FileNotFoundError:
            local = None
        except NotADirectoryError:
            local = "blocked"
        if local is None:
            _install(src, dst)
            report["created"].append(rel)
        elif local == snapshot.get(rel) and not is_link and not local[2]:
            _install(src, dst)
            report["updated"].append(rel)
        else:
            beside = f"{dst}.womm-cluster-{tag}"
            try:
                _install(src, beside)
            except OSError:
                continue
            report["conflicts"].append((rel, os.path.relpath(beside, directory)))
    return report


def _install(src, dst):
    """Put a copy of src at dst atomically (a temporary file beside dst, then rename)."""
    os.makedirs(os.path.dirname(dst) or ".", exist_ok=True)
    if os.path.islink(src):
        if not os.path.lexists(dst):
            os.symlink(os.readlink(src), dst)
        return
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(dst) or ".", prefix=".womm-")
    os.close(fd)
    try:
        shutil.copy2(src, tmp)
        os.replace(tmp, dst)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def print_report(report, log):
    updated, created, conflicts = report["updated"], report["created"], report["conflicts"]
    if not (updated or created or conflicts):
        log("syncback: nothing changed in the cluster")
        return
    log(f"syncback: {len(updated)} updated, {len(created)} created, {len(conflicts)} kept local")
    for rel, beside in conflicts:
        log(f"syncback: {rel} changed here during the run: kept; the cluster's version is {beside}")
