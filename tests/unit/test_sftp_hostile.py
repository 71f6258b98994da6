"""A hostile client against the real `womm-fs serve-sftp DIR`: pipelined escapes, each sequence in one write.

Files outside DIR hold unique marker contents, names and times. Whatever the sequences do, no reply may
carry a marker, describe an outside object (its size, mode and time), list an outside name or give a
real path outside DIR; afterwards nothing outside DIR has changed and no marker file has a second
link. `WOMM_TEST_SFTP_SERVER="/usr/lib/openssh/sftp-server -d"` runs the same attacks against another
server (OpenSSH's, which is unconfined, fails them). The program run with its openat2 layer switched
off shows that Landlock alone still keeps every outside file's content and listing out of reach.
"""

import hashlib
import os
import sys
import threading
import uuid
from collections import Counter

import pytest
from sftpclient import (
    CREAT,
    HANDLE,
    NAME,
    OK,
    STATUS,
    TRUNC,
    WRITE_,
    Client,
    attrs,
    close,
    extended,
    lsetstat,
    lstat,
    mkdir,
    open_,
    opendir,
    read,
    readdir,
    readlink,
    realpath,
    remove,
    rename,
    rmdir,
    server_argv,
    setstat,
    stat_,
    symlink,
    write,
)

ROUNDS = 200
RACE_SEQUENCES = 400
INSIDE, INSIDE_D = b"inside content\n", b"inside d/f\n"


def posix_rename(rid, old, new):
    return extended(rid, "posix-rename@openssh.com", old, new)


def hardlink(rid, old, new):
    return extended(rid, "hardlink@openssh.com", old, new)


def statvfs(rid, path):
    return extended(rid, "statvfs@openssh.com", path)


