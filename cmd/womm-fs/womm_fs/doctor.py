"""`womm doctor`: everything a run needs, for this directory and its cluster, checked; one line each.

    ok   WHAT: what was found
    FAIL WHAT: why; what to do
    skip WHAT: why it does not apply here

The checks run side by side, each in a thread of its own with a deadline (a few seconds;
the FUSE probe's PROBE_TIMEOUT), so that no answer that never comes holds the others:
a check past its deadline fails, saying so. The logic other programs may want lives in
womm's library: access (SelfSubjectAccessReview), registry (an image's manifest), the
share server's health (shares.eager), confine.check() and docker_engine.client().

Privileged pods and FUSE (lazy shares) are checked with a real pod, not with the namespace's
Pod Security labels: a privileged pod of the helper image (manifests.fuse_probe), as a lazy
share's containers are, that opens /dev/fuse and exits; it is deleted at once. Admission
(Pod Security, and any policy webhook) answers its creation, and only a pod on a node can say
whether FUSE works there. On the local cluster it takes about two seconds, once the helper
image is on the node.
"""

import json
import os
import secrets
import shutil
import subprocess
import sys
import threading
import time
from typing import NamedTuple

from womm import records
from womm.errors import WommError, describe

EAGER_KINDS = ("eager", "eager-syncback")
FUSE = "privileged pods and FUSE (lazy share)"
PROBE_TIMEOUT = 20  # seconds for the FUSE probe's pod to start and end
API_TIMEOUT = 3  # seconds for one API request


class Check(NamedTuple):
    check: str
    ok: bool | None  # None: skipped, it does not apply here
    detail: str = ""
    fix: str = ""

    def line(self):
        if self.ok:
            return f"ok   {self.check}" + (f": {self.detail}" if self.detail else "")
        if self.ok is None:
            return f"skip {self.check}: {self.detail}"
        return f"FAIL {self.check}: {self.detail}" + (f"; {self.fix}" if self.fix else "")


def ok(what, detail=""):
    return Check(what, True, detail)


def fail(what, detail, fix=""):
    return Check(what, False, detail, fix)


def skip(what, detail):
    return Check(what, None, detail)


class Later:
    """fn() -> Check, run in a daemon thread; result() waits for it until its deadline."""

    def __init__(self, what, timeout, fn, *args):
        self.what, self.timeout = what, timeout
        self.done = threading.Event()
        self.value = None
        self.started = time.monotonic()
        threading.Thread(target=self._run, args=(fn, args), name=f"doctor: {what}", daemon=True).start()

    def _run(self, fn, args):
        try:
            self.value = fn(*args)
        except WommError as e:
            self.value = fail(self.what, str(e))
        except Exception as e:  # noqa: BLE001 - one check's failure is its line, not the end of the others
            self.value = fail(self.what, describe(e))
        finally:
            self.done.set()

    def result(self):
        if not self.done.wait(max(0.0, self.started + self.timeout - time.monotonic())):
            return fail(self.what, f"no answer within {self.timeout:g} s",
                        "something there hangs: try again, or look at it by hand")
        return self.value


