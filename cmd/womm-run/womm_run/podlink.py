"""Each ready pod's link: one exec stream to its agent (womm_run.podagent), carrying every job
slot of the pod (womm_run.frames), attached again when it breaks while the pod still runs.

A job costs a few frames on that stream: no API request and no process start beyond the
job's own. One thread per pod reads it; every PING_EVERY seconds each link is pinged, which
keeps it alive through load balancers that cut idle connections, and a link that has not
been heard from for DEAD_AFTER seconds is closed and attached again.
"""

import json
import threading
import time

from womm import manifests
from womm.errors import describe
from womm_run import frames
from womm_run.controller import Slot

PING_EVERY = 30
DEAD_AFTER = 90
RECONNECT_FOR = 60  # seconds of failed attempts to attach a pod's stream again before it is given up
RUN = "/.womm-pod"  # the pod's directory shared by its womm and job containers (manifests)


class Attacher:
    """The task's links, one per ready pod."""

    def __init__(self, cluster, task, share, scheduler, pods, env_script, log, functions=()):
        self.cluster, self.task, self.share = cluster, task, share
        self.scheduler, self.pods, self.log = scheduler, pods, log
        self.env_script = env_script
        self.functions = list(functions)  # exported bash functions the command uses: they need bash
        self.no_bash_said = False
        self.links = {}
        self.lock = threading.Lock()
        self.stopping = pods.stopping
        threading.Thread(target=self._keepalive, name="keepalive", daemon=True).start()

    def attach(self, pod):
        """TaskPods' on_ready: the share's part of the pod first (a lazy mount), then its link."""
        with self.lock:
            current = self.links.get(pod)
            if current is not None and current.connected:
                return  # its agent lives (a job container that restarted lost only its jobs)
            link = self.links[pod] = PodLink(self, pod)
        if current is not None:
            current.close()
        self.share.attach_pod(pod, self.task)
        link.connect()

    def _keepalive(self):
        while not self.stopping.wait(PING_EVERY):
            with self.lock:
                links = list(self.links.values())
            for link in links:
                link.keepalive()

    def close(self):
        with self.lock:
            links = list(self.links.values())
        for link in links:
            link.close()


