"""An SFTP version 3 server (draft-ietf-secsh-filexfer-02) for one directory, confined by the kernel.

`womm-fs serve-sftp DIR` answers sshfs in a pod on stdin and stdout. Whoever
holds that stream is not trusted: no request may reach anything outside DIR.
Two independent layers see to it.

1. Paths are resolved by the kernel, beneath an fd of DIR. openat2 with
   RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS opens the object, or its parent
   directory, and the *at syscalls act on the last name without following it.
   `..` out of DIR, absolute symlinks and symlinks leading out fail in that same
   lookup (EXDEV, answered PERMISSION_DENIED): there is no window between a
   check and a use for a pipelined SYMLINK or RENAME to slip into. An absolute
   request path must be DIR or lie under it; a relative one is relative to DIR.
2. Before the first request, Landlock (womm.confine) removes every filesystem
   right outside DIR, and beneath it those a file server never needs (execute,
   devices, fifos, sockets); where the kernel can, TCP and signals or abstract
   sockets beyond the process too. Landlock does not cover stat, readlink,
   chmod, chown or utime, so layer 1 is complete on its own; layer 2 stops a
   bug in it for reads, listings, writes, creation, removal, renames and links.
   Landlock binds the thread that asks: the server has no other thread.

A symlink may be created with any target: it is data, resolved by the pod's
kernel. This server follows a symlink only while it stays beneath DIR (so never
an absolute one, even one pointing inside). Metadata changes through a followed
path use /proc/self/fd/N of the fd the kernel resolved: the object itself.
"""

import errno
import os
import stat
import struct
import time

from womm import confine
from womm.confine import beneath
from womm.errors import WommError

VERSION = 3
INIT, VERSION_REPLY = 1, 2
OPEN, CLOSE, READ, WRITE, LSTAT, FSTAT, SETSTAT, FSETSTAT = 3, 4, 5, 6, 7, 8, 9, 10
OPENDIR, READDIR, REMOVE, MKDIR, RMDIR, REALPATH, STAT, RENAME, READLINK, SYMLINK = range(11, 21)
STATUS, HANDLE, DATA, NAME, ATTRS = 101, 102, 103, 104, 105
EXTENDED, EXTENDED_REPLY = 200, 201

OK, EOF, NO_SUCH_FILE, PERMISSION_DENIED, FAILURE, BAD_MESSAGE, NO_CONNECTION, CONNECTION_LOST, OP_UNSUPPORTED = (
    range(9))

# OPEN's pflags
FXF_READ, FXF_WRITE, FXF_APPEND, FXF_CREAT, FXF_TRUNC, FXF_EXCL = 1, 2, 4, 8, 0x10, 0x20
# ATTRS flags
ATTR_SIZE, ATTR_UIDGID, ATTR_PERMISSIONS, ATTR_ACMODTIME, ATTR_EXTENDED = 1, 2, 4, 8, 0x80000000
ATTR_ALL = ATTR_SIZE | ATTR_UIDGID | ATTR_PERMISSIONS | ATTR_ACMODTIME
STATVFS_RDONLY, STATVFS_NOSUID = 1, 2

MAX_PACKET = 256 * 1024  # as OpenSSH's sftp-server
MAX_READ = MAX_PACKET - 1024
MAX_HANDLES = 512
READDIR_BATCH = 100

EXTENSIONS = ((b"posix-rename@openssh.com", b"1"), (b"statvfs@openssh.com", b"2"), (b"fstatvfs@openssh.com", b"2"),
              (b"hardlink@openssh.com", b"1"), (b"fsync@openssh.com", b"1"), (b"lsetstat@openssh.com", b"1"),
              (b"limits@openssh.com", b"1"))

