"""The task's worker pods: created, watched, and attached to the scheduler as each becomes ready.

API use is per pod, never per job: one ReplicaSet create, one watch, one exec
stream per job slot, and four deletes at the end.
"""

import threading
import time
from importlib import resources

from womm import manifests
from womm.errors import WommError, describe
from womm_run.controller import Worker

AGENT = resources.files("womm_run").joinpath("agent.sh").read_text()

WATCH_PATIENCE = 30  # seconds without the API before a run gives up

# Waiting reasons after which a pod will not start without someone changing something.
HOPELESS = {
    "ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull",
    "CreateContainerConfigError", "CreateContainerError", "CrashLoopBackOff", "RunContainerError",
}


class TaskPods:
    def __init__(self, cluster, task, share, scheduler, token, procs_per_pod, shell, log, on_fatal):
        self.cluster = cluster
        self.task = task
        self.share = share
        self.scheduler = scheduler
        self.token = token
        self.procs_per_pod = procs_per_pod
        self.shell = shell
        self.log = log
        self.on_fatal = on_fatal
        self.attached = set()
        self.ready_pods = set()
        self.warned = set()
        self.stopping = threading.Event()
        self.first_ready = threading.Event()

    @property
    def namespace(self):
        return self.cluster.namespace

    def create(self):
        body = manifests.worker_replicaset(self.task, self.share.pod_parts(self.task))
        self.cluster.request("POST", self.cluster.path("replicasets"), body=body)

    def start(self):
        threading.Thread(target=self._watch_pods, name="pod watch", daemon=True).start()

    def _watch_pods(self):
        selector = manifests.selector(task=self.task["id"], role="worker")
        failing_since = None
        while not self.stopping.is_set():
            try:
                for kind, pod in self.cluster.watch(
                    self.cluster.path("pods"), {"labelSelector": selector},
                ):
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
        if kind == "DELETED" or meta.get("deletionTimestamp"):
            self.ready_pods.discard(name)
            return  # its workers see their streams end and give their jobs back
        statuses = status.get("containerStatuses") or []
        if status.get("phase") == "Running" and statuses and all(s.get("ready") for s in statuses):
            self.ready_pods.add(name)
            # A container that restarted (OOM-killed, say) lost its agents: attach it again.
            incarnation = (name, sum(s.get("restartCount", 0) for s in statuses))
            if incarnation not in self.attached:
                self.attached.add(incarnation)
                threading.Thread(target=self._attach, args=(name,), name=f"attach {name}", daemon=True).start()
            return
        self.ready_pods.discard(name)
        for s in statuses + (status.get("initContainerStatuses") or []):
            waiting = (s.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") in HOPELESS:
                message = f"pod {name} cannot start: {waiting['reason']}: {waiting.get('message') or s.get('image')}"
                if not self.first_ready.is_set():
                    self.on_fatal(message)
                elif (name, waiting["reason"]) not in self.warned:
                    self.warned.add((name, waiting["reason"]))
                    self.log(message)
        for c in status.get("conditions") or []:
            if c.get("type") == "PodScheduled" and c.get("status") == "False" and (name, c.get("reason")) not in self.warned:
                self.warned.add((name, c.get("reason")))
                self.log(f"pod {name} is not scheduled yet: {c.get('message')}")

    def _attach(self, pod):
        """Give the scheduler this pod's job slots: one agent per slot, each on its own exec stream."""
        try:
            self.share.attach_pod(pod, self.task)
            for slot in range(self.procs_per_pod):
                stream = self._exec_agent(pod)
                if self.stopping.is_set():
                    stream.close()
                    return
                worker = Worker(f"{pod}/{slot}", stream, self.token, self.scheduler)
                worker.start()
                self.scheduler.add_worker(worker)
            self.first_ready.set()
        except Exception as e:  # noqa: BLE001 - one pod failing does not end the task
            if self.stopping.is_set():
                return
            if getattr(e, "status", None) in (401, 403):
                # No other pod will do better: nothing can run.
                self.on_fatal(f"not allowed to run jobs in pod {pod}: {describe(e)}")
                return
            if isinstance(e, WommError) and not self.first_ready.is_set():
                self.on_fatal(str(e))  # the share failed where no pod works yet: it will fail again
                return
            self.log(f"pod {pod}: cannot start its job slots: {describe(e)}")

    def _exec_agent(self, pod, tries=5):
        command = ["sh", "-c", AGENT, "womm-agent", self.token, self.task["cwd"], self.shell]
        for attempt in range(tries):
            try:
                return self.cluster.exec_stream(pod, command, container=manifests.JOB_CONTAINER)
            except Exception:  # noqa: BLE001 - the container may be a moment from accepting execs
                if attempt == tries - 1:
                    raise
                time.sleep(0.2 * (attempt + 1))

    def delete(self, role=None):
        """Delete the task's objects (or those of one role); pods go at once."""
        # The watch thread (a daemon) sees `stopping` at its next event; closing its
        # response from here would block on the lock its reader holds.
        self.stopping.set()
        delete_task_objects(self.cluster, self.task["id"], self.namespace, role)


def delete_task_objects(cluster, task_id, namespace, role=None):
    """Delete all of a task's objects (of one role: the leader spares itself), by label.

    ReplicaSets first, or they would replace the pods deleted after them; one
    deletecollection request per kind.
    """
    selector = manifests.selector(task=task_id, **({"role": role} if role else {}))
    query = {"labelSelector": selector, "propagationPolicy": "Background", "gracePeriodSeconds": 1}
    kinds = ["replicasets", "pods"] + (["configmaps"] if role is None else [])
    for kind in kinds:
        cluster.request("DELETE", cluster.path(kind, namespace=namespace), query)