class World:
    """DIR, and around it the outside the server must never reach."""

    def __init__(self, tmp_path):
        self.top = os.path.realpath(tmp_path)
        self.base = os.path.join(self.top, "w")
        self.dir = os.path.join(self.base, "share")
        self.contents, self.names, self.attrs = [], set(), set()
        B, D = self.base, self.dir
        os.makedirs(D)
        for d in ("share-evil", "outdir", "outdir/sub"):
            os.mkdir(os.path.join(B, d))
        for path in ("secret", "share-evil/f", "outdir/f", "outdir/sub/f"):
            self.plant(os.path.join(B, path))
        self.uniq = self.plant_name(os.path.join(B, "outdir"))
        for d in ("", "share-evil", "outdir/sub"):
            self.plant_name(os.path.join(B, d))
        target = "outside-link-target-" + uuid.uuid4().hex
        self.contents.append(target.encode())
        os.symlink(target, os.path.join(B, "outlink"))
        # Inside: files, a directory, links that stay inside, and links planted to lead out.
        with open(os.path.join(D, "inside.txt"), "wb") as f:
            f.write(INSIDE)
        os.mkdir(os.path.join(D, "d"))
        with open(os.path.join(D, "d", "f"), "wb") as f:
            f.write(INSIDE_D)
        os.mkdir(os.path.join(D, "race"))
        with open(os.path.join(D, "race", "f"), "wb") as f:
            f.write(INSIDE_D)
        os.symlink("inside.txt", os.path.join(D, "rel"))
        self.escapes = {
            "esc-rel": "../secret", "esc-abs": B + "/secret", "esc-root": "/", "escd-rel": "../outdir",
            "escd-abs": B + "/outdir", "esc-evil": "../share-evil", "esc-chain": "chain2",
        }
        for name, target in self.escapes.items():
            os.symlink(target, os.path.join(D, name))
        os.symlink("d/../../secret", os.path.join(D, "chain2"))
        # Unique times on everything outside (directories last: planting changed theirs).
        outside = [p for p, _ in self.walk()]
        for k, p in enumerate(sorted(outside, key=lambda p: (os.path.isdir(p), -len(p)))):
            os.utime(p, (1_111_111_000 + k, 1_111_111_000 + k), follow_symlinks=False)
        for p in outside + ["/", "/etc", "/etc/passwd"]:
            for follow in (False, True):
                try:
                    st = os.stat(p, follow_symlinks=follow)
                except OSError:
                    continue
                self.attrs.add((st.st_size, st.st_mode, int(st.st_mtime)))
        with open("/etc/passwd", "rb") as f:
            self.contents.append(f.readline().strip())
        self.names |= {b"etc", b"usr", b"proc", b"passwd", b"hostname", b"share", b"share-evil", b"outdir",
                       b"secret", b"outlink"}
        self.before = self.snapshot()
        self.markers = [os.path.join(B, p) for p in ("secret", "share-evil/f", "outdir/f", "outdir/sub/f")]

    def plant(self, path):
        content = b"OUTSIDE-MARKER-" + uuid.uuid4().hex.encode()
        with open(path, "wb") as f:
            f.write(content)
        self.contents.append(content)
        return content

    def plant_name(self, directory):
        name = "outside-name-" + uuid.uuid4().hex
        self.plant(os.path.join(directory, name))
        self.names.add(name.encode())
        return name

    def walk(self):
        """(path, lstat) of top and everything under it but DIR."""
        yield self.top, os.lstat(self.top)
        for root, dirs, files in os.walk(self.top):
            dirs[:] = sorted(d for d in dirs if os.path.join(root, d) != self.dir)
            for name in dirs + sorted(files):
                p = os.path.join(root, name)
                yield p, os.lstat(p)

    def snapshot(self):
        snap = {}
        for p, st in self.walk():
            entry = (st.st_mode, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_nlink, st.st_uid, st.st_gid)
            if os.path.islink(p):
                entry += (os.readlink(p),)
            elif os.path.isfile(p):
                with open(p, "rb") as f:
                    entry += (hashlib.sha256(f.read()).hexdigest(),)
            snap[p] = entry
        st = os.stat("/etc/passwd")
        with open("/etc/passwd", "rb") as f:
            snap["/etc/passwd"] = (st.st_mode, st.st_ctime_ns, hashlib.sha256(f.read()).hexdigest())
        snap["/"] = (os.stat("/").st_mode,)
        return snap

    def leaks(self, req, reply):
        """What in reply describes the outside (empty if nothing)."""
        found = [f"content {m[:30]!r}" for m in self.contents if m in reply.body]
        kind = req[0].__name__
        if reply.attrs is not None and key(reply.attrs) in self.attrs:
            found.append(f"attributes of an outside object {reply.attrs}")
        for name, _, a in reply.names or ():
            if a and key(a) in self.attrs:
                found.append(f"attributes of an outside object {a} (as {name!r})")
            if kind == "readdir" and name in self.names:
                found.append(f"an outside name {name!r}")
            if kind == "realpath" and name != self.dir.encode() and not name.startswith(self.dir.encode() + b"/"):
                found.append(f"a real path outside {name!r}")
        return found


def key(a):
    return (a.get("size"), a.get("perms"), a.get("mtime"))


def succeeded(reply):
    return reply.kind != STATUS or reply.code == OK


def show(req):
    return f"{req[0].__name__}({', '.join(repr(a) for a in req[1:])})"[:160]


