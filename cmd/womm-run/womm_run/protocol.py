"""The pod protocol: all that the controller and a pod's agent say to each other, over the pod's
one exec stream. Both ends import this module; no other module builds or reads a frame or its
payload.

A frame is an 11-byte header, then its payload:

    kind (1 byte) | slot (2 bytes) | job (4 bytes) | length (4 bytes) | payload

big-endian, binary-safe. `slot` is the pod's job slot (1..N; 0 for the pod itself), `job` the
controller's number for one attempt of a job, so that a frame of an attempt that ended can
never be taken for the next one's.

controller -> agent
    ENV      the --env variables and exported functions:  env(sh, bash) / read_env()
    JOB      run a job:                                    job(...) / read_job()
    IN       bytes of the job's stdin; an empty payload is its end
    KILL     stop the job: TERM to its process group, KILL after a grace period
    PING     answered with PONG: a keepalive through load balancers, and a liveness check
agent -> controller
    HELLO    first, always: the protocol version, what the job container has   hello() / read_hello()
    OUT ERR  the job's stdout and stderr, as they come
    ACK      stdin bytes the job has taken: the controller's window moves on   ack() / read_ack()
    EXIT     the job ended, with its exit status                               exit_status() / read_exit()
    LOST     the job vanished with its job container; it runs again            text() / read_text()
    PONG     the answer to PING
    NOTE     a line for the user (womm's own message, not a job's output)      text() / read_text()

Versions (PROTOCOL): the agent runs from the namespace's helper image, which may be another
womm's: the controller refuses an agent whose HELLO names another version, in one line.
    1  (womm 0.x before versions) HELLO without a version, and with the agent's slot count
    2  HELLO names the version; the controller alone decides a pod's slots
"""

import fcntl
import json
import struct
from collections import namedtuple

PROTOCOL = 2
WINDOW = 1 << 20  # stdin bytes of one attempt in flight, not yet taken by the job (ACK moves it)

HEADER = struct.Struct(">BHII")
MAX_PAYLOAD = 1 << 20
MAX_TEXT = 1000  # characters of a LOST or NOTE line that are shown

(ENV, JOB, IN, KILL, PING,
 HELLO, OUT, ERR, ACK, EXIT, LOST, PONG, NOTE) = range(1, 14)

NAMES = {ENV: "ENV", JOB: "JOB", IN: "IN", KILL: "KILL", PING: "PING", HELLO: "HELLO", OUT: "OUT", ERR: "ERR",
         ACK: "ACK", EXIT: "EXIT", LOST: "LOST", PONG: "PONG", NOTE: "NOTE"}


def grow_pipe(fd):
    """Grow a pipe that carries a job's stdin to the window, where the kernel lets us: its writer then
    hands over a --pipe block in a few writes (the agent: with one ACK each) instead of one per 64 kB.
    Past the kernel's quota (each pipe's size is charged to its uid, on the whole machine) the pipe
    keeps its size, and works; not a pipe: nothing to do."""
    try:
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, WINDOW)
    except OSError:
        pass


class ProtocolError(Exception):
    """What came is not the pod protocol (or not its version)."""


def encode(kind, slot=0, job=0, payload=b""):
    return header(kind, slot, job, len(payload)) + payload


def header(kind, slot, job, length):
    """A frame's header alone: a large payload goes after it as it is, not copied behind it."""
    return HEADER.pack(kind, slot, job, length)


class Decoder:
    """Frames from a byte stream that arrives in pieces of any size."""

    def __init__(self):
        self.buf = bytearray()

    def feed(self, data):
        """[(kind, slot, job, payload)] of every frame completed by data."""
        self.buf += data
        out = []
        pos = 0
        with memoryview(self.buf) as view:  # each payload copied once, out of the view
            while len(self.buf) - pos >= HEADER.size:
                kind, slot, job, length = HEADER.unpack_from(self.buf, pos)
                if kind not in NAMES or length > MAX_PAYLOAD:
                    raise ProtocolError(f"not a womm frame (kind {kind}, length {length})")
                end = pos + HEADER.size + length
                if len(self.buf) < end:
                    break
                out.append((kind, slot, job, bytes(view[pos + HEADER.size:end])))
                pos = end
        del self.buf[:pos]
        return out


