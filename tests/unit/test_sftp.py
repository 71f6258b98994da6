"""womm.sftp's protocol, request by request (in this process, unconfined), and womm.confine's checks."""

import errno
import os
import struct
import subprocess
import sys
import textwrap

import pytest
import sftpclient as c
from sftpclient import attrs, packet, s

from womm import confine, sftp
from womm.errors import WommError


@pytest.fixture
def share(tmp_path):
    d = tmp_path / "share"
    (d / "sub").mkdir(parents=True)
    (d / "f").write_bytes(b"0123456789")
    (tmp_path / "secret").write_bytes(b"SECRET")
    os.symlink("f", d / "lnk")
    os.symlink("../secret", d / "out")
    return os.path.realpath(d)


@pytest.fixture
def server(share):
    srv = sftp.Server(share)
    yield srv
    for h in srv.handles.values():
        h.close()
    os.close(srv.rootfd)


def ask(server, f, *args, rid=7):
    """One request through Server.packet; its Reply."""
    out = server.packet(f(rid, *args)[4:])
    (n,) = struct.unpack_from(">I", out)
    assert n == len(out) - 4
    kind, got = out[4], struct.unpack_from(">I", out, 5)[0]
    assert got == rid, "the reply carries the request's id"
    return c.Reply(kind, rid, out[9:])


def opened(server, path, pflags=c.READ_, a=None):
    r = ask(server, c.open_, path, pflags, a)
    assert r.kind == c.HANDLE, r
    return r.handle


def test_wire_encoding_round_trips():
    st = os.stat_result((0o100644, 1, 2, 1, 1000, 1001, 1 << 40, 5, 6, 7))
    a, end = c.parse_attrs(sftp.encode_attrs(st))
    assert a == {"size": 1 << 40, "uid": 1000, "gid": 1001, "perms": 0o100644, "atime": 5, "mtime": 6}
    assert end == len(sftp.encode_attrs(st))
    ext = struct.pack(">I", 1) + s(b"name") + s(b"value")
    r = sftp.Reader(struct.pack(">I", 0x8000000F) + struct.pack(">QIIIII", 9, 1, 2, 0o600, 3, 4) + ext + s(b"tail"))
    got = r.attrs()
    assert (got.size, got.uid, got.gid, got.perms, got.atime, got.mtime) == (9, 1, 2, 0o600, 3, 4)
    assert r.string() == b"tail"
    with pytest.raises(struct.error):
        sftp.Reader(struct.pack(">I", 10) + b"short").string()
    assert sftp.Reader(attrs()).attrs().size is None


def test_init_answers_version_3_with_the_extensions(server):
    out = server.packet(struct.pack(">BI", 1, 3))
    assert out[4] == 2 and struct.unpack_from(">I", out, 5) == (3,)
    for name in (b"posix-rename@openssh.com", b"statvfs@openssh.com", b"fstatvfs@openssh.com",
                 b"hardlink@openssh.com", b"fsync@openssh.com", b"lsetstat@openssh.com"):
        assert s(name) in out


def test_errno_maps_to_status_codes():
    assert sftp.errno_status(errno.ENOENT) == c.NO_SUCH_FILE
    assert sftp.errno_status(errno.ENOTDIR) == c.NO_SUCH_FILE
    assert sftp.errno_status(errno.EACCES) == c.PERMISSION_DENIED
    assert sftp.errno_status(errno.EPERM) == c.PERMISSION_DENIED
    assert sftp.errno_status(errno.ENOSYS) == c.OP_UNSUPPORTED
    assert sftp.errno_status(errno.EINVAL) == c.BAD_MESSAGE
    assert sftp.errno_status(errno.ENOSPC) == c.FAILURE


def test_paths_are_dir_or_under_it_or_relative_to_it(server, share):
    D = share.encode()
    assert server.rel(D) == b"." and server.rel(D + b"/") == b"." and server.rel(b"") == b"."
    assert server.rel(D + b"//sub/x") == b"sub/x" and server.rel(b"sub/x") == b"sub/x"
    for outside in (b"/", b"/etc/passwd", os.path.dirname(D), D + b"-evil", D + b"x/f"):
        with pytest.raises(sftp.Status) as e:
            server.rel(outside)
        assert e.value.code == c.PERMISSION_DENIED
    assert ask(server, c.stat_, D + b"\0/x").code == c.BAD_MESSAGE


