"""The task's pods: one ReplicaSet created, its pods watched, each handed on as it becomes ready
(and tried before that, as soon as its containers may run), and every object of the task deleted
at the end.

API use is per pod, never per job: one ReplicaSet create, one watch of the pods and one of the
kubelets' word that womm's containers started, what each pod's handlers do (womm_run.podlink: one
exec stream per pod, tried at that word), and a delete per kind at the end.
"""

import threading
import time
from importlib import resources

from womm import admission, kube, manifests, podstatus, taskobjects, tasks
from womm.errors import WommError, describe, with_hint

RUNNER = resources.files("womm_run").joinpath("runner.sh").read_text()

WATCH_PATIENCE = 60  # seconds without the API before a run gives up
SAY_AFTER = 10  # seconds a pod waits for one reason before it is said
CHECK_REPLICAS_EVERY = 2  # seconds between looks at the ReplicaSet while pods are missing
# A pod's containers run up to a second or more before the pod is said to be ready (the kubelet
# looks at them once a second, and its word then goes through the API server): from the kubelet's
# first word about a pod, its agent is tried every EARLY_EVERY seconds for EARLY_FOR seconds at most
# (an image still pulling: the pod's ready will do), and the task's tries together at most one per
# EARLY_SPACING seconds (a shared API server).
EARLY_EVERY = 0.25
EARLY_FOR = 10
EARLY_SPACING = 0.05
# The kubelet says "Started container womm" in an Event as it starts it: where the run can watch those,
# a pod's first try waits for its word instead (each refused try costs the API server a connection to
# the kubelet: 12-17 ms of a busy control plane's core, about 4 per pod). What a co-tenant could fake
# with an Event costs no more than a try refused.
STARTED = {"fieldSelector": "reason=Started,involvedObject.kind=Pod,"
                            f"involvedObject.fieldPath=spec.containers{{{manifests.AGENT_CONTAINER}}}"}


def worker_replicaset(task, share):
    return manifests.worker_replicaset(task, share.pod_parts(task), task.helper_image, RUNNER)


def admit(cluster, task, share, log):
    """The task's ReplicaSet, as the namespace allows it (womm.admission.admit)."""
    return admission.admit(cluster, task, lambda: worker_replicaset(task, share), log)


class Pending:
    """The pending watchdog's decisions, made once a second from what the pod watch saw.

    While pods start: the progress line, each reason they wait for said once (after SAY_AFTER
    seconds: a moment's churn is no news), and the pending timeout: no pod working by then
    ends the run with the reasons; some working goes on with those. Later, the same timeout
    bounds a run left with no pod at all (its ReplicaSet or namespace deleted, its nodes
    gone): its lost jobs would wait for slots that never come.
    """

    def __init__(self, pods, timeout, start):
        self.pods, self.timeout, self.start = pods, timeout, start
        self.timed_out = False
        self.none_since = None  # when the last ready pod went, after some had worked
        self.said = set()  # the reasons already said

    def tick(self, now, ready, working, waiting, done=None, refused=None, missing=0):
        """(the fatal message that ends the run or None, [messages to say], the progress line or None).

        ready: pods ready now; working: whether some pod ever took jobs; waiting: {pod: (why, since)};
        done: jobs done so far; refused: the womm.admission.Refusal of the pods the ReplicaSet could
        not create (missing of them), or None."""
        messages = []
        waiting_for = "; ".join(sorted({why for why, _ in waiting.values()}))
        if refused is not None:
            if not refused.curable and not working:
                return f"the namespace refuses the task's pods ({refused.policy}): {refused.message}", messages, None
            messages += self._say_once(refused.message, f"{missing or 'some'} of {self.pods} pods could not "
                                                        f"be created: {refused.message}")
            waiting_for = "; ".join(w for w in (waiting_for, refused.message) if w)
        if working and not ready:
            self.none_since = self.none_since or now
            if now - self.none_since >= self.timeout:
                return (f"no pod has been ready for {self.timeout:g} s: "
                        f"{waiting_for or 'its pods were deleted and none replaced them'}"), messages, None
        else:
            self.none_since = None
        for why, since in waiting.values():
            if now - since >= SAY_AFTER:
                count = sum(1 for w, _ in waiting.values() if w == why)
                messages += self._say_once(why, f"{count} of {self.pods} pods wait: {why}")
        line = self._line(ready, waiting, done)
        if now - self.start >= self.timeout and not self.timed_out:
            self.timed_out, line = True, None
            reasons = waiting_for or "they are still being created"
            if not working:
                return f"no pod started within {self.timeout:g} s: {reasons}", messages, None
            if waiting:
                messages.append(f"{len(waiting)} of {self.pods} pods did not start within {self.timeout:g} s "
                                f"({reasons}); going on with the others")
        return None, messages, line

    def _line(self, ready, waiting, done):
        if ready >= self.pods or self.timed_out:
            return None
        return (f"{ready}/{self.pods} pods ready" + (f", {done} jobs done" if done else "")
                + (f" ({len(waiting)} waiting)" if waiting else ""))

    def _say_once(self, reason, message):
        if reason in self.said:
            return []
        self.said.add(reason)
        return [message]


