"""The pod protocol (womm_run.protocol): each payload's pair, versions, and what the controller does
with an agent that speaks another version, speaks before its HELLO, or says what it should not."""

import json
import re
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from silentapi import within

from womm import kube
from womm_run import podlink, protocol
from womm_run.podlink import AgentVersionError, Attacher, PodLink

WOMM_RUN = Path(protocol.__file__).parent


def test_every_payload_reads_back_what_was_built():
    assert protocol.read_job(protocol.job(7, 3, b"echo 'a\0b'", ((b"A", b"1=2"), (b"B", b"")))) == \
        protocol.JobSpec(7, 3, b"echo 'a\0b'", ((b"A", b"1=2"), (b"B", b"")))
    assert protocol.read_ack(protocol.ack(2 ** 32 - 1)) == 2 ** 32 - 1
    assert [protocol.read_exit(protocol.exit_status(s)) for s in (0, 1, 255)] == [0, 1, 255]
    assert protocol.read_env(protocol.env(b"A='\xff'\n", b"f() { :; }\n")) == (b"A='\xff'\n", b"f() { :; }\n")
    hello = protocol.read_hello(protocol.hello("/bin/sh", "/bin/bash", "setsid", 42))
    assert hello == protocol.Hello(protocol.PROTOCOL, "/bin/sh", "/bin/bash", "setsid", 42)
    assert protocol.read_text(protocol.text("its job container restarted")) == "its job container restarted"


def test_what_is_not_a_payload_is_refused_or_read_safely():
    for bad in (b"", b"x", b"1\x002\x00"):
        with pytest.raises(protocol.ProtocolError):
            protocol.read_job(bad)
    with pytest.raises(protocol.ProtocolError):
        protocol.read_ack(b"12345")
    with pytest.raises(protocol.ProtocolError):
        protocol.read_hello(b"[1, 2]")
    assert [protocol.read_exit(p) for p in (b"", b"x", b"-1", b"256")] == [255] * 4
    assert protocol.read_text(b"\x1b]52;c;aGk=\x07\x1b[2Jwomm: fine\n") == "\\x1b]52;c;aGk=\\x07\\x1b[2Jwomm: fine\\x0a"
    assert len(protocol.read_text(b"x" * 10_000)) == protocol.MAX_TEXT


def test_a_hello_without_a_version_is_version_1():
    old = json.dumps({"slots": 2, "shell": "/bin/sh", "bash": "", "setsid": "setsid", "pid": 9}).encode()
    assert protocol.read_hello(old).protocol == 1


def test_frames_are_built_and_read_in_the_protocol_module_only():
    """grep: no payload is encoded or decoded outside womm_run.protocol."""
    for path in WOMM_RUN.glob("*.py"):
        if path.name == "protocol.py":
            continue
        text = path.read_text()
        assert not re.search(r"to_bytes|from_bytes|HEADER|struct", text), path.name
        if "protocol." in text:
            assert "import json" not in text or path.name == "leader.py", path.name


# ---------------------------------------------------------------- the controller meets an agent


class Stream:
    """An exec stream whose agent says `said` (a list of (channel, bytes)), then nothing more."""

    def __init__(self, said):
        self.said = list(said)
        self.sent = []
        self.closed = threading.Event()

    def recv(self):
        if self.said:
            return self.said.pop(0)
        self.closed.wait()
        return None

    def send(self, data, head=b""):
        self.sent.append(head + bytes(data))

    def close(self):
        self.closed.set()

    abort = close
    status_text = b""  # the exec's own words: none here

    def exit_status(self):
        return None


class Scheduler:
    def __init__(self):
        self.slots = []

    def add_slots(self, slots):
        self.slots += slots

    def remove_slots(self, slots, reason, quiet=False):
        pass


def attacher(said, procs=2):
    log = []
    stream = Stream(said)
    cluster = SimpleNamespace(exec_stream=lambda pod, command, container=None, patient=True: stream)
    share = SimpleNamespace(agent_args=lambda task: [], attach_pod=lambda pod, task: None)
    pods = SimpleNamespace(stopping=threading.Event(), running=lambda pod: False, why=lambda pod: None)
    task = SimpleNamespace(id="t", procs_per_pod=procs, helper_image="registry/womm-helper:old")
    a = Attacher(cluster, task, share, Scheduler(), pods, b"", log.append)
    return a, stream, log


def hello_frame(payload):
    return kube.STDOUT, protocol.encode(protocol.HELLO, payload=payload)