ERRNO_STATUS = {
    errno.ENOENT: NO_SUCH_FILE, errno.ENOTDIR: NO_SUCH_FILE, errno.EBADF: NO_SUCH_FILE, errno.ELOOP: NO_SUCH_FILE,
    errno.EPERM: PERMISSION_DENIED, errno.EACCES: PERMISSION_DENIED, errno.EFAULT: PERMISSION_DENIED,
    errno.ENAMETOOLONG: BAD_MESSAGE, errno.EINVAL: BAD_MESSAGE,
    errno.ENOSYS: OP_UNSUPPORTED, errno.EOPNOTSUPP: OP_UNSUPPORTED,
}

_U32, _U64 = struct.Struct(">I"), struct.Struct(">Q")
_HEAD = struct.Struct(">IBI")  # length, type, id
_ATTRS = struct.Struct(">IQIIIII")  # ATTR_ALL: flags, size, uid, gid, permissions, atime, mtime
_M32 = 0xFFFFFFFF


class Status(Exception):
    """A request answered with a status other than what its errno says."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code


def denied():
    return Status(PERMISSION_DENIED, "outside the shared directory")


# -- the wire -------------------------------------------------------------------------------------


def string(b):
    return _U32.pack(len(b)) + b


def encode_attrs(st):
    return _ATTRS.pack(ATTR_ALL, st.st_size, st.st_uid, st.st_gid, st.st_mode, int(st.st_atime) & _M32,
                       int(st.st_mtime) & _M32)


NO_ATTRS = _U32.pack(0)


class Attrs:
    """Decoded ATTRS: None for each field the client left out."""

    def __init__(self, size=None, uid=None, gid=None, perms=None, atime=None, mtime=None):
        self.size, self.uid, self.gid, self.perms, self.atime, self.mtime = size, uid, gid, perms, atime, mtime


class Reader:
    """Fields of one packet, in order; struct.error past its end."""

    def __init__(self, data, pos=0):
        self.data, self.pos = data, pos

    def u32(self):
        (v,) = _U32.unpack_from(self.data, self.pos)
        self.pos += 4
        return v

    def u64(self):
        (v,) = _U64.unpack_from(self.data, self.pos)
        self.pos += 8
        return v

    def string(self):
        n = self.u32()
        if self.pos + n > len(self.data):
            raise struct.error("string past the end of the packet")
        v = bytes(self.data[self.pos:self.pos + n])
        self.pos += n
        return v

    def attrs(self):
        flags, a = self.u32(), Attrs()
        if flags & ATTR_SIZE:
            a.size = self.u64()
        if flags & ATTR_UIDGID:
            a.uid, a.gid = self.u32(), self.u32()
        if flags & ATTR_PERMISSIONS:
            a.perms = self.u32()
        if flags & ATTR_ACMODTIME:
            a.atime, a.mtime = self.u32(), self.u32()
        if flags & ATTR_EXTENDED:
            for _ in range(self.u32()):
                self.string(), self.string()
        return a


def status_body(code, message):
    return _U32.pack(code) + string(message.encode()) + string(b"")


def reply(kind, rid, body):
    return _HEAD.pack(5 + len(body), kind, rid) + body


def errno_status(e):
    return ERRNO_STATUS.get(e, FAILURE)


def longname(name, st):
    """`ls -l`'s line, as OpenSSH's sftp-server gives it (numeric owners: no /etc/passwd here)."""
    t = time.localtime(st.st_mtime)
    recent = abs(time.time() - st.st_mtime) < 182 * 86400
    when = time.strftime("%b %e %H:%M" if recent else "%b %e  %Y", t)
    return (f"{stat.filemode(st.st_mode)} {st.st_nlink:3} {st.st_uid:<8} {st.st_gid:<8} {st.st_size:8} {when} "
            .encode() + name)


def names(entries):
    """NAME's body for (name, longname, attrs bytes) triples."""
    return _U32.pack(len(entries)) + b"".join(string(n) + string(ln) + a for n, ln, a in entries)


# -- the server -----------------------------------------------------------------------------------