def early_possible(pod):
    """Whether the pod's agent may be tried before the pod is said to be ready: the kubelet has it (it
    said something of its containers), its init containers are done, none of its containers restarted,
    and its readiness is womm's containers' own (no container or readiness gate added on the way, a
    mesh's proxy say, that its jobs may need ready first)."""
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    statuses = status.get("containerStatuses") or []
    names = {c.get("name") for c in spec.get("containers") or []}
    return bool(statuses) and names <= {manifests.AGENT_CONTAINER, manifests.JOB_CONTAINER} and \
        not spec.get("readinessGates") and \
        not any(s.get("restartCount") for s in statuses) and \
        not any(((s.get("state") or {}).get("waiting") or {}).get("reason") == "PodInitializing" for s in statuses)


class TaskPods:
    """The workers of one task; on_fatal(message) ends the run when nothing can work."""

    def __init__(self, cluster, task, share, log, on_fatal):
        self.cluster = cluster
        self.task = task
        self.share = share
        self.log = log
        self.on_fatal = on_fatal
        self.on_ready = None
        self.on_early = None
        self._early = set()  # pods whose early attempts began (once per pod, never again)
        self._early_off = False  # an early try failed otherwise than "not running yet": no more of them
        self._early_lock, self._early_at = threading.Lock(), 0.0
        self._told = None  # whether the kubelets' Started events reach this run (None: not known yet)
        self._started = set()  # pods whose womm container started, by the kubelet's Event
        self._started_cv = threading.Condition()  # _started and _told changed
        self.ready = set()  # names of the pods running and ready now
        self.latest = {}  # name -> the pod as the watch saw it last (None once deleted)
        self.working = threading.Event()  # set once a pod's on_ready succeeded
        self.stopping = threading.Event()
        self._handed = set()  # (pod, restarts) already given to on_ready
        self.waiting = {}  # name -> (why that pod does not run yet, since when)
        self.jobs_done = lambda: None  # for the progress line: the run sets it
        self._checked, self._refused = 0.0, (None, 0)
        self._version = None  # where the next pod watch goes on from (None: a new list)

    def create(self, make=True):
        """Create the task's ReplicaSet (make=False: an --async task's client made it); raises at once
        where the namespace will not have its pods."""
        if make:
            before = self.task.record()
            body = admit(self.cluster, self.task, self.share, self.log)
            if self.task.record() != before:
                self.task.save()
            self.cluster.request("POST", self.cluster.path("replicasets"), body=body)
        timeout = self.task.pending_timeout or tasks.PENDING_TIMEOUT
        threading.Thread(target=self._pending_watchdog, args=(timeout,), name="pending", daemon=True).start()

    def refused(self):
        """(the Refusal the ReplicaSet's ReplicaFailure condition says, pods it could not create), or
        (None, 0); looked at every CHECK_REPLICAS_EVERY seconds at most."""
        now = time.monotonic()
        if now - self._checked < CHECK_REPLICAS_EVERY:
            return self._refused
        self._checked = now
        try:
            rs = self.cluster.request("GET", self.cluster.path("replicasets", f"womm-task-{self.task.id}"), timeout=10)
        except Exception:  # noqa: BLE001 - the pod watch says what matters when the API is away
            return self._refused
        missing = (rs["spec"].get("replicas") or 0) - ((rs.get("status") or {}).get("replicas") or 0)
        self._refused = (admission.replica_failure(rs), missing)
        return self._refused

    def _pending_watchdog(self, timeout):
        """Once a second while the run lasts: the progress line, and Pending's decisions."""
        from womm.report import Progress

        progress, pending = Progress(), Pending(self.task.pods, timeout, time.monotonic())
        while not self.stopping.wait(1):
            ready = len(self.ready)
            refused, missing = self.refused() if ready < self.task.pods else (None, 0)
            fatal, messages, line = pending.tick(time.monotonic(), ready, self.working.is_set(),
                                                 dict(self.waiting), self.jobs_done(), refused, missing)
            for message in messages:
                self.log(message)
            if fatal:
                progress.done()
                self.on_fatal(fatal)
                return
            if line:
                progress.update(line)
            else:
                progress.done()
        progress.done()

    def start(self, on_ready, on_early=None):
        """Watch the pods; on_ready(pod) runs in a thread of its own for each pod that becomes
        ready (again when its containers restart). on_early(pod), if given, is tried before
        that (True: it took, and on_ready finds the pod attached; False: not yet; None: no early
        try will do better in this task). Start before create(): the watch then sees the pods
        from their creation on."""
        self.on_ready, self.on_early = on_ready, on_early
        threading.Thread(target=self._watch, name="pod watch", daemon=True).start()
        if on_early:
            threading.Thread(target=self._watch_started, name="started watch", daemon=True).start()

    def _watch(self):
        """The pod watch, for the whole run. The server ends each watch after kube.WATCH_SECONDS: one
        that ended well goes on from its last bookmark; one that broke, or went silent (dropped on
        the way), is followed by a new list of every pod."""
        failing_since = None
        while not self.stopping.is_set():
            try:
                for _ in self._one_watch():
                    failing_since = None
            except Exception as e:  # noqa: BLE001 - the watch restarts; report why
                if self.stopping.is_set():
                    return
                self._version = None
                if getattr(e, "status", None) == 410:
                    continue  # the version went out of the server's history: a new list, at once
                now = time.monotonic()
                failing_since = failing_since or now
                if now - failing_since > WATCH_PATIENCE:
                    self.on_fatal(f"lost the Kubernetes API: {describe(e)}")
                    return
                self.log(f"watching the pods: {describe(e)}; trying again")
                if not isinstance(e, kube.Silent):  # that one has waited already
                    time.sleep(2)

    def _one_watch(self):
        """One watch, from self._version (None: a list first), which it moves on; yields at each event."""
        selector = taskobjects.selector(task=self.task.id, role="worker")
        listing, listed = self._version is None, set()
        if listing:
            # Each ready pod is handed on again (a pod whose link still works keeps it), so that
            # nothing that happened while the watch was away is missed.
            self._handed.clear()
        for kind, pod in self.cluster.watch(self.cluster.path("pods"), {"labelSelector": selector},
                                            resource_version=self._version):
            if self.stopping.is_set():
                return
            if listing and kind == "BOOKMARK":  # the list is over
                listing = False
                self._forget_unlisted(listed)
            elif listing:
                listed.add(pod["metadata"]["name"])
            # A list's ADDED events carry their pods' versions, not the list's: a watch may go on
            # only from the bookmark that ends the list, or from an event after it.
            if not listing:
                self._version = pod["metadata"].get("resourceVersion") or self._version
            if kind != "BOOKMARK":
                self._pod_event(kind, pod)
            yield

    def _forget_unlisted(self, listed):
        """Pods a new list did not name went while the watch was away: deleted, as far as we know."""
        for name, pod in list(self.latest.items()):
            if pod is not None and name not in listed:
                self._pod_event("DELETED", pod)

    def _pod_event(self, kind, pod):
        """A pod (a dict, as the API sends it) was added, changed or deleted."""
        meta, status = pod["metadata"], pod.get("status") or {}
        name = meta["name"]
        self.latest[name] = None if kind == "DELETED" else pod
        if kind == "DELETED" or meta.get("deletionTimestamp"):
            self.ready.discard(name)
            self.waiting.pop(name, None)
            return  # its workers see their streams end and give their jobs back
        statuses = status.get("containerStatuses") or []
        if podstatus.ready(pod):
            self.ready.add(name)
            self.waiting.pop(name, None)
            # A container that restarted (OOM-killed, say) lost its agents: hand the pod on again.
            incarnation = (name, sum(s.get("restartCount", 0) for s in statuses))
            if incarnation not in self._handed:
                self._handed.add(incarnation)
                threading.Thread(target=self._hand_on, args=(name,), name=f"ready {name}", daemon=True).start()
            return
        self.ready.discard(name)
        why, lost = podstatus.waiting(pod)
        if lost and not self.working.is_set():
            text = f"pod {name} cannot start: {why}"
            if why.split(":")[0] in podstatus.PULL | {"InvalidImageName"}:  # the image: `womm doctor` looks for it
                text = with_hint(text)
            self.on_fatal(text)
            return
        if self.on_early and name not in self._early and early_possible(pod):
            self._early.add(name)
            threading.Thread(target=self._try_early, args=(name,), name=f"early {name}", daemon=True).start()
        if why:
            if self.waiting.get(name, (None,))[0] != why:
                self.waiting[name] = (why, time.monotonic())
        else:
            self.waiting.pop(name, None)

    def running(self, name):
        """Whether the pod is there and not being deleted (its containers may be restarting)."""
        pod = self.latest.get(name)
        return bool(pod) and not pod["metadata"].get("deletionTimestamp") and \
            (pod.get("status") or {}).get("phase") in ("Pending", "Running")

    def why(self, name):
        """What the watch last saw happen to the pod: evicted, deleted, a container OOM-killed; or None."""
        pod = self.latest.get(name, {})
        if pod is None:
            return f"pod {name} was deleted"
        status = pod.get("status") or {}
        if status.get("reason") == "Evicted":
            return f"pod {name} was evicted: {status.get('message', '')}".strip()
        if pod.get("metadata", {}).get("deletionTimestamp"):
            return f"pod {name} is being deleted"
        for s in status.get("containerStatuses") or []:
            ended = (s.get("lastState") or {}).get("terminated") or (s.get("state") or {}).get("terminated")
            if ended and ended.get("reason") not in (None, "Completed"):
                return f"its {s.get('name')} container ended: {ended['reason']}"
        return None

    def _watch_started(self):
        """The kubelets' Started events of the task's womm containers (STARTED), while the run lasts.
        Refused (401, 403, 404): the timer for the rest of the run. Failing otherwise (the API server
        away, a watch dropped on the way): the timer while it fails, and the watch again after a
        growing pause. Quietly: the pod watch says what matters when the API is away."""
        version, failures = None, 0
        while not self.stopping.is_set():
            try:
                if version is None:  # from the API server's cache: no event of the task's is older
                    listing = self.cluster.request("GET", self.cluster.path("events"),
                                                   dict(STARTED, resourceVersion="0"), timeout=10)
                    version = listing["metadata"]["resourceVersion"]
                    self._note_started(listing.get("items") or [])
                    self._set_told(True)
                for kind, event in self.cluster.watch(self.cluster.path("events"), STARTED, resource_version=version):
                    version = event["metadata"].get("resourceVersion") or version
                    if kind in ("ADDED", "MODIFIED"):
                        self._note_started([event])
                    if self.stopping.is_set():
                        return
                failures = 0
            except Exception as e:  # noqa: BLE001 - early tries are an optimisation
                status, version = getattr(e, "status", None), None
                if status in (401, 403, 404):
                    self._set_told(False)
                    return
                failures += 1
                if status != 410 or failures > 1:  # a version the server forgot: listed again at once, once
                    self._set_told(False)
                    if self.stopping.wait(min(30, 0.5 * 2 ** failures)):
                        return

    def _set_told(self, told):
        with self._started_cv:
            self._told = told
            self._started_cv.notify_all()

    def _note_started(self, events):
        """Pods whose womm container started, by their Events: the task's pods only (the pod watch saw
        them created well before), so that no Event another user made is kept."""
        names = {(e.get("involvedObject") or {}).get("name") for e in events}
        names = {n for n in names if n in self.latest}
        if names:
            with self._started_cv:
                self._started |= names
                self._started_cv.notify_all()

    def _try_early(self, name):
        """on_early, until it takes, the pod is ready (on_ready's turn) or gone, or EARLY_FOR seconds after
        the first try. The first try comes at the pod's Started event, or EARLY_EVERY seconds from now
        while no such events come to this run; the next (the try was refused), EARLY_EVERY seconds after
        the last."""
        deadline, first_at = None, time.monotonic() + EARLY_EVERY
        while True:
            with self._started_cv:
                while deadline is None and name not in self._started:
                    left = None if self._told else first_at - time.monotonic()  # None: its word's
                    if (left is not None and left <= 0) or self._no_more_tries(name):
                        break
                    self._started_cv.wait(1 if left is None else min(left, 1))  # then: still worth it?
            deadline = deadline or time.monotonic() + EARLY_FOR
            with self._early_lock:  # the task's turn for an attempt
                now = time.monotonic()
                turn = self._early_at = max(now, self._early_at + EARLY_SPACING)
            if self.stopping.wait(turn - now) or self._no_more_tries(name) or time.monotonic() > deadline:
                return
            took = self.on_early(name)
            if took:
                self.working.set()
                return
            if took is None:
                self._early_off = True
                return
            if self.stopping.wait(EARLY_EVERY):
                return

    def _no_more_tries(self, name):
        return self.stopping.is_set() or self._early_off or name in self.ready or not self.running(name)

    def _hand_on(self, pod):
        try:
            self.on_ready(pod)
            self.working.set()
        except Exception as e:  # noqa: BLE001 - one pod failing does not end the task
            if self.stopping.is_set():
                return
            if getattr(e, "status", None) in (401, 403):
                # No other pod will do better: nothing can run.
                self.on_fatal(with_hint(f"not allowed to run jobs in pod {pod}: {describe(e)}"))
            elif getattr(e, "fatal", False) or (isinstance(e, WommError) and not self.working.is_set()):
                self.on_fatal(str(e))  # the share failed where no pod works yet: it will fail again
            else:
                self.log(f"pod {pod}: cannot start its job slots: {describe(e)}")

    def delete(self, role=None):
        """Delete the task's objects (or those of one role); pods go at once."""
        # The watch thread (a daemon) sees `stopping` at its next event; closing its
        # response from here would block on the lock its reader holds.
        self.stopping.set()
        taskobjects.delete(self.cluster, self.task.id, role)


def end_task(task, pods, share, reporter, patience=25, keep=False):
    """Whatever happened, the task's objects go, then its local files (within `patience` seconds;
    keep: its record and snapshot stay, for `womm finish` to bring its results back).

    An --async task's leader removes its workers only: it stays, COMPLETE, until `womm finish`.
    If the API cannot be reached, the task's record stays for `womm finish` and the run fails:
    a run never ends well while its objects may still be there.
    """
    share.close()
    pods.stopping.set()
    deadline = time.monotonic() + patience
    while True:
        try:
            pods.delete(role="worker" if task.mode == "async" else None)
            break
        except Exception as e:  # noqa: BLE001 - retried while there is time, then reported
            if time.monotonic() + 2 > deadline:
                raise WommError(f"could not delete the task's objects ({describe(e)}): "
                                f"run `womm finish {task.id}`") from None
            time.sleep(2)
    if not keep:
        tasks.forget(task.id)
    reporter.progress(f"replicaset.apps \"womm-task-{task.id}\" deleted")
