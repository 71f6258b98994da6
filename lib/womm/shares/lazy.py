"""Lazy shares: the directory mounted live in each pod, read from this machine about once.

  this machine: womm-fs serve-sftp DIR (confined to DIR by the kernel)
        | one exec stream, for the whole task
  the task's share cache pod: sshfs mounts DIR (page cache kept until a file changes),
        womm-fs serve-sftp --listen serves it, each connection opened with the task's token
        | TCP inside the cluster, one connection per pod
  each worker's share container: sshfs mounts DIR from the cache (womm-lazy-mount)
        | mount propagation
  the job container sees DIR

The user's machine serves each byte about once per task, however many pods read it; a
write reaches its disk within milliseconds; a change made here is seen by jobs within a
second (sshfs's attribute cache). The share containers are privileged (FUSE needs it);
the job container is not. The cache and the token are the task's own: its objects, gone
with it. A NetworkPolicy lets only the task's pods reach the cache (where the cluster's
network enforces policies); the token guards it where it does not.
"""

import os
import secrets
import subprocess
import threading
import time

from womm import excludes, kube, manifests, programs, protect
from womm.errors import UsageError, WommError, describe, with_hint
from womm.report import printable
from womm.shares.base import Share

MOUNT_TIMEOUT = 60
MOUNT_ATTEMPTS = 3
CACHE_PORT = 2222
MAX_LINE = 1000  # bytes kept of one line the cache says: the rest of a longer one is dropped


def cache_connections(task):
    """How many connections the cache serves at once: each pod keeps one; a pod replaced, or a mount
    tried again, may hold a second for a while."""
    return 2 * (task.pods or 1) + 8


class Lines:
    """The lines of a byte stream, each kept to `most` bytes: bounded memory, newlines or none."""

    def __init__(self, most=MAX_LINE):
        self.most, self.part, self.cut = most, bytearray(), False

    def feed(self, data):
        """The lines data completes."""
        *ended, rest = data.split(b"\n")
        out = []
        for piece in ended:
            self._add(piece)
            out.append(self.rest())
            self.part, self.cut = bytearray(), False
        self._add(rest)
        return out

    def _add(self, piece):
        room = self.most - len(self.part)
        if len(piece) > room:
            piece, self.cut = piece[:max(room, 0)], True
        self.part += piece

    def rest(self):
        """The line begun and not yet ended."""
        return bytes(self.part) + (b" [...]" if self.cut else b"")