def test_open_read_write_close_fstat(server, share):
    h = opened(server, share + "/f")
    assert ask(server, c.read, h, 2, 3).data == b"234"
    assert ask(server, c.read, h, 10, 3).code == c.EOF
    assert ask(server, c.fstat, h).attrs["size"] == 10
    assert ask(server, c.close, h).code == c.OK
    assert ask(server, c.close, h).code == c.FAILURE  # a closed handle
    h = opened(server, share + "/new", c.WRITE_ | c.CREAT | c.EXCL, attrs(perms=0o600))
    blob = bytes(range(256)) * 256  # binary-safe, 64 KiB
    assert ask(server, c.write, h, 0, blob).code == c.OK
    assert ask(server, c.close, h).code == c.OK
    assert open(share + "/new", "rb").read() == blob
    assert os.stat(share + "/new").st_mode & 0o777 == 0o600
    assert ask(server, c.open_, share + "/new", c.WRITE_ | c.CREAT | c.EXCL).code == c.FAILURE  # EEXIST
    assert ask(server, c.open_, share + "/none").code == c.NO_SUCH_FILE
    assert ask(server, c.open_, share + "/sub").code == c.FAILURE  # not a regular file
    h = opened(server, share + "/f", c.WRITE_ | c.APPEND)
    ask(server, c.write, h, 0, b"+")
    ask(server, c.close, h)
    assert open(share + "/f", "rb").read() == b"0123456789+"


def test_stat_follows_and_lstat_does_not(server, share):
    assert ask(server, c.stat_, share + "/lnk").attrs["size"] == 10
    assert ask(server, c.lstat, share + "/lnk").attrs["perms"] & 0o170000 == 0o120000
    assert ask(server, c.lstat, share + "/out").kind == c.ATTRS  # the link itself is inside
    assert ask(server, c.stat_, share + "/out").code == c.PERMISSION_DENIED
    assert ask(server, c.stat_, share + "/none").code == c.NO_SUCH_FILE


def test_setstat_fsetstat_lsetstat(server, share):
    f = share + "/f"
    assert ask(server, c.setstat, f, attrs(size=4, perms=0o640, times=(100, 200))).code == c.OK
    st = os.stat(f)
    assert (st.st_size, st.st_mode & 0o777, st.st_atime, st.st_mtime) == (4, 0o640, 100, 200)
    assert ask(server, c.setstat, share + "/lnk", attrs(perms=0o600)).code == c.OK  # follows, inside
    assert os.stat(f).st_mode & 0o777 == 0o600
    h = opened(server, f, c.WRITE_)
    assert ask(server, c.fsetstat, h, attrs(size=1)).code == c.OK
    assert os.stat(f).st_size == 1
    ask(server, c.close, h)
    assert ask(server, c.lsetstat, share + "/lnk", attrs(times=(5, 6))).code == c.OK
    assert os.lstat(share + "/lnk").st_mtime == 6 and os.stat(f).st_mtime != 6
    assert ask(server, c.lsetstat, share + "/lnk", attrs(perms=0o600)).code == c.OP_UNSUPPORTED
    assert ask(server, c.setstat, share + "/out", attrs(perms=0o777)).code == c.PERMISSION_DENIED


def test_directories(server, share):
    assert ask(server, c.mkdir, share + "/new", attrs(perms=0o700)).code == c.OK
    assert os.stat(share + "/new").st_mode & 0o777 == 0o700
    assert ask(server, c.mkdir, share + "/new").code == c.FAILURE  # EEXIST
    for i in range(250):
        open(f"{share}/new/{i}", "w").close()
    h = ask(server, c.opendir, share + "/new").handle
    seen = []
    while (r := ask(server, c.readdir, h)).kind == c.NAME:
        assert len(r.names) <= 100
        seen += [n for n, long, a in r.names]
        assert all(long.startswith(b"-rw") and long.endswith(n) and a["size"] == 0 for n, long, a in r.names)
    assert r.code == c.EOF and sorted(seen) == sorted(str(i).encode() for i in range(250))
    assert ask(server, c.fstat, h).kind == c.ATTRS
    ask(server, c.close, h)
    assert ask(server, c.rmdir, share + "/new").code == c.FAILURE  # not empty
    assert ask(server, c.rmdir, share + "/sub").code == c.OK
    assert ask(server, c.opendir, share + "/f").code == c.NO_SUCH_FILE  # ENOTDIR
    assert ask(server, c.rmdir, share).code == c.PERMISSION_DENIED  # DIR itself is no entry to remove


