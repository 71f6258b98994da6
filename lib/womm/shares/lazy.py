"""Lazy shares: the directory mounted live in each pod, with sshfs over the exec API.

  local sftp-server -d DIR  <->  this relay  <->  exec stream  <->  sshfs -o passive (share container)
                                                                     | mount propagation
                                                                job container sees DIR

The share container is privileged (FUSE needs it; the job container is not).
sftp-server starts in DIR but is no chroot, so this relay reads every request
and refuses, with a permission-denied reply, any path that is not inside DIR.
Writes reach the local disk within milliseconds; a file created locally is seen
by a job within a second (sshfs caches attributes for up to a second), sooner
after `sync`. No inotify events cross.
"""

import os
import shutil
import struct
import subprocess
import threading

from womm import manifests
from womm.errors import UsageError, WommError
from womm.shares.base import Share

SFTP_SERVERS = ("/usr/lib/openssh/sftp-server", "/usr/lib/sftp-server", "/usr/libexec/openssh/sftp-server",
                "/usr/libexec/sftp-server", "/usr/lib/ssh/sftp-server")
MOUNT_TIMEOUT = 30

# SFTP v3 requests (draft-ietf-secsh-filexfer-02) whose first string is a path. "follow":
# the server resolves the last component's symlink; "nofollow": it acts on the name itself.
FOLLOW = {3: "open", 9: "setstat", 11: "opendir", 14: "mkdir", 16: "realpath", 17: "stat"}
NOFOLLOW = {7: "lstat", 13: "remove", 15: "rmdir", 19: "readlink"}
TWO_PATHS = {18: "rename"}
SYMLINK = 20
EXTENDED = 200
EXT_PATHS = {
    b"posix-rename@openssh.com": 2, b"hardlink@openssh.com": 2, b"statvfs@openssh.com": 1,
    b"lsetstat@openssh.com": 1, b"expand-path@openssh.com": 1,
}
EXT_HANDLES = {b"fstatvfs@openssh.com", b"fsync@openssh.com", b"limits@openssh.com", b"copy-data"}
STATUS, PERMISSION_DENIED = 101, 3


def sftp_server():
    for path in SFTP_SERVERS:
        if os.access(path, os.X_OK):
            return path
    found = shutil.which("sftp-server")
    if found:
        return found
    raise WommError("a lazy share needs OpenSSH's sftp-server here: install openssh-sftp-server")


class PathGuard:
    """Is a path the pod asks for inside the shared directory?"""

    def __init__(self, directory):
        self.root = os.path.realpath(directory)

    def _inside(self, real):
        return real == self.root or real.startswith(self.root + os.sep)

    def allowed(self, path, follow=True):
        path = os.fsdecode(path)
        if not os.path.isabs(path):
            path = os.path.join(self.root, path)
        if follow:
            return self._inside(os.path.realpath(path))
        parent, name = os.path.split(os.path.normpath(path))
        if name in ("", ".", ".."):
            return self._inside(os.path.realpath(path))
        return self._inside(os.path.join(os.path.realpath(parent), name))


def _strings(body, count):
    """The first `count` SFTP strings of body."""
    out, pos = [], 0
    for _ in range(count):
        (n,) = struct.unpack_from(">I", body, pos)
        out.append(body[pos + 4: pos + 4 + n])
        pos += 4 + n
    return out


def check_request(packet, guard):
    """None if the request may pass, else its request id (to deny)."""
    kind = packet[0]
    if kind == 1:  # INIT carries no id and no path
        return None
    (rid,) = struct.unpack_from(">I", packet, 1)
    body = packet[5:]
    try:
        if kind in FOLLOW:
            ok = guard.allowed(_strings(body, 1)[0], follow=True)
        elif kind in NOFOLLOW:
            ok = guard.allowed(_strings(body, 1)[0], follow=False)
        elif kind in TWO_PATHS:
            ok = all(guard.allowed(p, follow=False) for p in _strings(body, 2))
        elif kind == SYMLINK:
            # OpenSSH's order: target, then the link's own path. Only the link must be inside;
            # the target is the link's content, resolved (in the pod) by whoever follows it.
            ok = guard.allowed(_strings(body, 2)[1], follow=False)
        elif kind == EXTENDED:
            name = _strings(body, 1)[0]
            if name in EXT_PATHS:
                paths = _strings(body, 1 + EXT_PATHS[name])[1:]
                ok = all(guard.allowed(p, follow=name == b"statvfs@openssh.com") for p in paths)
            else:
                ok = name in EXT_HANDLES
        else:
            ok = True  # handles (read, write, close, fstat, ...) come from allowed opens
    except struct.error:
        ok = False
    return None if ok else rid