class Run:
    """Sends sequences, follows up on each handle, and gathers what went wrong by family."""

    def __init__(self, client, world):
        self.client, self.w = client, world
        self.sequences = self.requests = 0
        self.failures, self.by_family = {}, Counter()  # the first failure of each family, and their counts

    def fail(self, family, what):
        self.by_family[family] += 1
        self.failures.setdefault(family, what)

    def sequence(self, family, seq):
        """seq: [(expect, request)]: expect "ok" (must succeed), "deny" (must fail), None, or the content to read."""
        replies = self.client.batch([req for _, req in seq])
        self.sequences += 1
        self.requests += len(seq)
        bad = False
        for (expect, req), r in zip(seq, replies, strict=True):
            problems = self.w.leaks(req, r)
            if expect == "deny" and succeeded(r):
                problems.append("succeeded")
            if (expect == "ok" or isinstance(expect, bytes)) and not succeeded(r):
                problems.append(f"failed, status {r.code}")
            if r.kind == HANDLE:
                got, more = self.drain(req, r.handle)
                problems += more
                if isinstance(expect, bytes) and got != expect:
                    problems.append(f"read {got[:40]!r}, not {expect!r}")
            if problems and not bad:
                self.fail(family, f"{show(req)}: {'; '.join(problems)}")
                bad = True

    def drain(self, req, handle):
        """Read a file handle to its end (or a directory's entries), then close it."""
        got, problems = b"", []
        listing = req[0] is opendir
        while len(got) < 1 << 20:
            r = self.client.one(readdir, handle) if listing else self.client.one(read, handle, len(got), 65536)
            problems += self.w.leaks((readdir,) if listing else (read,), r)
            if r.kind == STATUS:
                break
            got += b"".join(n for n, _, _ in r.names) if listing else r.data
        self.client.one(close, handle)
        return got, problems

    def check_outside(self):
        after = self.w.snapshot()
        for p in sorted(set(self.w.before) | set(after)):
            if self.w.before.get(p) != after.get(p):
                self.fail("outside", f"{p} changed: {self.w.before.get(p)} -> {after.get(p)}")
        for m in self.w.markers:
            links = os.stat(m).st_nlink if os.path.exists(m) else 0
            if links != 1:
                self.fail("outside-links", f"{m} has {links} links")

    def verdict(self):
        outside = self.by_family["outside"] + self.by_family["outside-links"]
        wrong = sum(self.by_family.values()) - outside
        assert not self.failures, (f"{wrong} of {self.sequences} sequences went wrong, {outside} outside objects "
                                   "changed or linked; the first of each family:\n"
                                   + "\n".join(f"{f} ({self.by_family[f]}x): {what}" for f, what in self.failures.items()))