def test_remove_rename_links(server, share):
    D = share
    assert ask(server, c.symlink, "/anywhere/at/all", D + "/abs").code == c.OK  # target first (OpenSSH)
    assert os.readlink(D + "/abs") == "/anywhere/at/all"
    assert ask(server, c.readlink, D + "/abs").names[0][0] == b"/anywhere/at/all"
    assert ask(server, c.rename, D + "/abs", D + "/f").code == c.FAILURE  # v3 RENAME never replaces
    assert ask(server, c.extended, "posix-rename@openssh.com", D + "/abs", D + "/lnk").code == c.OK
    assert os.readlink(D + "/lnk") == "/anywhere/at/all"
    assert ask(server, c.rename, D + "/lnk", D + "/sub/moved").code == c.OK
    assert ask(server, c.extended, "hardlink@openssh.com", D + "/f", D + "/sub/f2").code == c.OK
    assert os.stat(D + "/f").st_nlink == 2
    assert ask(server, c.extended, "hardlink@openssh.com", D + "/out", D + "/out2").code == c.OK
    assert os.readlink(D + "/out2") == "../secret"  # the symlink itself, not what it names
    assert ask(server, c.remove, D + "/sub/f2").code == c.OK
    assert ask(server, c.remove, D + "/sub/f2").code == c.NO_SUCH_FILE
    assert ask(server, c.remove, D + "/sub").code in (c.FAILURE, c.PERMISSION_DENIED)  # EISDIR
    assert ask(server, c.extended, "hardlink@openssh.com", D + "/../secret", D + "/x").code == c.PERMISSION_DENIED


def test_realpath(server, share):
    D = share.encode()
    assert ask(server, c.realpath, b".").names[0][0] == D
    assert ask(server, c.realpath, D + b"/sub/../lnk").names[0][0] == D + b"/f"
    assert ask(server, c.realpath, D + b"/sub/not-yet").names[0][0] == D + b"/sub/not-yet"
    assert ask(server, c.realpath, D + b"/out").code == c.PERMISSION_DENIED
    assert ask(server, c.realpath, D + b"/..").code == c.PERMISSION_DENIED


def test_extensions_by_handle_and_limits(server, share):
    r = ask(server, c.extended, "statvfs@openssh.com", share)
    assert r.kind == c.EXTENDED_REPLY and len(r.body) == 88
    assert struct.unpack_from(">Q", r.body)[0] == os.statvfs(share).f_bsize
    h = opened(server, share + "/f", c.WRITE_)
    assert ask(server, c.extended, "fstatvfs@openssh.com", h).kind == c.EXTENDED_REPLY
    assert ask(server, c.extended, "fsync@openssh.com", h).code == c.OK
    r = ask(server, c.extended, "limits@openssh.com")
    assert struct.unpack(">QQQQ", r.body)[0] == sftp.MAX_PACKET


def test_unknown_and_malformed_requests(server, share):
    assert ask(server, lambda rid: packet(99, rid)).code == c.OP_UNSUPPORTED
    assert ask(server, c.extended, "copy-data").code == c.OP_UNSUPPORTED
    assert ask(server, lambda rid: packet(c.OPEN, rid, s(share + "/f"))).code == c.BAD_MESSAGE  # no pflags
    assert ask(server, c.read, b"nope").code == c.FAILURE
    with pytest.raises(WommError):
        server.packet(bytes([c.STAT]))  # no id


