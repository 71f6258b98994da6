"""A ready pod's job slots given to the scheduler: one agent (agent.sh) per slot, each on its
own exec stream, opened once; a job then costs a few lines on that stream and no API request.
"""

import time
from importlib import resources

from womm import manifests
from womm_run.controller import Worker

AGENT = resources.files("womm_run").joinpath("agent.sh").read_text()


class SlotAttacher:
    def __init__(self, cluster, task, share, scheduler, token, shell, stopping):
        self.cluster = cluster
        self.task = task
        self.share = share
        self.scheduler = scheduler
        self.token = token
        self.shell = shell
        self.stopping = stopping  # an Event: the task is ending, attach nothing more

    def attach(self, pod):
        """The share's part of the pod first (a lazy mount), then one agent per job slot."""
        self.share.attach_pod(pod, self.task)
        for slot in range(self.task["procs_per_pod"]):
            stream = self._exec_agent(pod)
            if self.stopping.is_set():
                stream.close()
                return
            worker = Worker(f"{pod}/{slot}", stream, self.token, self.scheduler)
            worker.start()
            self.scheduler.add_worker(worker)

    def _exec_agent(self, pod, tries=5):
        command = ["sh", "-c", AGENT, "womm-agent", self.token, self.task["cwd"], self.shell]
        for attempt in range(tries):
            try:
                return self.cluster.exec_stream(pod, command, container=manifests.JOB_CONTAINER)
            except Exception:  # noqa: BLE001 - the container may be a moment from accepting execs
                if attempt == tries - 1:
                    raise
                time.sleep(0.2 * (attempt + 1))