def families(w, i):
    """Round i's attack sequences: (family, [(expect, request)])."""
    D, B = w.dir, w.base
    targets = ["/", "/etc", "..", "../secret", "../outdir", B + "/secret", B + "/outdir", "../share-evil",
               "../share-evil/f", "d/../../outdir", D + "/../secret"]
    t = targets[i % len(targets)]
    x, y, lnk = f"{D}/x{i}", f"{D}/y{i}", f"{D}/l{i}"
    yield "symlink-then-open", [
        ("ok", (symlink, "/", x)),
        ("deny", (open_, x + "/etc/passwd")),
        ("deny", (open_, x + B + "/secret")),
        ("deny", (open_, x + B + "/outdir/f", WRITE_ | TRUNC)),
        ("deny", (opendir, x + B)),
        ("ok", (remove, x)),
    ]
    yield "symlink-then-probe", [
        ("ok", (symlink, t, y)),
        ("deny", (opendir, y)),
        ("deny", (stat_, y)),
        ("ok", (lstat, y)),
        ("ok", (readlink, y)),
        ("deny", (realpath, y)),
        ("deny", (realpath, y + "/" + w.uniq)),
        ("deny", (stat_, y + "/f")),
        ("deny", (lstat, y + "/f")),
        ("deny", (readlink, y + "/outlink")),
        ("deny", (open_, y + "/f")),
        ("deny", (open_, y + "/" + w.uniq)),
        ("deny", (setstat, y, attrs(perms=0o777))),
        ("deny", (statvfs, y)),
        ("ok", (remove, y)),
    ]
    link_target = "../outdir" if i % 2 else B + "/outdir"
    yield "rename-link-over-dir", [
        (INSIDE_D, (open_, D + "/d/f")),
        ("ok", (symlink, link_target, lnk)),
        ("deny", (rename, lnk, D + "/d")),
        ("deny", (posix_rename, lnk, D + "/d")),
        (None, (open_, D + "/d/f")),
        ("ok", (posix_rename, D + "/d", f"{D}/d.real{i}")),
        ("ok", (posix_rename, lnk, D + "/d")),
        ("deny", (open_, D + "/d/f")),
        (INSIDE, (open_, D + "/rel")),
        ("deny", (opendir, D + "/d")),
        ("deny", (stat_, D + "/d/f")),
        ("deny", (open_, D + "/d/" + w.uniq)),
        ("deny", (mkdir, D + f"/d/new{i}")),
        ("ok", (posix_rename, D + "/d", lnk)),
        ("ok", (posix_rename, f"{D}/d.real{i}", D + "/d")),
        (INSIDE_D, (open_, D + "/d/f")),
        ("ok", (remove, lnk)),
    ]
    victim = f"{D}/victim{i}"
    yield "rename-link-over-file", [
        ("ok", (open_, victim, WRITE_ | CREAT)),
        ("ok", (symlink, "../secret" if i % 2 else B + "/secret", lnk)),
        ("ok", (posix_rename, lnk, victim)),
        ("deny", (open_, victim)),
        ("deny", (open_, victim, WRITE_ | TRUNC)),
        ("deny", (stat_, victim)),
        ("deny", (setstat, victim, attrs(size=0))),
        ("deny", (realpath, victim)),
        ("ok", (remove, victim)),
    ]
    evil = D + "-evil"
    yield "outside-absolute", [
        ("deny", (open_, "/etc/passwd")),
        ("deny", (stat_, "/etc/passwd")),
        ("deny", (lstat, "/etc")),
        ("deny", (opendir, "/")),
        ("deny", (opendir, B)),
        ("deny", (stat_, B)),
        ("deny", (realpath, "/")),
        ("deny", (realpath, B)),
        ("deny", (open_, B + "/secret")),
        ("deny", (open_, evil + "/f")),
        ("deny", (open_, evil + "/f", WRITE_ | TRUNC)),
        ("deny", (opendir, evil)),
        ("deny", (stat_, evil)),
        ("deny", (lstat, evil + "/f")),
        ("deny", (readlink, B + "/outlink")),
        ("deny", (setstat, B + "/secret", attrs(perms=0o777))),
        ("deny", (remove, B + "/secret")),
        ("deny", (mkdir, f"{evil}/new{i}")),
        ("deny", (symlink, "x", f"{B}/planted{i}")),
        ("deny", (symlink, "x", f"{evil}/planted{i}")),
        ("deny", (rename, B + "/secret", f"{D}/stolen{i}")),
        ("deny", (statvfs, "/")),
    ]
    yield "dotdot", [
        ("deny", (open_, D + "/../secret")),
        ("deny", (open_, "../secret")),
        ("deny", (open_, D + "/d/../../secret")),
        ("deny", (open_, D + "/../share-evil/f")),
        ("deny", (opendir, D + "/..")),
        ("deny", (opendir, "..")),
        ("deny", (stat_, D + "/..")),
        ("deny", (lstat, D + "/..")),
        ("deny", (stat_, "d/../../secret")),
        ("deny", (realpath, D + "/..")),
        ("deny", (realpath, "..")),
        ("deny", (realpath, "../share-evil")),
        ("deny", (readlink, D + "/../outlink")),
        ("deny", (mkdir, f"{D}/../new{i}")),
        ("deny", (remove, D + "/../secret")),
        ("deny", (rmdir, D + "/../outdir/sub")),
        ("deny", (symlink, "x", f"{D}/../lnk{i}")),
        ("ok", (stat_, D + "/d/..")),
        ("ok", (realpath, D + "/d/..")),
    ]
    for name in w.escapes:
        L = f"{D}/{name}"
        yield "planted-" + name, [
            ("deny", (open_, L)),
            ("deny", (open_, L, WRITE_ | TRUNC)),
            ("deny", (stat_, L)),
            ("deny", (opendir, L)),
            ("deny", (realpath, L)),
            ("deny", (setstat, L, attrs(perms=0o777))),
            ("deny", (setstat, L, attrs(times=(1, 1)))),
            ("ok", (lstat, L)),
            ("ok", (readlink, L)),
            ("deny", (open_, L + "/f")),
            ("deny", (open_, L + "/etc/passwd")),
            ("deny", (stat_, L + "/f")),
            ("deny", (opendir, L + "/sub")),
            ("deny", (open_, L + "/" + w.uniq)),
            ("deny", (mkdir, f"{L}/new{i}")),
            ("deny", (symlink, "x", f"{L}/lnk{i}")),
            ("deny", (remove, L + "/f")),
            ("deny", (statvfs, L)),
        ]
    yield "hardlink", [
        ("deny", (hardlink, B + "/secret", f"{D}/hl{i}")),
        ("deny", (hardlink, D + "/inside.txt", f"{B}/hl{i}")),
        ("deny", (hardlink, D + "/escd-rel/f", f"{D}/hx{i}")),
        ("deny", (hardlink, D + "/inside.txt", f"{D}/escd-rel/hin{i}")),
        ("deny", (hardlink, D + "/../secret", f"{D}/hd{i}")),
        ("deny", (hardlink, evil + "/f", f"{D}/he{i}")),
        (None, (hardlink, D + "/esc-rel", f"{D}/hls{i}")),  # a link to the symlink itself: inside
        ("deny", (open_, f"{D}/hls{i}")),
        (None, (remove, f"{D}/hls{i}")),
    ]
    mv = f"{D}/mv{i}"
    yield "rename-out", [
        ("ok", (mkdir, mv)),
        ("deny", (posix_rename, mv, f"{B}/moved{i}")),
        ("deny", (posix_rename, mv, f"{D}/escd-rel/moved{i}")),
        ("deny", (rename, mv, f"{D}/../moved{i}")),
        ("deny", (posix_rename, mv, f"{evil}/moved{i}")),
        ("deny", (posix_rename, B + "/secret", f"{D}/stolen{i}")),
        ("deny", (posix_rename, D + "/escd-abs/f", f"{D}/stolen{i}")),
        ("deny", (rename, D + "/escd-rel/" + w.uniq, f"{D}/stolen{i}")),
        ("ok", (posix_rename, D + "/esc-rel", f"{D}/esc-rel.{i}")),
        ("deny", (open_, f"{D}/esc-rel.{i}")),
        ("ok", (posix_rename, f"{D}/esc-rel.{i}", D + "/esc-rel")),
        ("ok", (rmdir, mv)),
    ]
    yield "setstat-through-link", [
        ("deny", (setstat, D + "/esc-rel", attrs(perms=0o777))),
        ("deny", (setstat, D + "/escd-rel/f", attrs(size=0))),
        ("deny", (setstat, D + "/escd-abs", attrs(perms=0o700))),
        ("deny", (setstat, D + "/esc-chain", attrs(times=(7, 7)))),
        ("deny", (lsetstat, D + "/escd-rel/f", attrs(perms=0o777))),
        ("deny", (lsetstat, B + "/secret", attrs(times=(7, 7)))),
        (None, (lsetstat, D + "/esc-rel", attrs(times=(1234, 1234)))),  # the link's own times: inside
        ("ok", (setstat, D + "/rel", attrs(times=(2345, 2345)))),
    ]


