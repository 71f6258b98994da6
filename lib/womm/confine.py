"""Kernel confinement for a process that must touch one directory only.

Two mechanisms, each through ctypes (Python binds neither):
- openat2(2) with RESOLVE_BENEATH: a path resolved from a directory fd that
  leaves it (`..`, an absolute or escaping symlink) fails in the kernel, race-free.
- Landlock: the process gives up every filesystem right it does not need
  outside the directory (and TCP, and signals or abstract sockets beyond itself).
Both need Linux: openat2 5.6, Landlock 5.13 (and landlock in the lsm= list).
"""

import ctypes
import errno
import os

from womm.errors import WommError

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_libc.prctl.restype = ctypes.c_int

SYS_OPENAT2 = 437  # the same number on every architecture (new syscalls are unified)
SYS_LANDLOCK_CREATE_RULESET = 444
SYS_LANDLOCK_ADD_RULE = 445
SYS_LANDLOCK_RESTRICT_SELF = 446

RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_BENEATH = 0x08
BENEATH = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS

PR_SET_NO_NEW_PRIVS = 38
RENAME_NOREPLACE = 1
LANDLOCK_CREATE_RULESET_VERSION = 1
LANDLOCK_RULE_PATH_BENEATH = 1

# Landlock filesystem rights, and the ABI version that first handles each.
FS_EXECUTE, FS_WRITE_FILE, FS_READ_FILE, FS_READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
FS_REMOVE_DIR, FS_REMOVE_FILE, FS_MAKE_CHAR, FS_MAKE_DIR = 1 << 4, 1 << 5, 1 << 6, 1 << 7
FS_MAKE_REG, FS_MAKE_SOCK, FS_MAKE_FIFO, FS_MAKE_BLOCK, FS_MAKE_SYM = 1 << 8, 1 << 9, 1 << 10, 1 << 11, 1 << 12
FS_REFER, FS_TRUNCATE, FS_IOCTL_DEV = 1 << 13, 1 << 14, 1 << 15
FS_BY_ABI = {1: (1 << 13) - 1, 2: FS_REFER, 3: FS_TRUNCATE, 5: FS_IOCTL_DEV}
# What a file server needs beneath its directory: no exec, no devices, fifos or sockets.
FS_SERVER = (FS_WRITE_FILE | FS_READ_FILE | FS_READ_DIR | FS_REMOVE_DIR | FS_REMOVE_FILE | FS_MAKE_DIR
             | FS_MAKE_REG | FS_MAKE_SYM | FS_REFER | FS_TRUNCATE)
NET_ALL = 0b11  # ABI 4: bind and connect TCP
SCOPE_ALL = 0b11  # ABI 6: abstract unix sockets and signals outside the domain

EAGER = "use an eager share instead (womm setup --share eager)"


class OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


class RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64)]


class PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def _raise(what):
    e = ctypes.get_errno()
    raise OSError(e, os.strerror(e), what)


def openat2(dirfd, path, flags, mode=0, resolve=BENEATH):
    """openat2(2): an fd, or OSError. path is bytes without NUL."""
    if not flags & os.O_CREAT:
        mode = 0  # openat2 refuses a mode it would not use
    how = OpenHow(flags | os.O_CLOEXEC, mode, resolve)
    while True:
        fd = _libc.syscall(ctypes.c_long(SYS_OPENAT2), ctypes.c_long(dirfd), ctypes.c_char_p(path),
                           ctypes.byref(how), ctypes.c_long(ctypes.sizeof(how)))
        if fd >= 0:
            return fd
        # EAGAIN: a rename raced a `..` walk; the kernel asks us to try again.
        if ctypes.get_errno() not in (errno.EAGAIN, errno.EINTR):
            _raise(path)


def beneath(rootfd, rel, flags, mode=0):
    """Open rel beneath rootfd; leaving it is EACCES (the kernel says EXDEV)."""
    try:
        return openat2(rootfd, rel, flags, mode)
    except OSError as e:
        if e.errno == errno.EXDEV:
            raise PermissionError(errno.EACCES, "outside the shared directory", rel) from None
        raise


def landlock_abi():
    """The kernel's Landlock ABI version, or OSError (ENOSYS: not built, EOPNOTSUPP: not enabled)."""
    v = _libc.syscall(ctypes.c_long(SYS_LANDLOCK_CREATE_RULESET), None, ctypes.c_long(0),
                      ctypes.c_long(LANDLOCK_CREATE_RULESET_VERSION))
    if v < 0:
        _raise("landlock")
    return v


def check():
    """Raise WommError (one line) unless this kernel can confine a server to a directory."""
    try:
        fd = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.close(openat2(fd, b".", os.O_PATH | os.O_DIRECTORY))
        finally:
            os.close(fd)
    except OSError as e:
        raise WommError(f"this kernel offers no openat2 with RESOLVE_BENEATH ({e.strerror}): "
                        f"a lazy share needs Linux 5.6 or newer; {EAGER}", doctor=True) from None
    try:
        landlock_abi()
    except OSError as e:
        raise WommError(f"this kernel offers no Landlock ({e.strerror}): a lazy share needs Linux 5.13 or newer "
                        f"with landlock in its lsm= list; {EAGER}", doctor=True) from None


def restrict(dirfd):
    """Landlock this thread (and what it starts) to FS_SERVER beneath dirfd; nothing elsewhere.

    Landlock binds the calling thread only: call it before any other thread exists.
    """
    # First: Landlock requires it (no setuid program may run with fewer rights than it expects).
    if _libc.prctl(PR_SET_NO_NEW_PRIVS, ctypes.c_ulong(1), ctypes.c_ulong(0), ctypes.c_ulong(0),
                   ctypes.c_ulong(0)) != 0:
        _raise("prctl(PR_SET_NO_NEW_PRIVS)")
    abi = landlock_abi()
    fs = 0
    for version, rights in FS_BY_ABI.items():
        if abi >= version:
            fs |= rights
    attr = RulesetAttr(fs, NET_ALL if abi >= 4 else 0, SCOPE_ALL if abi >= 6 else 0)
    size = 24 if abi >= 6 else 16 if abi >= 4 else 8  # older kernels refuse fields they do not know
    rfd = _libc.syscall(ctypes.c_long(SYS_LANDLOCK_CREATE_RULESET), ctypes.byref(attr), ctypes.c_long(size),
                        ctypes.c_long(0))
    if rfd < 0:
        _raise("landlock_create_ruleset")
    try:
        rule = PathBeneathAttr(FS_SERVER & fs, dirfd)
        if _libc.syscall(ctypes.c_long(SYS_LANDLOCK_ADD_RULE), ctypes.c_long(rfd),
                         ctypes.c_long(LANDLOCK_RULE_PATH_BENEATH), ctypes.byref(rule), ctypes.c_long(0)) < 0:
            _raise("landlock_add_rule")
        if _libc.syscall(ctypes.c_long(SYS_LANDLOCK_RESTRICT_SELF), ctypes.c_long(rfd), ctypes.c_long(0)) < 0:
            _raise("landlock_restrict_self")
    finally:
        os.close(rfd)
    return abi


def renameat2(olddirfd, old, newdirfd, new, flags):
    """renameat2(2) (glibc 2.28+): RENAME_NOREPLACE is SFTP v3's own RENAME."""
    if _libc.renameat2(ctypes.c_int(olddirfd), ctypes.c_char_p(old), ctypes.c_int(newdirfd),
                       ctypes.c_char_p(new), ctypes.c_uint(flags)) != 0:
        _raise(old)
