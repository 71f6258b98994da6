"""A small SFTP v3 client for the tests, written apart from womm.sftp so that the tests check it, not mirror it."""

import os
import shlex
import struct
import subprocess
import sys

OPEN, CLOSE, READ, WRITE, LSTAT, FSTAT, SETSTAT, FSETSTAT = 3, 4, 5, 6, 7, 8, 9, 10
OPENDIR, READDIR, REMOVE, MKDIR, RMDIR, REALPATH, STAT, RENAME, READLINK, SYMLINK = range(11, 21)
EXTENDED = 200
STATUS, HANDLE, DATA, NAME, ATTRS, EXTENDED_REPLY = 101, 102, 103, 104, 105, 201
OK, EOF, NO_SUCH_FILE, PERMISSION_DENIED, FAILURE, BAD_MESSAGE, OP_UNSUPPORTED = 0, 1, 2, 3, 4, 5, 8
READ_, WRITE_, APPEND, CREAT, TRUNC, EXCL = 1, 2, 4, 8, 0x10, 0x20


# Read at import: the unit tests' fixture clears WOMM_* before each test.
OTHER_SERVER = os.environ.get("WOMM_TEST_SFTP_SERVER")


def server_argv(directory):
    """The server under test: womm-fs serve-sftp, or WOMM_TEST_SFTP_SERVER (e.g. an unconfined sftp-server -d)."""
    if OTHER_SERVER:
        return shlex.split(OTHER_SERVER) + [str(directory)]
    return [sys.executable, "-m", "womm_fs", "serve-sftp", str(directory)]


def s(b):
    if isinstance(b, str):
        b = b.encode()
    return struct.pack(">I", len(b)) + b


def packet(kind, rid, body=b""):
    p = bytes([kind]) + struct.pack(">I", rid) + body
    return struct.pack(">I", len(p)) + p


def attrs(size=None, perms=None, times=None, owner=None):
    flags, body = 0, b""
    if size is not None:
        flags, body = flags | 1, body + struct.pack(">Q", size)
    if owner is not None:
        flags, body = flags | 2, body + struct.pack(">II", *owner)
    if perms is not None:
        flags, body = flags | 4, body + struct.pack(">I", perms)
    if times is not None:
        flags, body = flags | 8, body + struct.pack(">II", *times)
    return struct.pack(">I", flags) + body


def parse_attrs(b, pos=0):
    """(dict, next position)."""
    (flags,) = struct.unpack_from(">I", b, pos)
    pos += 4
    a = {}
    if flags & 1:
        (a["size"],) = struct.unpack_from(">Q", b, pos)
        pos += 8
    if flags & 2:
        a["uid"], a["gid"] = struct.unpack_from(">II", b, pos)
        pos += 8
    if flags & 4:
        (a["perms"],) = struct.unpack_from(">I", b, pos)
        pos += 4
    if flags & 8:
        a["atime"], a["mtime"] = struct.unpack_from(">II", b, pos)
        pos += 8
    if flags & 0x80000000:
        (n,) = struct.unpack_from(">I", b, pos)
        pos += 4
        for _ in range(2 * n):
            (m,) = struct.unpack_from(">I", b, pos)
            pos += 4 + m
    return a, pos


def string_at(b, pos):
    (n,) = struct.unpack_from(">I", b, pos)
    return b[pos + 4:pos + 4 + n], pos + 4 + n


class Reply:
    def __init__(self, kind, rid, body):
        self.kind, self.id, self.body = kind, rid, body

    @property
    def code(self):
        return struct.unpack_from(">I", self.body)[0] if self.kind == STATUS else None

    @property
    def handle(self):
        return string_at(self.body, 0)[0] if self.kind == HANDLE else None

    @property
    def data(self):
        return string_at(self.body, 0)[0] if self.kind == DATA else None

    @property
    def attrs(self):
        return parse_attrs(self.body)[0] if self.kind == ATTRS else None

    @property
    def names(self):
        """[(name, longname, attrs)] of a NAME reply."""
        if self.kind != NAME:
            return None
        (n,) = struct.unpack_from(">I", self.body)
        pos, out = 4, []
        for _ in range(n):
            name, pos = string_at(self.body, pos)
            long, pos = string_at(self.body, pos)
            a, pos = parse_attrs(self.body, pos)
            out.append((name, long, a))
        return out

    def __repr__(self):
        return f"Reply(kind={self.kind}, id={self.id}, body={self.body[:60]!r})"