# ---------------------------------------------------------------- payloads, each as a pair

# Named tuples, not dataclasses: the agent imports this module, and dataclasses alone would add a
# third to its start (once per pod, on the pod's small CPU limit).
# protocol: int; shell: the job container's, what runs the jobs; bash: empty where there is none
# (exported functions cannot run); setsid; pid: the agent's.
Hello = namedtuple("Hello", "protocol shell bash setsid pid", defaults=("", "", "", 0))


def hello(shell="", bash="", setsid="", pid=0):
    return json.dumps({"protocol": PROTOCOL, "shell": shell, "bash": bash, "setsid": setsid, "pid": pid}).encode()


def read_hello(payload):
    """The agent's Hello, whatever its version (a version-1 HELLO has none: it reads as 1)."""
    try:
        fields = json.loads(payload)
        return Hello(int(fields.get("protocol", 1)), str(fields.get("shell") or ""), str(fields.get("bash") or ""),
                     str(fields.get("setsid") or ""), int(fields.get("pid") or 0))
    except (ValueError, TypeError, AttributeError):
        raise ProtocolError("a HELLO that is not the pod protocol's") from None


def job(seq, jobslot, command, env=()):
    """JOB: "SEQ\\0JOBSLOT\\0N\\0", N "NAME=VALUE\\0" (what the job needs of job.sh's environment,
    e.g. --cat's PARALLEL_TMP), then the command."""
    return b"%d\0%d\0%d\0" % (seq, jobslot, len(env)) + b"".join(b"%s=%s\0" % pair for pair in env) + command


# jobslot: GNU parallel's job slot ({%}, PARALLEL_JOBSLOT); command: bytes; env: (name, value) pairs, bytes.
JobSpec = namedtuple("JobSpec", "seq jobslot command env")


def read_job(payload):
    try:
        seq, jobslot, count, rest = payload.split(b"\0", 3)
        parts = rest.split(b"\0", int(count))
        env = tuple(tuple(p.split(b"=", 1)) for p in parts[:-1])
        if any(len(pair) != 2 for pair in env):
            raise ValueError
        return JobSpec(int(seq), int(jobslot), parts[-1], env)
    except ValueError:
        raise ProtocolError("a JOB that is not the pod protocol's") from None


def ack(count):
    return count.to_bytes(4, "big")


def read_ack(payload):
    if len(payload) != 4:
        raise ProtocolError("an ACK that is not the pod protocol's")
    return int.from_bytes(payload, "big")


def exit_status(status):
    return b"%d" % status


def read_exit(payload):
    """A job's exit status; what is not one (0 to 255) counts as 255, a job that could not run."""
    try:
        status = int(payload)
    except ValueError:
        return 255
    return status if 0 <= status <= 255 else 255


def env(sh, bash):
    """ENV: the sh script every job sources, and the bash functions (bytes, any)."""
    return json.dumps({"sh": sh.decode("latin-1"), "bash": bash.decode("latin-1")}).encode()


def read_env(payload):
    """(sh, bash) scripts of an ENV frame."""
    try:
        scripts = json.loads(payload)
        return scripts.get("sh", "").encode("latin-1"), scripts.get("bash", "").encode("latin-1")
    except (ValueError, AttributeError, UnicodeEncodeError):
        raise ProtocolError("an ENV that is not the pod protocol's") from None


def text(message):
    return message.encode()[:MAX_TEXT * 4]


def read_text(payload):
    """A LOST or NOTE line as the user may see it: bounded, and nothing a terminal would obey."""
    from womm.report import printable

    return printable(payload.decode(errors="replace")[:MAX_TEXT])
