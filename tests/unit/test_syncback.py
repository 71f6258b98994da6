"""Syncback's merge: nothing local is lost, conflicts are kept beside."""

import os
import time

from womm.shares import syncback


def write(path, text, mtime=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    if mtime:
        os.utime(path, (mtime, mtime))


def test_merge_rules(tmp_path):
    local, staging = tmp_path / "dir", tmp_path / "staging"
    t0 = time.time() - 100
    write(local / "unchanged.txt", "same", t0)
    write(local / "result.txt", "old", t0)
    write(local / "edited-both.txt", "base", t0)
    write(local / "keep-deleted.txt", "x", t0)
    write(local / "sub" / "deep.txt", "old", t0)
    snap = syncback._walk(local)

    # During the run: the user edits one file and deletes another; the cluster writes results.
    write(local / "edited-both.txt", "local edit", t0 + 50)
    os.unlink(local / "keep-deleted.txt")
    write(staging / "unchanged.txt", "same", t0)  # as sent: the cluster left it alone
    write(staging / "keep-deleted.txt", "x", t0)  # as sent: stays deleted
    write(staging / "result.txt", "new result", t0 + 60)
    write(staging / "edited-both.txt", "cluster edit", t0 + 60)
    write(staging / "sub" / "deep.txt", "new deep", t0 + 60)
    write(staging / "new" / "out.txt", "created", t0 + 60)

    report = syncback.merge(staging, local, snap, "abcdefgh")
    assert sorted(report["updated"]) == ["result.txt", "sub/deep.txt"]
    assert report["created"] == ["new/out.txt"]
    assert report["conflicts"] == [("edited-both.txt", "edited-both.txt.womm-cluster-abcdefgh")]
    assert (local / "result.txt").read_text() == "new result"
    assert (local / "edited-both.txt").read_text() == "local edit"
    assert (local / "edited-both.txt.womm-cluster-abcdefgh").read_text() == "cluster edit"
    assert (local / "new" / "out.txt").read_text() == "created"
    assert not (local / "keep-deleted.txt").exists()
    assert (local / "unchanged.txt").read_text() == "same"


def test_merge_never_deletes(tmp_path):
    local, staging = tmp_path / "dir", tmp_path / "staging"
    write(local / "a", "a")
    write(local / "b", "b")
    staging.mkdir()
    snap = syncback._walk(local)
    report = syncback.merge(staging, local, snap, "t")
    assert report == {"updated": [], "created": [], "conflicts": []}
    assert sorted(os.listdir(local)) == ["a", "b"]
