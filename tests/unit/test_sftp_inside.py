"""A hostile client inside the directory, against the real `womm-fs serve-sftp` run as a lazy share runs it
(both lists, the user's umask 022): secrets are never emptied, made, read by another name or uncovered by a
rename; protected paths (.git, .envrc, ...) are read and never changed; no setuid, setgid, sticky bit or
ownership comes from the client; pipelined reads keep the server small. Each sequence goes in one write.
"""

import os
import stat
import sys
import threading

import pytest
from sftpclient import (
    APPEND,
    CREAT,
    HANDLE,
    NAME,
    OK,
    PERMISSION_DENIED,
    READ_,
    STATUS,
    TRUNC,
    WRITE_,
    Client,
    attrs,
    close,
    extended,
    fsetstat,
    lsetstat,
    lstat,
    mkdir,
    open_,
    opendir,
    read,
    readdir,
    remove,
    rename,
    rmdir,
    setstat,
    stat_,
    symlink,
    write,
)

from womm import excludes, protect

SECRET = b"-----BEGIN OPENSSH PRIVATE KEY----- inside-secret\n"
FILES = {
    ".ssh/id_ed25519": SECRET,
    ".kube/config": b"apiVersion: v1 # kube-secret\n",
    ".docker/config.json": b'{"auths": "docker-secret"}\n',
    ".config/gcloud/credentials.db": b"gcloud-secret\n",
    ".config/other.conf": b"not a secret\n",
    "proj/.ssh/key": b"proj-secret\n",
    "dotfiles/ssh_config": b"Host * # a secret's target\n",
    "dd/config.json": b"not a secret until renamed\n",
    ".git/config": b"[core]\n\trepositoryformatversion = 0\n",
    ".git/hooks/post-merge": b"#!/bin/sh\necho merged\n",
    "scripts/pre-commit": b"#!/bin/sh\necho lint\n",
    ".envrc": b"export A=1\n",
    ".vscode/tasks.json": b"{}\n",
    "sub/.git/config": b"[core]\n",
    "data.txt": b"data\n",
}
SECRETS = [b"inside-secret", b"kube-secret", b"docker-secret", b"gcloud-secret", b"proj-secret", b"a secret's target",
           b"home-secret"]


def posix_rename(rid, old, new):
    return extended(rid, "posix-rename@openssh.com", old, new)


def hardlink(rid, old, new):
    return extended(rid, "hardlink@openssh.com", old, new)


class Home:
    """A shared home directory: secrets, a repository, a direnv file; links among them made locally."""

    def __init__(self, tmp_path):
        self.dir = os.path.realpath(tmp_path / "home")
        self.user_home = str(tmp_path / "user-home")  # the server's $HOME, outside the directory
        for rel, content in FILES.items():
            self.make(rel, content)
        os.makedirs(self.user_home + "/.ssh")
        with open(self.user_home + "/.ssh/id_rsa", "wb") as f:
            f.write(b"home-secret\n")
        os.link(self.user_home + "/.ssh/id_rsa", self.path("stray-key"))  # a hard link in, to a secret outside
        os.link(self.path(".ssh/id_ed25519"), self.path("backup-key"))
        os.link(self.path(".git/hooks/post-merge"), self.path("hook-copy"))
        os.symlink("../../scripts/pre-commit", self.path(".git/hooks/pre-commit"))
        os.symlink("../dotfiles/ssh_config", self.path(".ssh/config"))
        os.chmod(self.path("data.txt"), 0o664)  # the user made it group-writable
        for d in ("", ".git/hooks"):
            os.chmod(self.path(d), 0o755)
        self.before = self.contents()

    def path(self, rel):
        return os.path.join(self.dir, rel)

    def make(self, rel, content):
        os.makedirs(os.path.dirname(self.path(rel)), exist_ok=True)
        with open(self.path(rel), "wb") as f:
            f.write(content)

    def contents(self):
        out = {}
        for rel in [*FILES, "stray-key", "backup-key", "hook-copy"]:
            st = os.stat(self.path(rel))
            with open(self.path(rel), "rb") as f:
                out[rel] = (f.read(), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid)
        return out

    def client(self):
        argv = ["sh", "-c", 'umask 022; exec "$@"', "sh", sys.executable, "-m", "womm_fs", "serve-sftp",
                *(f"--exclude={p}" for p in excludes.DEFAULT), *(f"--protect={p}" for p in protect.DEFAULT), self.dir]
        return Client(argv, env=dict(os.environ, HOME=self.user_home))


