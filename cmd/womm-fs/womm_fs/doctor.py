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

The network between an eager share's pods and the share server is checked the same way: a pod of
the helper image labelled as the share's workers are (manifests.network_probe) tries the server's
rsync port, as their init container does. When it cannot connect, the namespace's NetworkPolicies
are read to name those that stand in the way: policies that select the workers and allow them no
egress to the server, or that select the server and admit no worker (denying()).
"""

import ipaddress
import json
import os
import secrets
import shutil
import subprocess
import threading
import time
from typing import NamedTuple

from womm import records
from womm.errors import WommError, describe, warn

EAGER_KINDS = ("eager", "eager-syncback")
FUSE = "privileged pods and FUSE (lazy share)"
ADMISSION = "Pod Security, quotas and limits"
NETWORK = "network from worker pods to the share server"
PROBE_TIMEOUT = 20  # seconds for a probe's pod to start and end
# A probe pod in one of these will never start: no use waiting out PROBE_TIMEOUT.
CANNOT_START = ("ErrImagePull", "ImagePullBackOff", "InvalidImageName", "CreateContainerError",
                "CreateContainerConfigError")
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
        self.pull_secret = None  # the helper image's (womm-config's), for the probe pods

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
        platform = self.project.get("platform")
        return ok(what, said + (f"; its pods go to {platform} nodes" if platform else ""))

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

        missing = access.missing(self.cluster, access.NEEDS + access.HELPS, timeout=API_TIMEOUT)
        needed = [rule for rule in missing if rule in access.NEEDS]
        ns = self.cluster.namespace
        if needed:
            names = ", ".join(access.name(*rule[:4]) for rule in needed)
            return fail(what, f"not allowed in namespace {ns}: {names}",
                        "ask the namespace's admins for them (a Role and a RoleBinding)")
        detail = f"all {len(access.NEEDS)} womm needs, in namespace {ns}"
        if missing:  # only what helps: runs work, a little slower to start
            names = ", ".join(access.name(*rule[:4]) for rule in missing)
            detail += f"; not {names}: {', '.join(dict.fromkeys(rule[4] for rule in missing))}"
        return ok(what, detail)

    def setup_fix(self):
        """What prepares the namespace: `womm cluster-setup --apply`, by whoever may make Roles."""
        from womm import access

        ns = self.cluster.namespace
        command = f"womm cluster-setup --apply --namespace {ns}"
        try:
            may = access.allowed(self.cluster, "create", "rbac.authorization.k8s.io", "roles", timeout=API_TIMEOUT)
        except WommError:
            may = True
        if may:
            return f"build and push it (`womm build-images`), then `{command}`"
        return f"only an admin of namespace {ns} can prepare it (it needs Roles): ask one to run `{command}`"

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

        try:
            image = self.helper_image = settings.configured_image(self.cluster)
            self.pull_secret = settings.configured_pull_secret(self.cluster)
        except WommError as e:
            return fail(what, str(e).split(": run `")[0], self.setup_fix())
        state, said = registry.manifest(image, timeout=API_TIMEOUT)
        if state == registry.ABSENT:
            return fail(what, f"{image} is not in its registry ({said})",
                        "build and push it (`womm build-images`), then `womm cluster-setup --apply`")
        return ok(what, image + ("" if state == registry.PRESENT else f" (in its registry? {said})"))

    def check_admission(self, helper):
        """A worker pod of this directory's image, as the namespace's admission would take it (a dry
        run: nothing is made), and its ResourceQuotas as they stand."""
        what = ADMISSION
        if not helper.result().ok:
            return skip(what, "no helper image to test them with")
        from womm import admission, manifests, tasks
        from womm.errors import WommError

        c, p = self.cluster, self.project or {}
        task = tasks.Task(id="doctor", kind="parallel", mode="sync", command=[], cwd=self.cwd, root=self.cwd,
                          namespace=c.namespace, image=p.get("image") or self.helper_image,
                          platform=p.get("platform"), helper_image=self.helper_image, pull_secret=p.get("pull_secret"),
                          helper_pull_secret=self.pull_secret)
        said = []
        try:
            admission.admit(c, task, lambda: manifests.worker_replicaset(task, {}, self.helper_image, "true"),
                            said.append)
        except WommError as e:
            return fail(what, str(e), "ask the namespace's admins (only they change its policies)")
        full = admission.full_quotas(c)
        if full:
            return fail(what, f"pods will wait: {full}", "wait for other pods to end, or ask the admins for more")
        notes = [f"its jobs run as user {task.run_as} (Pod Security)"] if task.run_as else []
        notes += admission.quota_summary(c)
        return ok(what, "a worker pod would be admitted" + (f"; {'; '.join(notes)}" if notes else ""))

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
            c.create(manifests.fuse_probe(name, self.helper_image, self.pull_secret))
        except ApiError as e:
            if e.status == 403:
                return fail(what, f"namespace {ns} refuses privileged pods: {e}",
                            "ask its admins to allow them (pod-security.kubernetes.io/enforce=privileged), "
                            "or use an eager share (`womm setup --share eager`)")
            raise
        pod, ended, trouble = self._probe_end(name, f"{manifests.ROLE}=doctor", hopeless=CANNOT_START)
        if ended is None and trouble.split(":")[0] in CANNOT_START:
            return fail(what, f"the test pod cannot start: {trouble}",
                        "push the helper image (`womm build-images`), then `womm cluster-setup --apply`")
        if ended is None:
            return fail(what, f"the test pod did not end within {PROBE_TIMEOUT} s: {trouble}",
                        "a lazy share's pods would wait as long: see why (`kubectl describe pod`)")
        code = ended.get("exitCode")
        if code == 0:
            return ok(what, f"a privileged pod of the helper image opened /dev/fuse on "
                            f"{pod['spec'].get('nodeName')} (so whoever may exec into the namespace's "
                            "pods is root on its nodes: an eager share needs no privilege)")
        why = manifests.FUSE_PROBE_EXITS.get(code, f"the test pod ended with {ended.get('reason')} ({code})")
        return fail(what, why, "lazy shares need FUSE on the nodes: use an eager share "
                               "(`womm setup --share eager`), or ask the cluster's admins")

    def _probe_end(self, name, selector, hopeless=()):
        """Wait for the probe pod `name` to end, then delete it: (the pod, its container's end, or None
        with why not: still not ended after PROBE_TIMEOUT, or a trouble in `hopeless`)."""
        from womm import podstatus

        c = self.cluster
        deadline = time.monotonic() + PROBE_TIMEOUT
        try:
            while True:
                pod = c.request("GET", c.path("pods", name), timeout=API_TIMEOUT)
                status = pod.get("status") or {}
                for s in status.get("containerStatuses") or []:
                    ended = (s.get("state") or {}).get("terminated")
                    if ended:
                        return pod, ended, ""
                trouble = podstatus.trouble(pod) or status.get("phase", "Pending")
                if trouble.split(":")[0] in hopeless or time.monotonic() > deadline:
                    return pod, None, trouble
                time.sleep(0.25)
        finally:
            try:
                c.request("DELETE", c.path("pods"), {"labelSelector": selector, "fieldSelector": f"metadata.name={name}",
                                                     "gracePeriodSeconds": 0}, timeout=API_TIMEOUT)
            except WommError as e:
                warn(f"could not delete the test pod {name}: {e}", "womm-fs")

    def check_network(self, helper, server):
        """The network probe: a pod labelled as this share's workers tries the share server's port; where
        it cannot, the NetworkPolicies that deny it are named (see the module's docstring)."""
        what = NETWORK
        if self.project is not None and self.share not in EAGER_KINDS:
            return skip(what, f"this directory's share is {self.share}: only eager shares' pods reach the share server")
        if not helper.result().ok:
            return skip(what, "no helper image to test it with")
        if not server.result().ok:
            return skip(what, "no share server to reach")
        from womm import home, manifests, settings, taskobjects
        from womm.kube import ApiError

        c = self.cluster
        server_ip = c.request("GET", c.path("services", manifests.SHARE_SERVER), timeout=API_TIMEOUT)["spec"]["clusterIP"]
        share_id = (self.project or {}).get("share_id") or "doctor"
        name = f"womm-doctor-{secrets.token_hex(4)}"
        probe = manifests.network_probe(name, self.helper_image, server_ip, share_id,
                                        taskobjects.label_value(home.hostname()), settings.configured_pull_secret(c))
        blocking, unread = self._blocking_policies(probe["metadata"]["labels"])
        try:
            c.create(probe)
        except ApiError as e:
            if blocking:
                return fail(what, f"{blocking} (no test pod allowed here to try it: {e})", POLICY_FIX)
            return skip(what, f"no test pod allowed here: {e}")
        _, ended, trouble = self._probe_end(name, f"{manifests.NETWORK_PROBE}=network")
        connected, said = None, trouble  # (None: it did not end in time)
        if ended is not None:
            said = (ended.get("message") or "").strip().removeprefix("rsync: ").strip()
            said = said.removeprefix("[Receiver] ").strip() or f"{ended.get('reason')} (exit {ended.get('exitCode')})"
            connected = ended.get("exitCode") == 0
        return network_verdict(f"{server_ip}:{manifests.RSYNC_PORT}", connected, said, blocking, unread)

    def _blocking_policies(self, worker_labels):
        """(what the namespace's NetworkPolicies deny between workers so labelled and the share server,
        in words, or ""; why they could not be read, or "")."""
        from womm import manifests, taskobjects
        from womm.kube import ApiError

        c, ns = self.cluster, self.cluster.namespace
        try:
            policies = c.request("GET", c.path("networkpolicies"), timeout=API_TIMEOUT).get("items") or []
            if not policies:
                return "", ""
            servers = c.request("GET", c.path("pods"), {"labelSelector": taskobjects.selector(role="share-server")},
                                timeout=API_TIMEOUT).get("items") or []
        except ApiError as e:
            return "", f"NetworkPolicies not readable here: {e.status} {e.reason}".strip()
        try:
            namespace_labels = (c.request("GET", f"/api/v1/namespaces/{ns}", timeout=API_TIMEOUT)["metadata"]
                                .get("labels") or {})
        except ApiError:
            namespace_labels = {}
        namespace_labels.setdefault("kubernetes.io/metadata.name", ns)
        server = servers[0] if servers else {"metadata": {"labels": {**taskobjects.MANAGED_BY,
                                                                     taskobjects.ROLE: "share-server"}}}
        egress, ingress = denying(policies, worker_labels, server["metadata"].get("labels") or {},
                                  namespace_labels, (server.get("status") or {}).get("podIP"),
                                  manifests.RSYNC_CONTAINER_PORT, "rsync")
        said = []
        if egress:
            said.append(f"NetworkPolicy {', '.join(egress)} of namespace {ns} "
                        f"{'selects' if len(egress) == 1 else 'select'} the worker pods and allow"
                        f"{'s' if len(egress) == 1 else ''} them no egress to the share server")
        if ingress:
            said.append(f"NetworkPolicy {', '.join(ingress)} of namespace {ns} "
                        f"{'selects' if len(ingress) == 1 else 'select'} the share server and admit"
                        f"{'s' if len(ingress) == 1 else ''} no worker pod to its port")
        return "; ".join(said), ""

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
            server = Later("share server", 12, self.check_share_server)
            there = [Later("permissions", 15, self.check_permissions), server, helper,
                     Later(ADMISSION, 15, self.check_admission, helper),
                     Later(FUSE, PROBE_TIMEOUT + 10, self.check_fuse, helper),
                     Later(NETWORK, PROBE_TIMEOUT + 20, self.check_network, helper, server)]
        for pending in here:
            emit(pending.result())
        emit(config)
        if api:
            emit(api)
        for pending in there:
            emit(pending.result())
        if not there:
            why = "no cluster to ask" if not config.ok else "the API server does not answer"
            for what in ("permissions", "share server", "helper image", ADMISSION, FUSE, NETWORK):
                emit(skip(what, why))
        emit(image.result())
        return checks


def network_verdict(target, connected, said, blocking, unread):
    """The network check's line, from what the probe found and what the policies say."""
    what = NETWORK
    if connected is None:
        return fail(what, f"the test pod did not end within {PROBE_TIMEOUT} s: {said}",
                    "a share's pods would wait as long: see why (`kubectl describe pod`)")
    if connected:
        detail = f"a pod labelled as this share's workers connected to the share server ({target})"
        if blocking:
            detail += f"; but {blocking}: the cluster's network does not enforce NetworkPolicies"
        return ok(what, detail)
    detail = f"a pod labelled as this share's workers cannot connect to the share server ({target}: {said})"
    if blocking:
        return fail(what, f"{detail}: {blocking}", POLICY_FIX)
    return fail(what, detail + (f" ({unread})" if unread else "; no NetworkPolicy of the namespace explains it"),
                "ask the cluster's admins what stands between the namespace's pods and its Services")


POLICY_FIX = ("ask the namespace's admins to let womm's pods (app.kubernetes.io/managed-by=womm) reach the share "
              "server (womm.dev/role=share-server) on TCP port 8873: an egress rule beside the one that denies")


def selects(selector, labels):
    """Whether a LabelSelector (a dict, as the API sends it) selects these labels; None selects nothing."""
    if selector is None:
        return False
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for e in selector.get("matchExpressions") or []:
        key, op, values = e.get("key"), e.get("operator"), e.get("values") or []
        if ((op == "In" and labels.get(key) not in values) or (op == "NotIn" and labels.get(key, object()) in values)
                or (op == "Exists" and key not in labels) or (op == "DoesNotExist" and key in labels)):
            return False
    return True


def _types(policy):
    spec = policy.get("spec") or {}
    return set(spec.get("policyTypes") or ["Ingress", *(["Egress"] if spec.get("egress") else [])])


def _port_allowed(ports, port, name):
    if not ports:
        return True
    for p in ports:
        want = p.get("port")
        if (p.get("protocol") or "TCP") != "TCP":
            continue
        if want is None or want in (port, name) or (isinstance(want, int) and want <= port <= (p.get("endPort") or want)):
            return True
    return False


def _peer_allowed(peer, labels, namespace_labels, ip):
    block = peer.get("ipBlock")
    if block:
        try:
            address = ipaddress.ip_address(ip or "")
        except ValueError:
            return False  # the other side has no address yet: no ipBlock can be said to admit it
        return address in ipaddress.ip_network(block["cidr"], strict=False) and not any(
            address in ipaddress.ip_network(x, strict=False) for x in block.get("except") or [])
    if "namespaceSelector" in peer and not selects(peer["namespaceSelector"], namespace_labels):
        return False
    return selects(peer.get("podSelector", {}), labels)


def denying(policies, worker_labels, server_labels, namespace_labels, server_ip, port, port_name):
    """([policies that select the workers and allow them no egress to the server's port],
    [policies that select the server and admit no worker to it]), as NetworkPolicy's semantics say
    (a connection needs both: egress allowed by some policy that selects its source, where any
    does, and ingress allowed by some policy that selects its destination, where any does); both
    in one namespace. Only what the policies can say: their podSelectors, namespaceSelectors
    (on the namespace's labels), ipBlocks (on the server pod's address) and ports."""
    def rules(policy, kind):
        return (policy.get("spec") or {}).get(kind) or []

    def name(policy):
        return policy["metadata"]["name"]

    out = [p for p in policies if "Egress" in _types(p) and selects((p.get("spec") or {}).get("podSelector"), worker_labels)]
    egress_ok = not out or any(
        _port_allowed(r.get("ports"), port, port_name)
        and (not r.get("to") or any(_peer_allowed(peer, server_labels, namespace_labels, server_ip) for peer in r["to"]))
        for p in out for r in rules(p, "egress"))
    into = [p for p in policies if "Ingress" in _types(p) and selects((p.get("spec") or {}).get("podSelector"), server_labels)]
    ingress_ok = not into or any(
        _port_allowed(r.get("ports"), port, port_name)
        and (not r.get("from") or any(_peer_allowed(peer, worker_labels, namespace_labels, None) for peer in r["from"]))
        for p in into for r in rules(p, "ingress"))
    return ([] if egress_ok else sorted(map(name, out))), ([] if ingress_ok else sorted(map(name, into)))


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