class _Fd(int):
    """An fd closed at the end of a with block."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        os.close(self)


class Handle:
    def __init__(self, fd, entries=None):
        self.fd, self.entries = fd, entries

    def close(self):
        if self.entries is not None:
            self.entries.close()
        os.close(self.fd)


class Server:
    def __init__(self, directory, exclude=()):
        try:
            self.rootfd = os.open(directory, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            self.root = os.fsencode(os.path.realpath(directory))
            here, there = os.fstat(self.rootfd), os.stat(self.root)
        except OSError as e:
            raise WommError(f"cannot serve {directory}: {e.strerror}") from None
        if (here.st_dev, here.st_ino) != (there.st_dev, there.st_ino):
            raise WommError(f"cannot serve {directory}: it moved while starting")
        self.prefix = self.root.rstrip(b"/") + b"/"
        # Paths never served (womm.secrets): matched on what the kernel resolved, so a link to them hides nothing.
        self.exclude = [tuple(os.fsencode(p).split(b"/")) for p in exclude]
        self.handles, self.next_handle = {}, 0
        self.requests = {
            OPEN: self.open, CLOSE: self.close, READ: self.read, WRITE: self.write, LSTAT: self.lstat,
            FSTAT: self.fstat, SETSTAT: self.setstat, FSETSTAT: self.fsetstat, OPENDIR: self.opendir,
            READDIR: self.readdir, REMOVE: self.remove, MKDIR: self.mkdir, RMDIR: self.rmdir,
            REALPATH: self.realpath, STAT: self.stat, RENAME: self.rename, READLINK: self.readlink,
            SYMLINK: self.symlink, EXTENDED: self.extended,
        }
        self.extensions = {
            b"posix-rename@openssh.com": self.posix_rename, b"statvfs@openssh.com": self.statvfs,
            b"fstatvfs@openssh.com": self.fstatvfs, b"hardlink@openssh.com": self.hardlink,
            b"fsync@openssh.com": self.fsync, b"lsetstat@openssh.com": self.lsetstat,
            b"limits@openssh.com": self.limits,
        }

    # -- the loop

    def serve(self, infd=0, outfd=1):
        """Answer requests until infd ends (or outfd closes)."""
        buf = bytearray()
        while True:
            data = os.read(infd, 1 << 20)
            if not data:
                return
            buf += data
            out, pos = [], 0
            while len(buf) - pos >= 4:
                (n,) = _U32.unpack_from(buf, pos)
                if n == 0 or n > MAX_PACKET:
                    raise WommError(f"serve-sftp: a packet of {n} bytes: not SFTP, or a broken client")
                if len(buf) - pos - 4 < n:
                    break
                out.append(self.packet(bytes(buf[pos + 4:pos + 4 + n])))
                pos += 4 + n
            del buf[:pos]
            if out:
                try:
                    _write_all(outfd, b"".join(out))
                except BrokenPipeError:
                    return

    def packet(self, p):
        """The reply to one packet (its length prefix removed)."""
        kind = p[0]
        if kind == INIT:
            body = _U32.pack(VERSION) + b"".join(string(k) + string(v) for k, v in EXTENSIONS)
            return struct.pack(">IB", 1 + len(body), VERSION_REPLY) + body
        if len(p) < 5:
            raise WommError("serve-sftp: a request without an id: not SFTP, or a broken client")
        (rid,) = _U32.unpack_from(p, 1)
        r = Reader(p, 5)
        try:
            handler = self.requests.get(kind)
            if handler is None:
                raise Status(OP_UNSUPPORTED, f"request type {kind} is not supported")
            kind, body = handler(r)
        except Status as e:
            kind, body = STATUS, status_body(e.code, str(e))
        except OSError as e:
            kind, body = STATUS, status_body(errno_status(e.errno), e.strerror or "failure")
        except (struct.error, ValueError, OverflowError):
            kind, body = STATUS, status_body(BAD_MESSAGE, "malformed request")
        return reply(kind, rid, body)

    # -- paths: every one reaches the filesystem through beneath() from rootfd

    def rel(self, path):
        """path relative to DIR; absolute ones must be DIR or under it."""
        if b"\0" in path:
            raise Status(BAD_MESSAGE, "a NUL in a path")
        if path.startswith(b"/"):
            if path == self.root:
                return b"."
            if not path.startswith(self.prefix):
                raise denied()
            path = path[len(self.prefix):]
        return path.lstrip(b"/") or b"."

    def resolve(self, path, flags, mode=0):
        """An fd of path, following symlinks while they stay beneath DIR."""
        fd = _Fd(beneath(self.rootfd, self.rel(path), flags, mode))
        if self.exclude and self.excluded(self.real(fd)):
            os.close(fd)
            raise Status(NO_SUCH_FILE, "not shared")
        return fd

    def parent(self, path):
        """An O_PATH fd of path's directory, and the last name (not followed) in it."""
        head, _, name = self.rel(path).rstrip(b"/").rpartition(b"/")
        if name in (b"", b".", b".."):
            raise Status(PERMISSION_DENIED, "that name is not an entry of the shared directory")
        fd = _Fd(beneath(self.rootfd, head or b".", os.O_PATH | os.O_DIRECTORY))
        if self.exclude and self.excluded(self.real(fd).rstrip(b"/") + b"/" + name):
            os.close(fd)
            raise Status(NO_SUCH_FILE, "not shared")
        return fd, name

    def real(self, fd):
        """Where fd is, relative to DIR (what the kernel resolved)."""
        path = os.readlink(f"/proc/self/fd/{fd}".encode())
        return b"" if path == self.root else path[len(self.prefix):]

    def excluded(self, rel):
        parts = rel.split(b"/")
        return any(parts[i:i + len(p)] == list(p) for p in self.exclude for i in range(len(parts) - len(p) + 1))

    def inside(self, real):
        if real != self.root and not real.startswith(self.prefix):
            raise denied()
        return real

    # -- handles

    def new_handle(self, h):
        if len(self.handles) >= MAX_HANDLES:
            h.close()
            raise Status(FAILURE, "too many open handles")
        key = _U32.pack(self.next_handle)
        self.next_handle = (self.next_handle + 1) & _M32
        self.handles[key] = h
        return HANDLE, string(key)

    def handle(self, r, directory=False):
        h = self.handles.get(r.string())
        if h is None or (directory and h.entries is None):
            raise Status(FAILURE, "no such handle")
        return h

    # -- requests: each returns (reply type, body)

    def open(self, r):
        path, pflags, attrs = r.string(), r.u32(), r.attrs()
        rw = pflags & (FXF_READ | FXF_WRITE)
        flags = os.O_RDWR if rw == FXF_READ | FXF_WRITE else os.O_WRONLY if rw == FXF_WRITE else os.O_RDONLY
        for bit, f in ((FXF_APPEND, os.O_APPEND), (FXF_CREAT, os.O_CREAT), (FXF_TRUNC, os.O_TRUNC),
                       (FXF_EXCL, os.O_EXCL)):
            if pflags & bit:
                flags |= f
        mode = attrs.perms & 0o7777 if attrs.perms is not None else 0o666
        # O_NONBLOCK: a fifo must not stall the server at open; files only, then.
        flags |= os.O_NONBLOCK | os.O_NOCTTY
        if self.exclude and flags & os.O_CREAT:
            # Nothing may be made in an excluded place: look where the parent really is first.
            pfd, name = self.parent(path)
            with pfd:
                fd = beneath(pfd, name, flags, mode)
        else:
            fd = beneath(self.rootfd, self.rel(path), flags, mode)
        if self.exclude and self.excluded(self.real(fd)):
            os.close(fd)
            raise Status(NO_SUCH_FILE, "not shared")
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise Status(FAILURE, "not a regular file")
        os.set_blocking(fd, True)
        return self.new_handle(Handle(fd))

    def close(self, r):
        key = r.string()
        h = self.handles.pop(key, None)
        if h is None:
            raise Status(FAILURE, "no such handle")
        h.close()
        return ok()

    def read(self, r):
        h, offset, length = self.handle(r), r.u64(), r.u32()
        data = os.pread(h.fd, min(length, MAX_READ), offset)
        if not data:
            raise Status(EOF, "end of file")
        return DATA, string(data)

    def write(self, r):
        h, offset, data = self.handle(r), r.u64(), r.string()
        view = memoryview(data)
        while view:
            n = os.pwrite(h.fd, view, offset)
            view, offset = view[n:], offset + n
        return ok()

    def lstat(self, r):
        with self.resolve(r.string(), os.O_PATH | os.O_NOFOLLOW) as fd:
            return ATTRS, encode_attrs(os.fstat(fd))

    def stat(self, r):
        with self.resolve(r.string(), os.O_PATH) as fd:
            return ATTRS, encode_attrs(os.fstat(fd))

    def fstat(self, r):
        return ATTRS, encode_attrs(os.fstat(self.handle(r).fd))

    def setstat(self, r):
        path, attrs = r.string(), r.attrs()
        with self.resolve(path, os.O_PATH) as fd:
            via = f"/proc/self/fd/{fd}"  # the very object the kernel resolved, whatever the path became since
            if attrs.size is not None:
                os.truncate(via, attrs.size)
            if attrs.perms is not None:
                os.chmod(via, attrs.perms & 0o7777)
            if attrs.atime is not None:
                os.utime(via, (attrs.atime, attrs.mtime))
            if attrs.uid is not None:
                os.chown(via, attrs.uid, attrs.gid)
        return ok()

    def fsetstat(self, r):
        h, attrs = self.handle(r), r.attrs()
        if attrs.size is not None:
            os.ftruncate(h.fd, attrs.size)
        if attrs.perms is not None:
            os.fchmod(h.fd, attrs.perms & 0o7777)
        if attrs.atime is not None:
            os.utime(h.fd, (attrs.atime, attrs.mtime))
        if attrs.uid is not None:
            os.fchown(h.fd, attrs.uid, attrs.gid)
        return ok()

    def lsetstat(self, r):
        path, attrs = r.string(), r.attrs()
        if attrs.size is not None:
            raise Status(OP_UNSUPPORTED, "lsetstat cannot change a size")
        pfd, name = self.parent(path)
        with pfd:
            if attrs.perms is not None:
                try:
                    os.chmod(name, attrs.perms & 0o7777, dir_fd=pfd, follow_symlinks=False)
                except (ValueError, NotImplementedError):  # Linux has no mode on a symlink
                    raise Status(OP_UNSUPPORTED, "a symlink has no permissions to change") from None
            if attrs.atime is not None:
                os.utime(name, (attrs.atime, attrs.mtime), dir_fd=pfd, follow_symlinks=False)
            if attrs.uid is not None:
                os.chown(name, attrs.uid, attrs.gid, dir_fd=pfd, follow_symlinks=False)
        return ok()

    def opendir(self, r):
        fd = self.resolve(r.string(), os.O_RDONLY | os.O_DIRECTORY)
        try:
            entries = os.scandir(fd)
        except OSError:
            os.close(fd)
            raise
        return self.new_handle(Handle(fd, entries))

    def readdir(self, r):
        h, out = self.handle(r, directory=True), []
        here = self.real(h.fd) if self.exclude else b""
        for entry in h.entries:
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:  # removed since the listing was read
                continue
            name = os.fsencode(entry.name)
            if self.exclude and self.excluded((here + b"/" + name).lstrip(b"/")):
                continue
            out.append((name, longname(name, st), encode_attrs(st)))
            if len(out) >= READDIR_BATCH:
                break
        if not out:
            raise Status(EOF, "no more entries")
        return NAME, names(out)

    def remove(self, r):
        pfd, name = self.parent(r.string())
        with pfd:
            os.unlink(name, dir_fd=pfd)
        return ok()

    def mkdir(self, r):
        path, attrs = r.string(), r.attrs()
        pfd, name = self.parent(path)
        with pfd:
            os.mkdir(name, attrs.perms & 0o7777 if attrs.perms is not None else 0o777, dir_fd=pfd)
        return ok()

    def rmdir(self, r):
        pfd, name = self.parent(r.string())
        with pfd:
            os.rmdir(name, dir_fd=pfd)
        return ok()

    def realpath(self, r):
        path = r.string()
        try:
            with self.resolve(path, os.O_PATH) as fd:
                return self.name(self.inside(os.fsencode(os.readlink(f"/proc/self/fd/{fd}"))))
        except FileNotFoundError:  # a name yet to be made: its directory must exist (as OpenSSH's)
            pfd, name = self.parent(path)
            with pfd:
                return self.name(self.inside(os.fsencode(os.readlink(f"/proc/self/fd/{pfd}")).rstrip(b"/")
                                             + b"/" + name))

    def readlink(self, r):
        pfd, name = self.parent(r.string())
        with pfd:
            return self.name(os.fsencode(os.readlink(name, dir_fd=pfd)))

    def name(self, n):
        return NAME, names([(n, n, NO_ATTRS)])

    def symlink(self, r):
        target, link = r.string(), r.string()  # OpenSSH's order (the draft's is the other way round)
        pfd, name = self.parent(link)
        with pfd:
            os.symlink(target, name, dir_fd=pfd)
        return ok()

    def two(self, r):
        old, new = r.string(), r.string()
        ofd, oname = self.parent(old)
        try:
            nfd, nname = self.parent(new)
        except BaseException:
            os.close(ofd)
            raise
        return ofd, oname, nfd, nname

    def rename(self, r):
        ofd, old, nfd, new = self.two(r)
        with ofd, nfd:
            try:
                confine.renameat2(ofd, old, nfd, new, confine.RENAME_NOREPLACE)  # v3: never replaces
            except OSError as e:
                if e.errno != errno.EINVAL:
                    raise
                # A filesystem without RENAME_NOREPLACE (NFS): look first, as OpenSSH does (racy only within DIR).
                try:
                    os.lstat(new, dir_fd=nfd)
                except FileNotFoundError:
                    os.rename(old, new, src_dir_fd=ofd, dst_dir_fd=nfd)
                else:
                    raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST)) from None
        return ok()

    def posix_rename(self, r):
        ofd, old, nfd, new = self.two(r)
        with ofd, nfd:
            os.rename(old, new, src_dir_fd=ofd, dst_dir_fd=nfd)
        return ok()

    def hardlink(self, r):
        ofd, old, nfd, new = self.two(r)
        with ofd, nfd:
            # follow_symlinks=False: link a symlink itself, never the file it names.
            os.link(old, new, src_dir_fd=ofd, dst_dir_fd=nfd, follow_symlinks=False)
        return ok()

    def statvfs(self, r):
        with self.resolve(r.string(), os.O_PATH) as fd:
            return statvfs_reply(os.statvfs(fd))

    def fstatvfs(self, r):
        return statvfs_reply(os.statvfs(self.handle(r).fd))

    def fsync(self, r):
        os.fsync(self.handle(r).fd)
        return ok()

    def limits(self, r):
        return EXTENDED_REPLY, struct.pack(">QQQQ", MAX_PACKET, MAX_READ, MAX_READ, MAX_HANDLES)

    def extended(self, r):
        name = r.string()
        handler = self.extensions.get(name)
        if handler is None:
            raise Status(OP_UNSUPPORTED, f"extension {name.decode(errors='replace')} is not supported")
        return handler(r)


def ok():
    return STATUS, status_body(OK, "Success")


def statvfs_reply(v):
    flag = (STATVFS_RDONLY if v.f_flag & os.ST_RDONLY else 0) | (STATVFS_NOSUID if v.f_flag & os.ST_NOSUID else 0)
    return EXTENDED_REPLY, struct.pack(">11Q", v.f_bsize, v.f_frsize, v.f_blocks, v.f_bfree, v.f_bavail, v.f_files,
                                       v.f_ffree, v.f_favail, v.f_fsid & ((1 << 64) - 1), flag, v.f_namemax)


def _write_all(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