@pytest.fixture
def world(tmp_path):
    return World(tmp_path)


@pytest.mark.slow
def test_no_pipelined_attack_reaches_outside_the_directory(world):
    client = Client(server_argv(world.dir))
    run = Run(client, world)
    for i in range(ROUNDS):
        for family, seq in families(world, i):
            run.sequence(family, seq)
    status, rest = client.close()
    assert status == 0 and rest == b"", "the server serves until its input ends, then exits 0"
    run.check_outside()
    print(f"{run.sequences} hostile sequences, {run.requests} requests in them")
    run.verdict()


# The real program with its first layer switched off: paths go to the kernel as given, beneath nothing.
LANDLOCK_ALONE = """
import sys
from womm import confine, sftp
from womm_fs import serve_sftp
sftp.beneath = lambda rootfd, rel, flags, mode=0: confine.openat2(rootfd, rel, flags, mode, resolve=0)
sftp.Server.rel = lambda self, path: path or b"."
sys.exit(serve_sftp.main(type("Args", (), {"directory": sys.argv[1]})))
"""


def test_landlock_alone_keeps_outside_contents_and_listings(world):
    """The second layer on its own: no file read or listed, made, removed or renamed outside DIR.
    (It cannot stop stat, readlink, chmod or utime: the first layer does.)"""
    client = Client([sys.executable, "-c", LANDLOCK_ALONE, world.dir])
    run = Run(client, world)
    contents = [m for m in world.contents if not m.startswith(b"outside-link-target-")]  # readlink's: not covered
    for i in range(20):
        for _, seq in families(world, i):
            for (_, req), r in zip(seq, client.batch([req for _, req in seq]), strict=True):
                leaks = [m for m in contents if m in r.body]
                if r.kind == HANDLE:
                    leaks += [p for p in run.drain(req, r.handle)[1] if not p.startswith("attributes")]
                assert not leaks, f"{show(req)}: {leaks}"
    assert client.close()[0] == 0
    after = world.snapshot()
    assert set(after) == set(world.before), "nothing made or removed outside"
    for p, entry in world.before.items():
        if len(entry) == 8:  # a file's content, a link's target
            assert after[p][7] == entry[7], f"{p}: its content changed"
    assert after["/etc/passwd"][2] == world.before["/etc/passwd"][2]


