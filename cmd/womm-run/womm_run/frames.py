"""The agent protocol: frames between the controller and a pod's agent, over one exec stream.

A frame is an 11-byte header, then its payload:

    kind (1 byte) | slot (2 bytes) | job (4 bytes) | length (4 bytes) | payload

big-endian, binary-safe. `slot` is the job slot in the pod (1..N; 0 for the pod itself),
`job` the controller's number for one attempt of a job, so that a frame of an attempt
that ended can never be taken for the next one's.

controller -> agent
    ENV      the shell script every job sources first (--env variables, functions)
    JOB      run a job: payload "SEQ\\0JOBSLOT\\0N\\0" then N "NAME=VALUE\\0" (variables it needs
             from job.sh, e.g. --cat's PARALLEL_TMP), then COMMAND
    IN       bytes of the job's stdin; an empty payload is its end
    KILL     stop the job: TERM to its process group, KILL after a grace period
    PING     answered with PONG: a keepalive through load balancers, and a liveness check
agent -> controller
    HELLO    JSON: the pod's slots, the job container's shells
    OUT ERR  the job's stdout and stderr, as they come
    ACK      stdin bytes the job has taken (4-byte count): the controller's window moves on
    EXIT     the job ended: its exit status, as ASCII
    LOST     the job vanished with its job container: payload says why; it runs again
    PONG     the answer to PING
    NOTE     a line for the user (womm's own message, not a job's output)
"""

import struct

HEADER = struct.Struct(">BHII")
MAX_PAYLOAD = 1 << 20

(ENV, JOB, IN, KILL, PING,
 HELLO, OUT, ERR, ACK, EXIT, LOST, PONG, NOTE) = range(1, 14)

NAMES = {v: k for k, v in dict(ENV=ENV, JOB=JOB, IN=IN, KILL=KILL, PING=PING, HELLO=HELLO, OUT=OUT, ERR=ERR,
                               ACK=ACK, EXIT=EXIT, LOST=LOST, PONG=PONG, NOTE=NOTE).items()}


class ProtocolError(Exception):
    pass


def encode(kind, slot=0, job=0, payload=b""):
    return HEADER.pack(kind, slot, job, len(payload)) + payload


def encode_job(seq, jobslot, command, env=()):
    return b"%d\0%d\0%d\0" % (seq, jobslot, len(env)) + b"".join(b"%s=%s\0" % pair for pair in env) + command


def decode_job(payload):
    """(seq, jobslot, command, [(name, value)])."""
    seq, jobslot, count, rest = payload.split(b"\0", 3)
    parts = rest.split(b"\0", int(count))
    env = [tuple(p.split(b"=", 1)) for p in parts[:-1]]
    return int(seq), int(jobslot), parts[-1], env


class Decoder:
    """Frames from a byte stream that arrives in pieces of any size."""

    def __init__(self):
        self.buf = bytearray()

    def feed(self, data):
        """[(kind, slot, job, payload)] of every frame completed by data."""
        self.buf += data
        out = []
        pos = 0
        while len(self.buf) - pos >= HEADER.size:
            kind, slot, job, length = HEADER.unpack_from(self.buf, pos)
            if kind not in NAMES or length > MAX_PAYLOAD:
                raise ProtocolError(f"not a womm frame (kind {kind}, length {length})")
            end = pos + HEADER.size + length
            if len(self.buf) < end:
                break
            out.append((kind, slot, job, bytes(self.buf[pos + HEADER.size:end])))
            pos = end
        del self.buf[:pos]
        return out