@pytest.fixture
def home(tmp_path):
    return Home(tmp_path)


def ok(reply):
    return reply.kind != STATUS or reply.code == OK


def run(client, seq):
    """seq: [(expect, request)], expect "ok" or "deny"; sent in one write. What went wrong, and the replies."""
    replies = client.batch([req for _, req in seq])
    wrong = []
    for (expect, req), r in zip(seq, replies, strict=True):
        leaked = [m for m in SECRETS if m in r.body]
        if leaked or (expect == "ok") != ok(r):
            wrong.append(f"{req[0].__name__}{req[1:]}: {'succeeded' if ok(r) else f'status {r.code}'}"
                         + (f", leaked {leaked}" if leaked else ""))
        if r.kind == HANDLE:
            client.one(close, r.handle)
    return wrong, replies


def listing(client, path):
    h = client.one(opendir, path).handle
    names = set()
    while (r := client.one(readdir, h)).kind == NAME:
        names |= {n.decode() for n, _, _ in r.names}
    client.one(close, h)
    return names


def test_secrets_are_never_emptied_made_or_read_by_another_name(home):
    D, c = home.dir, home.client()
    wrong, _ = run(c, [
        ("deny", (open_, D + "/.ssh/id_ed25519", WRITE_ | TRUNC)),
        ("deny", (open_, ".kube/config", WRITE_ | TRUNC)),
        ("deny", (open_, D + "/.ssh/id_ed25519", WRITE_ | CREAT | TRUNC)),
        ("deny", (open_, D + "/.kube/config", READ_ | WRITE_ | APPEND)),
        ("deny", (open_, D + "/.ssh/authorized_keys", WRITE_ | CREAT)),
        ("ok", (symlink, ".ssh/authorized_keys", D + "/ak")),  # a link is data...
        ("deny", (open_, D + "/ak", WRITE_ | CREAT)),  # ...never a way to make what it names
        ("deny", (open_, D + "/ak", WRITE_ | CREAT | TRUNC)),
        ("ok", (symlink, ".ssh/id_ed25519", D + "/k")),
        ("deny", (open_, D + "/k", WRITE_ | TRUNC)),
        ("deny", (open_, D + "/k")),
        ("deny", (open_, D + "/backup-key")),  # a local hard link to the key
        ("deny", (open_, D + "/backup-key", WRITE_ | TRUNC)),
        ("deny", (open_, D + "/backup-key", WRITE_ | CREAT | TRUNC)),
        ("deny", (stat_, D + "/backup-key")),
        ("deny", (lstat, D + "/backup-key")),
        ("deny", (setstat, D + "/backup-key", attrs(size=0))),
        ("deny", (hardlink, D + "/backup-key", D + "/hl")),
        ("deny", (hardlink, D + "/.kube/config", D + "/hl2")),
        ("deny", (open_, D + "/stray-key")),  # a hard link to ~/.ssh/id_rsa, outside the directory
        ("deny", (open_, D + "/dotfiles/ssh_config")),  # where .ssh/config leads
        ("deny", (open_, D + "/dotfiles/ssh_config", WRITE_ | TRUNC)),
        ("deny", (setstat, D + "/.ssh/id_ed25519", attrs(size=0))),
        ("deny", (open_, D + "/proj/.ssh/key", WRITE_ | TRUNC)),
        ("deny", (mkdir, D + "/proj/.ssh/new")),
        ("deny", (remove, D + "/.ssh/id_ed25519")),
    ])
    names = listing(c, D)
    assert c.close()[0] == 0
    assert not wrong, "\n".join(wrong)
    assert not {".ssh", ".kube", "backup-key", "stray-key"} & names, names
    assert "data.txt" in names and ".git" in names
    assert home.contents() == home.before
    assert not os.path.lexists(home.path(".ssh/authorized_keys"))