# Request bodies, by name; each takes a request id first.
def open_(rid, path, pflags=READ_, a=None):
    return packet(OPEN, rid, s(path) + struct.pack(">I", pflags) + (a or attrs()))


def path_req(kind, name):
    def request(rid, path):
        return packet(kind, rid, s(path))

    request.__name__ = name
    return request


lstat, stat_, opendir, remove, rmdir, realpath, readlink = (
    path_req(k, n) for k, n in ((LSTAT, "lstat"), (STAT, "stat"), (OPENDIR, "opendir"), (REMOVE, "remove"),
                                (RMDIR, "rmdir"), (REALPATH, "realpath"), (READLINK, "readlink")))


def mkdir(rid, path, a=None):
    return packet(MKDIR, rid, s(path) + (a or attrs()))


def setstat(rid, path, a):
    return packet(SETSTAT, rid, s(path) + a)


def fsetstat(rid, handle, a):
    return packet(FSETSTAT, rid, s(handle) + a)


def rename(rid, old, new):
    return packet(RENAME, rid, s(old) + s(new))


def symlink(rid, target, link):
    """OpenSSH's order: the target first, then the link's own path."""
    return packet(SYMLINK, rid, s(target) + s(link))


def extended(rid, name, *strings):
    return packet(EXTENDED, rid, s(name) + b"".join(s(a) for a in strings))


def lsetstat(rid, path, a):
    return packet(EXTENDED, rid, s("lsetstat@openssh.com") + s(path) + a)


def read(rid, handle, offset=0, length=65536):
    return packet(READ, rid, s(handle) + struct.pack(">QI", offset, length))


def write(rid, handle, offset, data):
    return packet(WRITE, rid, s(handle) + struct.pack(">Q", offset) + s(data))


def handle_req(kind, name):
    def request(rid, handle):
        return packet(kind, rid, s(handle))

    request.__name__ = name
    return request


close, readdir, fstat = handle_req(CLOSE, "close"), handle_req(READDIR, "readdir"), handle_req(FSTAT, "fstat")


class Client:
    """One server process; `batch` sends requests in one write and returns their replies by id."""

    def __init__(self, argv, env=None):
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
        self.buf = b""
        self.next_id = 1
        self.send(struct.pack(">IBI", 5, 1, 3))  # INIT, version 3
        kind, body = self._packet()
        assert kind == 2, f"not a VERSION reply: {kind}"
        self.version = body

    def ids(self, n):
        first = self.next_id
        self.next_id += n
        return range(first, first + n)

    def send(self, data):
        os.write(self.proc.stdin.fileno(), data)

    def _packet(self):
        while len(self.buf) < 4 or len(self.buf) < 4 + struct.unpack_from(">I", self.buf)[0]:
            chunk = os.read(self.proc.stdout.fileno(), 1 << 20)
            if not chunk:
                raise EOFError("the server closed its output")
            self.buf += chunk
        (n,) = struct.unpack_from(">I", self.buf)
        p, self.buf = self.buf[4:4 + n], self.buf[4 + n:]
        return p[0], p[1:]

    def batch(self, requests):
        """requests: (function, args...) tuples; one write; {id: Reply}, and the ids in order."""
        ids = self.ids(len(requests))
        self.send(b"".join(f(rid, *args) for rid, (f, *args) in zip(ids, requests, strict=True)))
        replies = {}
        for _ in ids:
            kind, body = self._packet()
            (rid,) = struct.unpack_from(">I", body)
            replies[rid] = Reply(kind, rid, body[4:])
        assert sorted(replies) == list(ids), "a reply per request, each with its id"
        return [replies[i] for i in ids]

    def one(self, f, *args):
        return self.batch([(f, *args)])[0]

    def close(self):
        self.proc.stdin.close()
        rest = self.proc.stdout.read()
        status = self.proc.wait(10)
        self.proc.stdout.close()
        return status, rest
