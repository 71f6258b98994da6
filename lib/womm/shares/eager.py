"""Eager shares: the directory rsync'ed to the share server, copied into each pod from there.

  local dir --rsync over the exec API--> share server /shares/<id>/tasks/<task>/base
             (sent against the share's latest base: only what changed travels, the rest is hard links)
  share server --rsync daemon, this share's key--> each pod's copy (an init container)
  [syncback] each pod's changes, as its jobs end --> .../tasks/<task>/results
             --> the local dir, at the end (shares.syncback's rules)

Every task has its own base and results: runs of one directory at the same time, `womm share
sync` and --async tasks never see, nor delete, each other's.

The share server is the womm-fs Deployment and Service of `womm cluster-setup`.
Each share is an rsync module guarded by its own key, a Secret mounted only
into the share's own containers: the pods of one share cannot read another.
The job container itself gets no key.
"""

import os
import re
import secrets
import subprocess
import threading
import time

from womm import admission, excludes, home, manifests, podstatus, taskobjects
from womm.errors import WommError, describe, with_hint
from womm.shares.base import Share

SCRIPT_TIMEOUT = 60  # seconds for one of the share server's own small scripts (register, mark, forget)
# rsync through the exec API gives up on a transfer silent this long (a stream to a pod gone, dropped on
# the way): a run is told, instead of waiting for ever; rsync keeps a live but slow one talking.
RSYNC_IO_TIMEOUT = 120


