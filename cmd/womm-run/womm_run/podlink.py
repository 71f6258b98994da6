"""Each ready pod's link: one exec stream to its agent (womm_run.podagent), carrying every job
slot of the pod (womm_run.protocol), attached again when it breaks while the pod still runs.

A job costs a few frames on that stream: no API request and no process start beyond the
job's own. One thread per pod reads it; every PING_EVERY seconds each link is pinged, which
keeps it alive through load balancers that cut idle connections, and a link that has not
been heard from for DEAD_AFTER seconds is closed and attached again. What a pod says is
believed no further than it must be: its slots are the ones asked for, what comes before
its HELLO is bounded, and its words reach the user's terminal only as printable text.
"""

import threading
import time

from womm import kube, manifests, podrun
from womm.errors import WommError, describe
from womm.report import printable
from womm_run import protocol
from womm_run.podagent import NOT_YET  # an early agent's exit when its job container does not run yet
from womm_run.scheduler import PodSlot

PING_EVERY = 30
DEAD_AFTER = 90
RECONNECT_FOR = 60  # seconds of failed attempts to attach a pod's stream again before it is given up
BEFORE_HELLO = 64 << 10  # bytes an agent may send before its HELLO is complete
EARLY_HELLO = 20  # seconds an early agent has for its HELLO (it waits 5 s at most for the job container)
STDERR_LINE = 1000  # characters of a line of the agent's stderr that are shown


class AgentVersionError(WommError):
    """The pod's agent (the namespace's helper image) speaks another version of the pod protocol:
    every pod of the task has the same image, so none will do better."""

    fatal = True


class AgentDidNotStart(OSError):
    """The agent's stream ended before its HELLO: exit_status and status (the exec's own words) say why."""

    def __init__(self, message, exit_status=None, status=""):
        super().__init__(message)
        self.exit_status, self.status = exit_status, status


# What the kubelet (and the runtime, through it) says of an exec into a container not started yet.
NOT_STARTED = ("container not found", "container_created state")


def not_running_yet(error):
    """Whether an early attempt failed only because the pod's containers do not run yet (an exec into a
    container not started: the kubelet's refusal, relayed as a Status or as its bare text; or the early
    agent's NOT_YET)."""
    if isinstance(error, AgentDidNotStart):
        return error.exit_status == NOT_YET or any(words in error.status.lower() for words in NOT_STARTED)
    return isinstance(error, kube.ApiError) and error.status == 500 and \
        any(words in error.body.decode("utf-8", "replace").lower() for words in NOT_STARTED)