@pytest.mark.parametrize("payload", [
    json.dumps({"slots": 2, "shell": "/bin/sh", "pid": 9}).encode(),  # an agent of before versions
    json.dumps({"protocol": protocol.PROTOCOL + 1, "shell": "/bin/sh"}).encode(),  # a newer womm's
])
def test_an_agent_of_another_version_is_refused_in_one_line_naming_the_fix(payload):
    a, stream, _ = attacher([hello_frame(payload)])
    with pytest.raises(AgentVersionError) as e:
        a.attach("p")
    message = str(e.value)
    assert "\n" not in message and "womm build-images" in message and "registry/womm-helper:old" in message
    assert e.value.fatal and stream.closed.is_set() and a.scheduler.slots == []


def test_the_same_version_is_attached_with_the_slots_asked_for_whatever_the_agent_says():
    payload = json.dumps({"protocol": protocol.PROTOCOL, "slots": 3_000_000}).encode()
    a, stream, _ = attacher([hello_frame(payload)], procs=2)
    a.attach("p")
    assert [s.index for s in a.scheduler.slots] == [1, 2]
    a.close()


def test_an_agent_that_speaks_before_its_hello_is_refused():
    note = (kube.STDOUT, protocol.encode(protocol.NOTE, payload=b"hi"))
    a, stream, _ = attacher([note, hello_frame(protocol.hello())])
    with pytest.raises(protocol.ProtocolError):
        a.attach("p")
    assert stream.closed.is_set()


def test_what_an_agent_sends_before_its_hello_is_bounded():
    # A frame header that announces 1 MiB, then its bytes a little at a time: refused past the bound.
    header = protocol.HEADER.pack(protocol.HELLO, 0, 0, protocol.MAX_PAYLOAD)
    said = [(kube.STDOUT, header)] + [(kube.STDOUT, b"x" * 16384)] * 64
    a, stream, _ = attacher(said)
    with pytest.raises(protocol.ProtocolError):
        a.attach("p")
    assert len(stream.said) > 50  # it stopped reading soon after the bound, not at the frame's end


def test_an_agents_stderr_reaches_the_terminal_printable_and_bounded():
    said = [(kube.STDERR, b"\x1b]52;c;cHduZWQ=\x07womm: error: fake\n" + b"y" * 100_000),
            hello_frame(protocol.hello())]
    a, _, log = attacher(said)
    a.attach("p")
    a.close()
    (line,) = log
    assert "\x1b" not in line and "\x07" not in line and line.startswith("pod p: \\x1b]52")
    assert len(line) < 1100


def test_a_note_reaches_the_terminal_printable():
    note = (kube.STDOUT, protocol.encode(protocol.NOTE, payload=b"\x1b[31mred\x1b[0m"))
    a, stream, log = attacher([hello_frame(protocol.hello()), note])
    a.attach("p")
    link = a.links["p"]
    for _ in range(100):
        if log:
            break
        threading.Event().wait(0.02)
    a.close()
    assert log == ["pod p: \\x1b[31mred\\x1b[0m"]
    assert isinstance(link, PodLink)


def test_a_leader_refuses_a_task_record_of_another_version_in_one_line(tmp_path):
    """The client's womm made the record; the helper image's womm runs it as the task's leader."""
    from womm.errors import WommError
    from womm_run import leader

    record = tmp_path / "task.json"
    record.write_text(json.dumps({"id": "abcdefgh", "kind": "parallel", "mode": "async", "pods": 1}))
    with pytest.raises(WommError) as e:
        leader.main(SimpleNamespace(task=str(record)))
    assert "\n" not in str(e.value) and "pod protocol 1" in str(e.value) and "womm build-images" in str(e.value)


class StuckStream(Stream):
    """A stream on a connection that dropped with full buffers: a send blocks until it is ended."""

    def send(self, data, head=b""):
        self.sent.append(head + bytes(data))
        self.closed.wait()


def test_a_link_whose_sends_block_does_not_keep_the_others_from_their_pings(monkeypatch):
    from womm_run import podlink

    monkeypatch.setattr(podlink, "PING_EVERY", 0.05)
    monkeypatch.setattr(podlink, "DEAD_AFTER", 0.6)
    hello = hello_frame(json.dumps({"protocol": protocol.PROTOCOL}).encode())
    streams = {"stuck": StuckStream([hello]), "fine": Stream([hello])}
    log = []
    cluster = SimpleNamespace(exec_stream=lambda pod, command, container=None, patient=True: streams[pod])
    share = SimpleNamespace(agent_args=lambda task: [], attach_pod=lambda pod, task: None)
    pods = SimpleNamespace(stopping=threading.Event(), running=lambda pod: False, why=lambda pod: None)
    task = SimpleNamespace(id="t", procs_per_pod=1, helper_image="h")
    a = Attacher(cluster, task, share, Scheduler(), pods, b"", log.append)
    a.attach("stuck")
    a.attach("fine")
    ping = protocol.encode(protocol.PING)
    deadline = time.monotonic() + 0.5
    while streams["fine"].sent.count(ping) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert streams["fine"].sent.count(ping) >= 3, "the stuck link's send held up the others' pings"
    assert streams["stuck"].sent.count(ping) == 1  # one ping at a time, while the last one is stuck
    # Silent past DEAD_AFTER, the stuck one is ended, though a send of its own still blocks on it.
    assert streams["stuck"].closed.wait(2)
    pods.stopping.set()
    a.close()