def test_no_rename_uncovers_or_makes_a_secret(home):
    D, c = home.dir, home.client()
    wrong, _ = run(c, [
        ("deny", (rename, D + "/.docker", D + "/d")),
        ("deny", (posix_rename, D + "/.docker", D + "/d")),
        ("deny", (open_, D + "/d/config.json")),
        ("deny", (posix_rename, D + "/.config", D + "/c")),
        ("deny", (posix_rename, D + "/.config/gcloud", D + "/g")),
        ("deny", (open_, D + "/c/gcloud/credentials.db")),
        ("deny", (posix_rename, D + "/dd", D + "/proj/.docker")),  # would make proj/.docker/config.json
        ("deny", (posix_rename, D + "/dd/config.json", D + "/.docker/config.json")),
        ("deny", (rename, D + "/data.txt", D + "/.netrc")),
        ("deny", (posix_rename, D + "/proj", D + "/p2")),  # it holds proj/.ssh
        ("deny", (posix_rename, D + "/dotfiles", D + "/df")),  # .ssh/config leads into it
        ("ok", (rename, D + "/.config/other.conf", D + "/other.conf")),  # what is no secret moves freely
        ("ok", (rename, D + "/other.conf", D + "/.config/other.conf")),
    ])
    assert c.close()[0] == 0
    assert not wrong, "\n".join(wrong)
    assert home.contents() == home.before
    assert not any(os.path.lexists(home.path(p)) for p in ("d", "c", "g", "p2", "df", ".netrc", "proj/.docker"))


# The last two: where the symlink .git/hooks/pre-commit leads, and another name (a hard link) of a hook.
PROTECTED = [".git/config", ".git/hooks/post-merge", ".envrc", ".vscode/tasks.json", "sub/.git/config",
             "scripts/pre-commit", "hook-copy"]