def test_a_second_client_swapping_a_directory_for_an_escaping_link(world):
    """One server swaps race/ and a link out of DIR while another opens race/f: inside content or an error."""
    D = world.dir
    os.symlink("../outdir", D + "/race.lnk")
    swapper, opener = Client(server_argv(D)), Client(server_argv(world.dir))
    run, stop = Run(opener, world), threading.Event()

    def swap():
        while not stop.is_set():
            swapper.batch([(posix_rename, D + "/race", D + "/race.real"), (posix_rename, D + "/race.lnk", D + "/race"),
                           (posix_rename, D + "/race", D + "/race.lnk"), (posix_rename, D + "/race.real", D + "/race")])

    thread = threading.Thread(target=swap)
    thread.start()
    try:
        legit = 0
        for _ in range(RACE_SEQUENCES):
            seq = [(None, (open_, D + "/race/f")), (None, (stat_, D + "/race/f")), (None, (opendir, D + "/race")),
                   (None, (open_, D + "/race/" + world.uniq)), (None, (realpath, D + "/race/f"))]
            run.sequence("race", seq)
        for _ in range(20):
            h = opener.one(open_, D + "/rel").handle
            legit += h is not None and opener.one(read, h).data == INSIDE and opener.one(close, h).code == OK
    finally:
        stop.set()
        thread.join()
    assert legit == 20
    assert swapper.close()[0] == 0 and opener.close()[0] == 0
    run.check_outside()
    run.verdict()


def test_legitimate_operations_inside_work(world):
    D = world.dir
    c = Client(server_argv(D))
    h = c.one(open_, D + "/new.txt", WRITE_ | CREAT | TRUNC, attrs(perms=0o640)).handle
    assert h is not None
    assert [r.code for r in c.batch([(write, h, 0, b"hello "), (write, h, 6, b"world\n"), (close, h)])] == [OK] * 3
    assert c.one(lstat, D + "/new.txt").attrs["size"] == 12
    assert c.one(lstat, "new.txt").attrs["perms"] & 0o777 == 0o640
    assert [r.code for r in c.batch([(mkdir, D + "/sub"), (rename, D + "/new.txt", D + "/sub/moved.txt"),
                                     (symlink, "sub/moved.txt", D + "/link"),
                                     (symlink, "../inside.txt", D + "/sub/up")])] == [OK] * 4
    for path, content in (("/link", b"hello world\n"), ("/sub/up", INSIDE), ("/rel", INSIDE), ("/d/f", INSIDE_D)):
        h = c.one(open_, D + path).handle
        assert c.one(read, h, 0, 100).data == content
        c.one(close, h)
    assert c.one(readlink, D + "/link").names[0][0] == b"sub/moved.txt"
    assert c.one(realpath, D + "/link").names[0][0] == (D + "/sub/moved.txt").encode()
    assert c.one(realpath, ".").names[0][0] == D.encode()
    h = c.one(opendir, D + "/sub").handle
    listed = set()
    while (r := c.one(readdir, h)).kind == NAME:
        listed |= {n for n, _, _ in r.names}
    assert listed - {b".", b".."} == {b"moved.txt", b"up"}
    c.one(close, h)
    assert [r.code for r in c.batch([(remove, D + "/link"), (remove, D + "/sub/moved.txt"), (remove, D + "/sub/up"),
                                     (rmdir, D + "/sub")])] == [OK] * 4
    assert c.close()[0] == 0
    assert sorted(os.listdir(D)) == sorted(["inside.txt", "d", "race", "rel", "chain2", *world.escapes])