def test_serve_answers_pipelined_requests_split_anywhere(server, share):
    reqs = b"".join([c.packet(c.STAT, i, s(share + "/f")) for i in range(1, 200)] + [c.open_(200, "f")])
    rin, win = os.pipe()
    rout, wout = os.pipe()
    pid = os.fork()
    if pid == 0:  # the server's side, in a child so that a blocked pipe cannot hang the test
        os.close(win), os.close(rout)
        try:
            server.serve(rin, wout)
        finally:
            os._exit(0)
    os.close(rin), os.close(wout)
    for i in range(0, len(reqs), 7):  # odd slices: lengths and bodies split across reads
        os.write(win, reqs[i:i + 7])
    os.close(win)
    out = b""
    while chunk := os.read(rout, 65536):
        out += chunk
    os.close(rout)
    assert os.waitpid(pid, 0)[1] == 0
    ids = []
    while out:
        (n,) = struct.unpack_from(">I", out)
        ids.append(struct.unpack_from(">I", out, 5)[0])
        out = out[4 + n:]
    assert ids == list(range(1, 201))


def test_serve_refuses_an_oversized_packet(server):
    r, w = os.pipe()
    os.write(w, struct.pack(">I", sftp.MAX_PACKET + 1))
    os.close(w)
    with pytest.raises(WommError, match="a packet of"):
        server.serve(r, os.open(os.devnull, os.O_WRONLY))


def test_confinement_is_available_here():
    confine.check()
    assert confine.landlock_abi() >= 1


def test_check_says_what_the_kernel_lacks(monkeypatch):
    def no(*args, **kwargs):
        raise OSError(errno.ENOSYS, "Function not implemented")

    monkeypatch.setattr(confine, "landlock_abi", no)
    with pytest.raises(WommError, match=r"no Landlock .*Linux 5\.13 .*lsm= .*eager share"):
        confine.check()
    monkeypatch.setattr(confine, "openat2", no)
    with pytest.raises(WommError, match=r"no openat2 with RESOLVE_BENEATH .*Linux 5\.6 .*eager share"):
        confine.check()


def test_landlock_leaves_nothing_but_the_directory(tmp_path, share):
    """In a child: after restrict(), outside files cannot be read, written or made; inside ones can."""
    script = textwrap.dedent(f"""
        import os
        from womm import confine
        fd = os.open({share!r}, os.O_PATH | os.O_DIRECTORY)
        confine.restrict(fd)
        results = []
        for op in (lambda: open({str(tmp_path / "secret")!r}).read(), lambda: open("/etc/passwd").read(),
                   lambda: open({str(tmp_path / "new")!r}, "w"), lambda: os.listdir("/"),
                   lambda: os.rename({share + "/f"!r}, {str(tmp_path / "moved")!r})):
            try:
                op()
                results.append("allowed")
            except PermissionError:
                results.append("denied")
        open({share + "/f"!r}).read()
        open({share + "/made"!r}, "w").write("x")
        os.rename({share + "/made"!r}, {share + "/sub/made"!r})
        print(" ".join(results))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["denied"] * 5
    assert os.path.exists(share + "/sub/made") and not os.path.exists(tmp_path / "new")


def test_the_program_refuses_a_missing_directory_in_one_line(tmp_path):
    p = subprocess.run([sys.executable, "-m", "womm_fs", "serve-sftp", str(tmp_path / "none")],
                       capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert p.returncode == 1 and p.stderr.count("\n") == 1
    assert p.stderr.startswith("womm-fs: error: cannot serve")


def test_the_program_serves_until_its_input_ends(share):
    p = subprocess.run([sys.executable, "-m", "womm_fs", "serve-sftp", share], input=c.open_(1, "f"),
                       capture_output=True)
    assert p.returncode == 0 and p.stderr == b""
    assert p.stdout[4] == c.HANDLE


def test_rename_without_noreplace_still_never_replaces(server, share, monkeypatch):
    def einval(*args):
        raise OSError(errno.EINVAL, "Invalid argument")

    monkeypatch.setattr(confine, "renameat2", einval)  # as on NFS
    assert ask(server, c.rename, share + "/lnk", share + "/f").code == c.FAILURE
    assert ask(server, c.rename, share + "/lnk", share + "/sub/lnk").code == c.OK
    assert os.readlink(share + "/sub/lnk") == "f"