def test_protected_paths_are_read_and_never_changed(home):
    D, c = home.dir, home.client()
    seq = []
    for rel in PROTECTED:
        p = f"{D}/{rel}"
        seq += [
            ("ok", (open_, p)),
            ("ok", (stat_, p)),
            ("deny", (open_, p, WRITE_ | TRUNC)),
            ("deny", (open_, p, WRITE_ | APPEND)),
            ("deny", (open_, p, WRITE_ | CREAT)),
            ("deny", (setstat, p, attrs(size=0))),
            ("deny", (setstat, p, attrs(perms=0o777))),
            ("deny", (setstat, p, attrs(times=(1, 1)))),
            ("deny", (lsetstat, p, attrs(times=(1, 1)))),
            ("deny", (hardlink, p, D + "/linked")),
        ]
        if rel != "hook-copy":  # removing or replacing that other name leaves the hook as it is
            seq += [
                ("deny", (remove, p)),
                ("deny", (posix_rename, p, D + "/moved")),
                ("deny", (posix_rename, D + "/data.txt", p)),
            ]
    seq += [
        ("deny", (open_, D + "/.git/hooks/pre-push", WRITE_ | CREAT)),
        ("deny", (open_, D + "/.git/hooks/pre-commit", WRITE_ | TRUNC)),  # through the symlink
        ("deny", (symlink, "/tmp/x", D + "/.git/hooks/post-checkout")),
        ("deny", (hardlink, D + "/data.txt", D + "/.git/hooks/pre-push")),
        ("deny", (mkdir, D + "/.git/new")),
        ("deny", (rmdir, D + "/.git/hooks")),
        ("deny", (remove, D + "/.git/hooks/pre-commit")),
        ("deny", (rename, D + "/.git", D + "/g")),
        ("ok", (rename, D + "/sub", D + "/sub2")),  # sub2/.git is as protected as sub/.git...
        ("ok", (rename, D + "/sub2", D + "/sub")),
        ("deny", (rename, D + "/scripts", D + "/s2")),  # ...but the hook's target must stay where it leads
        ("deny", (open_, D + "/.vscode/settings.json", WRITE_ | CREAT)),
        ("deny", (open_, D + "/proj/.envrc", WRITE_ | CREAT)),
        ("deny", (mkdir, D + "/proj/.vscode")),
        ("deny", (mkdir, D + "/proj/.git")),
        ("deny", (symlink, "data.txt", D + "/proj/.envrc")),
        ("ok", (open_, D + "/proj/results.txt", WRITE_ | CREAT)),  # anything else is the jobs' to write
    ]
    wrong, _ = run(c, seq)
    assert not wrong, "\n".join(wrong)
    h = c.one(open_, D + "/.git/config").handle
    assert c.one(fsetstat, h, attrs(perms=0o777)).code == PERMISSION_DENIED  # a handle opened to read
    assert c.one(fsetstat, h, attrs(size=0)).code != OK
    c.one(close, h)
    h = c.one(opendir, D + "/.git/hooks").handle
    assert c.one(fsetstat, h, attrs(perms=0o777)).code == PERMISSION_DENIED
    c.one(close, h)
    assert c.close()[0] == 0
    assert home.contents() == home.before
    assert sorted(os.listdir(home.path(".git/hooks"))) == ["post-merge", "pre-commit"]
    assert not any(os.path.lexists(home.path(p)) for p in ("moved", "linked", "g", "s2", "proj/.envrc", "proj/.git"))
    assert stat.S_IMODE(os.stat(home.path(".git/hooks")).st_mode) == 0o755


def test_no_setuid_setgid_sticky_ownership_or_group_write_from_the_client(home):
    D, c = home.dir, home.client()
    me = os.stat(D)
    with open(home.path("tool"), "wb") as f:
        f.write(b"#!/bin/sh\n")
    os.chmod(home.path("tool"), 0o4755)  # the user's own setuid program
    wrong, replies = run(c, [
        ("ok", (open_, D + "/made", WRITE_ | CREAT, attrs(perms=0o6777))),
        ("ok", (mkdir, D + "/dir", attrs(perms=0o3777))),
        ("ok", (setstat, D + "/made", attrs(perms=0o4777))),
        ("ok", (setstat, D, attrs(perms=0o1777))),  # the shared directory itself: never drwxrwxrwt
        ("ok", (setstat, D + "/data.txt", attrs(perms=0o666))),  # its group write was the user's: kept
        ("deny", (setstat, D + "/data.txt", attrs(owner=(me.st_uid + 1, me.st_gid)))),
        ("deny", (setstat, D + "/data.txt", attrs(owner=(me.st_uid, me.st_gid + 1)))),
        ("deny", (lsetstat, D + "/data.txt", attrs(owner=(0 if me.st_uid else 1, 0)))),
        ("ok", (setstat, D + "/data.txt", attrs(owner=(me.st_uid, me.st_gid)))),  # no change: fine
        ("ok", (open_, D + "/tool", WRITE_)),
    ])
    h = c.one(open_, D + "/made", WRITE_).handle
    assert c.one(fsetstat, h, attrs(perms=0o2777)).code == OK
    assert c.one(fsetstat, h, attrs(owner=(me.st_uid + 1, me.st_gid))).code == PERMISSION_DENIED
    c.one(close, h)
    h = c.one(open_, D + "/tool", WRITE_).handle
    assert c.one(write, h, 0, b"#!/bin/sh\necho other\n").code == OK
    c.one(close, h)
    assert c.close()[0] == 0
    assert not wrong, "\n".join(wrong)

    def mode(rel):
        return stat.S_IMODE(os.stat(home.path(rel)).st_mode)

    assert (mode("made"), mode("dir"), mode(""), mode("data.txt"), mode("tool")) == (0o755, 0o755, 0o755, 0o664, 0o755)
    st = os.stat(home.path("data.txt"))
    assert (st.st_uid, st.st_gid) == (me.st_uid, me.st_gid)


