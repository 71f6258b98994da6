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

Within DIR, two lists (womm.excludes, womm.protect) are enforced on what the
kernel resolved, before anything changes: an existing file is first opened
O_PATH, checked, then reopened through /proc/self/fd with the flags asked for
(so O_TRUNC never reaches a file the checks refuse), and a new one is made
O_EXCL | O_NOFOLLOW beneath its checked parent (never through a symlink).
- The secrets: never read, listed, written or made, whatever name or link leads
  to them (a hard link is matched by device and inode); no rename may make or
  unmake one, so renaming `.docker`, or anything to `.docker`, is refused.
- The protected paths (.git, .envrc, ...): read, but nothing beneath them is
  written, made, removed, renamed, linked or given other attributes; and so,
  with them, a directory git takes for a repository (HEAD beside objects and
  refs, or commondir), and no name may make one (womm.protect.git_dir_of). Every
  change holds an flock on DIR from before its path is resolved to its end: the
  servers of other pods can neither each add one of the set at once, nor move a
  directory between one's check and its change.
No setuid, setgid or sticky bit, no ownership change, and no write for group or
others that the user's umask takes away comes from a client (womm.protect.mode).

Replies are written as they are made: pipelined requests never pile up replies
in memory, and a client that does not read stops the server from reading more.
"""

import errno
import fcntl
import os
import stat
import struct
import time

from womm import confine, excludes, protect
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
READ_AHEAD = 1 << 18  # bytes of requests read at once: what may wait for the replies before them
FLUSH_AT = 1 << 16  # replies gathered into one write up to this size

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


def hidden():
    return Status(NO_SUCH_FILE, "not shared")


def guarded():
    return Status(PERMISSION_DENIED, "protected: the cluster may read it, not change it (share-protect)")


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
    def __init__(self, directory, exclude=(), protected=()):
        try:
            self.rootfd = os.open(directory, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            self.root = os.fsencode(os.path.realpath(directory))
            here, there = os.fstat(self.rootfd), os.stat(self.root)
        except OSError as e:
            raise WommError(f"cannot serve {directory}: {e.strerror}") from None
        if (here.st_dev, here.st_ino) != (there.st_dev, there.st_ino):
            raise WommError(f"cannot serve {directory}: it moved while starting")
        self.prefix = self.root.rstrip(b"/") + b"/"
        self.umask = protect.umask()  # read now: Landlock hides /proc/self/status
        # The secrets (never served) and the protected paths (never changed), matched on what the kernel
        # resolved, so a link to them hides nothing; beyond their names, found now (before Landlock hides
        # the home directory): their files' other hard links, and where their symlinks lead in DIR.
        self.lists = bool(exclude or protected)
        secret, guard = (excludes.scan(os.fsdecode(self.root), [exclude, protected], home=os.path.expanduser("~"))
                         if self.lists else (excludes.Found(), excludes.Found()))
        self.secret, self.secret_inodes = secret.rules(exclude, hold=True), secret.inodes
        self.guard, self.guard_inodes = guard.rules(protected), guard.inodes
        self.git_guard = bool(protected)
        self.lockfd, self.locked = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=self.rootfd), False
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
        """Answer requests until infd ends (or outfd closes).

        At most READ_AHEAD bytes of requests are read ahead of their answers, and replies are written
        as they are made (gathered up to FLUSH_AT): memory stays bounded whatever a client pipelines,
        and a client that does not read its replies stops the server reading (it waits in write)."""
        buf, out = bytearray(), Replies(outfd)
        try:
            while True:
                data = os.read(infd, READ_AHEAD)
                if not data:
                    return
                buf += data
                pos = 0
                while len(buf) - pos >= 4:
                    (n,) = _U32.unpack_from(buf, pos)
                    if n == 0 or n > MAX_PACKET:
                        raise WommError(f"serve-sftp: a packet of {n} bytes: not SFTP, or a broken client")
                    if len(buf) - pos - 4 < n:
                        break
                    out.add(self.packet(bytes(buf[pos + 4:pos + 4 + n])))
                    pos += 4 + n
                del buf[:pos]
                out.flush()
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
            try:
                kind, body = handler(r)
            finally:
                if self.locked:
                    fcntl.flock(self.lockfd, fcntl.LOCK_UN)
                    self.locked = False
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

    def resolve(self, path, flags, mode=0, change=False):
        """An fd of path, following symlinks while they stay beneath DIR; refused (before anything is
        done to it) if it is a secret, or protected and change is asked."""
        if change:
            self.exclusive()
        fd = _Fd(beneath(self.rootfd, self.rel(path), flags, mode))
        if self.lists:
            try:
                self.check(self.real(fd), os.fstat(fd), change)
            except BaseException:
                os.close(fd)
                raise
        return fd

    def parent(self, path, change=False):
        """An O_PATH fd of path's directory, and the last name (not followed) in it; refused if that
        name is a secret, or protected and change is asked."""
        head, _, name = self.rel(path).rstrip(b"/").rpartition(b"/")
        if name in (b"", b".", b".."):
            raise Status(PERMISSION_DENIED, "that name is not an entry of the shared directory")
        if change:
            self.exclusive()
        fd = _Fd(beneath(self.rootfd, head or b".", os.O_PATH | os.O_DIRECTORY))
        if self.lists:
            try:
                self.check(self.entry(fd, name), None, change)
            except BaseException:
                os.close(fd)
                raise
        return fd, name

    def real(self, fd):
        """Where fd is, relative to DIR (what the kernel resolved)."""
        path = os.readlink(f"/proc/self/fd/{fd}".encode())
        if path == self.root:
            return b""
        if not path.startswith(self.prefix):
            raise denied()
        return path[len(self.prefix):]

    def entry(self, dirfd, name):
        """The relative path of name in the directory dirfd."""
        return (self.real(dirfd) + b"/" + name).lstrip(b"/")

    def check(self, rel, st=None, change=False):
        """Refuse rel (relative to DIR, as resolved; st: its stat, for its inode) if it is a secret, or
        protected and change is asked."""
        where = os.fsdecode(rel)
        key = (st.st_dev, st.st_ino) if st is not None else None
        if self.secret.covers(where) or key in self.secret_inodes:
            raise hidden()
        if change and (self.guard.covers(where) or key in self.guard_inodes):
            raise guarded()
        if change and self.git_guard and protect.git_dir_of(where, self.holds) is not None:
            raise guarded()

    def exclusive(self):
        """Hold DIR's flock until this request ends (packet): nothing moves in DIR between a check and its change."""
        if self.git_guard and not self.locked:
            fcntl.flock(self.lockfd, fcntl.LOCK_EX)
            self.locked = True

    def holds(self, directory, name):
        """Whether the directory (relative to DIR) has an entry of that name."""
        try:
            os.close(beneath(self.rootfd, os.fsencode(os.path.join(directory, name)), os.O_PATH | os.O_NOFOLLOW))
        except OSError:
            return False
        return True

    def check_rename(self, ofd, old, nfd, new):
        """Refuse a rename from old or to new that could make or unmake a secret or a protected path."""
        if self.lists:
            for rel in (self.entry(ofd, old), self.entry(nfd, new)):
                where = os.fsdecode(rel)
                if self.secret.moves(where):
                    raise Status(PERMISSION_DENIED, "renaming that would make or unmake a path not shared")
                if self.guard.moves(where):
                    raise guarded()

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
        for bit, f in ((FXF_APPEND, os.O_APPEND), (FXF_TRUNC, os.O_TRUNC)):
            if pflags & bit:
                flags |= f
        change = bool(pflags & (FXF_WRITE | FXF_APPEND | FXF_CREAT | FXF_TRUNC))
        if pflags & FXF_CREAT:
            # A new file: made O_EXCL beneath its checked parent, never through a symlink (the umask applies).
            mode = protect.mode(attrs.perms if attrs.perms is not None else 0o666, mask=0)
            pfd, name = self.parent(path, change=True)
            with pfd:
                try:
                    fd = beneath(pfd, name, flags | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_NOCTTY, mode)
                except FileExistsError:
                    if pflags & FXF_EXCL:
                        raise
                else:
                    return self.new_handle(Handle(fd))
        # An existing file: found (O_PATH: a fifo does not block, O_TRUNC is not yet applied), checked, then opened.
        with self.resolve(path, os.O_PATH, change=change) as found:
            st = os.fstat(found)
            if not stat.S_ISREG(st.st_mode):
                raise Status(FAILURE, "not a regular file")
            fd = os.open(f"/proc/self/fd/{found}", flags | os.O_NOCTTY | os.O_CLOEXEC)
        if change and st.st_mode & 0o6000:
            os.fchmod(fd, stat.S_IMODE(st.st_mode) & ~0o6000)  # as the kernel does for writers without CAP_FSETID
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

    def apply(self, st, attrs, truncate, chmod, utime):
        """attrs onto one object (st: its stat): ownership never changes (refused before anything is
        done), permissions as womm.protect.mode allows."""
        if attrs.uid is not None and (attrs.uid, attrs.gid) != (st.st_uid, st.st_gid):
            raise Status(PERMISSION_DENIED, "ownership is not changed from the cluster")
        if attrs.size is not None:
            truncate(attrs.size)
            if st.st_mode & 0o6000 and attrs.perms is None:
                chmod(stat.S_IMODE(st.st_mode) & ~0o6000)
        if attrs.perms is not None:
            chmod(protect.mode(attrs.perms, stat.S_IMODE(st.st_mode), self.umask))
        if attrs.atime is not None:
            utime((attrs.atime, attrs.mtime))

    def setstat(self, r):
        path, attrs = r.string(), r.attrs()
        with self.resolve(path, os.O_PATH, change=True) as fd:
            via = f"/proc/self/fd/{fd}"  # the very object the kernel resolved, whatever the path became since
            self.apply(os.fstat(fd), attrs, lambda n: os.truncate(via, n), lambda m: os.chmod(via, m),
                       lambda t: os.utime(via, t))
        return ok()

    def fsetstat(self, r):
        h, attrs = self.handle(r), r.attrs()
        self.exclusive()
        st = os.fstat(h.fd)
        if self.lists:
            self.check(self.real(h.fd), st, change=True)
        self.apply(st, attrs, lambda n: os.ftruncate(h.fd, n), lambda m: os.fchmod(h.fd, m),
                   lambda t: os.utime(h.fd, t))
        return ok()

    def lsetstat(self, r):
        path, attrs = r.string(), r.attrs()
        if attrs.size is not None:
            raise Status(OP_UNSUPPORTED, "lsetstat cannot change a size")
        pfd, name = self.parent(path, change=True)
        with pfd:
            st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
            if self.lists:
                self.check(self.entry(pfd, name), st, change=True)

            def chmod(m):
                try:
                    os.chmod(name, m, dir_fd=pfd, follow_symlinks=False)
                except (ValueError, NotImplementedError):  # Linux has no mode on a symlink
                    raise Status(OP_UNSUPPORTED, "a symlink has no permissions to change") from None

            self.apply(st, attrs, None, chmod, lambda t: os.utime(name, t, dir_fd=pfd, follow_symlinks=False))
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
        here = self.real(h.fd) if self.lists else b""
        for entry in h.entries:
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:  # removed since the listing was read
                continue
            name = os.fsencode(entry.name)
            if self.lists:
                try:
                    self.check((here + b"/" + name).lstrip(b"/"), st)
                except Status:
                    continue
            out.append((name, longname(name, st), encode_attrs(st)))
            if len(out) >= READDIR_BATCH:
                break
        if not out:
            raise Status(EOF, "no more entries")
        return NAME, names(out)

    def remove(self, r):
        pfd, name = self.parent(r.string(), change=True)
        with pfd:
            os.unlink(name, dir_fd=pfd)
        return ok()

    def mkdir(self, r):
        path, attrs = r.string(), r.attrs()
        pfd, name = self.parent(path, change=True)
        with pfd:
            # No sticky or setgid bit from the client; the umask applies.
            os.mkdir(name, protect.mode(attrs.perms if attrs.perms is not None else 0o777, mask=0), dir_fd=pfd)
        return ok()

    def rmdir(self, r):
        pfd, name = self.parent(r.string(), change=True)
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
        pfd, name = self.parent(link, change=True)
        with pfd:
            os.symlink(target, name, dir_fd=pfd)
        return ok()

    def two(self, r):
        """Both entries of a rename or a link: their parents' fds and names, each refused as a change."""
        old, new = r.string(), r.string()
        ofd, oname = self.parent(old, change=True)
        try:
            nfd, nname = self.parent(new, change=True)
        except BaseException:
            os.close(ofd)
            raise
        return ofd, oname, nfd, nname

    def rename(self, r):
        ofd, old, nfd, new = self.two(r)
        with ofd, nfd:
            self.check_rename(ofd, old, nfd, new)
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
            self.check_rename(ofd, old, nfd, new)
            os.rename(old, new, src_dir_fd=ofd, dst_dir_fd=nfd)
        return ok()

    def hardlink(self, r):
        ofd, old, nfd, new = self.two(r)
        with ofd, nfd:
            st = os.stat(old, dir_fd=ofd, follow_symlinks=False)
            if self.lists:
                self.check(self.entry(ofd, old), st, change=True)  # another name for a secret's or protected file
            # follow_symlinks=False: link a symlink itself, never the file it names.
            os.link(old, new, src_dir_fd=ofd, dst_dir_fd=nfd, follow_symlinks=False)
            made = os.stat(new, dir_fd=nfd, follow_symlinks=False)
            if (made.st_dev, made.st_ino) != (st.st_dev, st.st_ino):  # old was swapped after the check
                os.unlink(new, dir_fd=nfd)
                raise Status(FAILURE, "the file changed while it was linked")
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


class Replies:
    """Replies on their way out: written once FLUSH_AT bytes have gathered, and at flush()."""

    def __init__(self, fd):
        self.fd, self.parts, self.size = fd, [], 0

    def add(self, data):
        self.parts.append(data)
        self.size += len(data)
        if self.size >= FLUSH_AT:
            self.flush()

    def flush(self):
        if self.parts:
            data, self.parts, self.size = b"".join(self.parts), [], 0
            _write_all(self.fd, data)


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