class ShareServer:
    """The namespace's share server: its ClusterIP, a running pod, and its image."""

    def __init__(self, cluster):
        self.cluster = cluster
        self.ip = self.pod = self.image = None

    READY_TIMEOUT = 180  # seconds a starting share server is waited for

    def locate(self, timeout=None):
        """Find the server, waiting (bounded) while it starts; WommError with its own reason if it will not."""
        from womm.kube import ApiError
        from womm.report import Progress

        c, ns = self.cluster, self.cluster.namespace
        try:
            service = c.request("GET", c.path("services", manifests.SHARE_SERVER))
        except ApiError as e:
            if e.status == 404:
                raise WommError(f"no share server in namespace {ns}: {self.setup_hint()}", doctor=True) from None
            raise
        self.ip = service["spec"]["clusterIP"]
        progress = Progress()
        deadline = time.monotonic() + (self.READY_TIMEOUT if timeout is None else timeout)
        try:
            while True:
                pods = self._pods()
                pod = newest_ready(pods)
                if pod is not None:
                    self.pod = pod["metadata"]["name"]
                    self.image = pod["spec"]["containers"][0]["image"]
                    return self
                why, hopeless = self.why_not(pods)
                if hopeless or time.monotonic() > deadline:
                    raise WommError(f"the share server in namespace {ns} is not ready: {why}", doctor=True)
                progress.update(f"waiting for the share server: {why}")
                time.sleep(1)
        finally:
            progress.done()

    def why_not(self, pods, deployment=None):
        """(why no share server pod is ready, whether waiting would help)."""
        if not pods:
            c = self.cluster
            try:
                d = deployment or c.request("GET", c.path("deployments", manifests.SHARE_SERVER))
            except Exception:  # noqa: BLE001 - the reason is what matters; none found is said below
                return "no pod yet", False
            if d["spec"].get("replicas") == 0:
                return "it is scaled to 0 replicas", True
            refused = admission.replica_failure(d)
            if refused is not None:  # its pods are refused: they never exist
                return f"its pods cannot be created ({refused.policy}): {refused.message}", not refused.curable
            return "no pod yet", False
        for pod in pods:
            why, lost = podstatus.waiting(pod)
            if why:
                return why, lost
        return "its pod is starting", False

    def _pods(self, timeout=60):
        c = self.cluster
        query = {"labelSelector": taskobjects.selector(role="share-server")}
        return c.request("GET", c.path("pods"), query, timeout=timeout)["items"]

    def setup_hint(self):
        return f"run `womm cluster-setup --apply --namespace {self.cluster.namespace}`"

    def health(self, timeout=5):
        """Whether the share server serves: (True, what runs, None), or (False, why, what to do).

        Its Deployment (status.availableReplicas; when we may not read Deployments, its pods
        alone), its Service, and why its pods do not run: the kubelet's or the scheduler's reason.
        """
        from womm.kube import ApiError

        c, ns, name = self.cluster, self.cluster.namespace, manifests.SHARE_SERVER
        setup = self.setup_hint()
        deployment = None
        try:
            deployment = c.request("GET", c.path("deployments", name), timeout=timeout)
        except ApiError as e:
            if e.status == 404:
                return False, f"no Deployment {name} in namespace {ns}", setup
            if e.status != 403:
                raise
        try:
            c.request("GET", c.path("services", name), timeout=timeout)
        except ApiError as e:
            if e.status == 404:
                return False, f"no Service {name} in namespace {ns}", setup
            raise
        pods = [p for p in self._pods(timeout) if not p["metadata"].get("deletionTimestamp")]
        serving = _serving(deployment, pods, setup)
        if serving is not None:
            return serving
        why = next((w for w in map(podstatus.trouble, pods) if w), None)
        if why:
            pulling = why.split(":")[0] in ("ErrImagePull", "ImagePullBackOff", "InvalidImageName")
            fix = (f"push the helper image (`womm build-images`), then {setup}" if pulling else
                   "the cluster has no room for it: free some, or ask its admins" if why.startswith("not scheduled")
                   else f"see `kubectl -n {ns} describe pods -l {taskobjects.ROLE}=share-server`")
            return False, f"its pod: {why}", fix
        for condition in ((deployment or {}).get("status") or {}).get("conditions") or []:
            if condition.get("status") == "True" and condition.get("type") == "ReplicaFailure":
                return False, f"its pods cannot be created: {condition.get('message')}", setup
        return False, "no pod available yet (starting?)", "wait a moment, and run `womm doctor` again"

    def run(self, command, stdin=b""):
        """Run a command in the server; (status, stdout, stderr)."""
        stream = self.cluster.exec_stream(self.pod, command, container="server")
        try:
            status, out, err = stream.collect(stdin, timeout=SCRIPT_TIMEOUT)
        except TimeoutError:
            raise WommError(f"the share server's pod {self.pod} did not answer {command[0]} within {SCRIPT_TIMEOUT} s",
                            doctor=True) from None
        if status is None:
            raise WommError(f"the share server's pod {self.pod} went away while it ran {command[0]} (no exit status "
                            "came: deleted, or restarted): run again", doctor=True)
        return status, out, err

    def mark(self, share_id, task_id):
        """Tell the task's pods that its upload is complete: they may copy the share."""
        self._script("womm-share-mark", share_id, task_id)

    def forget(self, share_id, task_id):
        """The task's copy on the server is not needed any more."""
        self._script("womm-share-forget", share_id, task_id)

    def _script(self, *command):
        status, _, err = self.run(list(command))
        if status != 0:
            raise WommError(f"the share server: {err.decode(errors='replace').strip() or command[0] + ' failed'}")

    def rsync_options(self):
        """rsync's options to reach this server: through the exec API, and giving up on a transfer
        silent for RSYNC_IO_TIMEOUT seconds."""
        return [f"--timeout={RSYNC_IO_TIMEOUT}", "-e", self.rsh()]

    def rsh(self, container="server"):
        """rsync's -e for this server's namespace: `womm-fs rsh` through the exec API."""
        return rsh_command(self.cluster, container)


def newest_ready(pods):
    """The pod to use of the share server's: ready, not being deleted, and the newest, so that a
    Deployment made again (its old pods not yet marked for deletion by the garbage collector, or still
    Ready while they go) is used at once, not its predecessor's pod on its way out."""
    return max(filter(podstatus.ready, pods), key=lambda p: p["metadata"].get("creationTimestamp") or "",
               default=None)


def _serving(deployment, pods, setup):
    """The share server's health where its Deployment (or, unreadable, its pods) says it serves,
    or is scaled to 0; None where the reason must be looked for."""
    name = manifests.SHARE_SERVER
    if deployment is None:
        ready = [p for p in pods if any(c.get("type") == "Ready" and c.get("status") == "True"
                                        for c in (p.get("status") or {}).get("conditions") or [])]
        return (True, f"{len(ready)} pod(s) ready", None) if ready else None
    wanted = (deployment.get("spec") or {}).get("replicas", 1)
    available = (deployment.get("status") or {}).get("availableReplicas") or 0
    if wanted == 0:  # first: its last pod may still be available, going away
        return False, f"its Deployment {name} is scaled to 0", setup
    if available >= 1:
        containers = deployment["spec"]["template"]["spec"].get("containers") or [{}]
        return True, f"Deployment {name} available ({containers[0].get('image')})", None
    return None