def test_a_pod_handed_on_again_after_its_link_broke_is_said_to_be_attached_again():
    """After an API server's restart the pod watch's new list may hand a pod on before the link's own
    attempts attach it: the user, told that its jobs were lost, hears that it works again either way."""
    hello = hello_frame(json.dumps({"protocol": protocol.PROTOCOL}).encode())
    streams = [Stream([hello]), Stream([hello])]
    a, _, log = attacher([])
    a.cluster.exec_stream = lambda pod, command, container=None, patient=True: streams.pop(0)
    a.attach("p")
    a.attach("p")  # still connected: nothing to do
    assert len(streams) == 1 and log == []
    a.links["p"].stream.close()  # the stream breaks
    deadline = time.monotonic() + 2
    while a.links["p"].connected and time.monotonic() < deadline:
        time.sleep(0.01)
    a.attach("p")
    assert log == ["pod p: attached again"]
    a.pods.stopping.set()
    a.close()


def test_a_pod_said_to_be_ready_after_the_run_ended_is_not_attached():
    """Every job may have run on the early links before the watch says a pod is ready: once the run
    has closed its links (its task not yet deleted), that word starts no agent and says nothing."""
    hello = hello_frame(json.dumps({"protocol": protocol.PROTOCOL}).encode())
    execs = []
    a, _, log = attacher([])
    a.cluster.exec_stream = lambda pod, command, container=None, patient=True: execs.append(pod) or Stream([hello])
    assert a.attach_early("p") is True
    a.close()  # the run's end: pods.stopping is set later, when the task's objects are deleted
    a.attach("p")
    assert a.attach_early("q") is None  # no early try will do better
    a.attach("q")
    assert execs == ["p"] and log == []


def test_a_link_closed_by_the_runs_end_while_it_attaches_again_is_not_said_to_be_attached():
    hello = hello_frame(json.dumps({"protocol": protocol.PROTOCOL}).encode())
    a, _, log = attacher([])
    a.cluster.exec_stream = lambda pod, command, container=None, patient=True: Stream([hello])
    a.attach("p")
    a.links["p"].stream.close()  # the stream breaks
    deadline = time.monotonic() + 2
    while a.links["p"].connected and time.monotonic() < deadline:
        time.sleep(0.01)

    def closing(pod, command, container=None, patient=True):
        a.close()  # the run ends while the pod is being attached again
        return Stream([hello])

    a.cluster.exec_stream = closing
    a.attach("p")
    assert not a.links["p"].connected and log == []


def test_a_broken_link_attaching_itself_again_as_the_run_ends_is_not_said_to_be_attached():
    """The link's own attempts (the pod still runs) when the run ends meanwhile: nothing is said."""
    hello = hello_frame(json.dumps({"protocol": protocol.PROTOCOL}).encode())
    a, _, log = attacher([])
    a.pods.running = lambda pod: True
    a.cluster.exec_stream = lambda pod, command, container=None, patient=True: Stream([hello])
    a.attach("p")
    link = a.links["p"]
    tried = threading.Event()

    def closing(pod, command, container=None, patient=True):
        a.close()  # the run ends while the link attaches itself again
        tried.set()
        return Stream([hello])

    a.cluster.exec_stream = closing
    link.stream.close()  # the stream breaks
    assert tried.wait(5)
    deadline = time.monotonic() + 2
    while link.connected is False and time.monotonic() < deadline and not log:
        time.sleep(0.05)
    assert not link.connected and log == []


def test_an_early_agent_that_never_says_hello_is_given_up_quietly_and_frees_the_pod(monkeypatch):
    monkeypatch.setattr(podlink, "EARLY_HELLO", 0.3)
    # It writes on stderr (an older womm's agent's "usage: ..."), then says nothing more, for ever.
    a, stream, log = attacher([(kube.STDERR, b"usage: python3 -m womm_run.podagent RUN SLOTS\n")])
    verdict = within(5, a.attach_early, "p")
    assert verdict is None  # neither took nor "not running yet": the task's early tries end
    assert stream.closed.is_set() and a.links == {} and log == []
    assert within(5, a._attaching("p").acquire, False)  # the pod's attach lock is free for its ready attach