class Doctor:
    def __init__(self, context, namespace, cwd):
        self.cwd = cwd
        self.given_context, self.given_namespace = context, namespace
        self.project = None
        self.cluster = None
        self.helper_image = None

    @property
    def share(self):
        return (self.project or {}).get("share")

    # ------------------------------------------------------------ here

    def check_project(self):
        what = "this directory"
        try:
            self.project = records.load_project(self.cwd)
        except WommError as e:
            return fail(what, str(e))
        if self.project is None:
            return fail(what, f"{self.cwd} is not set up for womm", "run `womm setup` here")
        p = self.project
        return ok(what, f"{self.cwd}: share {p.get('share', 'none')}, image {p.get('image') or '-'}")

    def check_parallel(self):
        what = "GNU parallel"
        install = "install it (Debian: apt-get install parallel)"
        path = shutil.which("parallel")
        if path is None:
            return fail(what, "no `parallel` on PATH", install)
        first = _first_line([path, "--version"])
        if not first.startswith("GNU parallel"):
            return fail(what, f"{path} is not GNU parallel (moreutils' parallel?)", install)
        return ok(what, f"{path} ({first})")

    def check_rsync(self):
        what = "rsync"
        if self.project is not None and self.share not in EAGER_KINDS:
            return skip(what, f"this directory's share is {self.share}: only eager shares use rsync")
        path = shutil.which("rsync")
        if path is None:
            return fail(what, "no `rsync` on PATH (eager shares need it)", "install it (Debian: apt-get install rsync)")
        return ok(what, f"{path} ({_first_line([path, '--version'])})")

    def check_confinement(self):
        what = "lazy share, here"
        if self.share != "lazy":
            return skip(what, f"this directory's share is {self.share or 'not chosen'}, not lazy")
        from womm import confine

        confine.check()
        return ok(what, f"openat2 and Landlock (ABI {confine.landlock_abi()}) confine its server to the directory; "
                        "sshfs runs in the pods, not here")

    def check_docker(self):
        what = "Docker engine (for womm setup only)"
        from womm import docker_engine

        c = docker_engine.client(timeout=API_TIMEOUT)
        try:
            version = c.version().get("Version", "?")
        finally:
            c.close()
        return ok(what, f"{os.environ.get('DOCKER_HOST') or 'unix://' + docker_engine.DEFAULT_SOCKET} (Docker {version})")

    def check_image(self):
        what = "the directory's image in its registry"
        image = (self.project or {}).get("image")
        if not image:
            return skip(what, "this directory has no image yet" if self.project else "no directory set up here")
        from womm import registry

        state, said = registry.manifest(image, timeout=API_TIMEOUT)
        if state == registry.ABSENT:
            return fail(what, f"{image} is not there ({said})",
                        "push it again (`docker push` it, or `womm setup --edit-image`)")
        if state == registry.UNKNOWN:
            return skip(what, f"{image}: {said} (the cluster's nodes may know better)")
        return ok(what, said)

    # ------------------------------------------------------------ the cluster

    def check_kubeconfig(self):
        what = "kubeconfig"
        from womm.kube import Cluster

        p = self.project or {}
        context = self.given_context or p.get("context")
        namespace = self.given_namespace or p.get("namespace")
        cluster = Cluster(context, namespace)
        cluster.connect_timeout = API_TIMEOUT
        self.cluster = cluster
        whence = ("--namespace" if self.given_namespace else "the directory's record" if p.get("namespace")
                  else "the context")
        return ok(what, f"{cluster.credentials.source}: context {cluster.context or '-'}, "
                        f"namespace {cluster.namespace} (from {whence})")

    def check_api(self):
        what = "API server"
        from womm.kube import ApiError, Unreachable

        c = self.cluster
        try:
            version = c.request("GET", "/version", timeout=API_TIMEOUT) or {}
        except Unreachable as e:
            return fail(what, str(e), "check the kubeconfig's server, your network (a VPN?), and that the cluster runs")
        except ApiError as e:
            if e.status == 401:
                return fail(what, f"{c.server} refused the credentials of context {c.context}: {e}",
                            "log in again, or renew them in the kubeconfig")
            if e.status != 403:
                raise
            version = {}  # /version is not ours to read here, but the server answered
        return ok(what, f"{c.server}" + (f" (Kubernetes {version['gitVersion']})" if version.get("gitVersion") else ""))

    def check_permissions(self):
        what = "permissions"
        from womm import access

        missing = access.missing(self.cluster, timeout=API_TIMEOUT)
        ns = self.cluster.namespace
        if missing:
            names = ", ".join(access.name(*rule[:4]) for rule in missing)
            return fail(what, f"not allowed in namespace {ns}: {names}",
                        "ask the namespace's admins for them (a Role and a RoleBinding)")
        return ok(what, f"all {len(access.NEEDS)} womm needs, in namespace {ns}")

    def check_share_server(self):
        what = "share server"
        if self.project is not None and self.share not in EAGER_KINDS:
            return skip(what, f"this directory's share is {self.share}: only eager shares use the share server")
        from womm.shares.eager import ShareServer

        healthy, detail, fix = ShareServer(self.cluster).health(timeout=API_TIMEOUT)
        return ok(what, detail) if healthy else fail(what, detail, fix)

    def check_helper_image(self):
        what = "helper image"
        from womm import registry, settings

        image = self.helper_image = settings.configured_image(self.cluster)
        state, said = registry.manifest(image, timeout=API_TIMEOUT)
        if state == registry.ABSENT:
            return fail(what, f"{image} is not in its registry ({said})",
                        "build and push it (`womm build-images`), then `womm cluster-setup --apply`")
        return ok(what, image + ("" if state == registry.PRESENT else f" (in its registry? {said})"))

    def check_fuse(self, helper):
        """The FUSE probe: a privileged pod of the helper image, deleted at once (see the module's docstring)."""
        what = FUSE
        if self.share != "lazy":
            return skip(what, f"this directory's share is {self.share or 'not chosen'}, not lazy")
        if not helper.result().ok:
            return skip(what, "no helper image to test them with")
        from womm import manifests
        from womm.kube import ApiError

        c, ns = self.cluster, self.cluster.namespace
        name = f"womm-doctor-{secrets.token_hex(4)}"
        try:
            c.create(manifests.fuse_probe(name, self.helper_image))
        except ApiError as e:
            if e.status == 403:
                return fail(what, f"namespace {ns} refuses privileged pods: {e}",
                            "ask its admins to allow them (pod-security.kubernetes.io/enforce=privileged), "
                            "or use an eager share (`womm setup --share eager`)")
            raise
        try:
            return self._probe_result(what, name)
        finally:
            try:
                c.request("DELETE", c.path("pods"), {"labelSelector": f"{manifests.ROLE}=doctor",
                                                     "fieldSelector": f"metadata.name={name}",
                                                     "gracePeriodSeconds": 0}, timeout=API_TIMEOUT)
            except WommError as e:
                print(f"womm-fs: warning: could not delete the test pod {name}: {e}", file=sys.stderr)

    def _probe_result(self, what, name):
        from womm import manifests, podstatus

        c = self.cluster
        deadline = time.monotonic() + PROBE_TIMEOUT
        while True:
            pod = c.request("GET", c.path("pods", name), timeout=API_TIMEOUT)
            status = pod.get("status") or {}
            for s in status.get("containerStatuses") or []:
                ended = (s.get("state") or {}).get("terminated")
                if ended:
                    code = ended.get("exitCode")
                    if code == 0:
                        return ok(what, f"a privileged pod of the helper image opened /dev/fuse on {pod['spec'].get('nodeName')}")
                    why = manifests.FUSE_PROBE_EXITS.get(code, f"the test pod ended with {ended.get('reason')} ({code})")
                    return fail(what, why, "lazy shares need FUSE on the nodes: use an eager share "
                                           "(`womm setup --share eager`), or ask the cluster's admins")
            trouble = podstatus.trouble(pod)
            if trouble and trouble.split(":")[0] in ("ErrImagePull", "ImagePullBackOff", "InvalidImageName",
                                                     "CreateContainerError", "CreateContainerConfigError"):
                return fail(what, f"the test pod cannot start: {trouble}",
                            "push the helper image (`womm build-images`), then `womm cluster-setup --apply`")
            if time.monotonic() > deadline:
                return fail(what, f"the test pod did not end within {PROBE_TIMEOUT} s: "
                                  f"{trouble or status.get('phase', 'Pending')}",
                            "a lazy share's pods would wait as long: see why (`kubectl describe pod`)")
            time.sleep(0.25)

    # ------------------------------------------------------------ all of them

    def run(self, show=None):
        """Every check, in order; show(check) for each, as soon as it and those before it are known."""
        checks = []

        def emit(check):
            checks.append(check)
            if show:
                show(check)

        emit(self.check_project())  # first: what applies here depends on the directory's share
        here = [Later("GNU parallel", 5, self.check_parallel), Later("rsync", 5, self.check_rsync),
                Later("lazy share, here", 5, self.check_confinement),
                Later("Docker engine (for womm setup only)", 5, self.check_docker)]
        image = Later("the directory's image in its registry", 12, self.check_image)
        config = Later("kubeconfig", 10, self.check_kubeconfig).result()
        api = Later("API server", 2 * API_TIMEOUT + 1, self.check_api).result() if config.ok else None
        there = []
        if api and api.ok:
            helper = Later("helper image", 10, self.check_helper_image)
            there = [Later("permissions", 15, self.check_permissions),
                     Later("share server", 12, self.check_share_server), helper,
                     Later(FUSE, PROBE_TIMEOUT + 10, self.check_fuse, helper)]
        for pending in here:
            emit(pending.result())
        emit(config)
        if api:
            emit(api)
        for pending in there:
            emit(pending.result())
        if not there:
            why = "no cluster to ask" if not config.ok else "the API server does not answer"
            for what in ("permissions", "share server", "helper image", FUSE):
                emit(skip(what, why))
        emit(image.result())
        return checks


def _first_line(command):
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=4, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"did not run: {e}"
    return " ".join((proc.stdout.strip().splitlines() or [""])[0].split())


def main(args):
    doctor = Doctor(args.context, args.namespace, os.getcwd())
    if args.output == "json":
        checks = doctor.run()
        print(json.dumps([c._asdict() for c in checks], indent=2))
    else:
        checks = doctor.run(lambda check: print(check.line(), flush=True))
    return 0 if all(c.ok is not False for c in checks) else 1