def rsh_command(cluster, container):
    from womm.programs import require

    words = [require("womm-fs"), "rsh", "--namespace", cluster.namespace, "--container", container]
    if cluster.context:
        words += ["--context", cluster.context]
    return " ".join(_sh_quote(w) for w in words)


def _sh_quote(word):
    import shlex

    return shlex.quote(word)


def share_password(share_id):
    """This share's key, kept in ~/.womm/shares (made on first use)."""
    path = home.share_secret_file(share_id)
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    password = secrets.token_hex(24)
    # Two runs may make it at once: written whole beside, then linked into place; the loser
    # takes the winner's key (which is then the share's, on the server too).
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(password + "\n")
        try:
            os.link(tmp, path)
        except FileExistsError:
            return path.read_text().strip()
    finally:
        os.unlink(tmp)
    return password


def ensure_secret(cluster, share_id, password):
    """The share's Secret in the namespace, created or corrected (one or two API calls)."""
    import base64

    from womm.kube import ApiError

    body = manifests.share_secret(share_id, password)
    try:
        cluster.request("POST", cluster.path("secrets"), body=body)
        return
    except ApiError as e:
        if e.status != 409:
            raise
    path = cluster.path("secrets", body["metadata"]["name"])
    current = cluster.request("GET", path)
    if base64.b64decode((current.get("data") or {}).get("password", "")).decode() != password:
        cluster.request("PUT", path, body=body)


def rsync_stats(text):
    """The figures of `rsync --stats` that matter here."""
    stats = {}
    for key, pattern in {
        "files": r"Number of files: ([\d,]+)",
        "files_transferred": r"Number of regular files transferred: ([\d,]+)",
        "bytes_transferred": r"Total transferred file size: ([\d,]+)",
        "bytes_sent": r"Total bytes sent: ([\d,]+)",
    }.items():
        m = re.search(pattern, text)
        if m:
            stats[key] = int(m.group(1).replace(",", ""))
    return stats


_PROGRESS = re.compile(r"^\s*([\d,]+)\s+(\d+)%\s+(\S+/s)\s+\S+(?:\s+\(xfr#(\d+), \w+-chk=(\d+)/(\d+)\))?")


def rsync_progress(line):
    """The progress line to show for one of rsync's --info=progress2 lines; None for other lines."""
    m = _PROGRESS.match(line)
    if not m:
        return None
    sent, percent, rate, done, left, total = m.groups()
    files = f", {int(total) - int(left)}/{total} files" if total else ""
    return f"{int(sent.replace(',', '')) / 1e6:.1f} MB ({percent}%){files}, {rate}"


