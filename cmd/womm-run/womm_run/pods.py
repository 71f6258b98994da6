"""The task's pods: one ReplicaSet created, its pods watched, each handed on as it becomes ready,
and every object of the task deleted at the end.

API use is per pod, never per job: one ReplicaSet create, one watch, what each ready pod's
handler does (womm_run.podlink: one exec stream per pod), and a delete per kind at the end.
"""

import shutil
import threading
import time
from importlib import resources

from womm import home, manifests, podstatus, records, taskobjects
from womm.errors import WommError, describe, with_hint

RUNNER = resources.files("womm_run").joinpath("runner.sh").read_text()

WATCH_PATIENCE = 60  # seconds without the API before a run gives up
PENDING_TIMEOUT = 300  # default seconds for the first pod to start (clusters that autoscale take minutes)
SAY_AFTER = 10  # seconds a pod waits for one reason before it is said

class TaskPods:
    """The workers of one task; on_fatal(message) ends the run when nothing can work."""

    def __init__(self, cluster, task, share, log, on_fatal):
        self.cluster = cluster
        self.task = task
        self.share = share
        self.log = log
        self.on_fatal = on_fatal
        self.on_ready = None
        self.ready = set()  # names of the pods running and ready now
        self.latest = {}  # name -> the pod as the watch saw it last (None once deleted)
        self.working = threading.Event()  # set once a pod's on_ready succeeded
        self.stopping = threading.Event()
        self._handed = set()  # (pod, restarts) already given to on_ready
        self._said = set()  # the reasons pods wait for, each said once
        self.waiting = {}  # name -> (why that pod does not run yet, since when)
        self.jobs_done = lambda: None  # for the progress line: the run sets it

    def create(self):
        body = manifests.worker_replicaset(self.task, self.share.pod_parts(self.task), self.task["helper_image"], RUNNER)
        self.cluster.request("POST", self.cluster.path("replicasets"), body=body)
        timeout = self.task.get("pending_timeout") or PENDING_TIMEOUT
        threading.Thread(target=self._pending_watchdog, args=(timeout,), name="pending", daemon=True).start()

    def _pending_watchdog(self, timeout):
        """While pods start: the progress line on a terminal, each reason they wait for said once
        (after SAY_AFTER seconds: a moment's churn is no news), and the pending timeout: no pod
        working by then ends the run with the reasons; some working goes on with those. Later, the
        same timeout bounds a run left with no pod at all (its ReplicaSet or namespace deleted, its
        nodes gone): its lost jobs would wait for slots that never come."""
        from womm.report import Progress

        progress, start, timed_out = Progress(), time.monotonic(), False
        none_since = None
        while not self.stopping.wait(1):
            now = time.monotonic()
            waiting_for = "; ".join(sorted({w for w, _ in self.waiting.values()}))
            if self.working.is_set() and not self.ready:
                none_since = none_since or now
                if now - none_since >= timeout:
                    progress.done()
                    self.on_fatal(f"no pod has been ready for {timeout:g} s: "
                                  f"{waiting_for or 'its pods were deleted and none replaced them'}")
                    return
            else:
                none_since = None
            for why, since in list(self.waiting.values()):
                if now - since >= SAY_AFTER and why not in self._said:
                    self._said.add(why)
                    progress.done()
                    count = sum(1 for w, _ in self.waiting.values() if w == why)
                    self.log(f"{count} of {self.task['pods']} pods wait: {why}")
            reasons = waiting_for or "they are still being created"
            if len(self.ready) < self.task["pods"] and not timed_out:
                done = self.jobs_done()
                progress.update(f"{len(self.ready)}/{self.task['pods']} pods ready"
                                + (f", {done} jobs done" if done else "")
                                + (f" ({len(self.waiting)} waiting)" if self.waiting else ""))
            else:
                progress.done()
            if now - start >= timeout and not timed_out:
                timed_out = True
                progress.done()
                if not self.working.is_set():
                    self.on_fatal(f"no pod started within {timeout:g} s: {reasons}")
                    return
                if self.waiting:
                    self.log(f"{len(self.waiting)} of {self.task['pods']} pods did not start within {timeout:g} s "
                             f"({reasons}); going on with the others")
        progress.done()

    def start(self, on_ready):
        """Watch the pods; on_ready(pod) runs in a thread of its own for each pod that becomes
        ready (again when its containers restart). Start before create(): the watch then
        sees the pods from their creation on."""
        self.on_ready = on_ready
        threading.Thread(target=self._watch, name="pod watch", daemon=True).start()

    def _watch(self):
        selector = taskobjects.selector(task=self.task["id"], role="worker")
        failing_since = None
        while not self.stopping.is_set():
            # A new watch lists every pod again: each ready one is handed on again (a pod whose
            # link still works keeps it), so that nothing that happened while the API was away is missed.
            self._handed.clear()
            try:
                for kind, pod in self.cluster.watch(self.cluster.path("pods"), {"labelSelector": selector}):
                    failing_since = None
                    if self.stopping.is_set():
                        return
                    self._pod_event(kind, pod)
            except Exception as e:  # noqa: BLE001 - the watch restarts; report why
                if self.stopping.is_set():
                    return
                now = time.monotonic()
                failing_since = failing_since or now
                if now - failing_since > WATCH_PATIENCE:
                    self.on_fatal(f"lost the Kubernetes API: {describe(e)}")
                    return
                self.log(f"watching the pods: {describe(e)}; trying again")
                time.sleep(2)

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
            elif isinstance(e, WommError) and not self.working.is_set():
                self.on_fatal(str(e))  # the share failed where no pod works yet: it will fail again
            else:
                self.log(f"pod {pod}: cannot start its job slots: {describe(e)}")

    def delete(self, role=None):
        """Delete the task's objects (or those of one role); pods go at once."""
        # The watch thread (a daemon) sees `stopping` at its next event; closing its
        # response from here would block on the lock its reader holds.
        self.stopping.set()
        taskobjects.delete(self.cluster, self.task["id"], role)


def end_task(task, pods, share, reporter, patience=25):
    """Whatever happened, the task's objects go, then its local files (within `patience` seconds).

    An --async task's leader removes its workers only: it stays, COMPLETE, until `womm finish`.
    If the API cannot be reached, the task's record stays for `womm finish` and the run fails:
    a run never ends well while its objects may still be there.
    """
    share.close()
    pods.stopping.set()
    deadline = time.monotonic() + patience
    while True:
        try:
            pods.delete(role="worker" if task["mode"] == "async" else None)
            break
        except Exception as e:  # noqa: BLE001 - retried while there is time, then reported
            if time.monotonic() + 2 > deadline:
                raise WommError(f"could not delete the task's objects ({describe(e)}): "
                                f"run `womm finish {task['id']}`") from None
            time.sleep(2)
    shutil.rmtree(home.run_dir(task["id"]), ignore_errors=True)
    records.remove_task(task["id"])
    reporter.progress(f"replicaset.apps \"womm-task-{task['id']}\" deleted")