class PodLink:
    def __init__(self, attacher, pod):
        self.attacher = attacher
        self.pod = pod
        self.stream = None
        self.slots = []
        self.connected = False
        self.closed = False
        self.heard = time.monotonic()

    def _current(self):
        return not self.closed and not self.attacher.stopping.is_set() and self.attacher.links.get(self.pod) is self

    def connect(self):
        """Start the pod's agent and give the scheduler its slots; raises if the pod refuses."""
        a = self.attacher
        command = ["womm-run", "pod-agent", RUN, str(a.task["procs_per_pod"]), *a.share.agent_args(a.task)]
        stream = a.cluster.exec_stream(self.pod, command, container=manifests.AGENT_CONTAINER)
        decoder = frames.Decoder()
        hello, early = None, []
        while hello is None:
            item = stream.recv()
            if item is None:
                stream.close()
                raise OSError(f"the agent of pod {self.pod} did not start")
            channel, data = item
            if channel == 2:
                a.log(f"pod {self.pod}: {data.decode(errors='replace').strip()}")
            elif channel == 1:
                for f in decoder.feed(data):
                    if f[0] == frames.HELLO and hello is None:
                        hello = json.loads(f[3])
                    else:
                        early.append(f)
        if not self._current():
            stream.close()
            return
        self.stream, self.heard = stream, time.monotonic()
        self.hello = hello
        if a.functions and not hello.get("bash") and not a.no_bash_said:
            a.no_bash_said = True
            a.log(f"the image has no bash: the exported function{'s' * (len(a.functions) > 1)} "
                  f"{', '.join(a.functions)} cannot run in its pods (pod {self.pod})")
        if a.env_script:
            self._send(frames.encode(frames.ENV, payload=a.env_script))
        self.slots = [Slot(self, i) for i in range(1, int(hello.get("slots", 1)) + 1)]
        self.connected = True
        threading.Thread(target=self._read, args=(stream, decoder, early), name=f"link {self.pod}",
                         daemon=True).start()
        a.scheduler.add_slots(self.slots)

    # ---------------------------------------------------------------- frames out

    def _send(self, data):
        try:
            self.stream.send(data)
        except OSError:
            pass  # the reader sees the stream end, and the slots' jobs are lost with it

    def start(self, index, job):
        data = frames.encode(frames.JOB, index, job.attempt, frames.encode_job(job.seq, job.slot, job.command, job.env))
        if job.stdin.eof and not job.stdin.size:
            # Most jobs' stdin is empty (GNU parallel's, without --pipe): its end goes in the same
            # message, one message less per job through the API server, the kubelet and the runtime.
            job.eof_sent = True
            data += frames.encode(frames.IN, index, job.attempt, b"")
        self._send(data)

    def send_in(self, index, number, data):
        self._send(frames.encode(frames.IN, index, number, data))

    def kill(self, index, number):
        self._send(frames.encode(frames.KILL, index, number))

    def keepalive(self):
        if not self.connected:
            return
        if time.monotonic() - self.heard > DEAD_AFTER:
            self.attacher.log(f"pod {self.pod}: its stream went silent; attaching it again")
            self.stream.close()  # the reader sees the end
            return
        self._send(frames.encode(frames.PING))

    def close(self):
        self.closed = True
        if self.stream is not None:
            self.stream.close()

    # ---------------------------------------------------------------- frames in

    def _read(self, stream, decoder, early):
        a = self.attacher
        sched = a.scheduler
        by_index = {slot.index: slot for slot in self.slots}
        pending = early
        try:
            while True:
                for kind, index, number, payload in pending:
                    self.heard = time.monotonic()
                    slot = by_index.get(index)
                    if kind in (frames.OUT, frames.ERR):
                        job = slot.job if slot else None
                        if job is not None and job.attempt == number and not job.cancelled:
                            job.write(1 if kind == frames.OUT else 2, payload)
                    elif kind == frames.EXIT and slot:
                        try:
                            status = int(payload)
                        except ValueError:
                            status = 255
                        sched.finished(slot, number, status)
                    elif kind == frames.LOST and slot:
                        sched.lost(slot, number, self._why(payload.decode(errors="replace")))
                    elif kind == frames.ACK and slot:
                        sched.acked(slot, number, int.from_bytes(payload, "big"))
                    elif kind == frames.NOTE:
                        a.log(f"pod {self.pod}: {payload.decode(errors='replace')}")
                item = stream.recv()
                if item is None:
                    break
                channel, data = item
                if channel == 1:
                    pending = decoder.feed(data)
                else:
                    pending = []
                    if channel == 2 and data.strip():
                        a.log(f"pod {self.pod}: {data.decode(errors='replace').strip()}")
        except Exception as e:  # noqa: BLE001 - a broken stream is a lost link, handled below
            a.log(f"pod {self.pod}: {describe(e)}")
        finally:
            stream.close()
            self._lost()

    def _why(self, what):
        """What happened to the pod, from the watch, after what the stream or the agent said."""
        why = self.attacher.pods.why(self.pod)
        return f"{what} ({why})" if why else what

    def _lost(self):
        self.connected = False
        a = self.attacher
        if not self._current():
            # Closed by the run's end (or replaced): its jobs' reruns, if any, are no news.
            a.scheduler.remove_slots(self.slots, self._why(f"pod {self.pod} went away"),
                                     quiet=self.closed or a.stopping.is_set())
            return
        time.sleep(0.5)  # the watch may know in a moment why the stream ended
        a.scheduler.remove_slots(self.slots, self._why(f"the stream to pod {self.pod} broke"))
        deadline = time.monotonic() + RECONNECT_FOR
        delay = 0.5
        while self._current() and a.pods.running(self.pod):
            try:
                self.connect()
                a.log(f"pod {self.pod}: attached again")
                return
            except Exception as e:  # noqa: BLE001 - retried, within bounds
                if time.monotonic() + delay > deadline:
                    a.log(f"pod {self.pod}: cannot attach it again ({describe(e)}); going on without it")
                    return
            time.sleep(delay)
            delay = min(delay * 2, 8)