def run_rsync(argv, what):
    """Run rsync; (status, stdout, stderr). On a terminal, its progress (bytes, files) on one line."""
    from womm.report import Progress

    progress = Progress()
    if not progress.tty:
        proc = subprocess.run(argv, capture_output=True, text=True)
        return proc.returncode, proc.stdout, proc.stderr
    # Bytes: rsync rewrites its progress line with "\r", which text mode would take for a newline.
    proc = subprocess.Popen([argv[0], "--info=progress2", *argv[1:]], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    err = []
    reader = threading.Thread(target=lambda: err.append(proc.stderr.read()), daemon=True)
    reader.start()
    out, line = [], bytearray()
    try:
        while True:
            c = proc.stdout.read(1)
            if c in (b"\r", b"\n", b""):
                text = line.decode(errors="replace")
                shown = rsync_progress(text)
                if shown:
                    progress.update(f"{what}: {shown}")
                elif text:
                    out.append(text + "\n")
                line.clear()
                if not c:
                    break
            else:
                line += c
    finally:
        progress.done()
    proc.wait()
    reader.join()
    return proc.returncode, "".join(out), b"".join(err).decode(errors="replace")


def upload(server, share_id, directory, task_id):
    """Send the directory to the share server as task_id's base: only what changed. rsync's figures."""
    password = share_password(share_id)
    ensure_secret(server.cluster, share_id, password)
    status, out, err = server.run(["womm-share-register", share_id, task_id], stdin=password.encode() + b"\n")
    if status != 0:
        raise WommError(f"the share server refused share {share_id}: {err.decode(errors='replace').strip()}")
    latest = out.decode().split()
    src = directory.rstrip("/") + "/"
    returncode, out, err = run_rsync(
        ["rsync", "-a", "--delete", "--numeric-ids", "--stats", *(f"--link-dest={p}" for p in latest[-1:]),
         *excludes.rsync_args(excludes.excluded(), directory),
         *server.rsync_options(), src, f"{server.pod}:/shares/{share_id}/tasks/{task_id}/base/"],
        f"sending {directory}",
    )
    if returncode != 0:
        raise WommError(f"rsync to the share server failed ({returncode}): {_last_line(err)}")
    server.mark(share_id, task_id)
    stats = rsync_stats(out)
    _log_sync(share_id, task_id, "upload", stats)
    return stats


def _log_sync(share_id, tag, what, stats):
    import json

    home.logs_dir().mkdir(parents=True, exist_ok=True)
    with open(home.share_log(share_id), "a") as f:
        f.write(json.dumps({"time": time.time(), "task": tag, "what": what, **stats}) + "\n")


def _last_line(text):
    lines = [line for line in (text or "").strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no message"


class EagerShare(Share):
    """The directory uploaded before the pods start; with syncback, their changes come back."""

    def __init__(self, directory, share_id, cluster, log, syncback=False):
        super().__init__(directory, share_id, cluster, log)
        self.kind = "eager-syncback" if syncback else "eager"
        self.syncs_back = syncback
        self.server = ShareServer(cluster)
        self.uploaded = threading.Event()
        self.upload_error = None

    def _server(self):
        if self.server.pod is None:
            self.server.locate()
        return self.server

    PULLED = "/womm/pulled"  # the pull's view of the volume: it makes TREE there, which the other containers mount
    TREE = "tree"

    def pod_parts(self, task):
        server = self._server()
        volume, mount = self.directory_volume(task)
        # The copy is a directory the pull makes, mounted at the directory's path: its owner (whoever
        # the pull runs as) can set its mode and times, which the volume's own root does not allow.
        mount["subPath"] = self.TREE
        secret = {"name": "womm-secret", "secret": {"secretName": f"womm-share-{self.share_id}", "defaultMode": 0o440}}
        key = {"name": "womm-secret", "mountPath": "/womm/secret", "readOnly": True}
        pull = {
            "name": "womm-share-pull",
            "image": server.image,
            "command": ["womm-share-pull", server.ip, self.share_id, task.id, f"{self.PULLED}/{self.TREE}"],
            "volumeMounts": [{"name": volume["name"], "mountPath": self.PULLED}, key],
        }
        parts = {"volumes": [volume, secret], "mounts": [mount], "init_containers": [pull]}
        if self.syncs_back:  # the agent sends the jobs' changes back as they end: it needs the directory and key
            parts["agent_mounts"] = [mount, key]
        return parts

    def agent_args(self, task):
        if not self.syncs_back:
            return []
        return ["--push", self._server().ip, self.share_id, task.id, self.directory]

    def prepare(self, task, on_fatal=None):
        """Send the directory to the share server, in the background: the pods wait for it."""
        server = self._server()
        excludes.say_once(self.directory, self.log)
        if self.syncs_back:
            from womm.shares import syncback

            syncback.save_snapshot(task.id, self.directory)

        def send():
            try:
                upload(server, self.share_id, self.directory, task.id)
            except Exception as e:  # noqa: BLE001 - reported through on_fatal or wait_prepared
                self.upload_error = e
                if on_fatal:
                    on_fatal(with_hint(f"could not send {task.cwd} to the share server: {describe(e)}", e))
            finally:
                self.uploaded.set()

        threading.Thread(target=send, name="share upload", daemon=True).start()

    def wait_prepared(self):
        self.uploaded.wait()
        if self.upload_error:
            raise self.upload_error

    def bring_back(self, task):
        server = self._server()
        if self.syncs_back:
            from womm.shares import syncback

            report = syncback.pull(server, self.share_id, task, self.directory)
            syncback.print_report(report, self.log)
        server.forget(self.share_id, task.id)

    def sync_now(self):
        """`womm share sync`: the next run's upload then sends only what changed after this."""
        server = self._server()
        task_id = f"sync-{int(time.time())}"
        stats = upload(server, self.share_id, self.directory, task_id)
        server.forget(self.share_id, task_id)
        return stats
