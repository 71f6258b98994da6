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
        self._watch = None

    @property
    def namespace(self):
        return self.cluster.namespace

    def create(self):
        body = manifests.worker_replicaset(self.task, self.share.pod_parts(self.task))
        self.cluster.apps.create_namespaced_replica_set(self.namespace, body)

    def start(self):
        threading.Thread(target=self._watch_pods, name="pod watch", daemon=True).start()

    def _watch_pods(self):
        from kubernetes import watch

        selector = manifests.selector(task=self.task["id"], role="worker")
        failing_since = None
        while not self.stopping.is_set():
            self._watch = watch.Watch()
            try:
                for event in self._watch.stream(
                    self.cluster.core.list_namespaced_pod, self.namespace,
                    label_selector=selector, timeout_seconds=300,
                ):
                    failing_since = None
                    if self.stopping.is_set():
                        return
                    self._pod_event(event["type"], event["object"])
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
        name = pod.metadata.name
        if kind == "DELETED" or pod.metadata.deletion_timestamp:
            self.ready_pods.discard(name)
            return  # its workers see their streams end and give their jobs back
        statuses = pod.status.container_statuses or []
        if pod.status.phase == "Running" and statuses and all(s.ready for s in statuses):
            self.ready_pods.add(name)
            # A container that restarted (OOM-killed, say) lost its agents: attach it again.
            incarnation = (name, sum(s.restart_count for s in statuses))
            if incarnation not in self.attached:
                self.attached.add(incarnation)
                threading.Thread(target=self._attach, args=(name,), name=f"attach {name}", daemon=True).start()
            return
        self.ready_pods.discard(name)
        for s in statuses + (pod.status.init_container_statuses or []):
            waiting = s.state and s.state.waiting
            if waiting and waiting.reason in HOPELESS:
                message = f"pod {name} cannot start: {waiting.reason}: {waiting.message or s.image}"
                if not self.first_ready.is_set():
                    self.on_fatal(message)
                elif (name, waiting.reason) not in self.warned:
                    self.warned.add((name, waiting.reason))
                    self.log(message)
        for c in pod.status.conditions or []:
            if c.type == "PodScheduled" and c.status == "False" and (name, c.reason) not in self.warned:
                self.warned.add((name, c.reason))
                self.log(f"pod {name} is not scheduled yet: {c.message}")

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
        self.stopping.set()
        if self._watch is not None:
            self._watch.stop()
        delete_task_objects(self.cluster, self.task["id"], self.namespace, role)


def delete_task_objects(cluster, task_id, namespace, role=None):
    """Delete all of a task's objects (of one role: the leader spares itself), by label.

    ReplicaSets first, or they would replace the pods deleted after them; one
    deletecollection request per kind.
    """
    selector = manifests.selector(task=task_id, **({"role": role} if role else {}))
    apps, core = cluster.apps, cluster.core
    options = {"label_selector": selector, "propagation_policy": "Background", "grace_period_seconds": 1}
    apps.delete_collection_namespaced_replica_set(namespace, **options)
    core.delete_collection_namespaced_pod(namespace, **options)
    if role is None:
        core.delete_collection_namespaced_config_map(namespace, **options)