class Attacher:
    """The task's links, one per ready pod."""

    def __init__(self, cluster, task, share, scheduler, pods, env_script, log, functions=()):
        self.cluster, self.task, self.share = cluster, task, share
        self.scheduler, self.pods, self.log = scheduler, pods, log
        self.env_script = env_script
        self.functions = list(functions)  # exported bash functions the command uses: they need bash
        self.no_bash_said = False
        self.links = {}
        self.closed = False  # the run ended: a pod said to be ready since is not attached
        self.pod_locks = {}
        self.lock = threading.Lock()
        self.stopping = pods.stopping
        threading.Thread(target=self._keepalive, name="keepalive", daemon=True).start()

    def attach(self, pod):
        """TaskPods' on_ready: the share's part of the pod first (a lazy mount), then its link."""
        with self._attaching(pod):
            with self.lock:
                current = self.links.get(pod)
                if self.closed:
                    return  # the run ended before the pod was said to be ready (its jobs ran on an early link)
                if current is not None and current.connected:
                    return  # its agent lives (a job container that restarted lost only its jobs)
                link = self.links[pod] = PodLink(self, pod)
            if current is not None:
                current.close()
            self.share.attach_pod(pod, self.task)
            link.connect()
            if current is not None and link.connected:  # its jobs were said to be lost: that it works again is news too
                self.log(f"pod {pod}: attached again")

    def attach_early(self, pod):
        """TaskPods' on_early: the link of a pod not yet said to be ready, if its containers run already
        (the share must need no attach_pod). True: it took; False: not running yet; None: it failed
        otherwise (refused, throttled, another womm's agent): no early try will do better in this task.
        Failures are quiet: attach() follows once the pod is ready, and says what fails then."""
        with self._attaching(pod):
            with self.lock:
                if self.closed:
                    return None
                if pod in self.links:
                    return False  # attached since, or attaching: that one decides
                link = self.links[pod] = PodLink(self, pod)
            verdict = None
            try:
                link.connect(early=True)
                verdict = link.connected
            except Exception as e:  # noqa: BLE001 - quiet: the ready pod's attach says what fails
                verdict = False if not_running_yet(e) else None
            if not link.connected:
                with self.lock:
                    if self.links.get(pod) is link:
                        del self.links[pod]
            return verdict

    def _attaching(self, pod):
        """The pod's own lock, held while it is attached: an early attempt and the ready pod's attach
        never start two agents at once."""
        with self.lock:
            return self.pod_locks.setdefault(pod, threading.Lock())

    def _keepalive(self):
        while not self.stopping.wait(PING_EVERY):
            with self.lock:
                links = list(self.links.values())
            for link in links:
                link.keepalive()

    def close(self):
        with self.lock:
            self.closed = True
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
        self.early = False  # started before the pod was said to be ready (quiet until its HELLO)
        self.closed = False
        self.heard = time.monotonic()
        self.pinger = None  # the thread of the last ping sent
        self.on_frame = {protocol.OUT: self._on_output, protocol.ERR: self._on_output, protocol.EXIT: self._on_exit,
                         protocol.LOST: self._on_lost, protocol.ACK: self._on_ack, protocol.NOTE: self._on_note}

    def _current(self):
        a = self.attacher
        return not self.closed and not a.closed and not a.stopping.is_set() and a.links.get(self.pod) is self

    def connect(self, early=False):
        """Start the pod's agent and give the scheduler its slots; raises if the pod refuses (early: the
        agent ends at once if the job container does not run yet)."""
        a = self.attacher
        self.early = early
        # The module itself, not `womm-run`'s command line: its start (a pod's first slots wait for
        # it, on the pod's CPU limit) is a third of womm-run's.
        command = ["python3", "-m", "womm_run.podagent", podrun.POD_RUN, str(a.task.procs_per_pod),
                   *a.share.agent_args(a.task), *(["--early"] if early else [])]
        # An early try does not wait out the API server's pushback: the ready pod's attach will.
        stream = a.cluster.exec_stream(self.pod, command, container=manifests.AGENT_CONTAINER, patient=not early)
        decoder = protocol.Decoder()
        # An early try holds the pod's attach lock: it must not wait for ever for an agent that hangs.
        give_up = threading.Timer(EARLY_HELLO, stream.abort) if early else None
        try:
            if give_up:
                give_up.start()
            hello, pending = self._hello(stream, decoder)
            if hello.protocol != protocol.PROTOCOL:
                raise AgentVersionError(
                    f"pod {self.pod}'s agent speaks version {hello.protocol} of womm's pod protocol, and this womm "
                    f"{protocol.PROTOCOL}: the helper image {a.task.helper_image} is another womm's; make this womm's "
                    "with `womm build-images`, then `womm cluster-setup --apply` (or set helper-image to it)")
        except BaseException:
            stream.close()
            raise
        finally:
            if give_up:
                give_up.cancel()
        with a.lock:  # published in the run's end's hold, or not at all: its close() closes what it sees
            current = self._current()
            if current:
                self.stream, self.heard = stream, time.monotonic()
        if not current:
            stream.close()
            return
        if a.functions and not hello.bash and not a.no_bash_said:
            a.no_bash_said = True
            a.log(f"the image has no bash: the exported function{'s' * (len(a.functions) > 1)} "
                  f"{', '.join(a.functions)} cannot run in its pods (pod {self.pod})")
        if a.env_script:
            self._send(protocol.encode(protocol.ENV, payload=a.env_script))
        # The slots asked for, whatever the pod says: its word does not size this client's tables.
        self.slots = [PodSlot(self, i) for i in range(1, a.task.procs_per_pod + 1)]
        self.connected = True
        threading.Thread(target=self._read, args=(stream, decoder, pending), name=f"link {self.pod}",
                         daemon=True).start()
        a.scheduler.add_slots(self.slots)

    def _hello(self, stream, decoder):
        """The agent's HELLO, which comes first; (its Hello, the frames that came after it)."""
        said = ""
        while True:
            item = stream.recv()
            if item is None:
                raise AgentDidNotStart(f"the agent of pod {self.pod} did not start" + (f": {said}" if said else ""),
                                       stream.exit_status(), stream.status_text.decode(errors="replace"))
            channel, data = item
            if channel == kube.STDERR:
                said = self._say_stderr(data) or said
            elif channel == kube.STDOUT:
                frames = decoder.feed(data)
                if frames:
                    kind, _, _, payload = frames[0]
                    if kind != protocol.HELLO:
                        raise protocol.ProtocolError(f"pod {self.pod}'s agent spoke before its HELLO")
                    return protocol.read_hello(payload), frames[1:]
                if len(decoder.buf) > BEFORE_HELLO:
                    raise protocol.ProtocolError(f"pod {self.pod}'s agent sent {len(decoder.buf)} bytes, and no HELLO")

    def _say_stderr(self, data):
        """A line the agent's process wrote on stderr, as the user may see it (None if blank)."""
        line = printable(data[:STDERR_LINE * 4].decode(errors="replace").strip()[:STDERR_LINE])
        if line and not (self.early and not self.connected):  # an early attempt's failure is quiet
            self.attacher.log(f"pod {self.pod}: {line}")
        return line or None

    # ---------------------------------------------------------------- frames out

    def _send(self, data, head=b""):
        try:
            self.stream.send(data, head=head)
        except OSError:
            pass  # the reader sees the stream end, and the slots' jobs are lost with it

    def start(self, index, job):
        data = protocol.encode(protocol.JOB, index, job.attempt, protocol.job(job.seq, job.jobslot, job.command, job.env))
        if job.stdin.eof and not job.stdin.size:
            # Most jobs' stdin is empty (GNU parallel's, without --pipe): its end goes in the same
            # message, one message less per job through the API server, the kubelet and the runtime.
            job.eof_sent = True
            data += protocol.encode(protocol.IN, index, job.attempt, b"")
        self._send(data)

    def send_in(self, index, number, data):
        self._send(data, head=protocol.header(protocol.IN, index, number, len(data)))

    def kill(self, index, number):
        self._send(protocol.encode(protocol.KILL, index, number))

    def keepalive(self):
        """Ping the agent; a link silent too long is ended. Never blocks: on a dropped connection a send
        may wait for ever on full buffers, and every other pod's link is kept alive by the same loop."""
        if not self.connected:
            return
        if time.monotonic() - self.heard > DEAD_AFTER:
            self.attacher.log(f"pod {self.pod}: its stream went silent; attaching it again")
            self.stream.abort()  # the reader sees the end; close() would send a frame, and may wait
            return
        if self.pinger is None or not self.pinger.is_alive():
            self.pinger = threading.Thread(target=self._send, args=(protocol.encode(protocol.PING),),
                                           name=f"ping {self.pod}", daemon=True)
            self.pinger.start()

    def close(self):
        self.closed = True
        if self.stream is not None:
            self.stream.close()

    # ---------------------------------------------------------------- frames in

    def _read(self, stream, decoder, pending):
        by_index = {slot.index: slot for slot in self.slots}
        try:
            while True:
                for kind, index, number, payload in pending:
                    self.heard = time.monotonic()
                    handler = self.on_frame.get(kind)
                    slot = by_index.get(index)
                    if handler is not None and (slot is not None or kind == protocol.NOTE):
                        handler(kind, slot, number, payload)
                item = stream.recv()
                if item is None:
                    break
                channel, data = item
                pending = decoder.feed(data) if channel == kube.STDOUT else []
                if channel == kube.STDERR:
                    self._say_stderr(data)
        except Exception as e:  # noqa: BLE001 - a broken stream is a lost link, handled below
            self.attacher.log(f"pod {self.pod}: {describe(e)}")
        finally:
            stream.close()
            self._lost()

    def _on_output(self, kind, slot, number, payload):
        job = slot.job
        if job is not None and job.attempt == number and not job.cancelled:
            job.write(job.out if kind == protocol.OUT else job.err, payload)

    def _on_exit(self, kind, slot, number, payload):
        self.attacher.scheduler.finished(slot, number, protocol.read_exit(payload))

    def _on_lost(self, kind, slot, number, payload):
        self.attacher.scheduler.lost(slot, number, self._why(protocol.read_text(payload)))

    def _on_ack(self, kind, slot, number, payload):
        self.attacher.scheduler.acked(slot, number, protocol.read_ack(payload))

    def _on_note(self, kind, slot, number, payload):
        self.attacher.log(f"pod {self.pod}: {protocol.read_text(payload)}")

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
                                     quiet=self.closed or a.closed or a.stopping.is_set())
            return
        time.sleep(0.5)  # the watch may know in a moment why the stream ended
        a.scheduler.remove_slots(self.slots, self._why(f"the stream to pod {self.pod} broke"))
        deadline = time.monotonic() + RECONNECT_FOR
        delay = 0.5
        while self._current() and a.pods.running(self.pod):
            try:
                self.connect()
                if self.connected:  # (not if the run ended, or the pod was attached anew, meanwhile)
                    a.log(f"pod {self.pod}: attached again")
                return
            except Exception as e:  # noqa: BLE001 - retried, within bounds
                if time.monotonic() + delay > deadline:
                    a.log(f"pod {self.pod}: cannot attach it again ({describe(e)}); going on without it")
                    return
            time.sleep(delay)
            delay = min(delay * 2, 8)