class LazyShare(Share):
    kind = "lazy"
    needs_ready_pods = True  # its mount goes through the pod's sidecar

    def __init__(self, directory, share_id, cluster, log):
        super().__init__(directory, share_id, cluster, log)
        self.token = secrets.token_hex(32)
        self.cache_ip = None
        self.ready = threading.Event()
        self.failed = None
        self.server = None
        self.stream = None
        self.closing = False

    def check_async(self):
        raise UsageError("--async does not work with a lazy share: the pods would lose it with this client "
                         "(choose an eager share with `womm setup`)")

    def pod_parts(self, task):
        volume, mount = self.directory_volume(task)
        job_mount = dict(mount, mountPropagation="HostToContainer")
        share_mount = dict(mount, mountPropagation="Bidirectional")
        sidecar = {
            "name": manifests.SHARE_CONTAINER,
            "image": task.helper_image,
            "command": ["womm-lazy-idle", mount["mountPath"]],
            "securityContext": {"privileged": True},
            "volumeMounts": [share_mount],
            # No CPU request: the pod's request stays what the user asked for (--kube-cpu).
            "resources": {"requests": {"memory": "16Mi"}, "limits": {"memory": "256Mi"}},
        }
        return {"volumes": [volume], "mounts": [job_mount], "containers": [sidecar]}

    def prepare(self, task, on_fatal=None):
        """The task's share cache: its pod started, then fed by this machine's confined server, in the background."""
        from womm import confine

        confine.check()  # fail now, before a pod waits for a share that cannot come
        excludes.say_once(self.directory, self.log)

        def start():
            try:
                self._start_cache(task, on_fatal)
            except Exception as e:  # noqa: BLE001 - reported through on_fatal, and to the pods that wait
                self.failed = with_hint(f"the lazy share's cache did not start: {describe(e)}", e)
                if on_fatal:
                    on_fatal(self.failed)
            finally:
                self.ready.set()

        threading.Thread(target=start, name="share cache", daemon=True).start()

    def _start_cache(self, task, on_fatal=None):
        c = self.cluster
        for body in manifests.share_cache(task, CACHE_PORT):
            c.create(body)
        name = manifests.share_cache_name(task)
        deadline = time.monotonic() + MOUNT_TIMEOUT * 5  # a first pull of the helper image may take a while
        while True:
            pod = c.request("GET", c.path("pods", name))
            status = pod.get("status") or {}
            if status.get("phase") == "Running" and status.get("podIP"):
                break
            for s in status.get("containerStatuses") or []:
                waiting = (s.get("state") or {}).get("waiting") or {}
                if waiting.get("reason") in ("ErrImagePull", "ImagePullBackOff", "InvalidImageName", "CrashLoopBackOff"):
                    raise WommError(f"{waiting['reason']}: {waiting.get('message')}", doctor=True)
            if time.monotonic() > deadline:
                raise WommError(f"its pod {name} did not start")
            time.sleep(0.3)
        lists = [f"--exclude={p}" for p in excludes.excluded()]
        lists += [f"--protect={p}" for p in protect.protected(self.directory)]
        self.server = subprocess.Popen(
            [programs.require("womm-fs"), "serve-sftp", *lists, self.directory],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        self.stream = c.exec_stream(name, ["womm-lazy-cache", self.directory, str(CACHE_PORT),
                                           str(cache_connections(task))], container=manifests.SHARE_CONTAINER)
        self.stream.send(self.token.encode() + b"\n")
        self._keep_alive(on_fatal)
        mounted = threading.Event()
        threading.Thread(target=self._to_cache, name="share to cache", daemon=True).start()
        threading.Thread(target=self._from_cache, args=(mounted,), name="share from cache", daemon=True).start()
        if not mounted.wait(MOUNT_TIMEOUT) or self.failed:
            raise WommError(self.failed or f"the cache did not mount {task.cwd} within {MOUNT_TIMEOUT} s")
        self.cache_ip = status["podIP"]

    def _keep_alive(self, on_fatal):
        """The stream to the cache is pinged while the share lasts: sshfs says nothing while no job reads,
        and a load balancer on the way would forget the idle connection, and the pods the directory.
        One dropped anyway cannot be taken up again where sshfs left it: the run ends, saying so."""

        def silent():
            if not self.closing and on_fatal is not None:
                on_fatal(f"the lazy share's stream to its cache heard nothing for {self.stream.silent} s, pings "
                         "unanswered: something on the way to the Kubernetes API dropped it, and the pods lost "
                         "the directory")

        self.stream.keepalive(on_silent=silent)

    def _to_cache(self):
        """This machine's server's answers, to sshfs in the cache."""
        out = self.server.stdout.fileno()
        try:
            while data := os.read(out, 1 << 16):
                self.stream.send(data)
        except OSError:
            pass

    def _from_cache(self, mounted):
        """sshfs's requests, to this machine's server; the cache's own words, to the user (each line
        bounded, its control characters made visible: the cache is the cluster's, not ours)."""
        stdin = self.server.stdin
        lines, last = Lines(), b""
        try:
            while (item := self.stream.recv()) is not None:
                channel, data = item
                if channel == kube.STDOUT:
                    stdin.write(data)
                    stdin.flush()
                elif channel == kube.STDERR:
                    for line in lines.feed(data):
                        if line == b"mounted":
                            mounted.set()
                        elif line.strip():
                            last = line
                            self.log(f"lazy share: {printable(line.decode(errors='replace'))}")
        except (OSError, ValueError):
            pass
        finally:
            if not mounted.is_set():
                said = printable((lines.rest().strip() or last).decode(errors="replace").strip())
                self.failed = f"the cache could not mount the directory: {said}"
                mounted.set()
            elif not self.closing:
                self.log("lazy share: the stream to the share cache ended; the pods lose the directory")

    def attach_pod(self, pod, task):
        """Mount the directory in the pod's share container, from the cache (a short exec)."""
        if not self.ready.wait(MOUNT_TIMEOUT * 5) or self.failed:
            raise WommError(self.failed or "the lazy share's cache is not ready")
        # A mount may fail for a moment (the cache's connection reset): tried a few times, then
        # this pod fails (and the run, if no pod has worked yet).
        for attempt in range(MOUNT_ATTEMPTS):
            stream = self.cluster.exec_stream(pod, ["womm-lazy-mount", self.directory, self.cache_ip,
                                                    str(CACHE_PORT)], container=manifests.SHARE_CONTAINER)
            status, _, err = stream.collect(self.token.encode() + b"\n")
            if status == 0 and b"mounted" in err:
                return
            if attempt + 1 < MOUNT_ATTEMPTS:
                time.sleep(attempt + 1)
        said = printable(err[-MAX_LINE:].decode(errors="replace").strip())
        raise WommError(f"the lazy share did not mount in pod {pod} ({MOUNT_ATTEMPTS} tries): "
                        f"{said or f'exit {status}'}")

    def close(self):
        self.closing = True
        if self.stream is not None:
            self.stream.close()
        if self.server is not None and self.server.poll() is None:
            self.server.terminate()
            try:
                self.server.wait(2)
            except subprocess.TimeoutExpired:
                self.server.kill()