def denied(rid):
    message = b"outside the shared directory"
    body = struct.pack(">BII", STATUS, rid, PERMISSION_DENIED) + struct.pack(">I", len(message)) + message
    body += struct.pack(">I", 0)  # language tag
    return struct.pack(">I", len(body)) + body


class Packets:
    """Reassembles length-prefixed SFTP packets from a byte stream."""

    def __init__(self):
        self.buf = b""

    def feed(self, data):
        self.buf += data
        out = []
        while len(self.buf) >= 4:
            (n,) = struct.unpack_from(">I", self.buf)
            if len(self.buf) < 4 + n:
                break
            out.append(self.buf[4: 4 + n])
            self.buf = self.buf[4 + n:]
        return out


class Mount:
    """One pod's mount: a local sftp-server, the relay, and the exec stream to sshfs."""

    def __init__(self, cluster, pod, directory, log):
        self.log = log
        self.pod = pod
        self.mounted = threading.Event()
        self.failed = None
        self.guard = PathGuard(directory)
        self.send_lock = threading.Lock()
        self.server = subprocess.Popen(
            [sftp_server(), "-d", directory, "-e", "-l", "ERROR"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=directory,
        )
        self.stream = cluster.exec_stream(pod, ["womm-lazy-mount", directory], container=manifests.SHARE_CONTAINER)
        threading.Thread(target=self._to_pod, name=f"sftp to {pod}", daemon=True).start()
        threading.Thread(target=self._from_pod, name=f"sftp from {pod}", daemon=True).start()

    def _send(self, data):
        with self.send_lock:
            self.stream.send(data)

    def _to_pod(self):
        packets = Packets()
        out = self.server.stdout
        try:
            while data := os.read(out.fileno(), 65536):
                for p in packets.feed(data):
                    self._send(struct.pack(">I", len(p)) + p)
        except OSError:
            pass

    def _from_pod(self):
        packets = Packets()
        stdin = self.server.stdin
        stderr = b""
        try:
            while (item := self.stream.recv()) is not None:
                channel, data = item
                if channel == 1:
                    for p in packets.feed(data):
                        rid = check_request(p, self.guard)
                        if rid is None:
                            stdin.write(struct.pack(">I", len(p)) + p)
                            stdin.flush()
                        else:
                            self._send(denied(rid))
                elif channel == 2:
                    stderr += data
                    if b"mounted\n" in stderr:
                        self.mounted.set()
                        stderr = stderr.replace(b"mounted\n", b"", 1)
                    for line in stderr.split(b"\n")[:-1]:
                        self.log(f"lazy share in {self.pod}: {line.decode(errors='replace')}")
                    stderr = stderr.split(b"\n")[-1]
        except (OSError, ValueError):
            pass
        finally:
            if not self.mounted.is_set():
                self.failed = stderr.decode(errors="replace").strip() or "the mount ended"
                self.mounted.set()
            self.close()

    def wait(self):
        if not self.mounted.wait(MOUNT_TIMEOUT):
            raise WommError(f"the lazy share did not mount in pod {self.pod} within {MOUNT_TIMEOUT} s")
        if self.failed:
            raise WommError(f"the lazy share did not mount in pod {self.pod}: {self.failed}")

    def close(self):
        self.stream.close()
        if self.server.poll() is None:
            self.server.terminate()
            try:
                self.server.wait(2)
            except subprocess.TimeoutExpired:
                self.server.kill()


class LazyShare(Share):
    kind = "lazy"

    def __init__(self, directory, share_id, cluster, log):
        super().__init__(directory, share_id, cluster, log)
        self.mounts = []
        self.lock = threading.Lock()
        self.image = None

    def pod_parts(self, task):
        self.image = task["helper_image"]
        volume, mount = self.directory_volume(task)
        job_mount = dict(mount, mountPropagation="HostToContainer")
        share_mount = dict(mount, mountPropagation="Bidirectional")
        sidecar = {
            "name": manifests.SHARE_CONTAINER,
            "image": self.image,
            "command": ["womm-idle"],
            "securityContext": {"privileged": True},
            "volumeMounts": [share_mount],
            # No CPU request: the pod's request stays what the user asked for (--kube-cpu).
            "resources": {"requests": {"memory": "16Mi"}, "limits": {"memory": "256Mi"}},
        }
        return {"volumes": [volume], "mounts": [job_mount], "containers": [sidecar]}

    def check_async(self):
        raise UsageError("--async does not work with a lazy share: the pods would lose it with this client "
                         "(choose an eager share with `womm setup`)")

    def prepare(self, task, on_fatal=None):
        sftp_server()  # fail now, not in every pod

    def attach_pod(self, pod, task):
        mount = Mount(self.cluster, pod, task["cwd"], self.log)
        with self.lock:
            self.mounts.append(mount)
        mount.wait()

    def close(self):
        with self.lock:
            mounts, self.mounts = self.mounts, []
        for m in mounts:
            m.close()