def vm_peak(pid):
    """The process's peak resident memory in bytes (VmHWM): what it reached, not what it holds now."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


@pytest.mark.slow
def test_pipelined_reads_keep_the_server_small(tmp_path):
    """2,000 READs of 255 KiB each sent in one go (75 KB of requests): 500 MB of replies, written as made."""
    d = tmp_path / "share"
    d.mkdir()
    with open(d / "big", "wb") as f:
        f.truncate(1 << 20)
    c = Client([sys.executable, "-m", "womm_fs", "serve-sftp", str(d)])
    h = c.one(open_, "big").handle
    n = 2000
    ids = c.ids(n)
    sender = threading.Thread(target=c.send, args=(b"".join(read(i, h, 0, 1 << 20) for i in ids),))
    sender.start()
    got = 0
    for _ in ids:
        kind, body = c._packet()
        got += kind == 103 and len(body) > 200_000  # DATA, a full read
    sender.join()
    peak = vm_peak(c.proc.pid)
    assert c.close()[0] == 0
    print(f"server's peak RSS under {n} pipelined READs: {peak / 1e6:.0f} MB")
    assert got == n
    assert peak < 300e6, f"the server reached {peak / 1e6:.0f} MB"


def test_no_directory_git_takes_for_a_repository_is_made_or_changed(home):
    # A bare repository needs no .git: HEAD beside objects/ and refs/ (or a commondir) is one, and a shell
    # prompt runs git, and what its config names, in every directory one enters.
    for rel in ("mirror.git/objects/x", "mirror.git/refs/x", "wt/x"):
        home.make(rel, b"")
    for rel, content in (("mirror.git/HEAD", b"ref: refs/heads/main\n"), ("mirror.git/config", b"[core]\n"),
                         ("wt/HEAD", b"ref: refs/heads/main\n"), ("wt/commondir", b"../.git\n"), ("stage/refs/x", b"")):
        home.make(rel, content)
    D, c = home.dir, home.client()
    wrong, _ = run(c, [
        ("ok", (mkdir, D + "/a")), ("ok", (mkdir, D + "/a/objects")), ("ok", (mkdir, D + "/a/refs")),
        ("deny", (open_, D + "/a/HEAD", WRITE_ | CREAT)),  # the third name of the set
        ("deny", (symlink, "refs/heads/main", D + "/a/HEAD")),
        ("deny", (posix_rename, D + "/data.txt", D + "/a/HEAD")),
        ("deny", (hardlink, D + "/data.txt", D + "/a/HEAD")),
        ("ok", (mkdir, D + "/b")), ("ok", (open_, D + "/b/HEAD", WRITE_ | CREAT)), ("ok", (mkdir, D + "/b/objects")),
        ("deny", (mkdir, D + "/b/refs")),
        ("deny", (posix_rename, D + "/stage/refs", D + "/b/refs")),  # a whole directory renamed in
        ("deny", (open_, D + "/b/commondir", WRITE_ | CREAT)),
        ("ok", (rename, D + "/b", D + "/b2")),  # the two it holds make nothing anywhere
        ("ok", (open_, D + "/b2/notes", WRITE_ | CREAT)),
        # the user's own bare repository and worktree git directory: read, never changed
        ("ok", (open_, D + "/mirror.git/config")),
        ("deny", (open_, D + "/mirror.git/config", WRITE_ | TRUNC)),
        ("deny", (mkdir, D + "/mirror.git/hooks")),
        ("deny", (open_, D + "/mirror.git/objects/x", WRITE_ | APPEND)),
        ("deny", (remove, D + "/mirror.git/HEAD")),
        ("deny", (open_, D + "/wt/config.worktree", WRITE_ | CREAT)),
        ("deny", (setstat, D + "/wt/HEAD", attrs(perms=0o600))),
        ("ok", (mkdir, D + "/objects")), ("ok", (mkdir, D + "/proj/refs")),  # the names alone are anyone's
    ])
    assert c.close()[0] == 0
    assert not wrong, "\n".join(wrong)
    assert sorted(os.listdir(home.path("a"))) == ["objects", "refs"]
    assert sorted(os.listdir(home.path("b2"))) == ["HEAD", "notes", "objects"]
    assert sorted(os.listdir(home.path("mirror.git"))) == ["HEAD", "config", "objects", "refs"]
    assert sorted(os.listdir(home.path("wt"))) == ["HEAD", "commondir", "x"]
    assert home.contents() == home.before


def test_a_change_waits_for_the_other_servers_check_and_change(home):
    # Each pod has its own server: without the lock, two could each add one of a set's last two names, or
    # one could move a directory between the other's check and its change.
    import fcntl

    os.makedirs(home.path("r/objects"))
    c = home.client()
    lock = os.open(home.dir, os.O_RDONLY | os.O_DIRECTORY)
    fcntl.flock(lock, fcntl.LOCK_EX)
    replies = []
    t = threading.Thread(target=lambda: replies.append(c.one(posix_rename, home.dir + "/data.txt", home.dir + "/d2")),
                         daemon=True)
    try:
        assert ok(c.one(stat_, home.dir + "/r/objects"))  # reading does not wait
        t.start()
        t.join(0.5)
        assert not replies and os.path.exists(home.path("data.txt"))
    finally:
        fcntl.flock(lock, fcntl.LOCK_UN)
        os.close(lock)
    t.join(10)
    assert replies and replies[0].code == OK
    assert c.one(posix_rename, home.dir + "/d2", home.dir + "/data.txt").code == OK
    assert c.one(mkdir, home.dir + "/r/refs").code == OK
    assert c.one(open_, home.dir + "/r/HEAD", WRITE_ | CREAT).code == PERMISSION_DENIED
    assert c.close()[0] == 0


def test_a_directory_moved_back_and_forth_by_another_pod_never_lets_a_set_complete(home):
    D, c, mover = home.dir, home.client(), home.client()
    assert all(ok(r) for r in c.batch([(mkdir, D + "/q"), (mkdir, D + "/q/objects"), (mkdir, D + "/q/refs")]))
    os.makedirs(home.path("mirror.git/objects"))
    os.makedirs(home.path("mirror.git/refs"))
    home.make("mirror.git/HEAD", b"ref: refs/heads/main\n")
    stop = threading.Event()

    def move():
        while not stop.is_set():
            mover.batch([(posix_rename, D + "/q", D + "/t"), (posix_rename, D + "/t", D + "/q"),
                         (posix_rename, D + "/mirror.git", D + "/m2"), (posix_rename, D + "/m2", D + "/mirror.git")] * 25)

    t = threading.Thread(target=move, daemon=True)
    t.start()
    try:
        made = []
        for _ in range(10):
            replies = c.batch([(open_, D + "/q/HEAD", WRITE_ | CREAT), (mkdir, D + "/mirror.git/hooks")] * 20)
            made += [r for r in replies if ok(r)]
    finally:
        stop.set()
        t.join(30)
    assert not made
    assert not any(os.path.lexists(home.path(f"{d}/{n}")) for d in ("q", "t") for n in ("HEAD",))
    assert not any(os.path.lexists(home.path(f"{d}/hooks")) for d in ("mirror.git", "m2"))
    assert c.close()[0] == 0 and mover.close()[0] == 0
