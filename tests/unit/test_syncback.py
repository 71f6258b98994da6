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
    snap = syncback.walk(local)

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
    snap = syncback.walk(local)
    report = syncback.merge(staging, local, snap, "t")
    assert report == {"updated": [], "created": [], "conflicts": [], "refused": []}
    assert sorted(os.listdir(local)) == ["a", "b"]


def test_a_link_to_elsewhere_is_never_written_through(tmp_path):
    """Run 1 left cfg -> ~/.config (or the user made it); run 2's pods made cfg a directory."""
    local, staging, elsewhere = tmp_path / "dir", tmp_path / "staging", tmp_path / "dot-config"
    elsewhere.mkdir()
    local.mkdir()
    (local / "cfg").symlink_to(elsewhere)
    snap = syncback.walk(local)
    write(staging / "cfg" / "settings", "from the cluster")
    write(staging / "cfg" / "deeper" / "x", "x")
    report = syncback.merge(staging, local, snap, "t1")
    assert list(elsewhere.iterdir()) == []  # nothing written outside the directory
    assert os.readlink(local / "cfg") == str(elsewhere)
    assert (local / "cfg.womm-cluster-t1" / "settings").read_text() == "from the cluster"
    assert (local / "cfg.womm-cluster-t1" / "deeper" / "x").read_text() == "x"
    assert report["conflicts"] == [("cfg", "cfg.womm-cluster-t1")]


def test_links_come_back_as_links_and_never_lead_out(tmp_path):
    local, staging = tmp_path / "dir", tmp_path / "staging"
    local.mkdir()
    write(local / "data.txt", "data")
    snap = syncback.walk(local)
    staging.mkdir()
    (staging / "inside").symlink_to("data.txt")
    (staging / "outside").symlink_to("/etc/passwd")
    (staging / "up").symlink_to("../../x")
    report = syncback.merge(staging, local, snap, "t")
    assert os.readlink(local / "inside") == "data.txt"
    assert not os.path.lexists(local / "outside") and not os.path.lexists(local / "up")
    assert sorted(r for r, _ in report["refused"]) == ["outside", "up"]


def test_a_same_size_edit_with_its_mtime_put_back_is_kept(tmp_path):
    local, staging = tmp_path / "dir", tmp_path / "staging"
    t0 = time.time() - 100
    write(local / "notes.txt", "AAAA", t0)
    snap = syncback.walk(local)
    write(local / "notes.txt", "BBBB", t0)  # same size, same mtime (cp -p, tar): the ctime moved
    write(staging / "notes.txt", "CCCC", t0 + 10)
    report = syncback.merge(staging, local, snap, "t")
    assert (local / "notes.txt").read_text() == "BBBB"
    assert (local / "notes.txt.womm-cluster-t").read_text() == "CCCC"
    assert report["conflicts"] == [("notes.txt", "notes.txt.womm-cluster-t")]


def test_a_local_change_during_the_install_is_kept(tmp_path, monkeypatch):
    local, staging = tmp_path / "dir", tmp_path / "staging"
    t0 = time.time() - 100
    write(local / "big.out", "old", t0)
    snap = syncback.walk(local)
    write(staging / "big.out", "from the cluster", t0 + 10)
    real_copy = syncback.shutil.copyfileobj

    def copy_while_the_user_writes(src, dst, length=0):
        real_copy(src, dst, length)
        (local / "big.out").write_text("written here meanwhile")

    monkeypatch.setattr(syncback.shutil, "copyfileobj", copy_while_the_user_writes)
    report = syncback.merge(staging, local, snap, "t")
    assert (local / "big.out").read_text() == "written here meanwhile"
    assert report["updated"] == []


def test_setuid_bits_never_come_back(tmp_path):
    local, staging = tmp_path / "dir", tmp_path / "staging"
    local.mkdir()
    snap = syncback.walk(local)
    write(staging / "tool", "#!/bin/sh\n")
    os.chmod(staging / "tool", 0o4755)
    syncback.merge(staging, local, snap, "t")
    assert os.stat(local / "tool").st_mode & 0o7777 == 0o755
