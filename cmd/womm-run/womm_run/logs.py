"""`womm logs ID`: the output of an --async task so far, then followed to its end.

A followed log says nothing while the task prints nothing, and nothing tells a silent connection
from one a load balancer forgot: after FOLLOW_SILENCE seconds of silence the log is asked for
again, from where it was. The log is read with its timestamps (one per line, the kubelet's), so the
new reading starts at the last line's second (the API keeps no finer one) and Printed skips what
was printed already: nothing twice, nothing lost.
"""

import re
import sys
import time
from datetime import datetime

from womm import kube, records, taskobjects
from womm.errors import WommError
from womm.kube import Cluster
from womm.report import say

CANNOT_START = ("ErrImagePull", "ImagePullBackOff", "InvalidImageName")
FOLLOW_SILENCE = 30  # seconds: below the 60 s after which the most impatient load balancers forget a connection
PATIENCE = 60  # seconds of failed readings (the API away) before `womm logs` gives up
STAMP_MAX = 64  # bytes a line's timestamp may take


def leader_pod(cluster, task_id):
    query = {"labelSelector": taskobjects.selector(task=task_id, role="leader")}
    pods = cluster.request("GET", cluster.path("pods"), query)["items"]
    return pods[0] if pods else None


def main(args):
    record = records.load_task(args.id) or {}
    cluster = Cluster.of(record, args)
    pod = leader_pod(cluster, args.id)
    if pod is None:
        raise WommError(f"task {args.id} has no leader in namespace {cluster.namespace}: "
                        "only --async tasks have logs (see `womm status`)")
    path = cluster.path("pods", pod["metadata"]["name"])
    while pod["status"].get("phase") == "Pending":  # not started yet: say why if it cannot
        for s in pod["status"].get("containerStatuses") or []:
            waiting = (s.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") in CANNOT_START:
                raise WommError(f"the leader of task {args.id} cannot start: {waiting['reason']}: {waiting.get('message')}")
        time.sleep(0.5)
        pod = cluster.request("GET", path)
    out = sys.stdout.buffer

    def write(data):
        out.write(data)
        out.flush()

    printed = Printed(write)
    if args.no_follow:
        read_log(cluster, path, printed, follow=False)
        return 0
    while True:
        read_log(cluster, path, printed, follow=True)
        code = _exit_code(cluster.request("GET", path))
        if code is not None:
            break
        # The log ended before the pod's status says the leader did (it lags a moment), or something
        # on the way ended the connection: followed again, from where it was.
        time.sleep(0.3)
    say(f"task {args.id} is COMPLETE (GNU parallel exited with {code}): `womm finish {args.id}` removes it")
    return code


def read_log(cluster, path, printed, follow):
    """The pod's log to its end (the container's, when following), each line once through printed; a
    reading that goes silent or breaks is begun again from where it was."""
    failing_since = None
    while True:
        query = {"timestamps": "true", "follow": "true" if follow else None, "sinceTime": printed.since()}
        printed.begin()
        try:
            for chunk in cluster.stream(path + "/log", query, silent_after=FOLLOW_SILENCE if follow else None):
                failing_since = None
                printed.feed(chunk)
            return
        except kube.Silent:
            continue  # nothing came, or the connection was forgotten on the way: ask again
        except kube.Unreachable:
            now = time.monotonic()
            failing_since = failing_since or now
            if now - failing_since > PATIENCE:
                raise
            time.sleep(2)


_STAMP = re.compile(rb"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)")


def instant(stamp):
    """(seconds since the epoch, nanoseconds) of an RFC 3339 timestamp (bytes); None if it is none."""
    m = _STAMP.fullmatch(stamp)
    if not m:
        return None
    zone = "+00:00" if m[3] == b"Z" else m[3].decode()
    seconds = datetime.fromisoformat(m[1].decode() + zone).timestamp()
    return int(seconds), int((m[2] or b"0").ljust(9, b"0"))


class Printed:
    """What of a log read with timestamps (each line "TIMESTAMP TEXT") was written, without the
    timestamps, and the skipping that makes a reading from an earlier second write nothing twice.

    Remembered: the timestamp of the last line begun, its place among the lines of that same
    timestamp, and how many of its bytes were written. A reading skips the lines before it, and the
    bytes of it written already. A line without a timestamp (a part of a long line the kubelet did
    not stamp) goes with the line before it.
    """

    def __init__(self, write):
        self.write = write
        self.last = None  # the instant of the last line begun
        self.nth = 0  # its place among the lines of that instant (1: the first)
        self.done = 0  # bytes of it (and of its unstamped parts) written
        self.begin()

    def since(self):
        """The sinceTime a new reading asks for: the last line's second; None for the whole log."""
        if self.last is None:
            return None
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.last[0]))

    def begin(self):
        """A new reading of the log starts (from since())."""
        self.head = b""  # the start of a line, while its timestamp is incomplete
        self.at_start = True
        self.seen = 0  # lines of the instant self.last met in this reading
        # Bytes of what comes to leave out (float("inf"): up to the next stamped line). A reading from
        # a second may begin with the unstamped end of a line begun before it: printed already.
        self.skip = 0 if self.last is None else float("inf")

    def feed(self, data):
        while data:
            if self.at_start:
                data = self._line_start(data)
                if data is None:
                    return
            end = data.find(b"\n") + 1 or len(data)
            piece, data = data[:end], data[end:]
            left_out = min(self.skip, len(piece))
            self.skip -= left_out
            if left_out < len(piece):
                self.write(piece[left_out:])
                self.done += len(piece) - left_out
            if piece.endswith(b"\n"):
                self.at_start = True

    def _line_start(self, data):
        """Reads a line's timestamp and decides what of the line to write; the line's text, or None
        when its timestamp is not complete yet."""
        data = self.head + data
        space = data.find(b" ")
        if space < 0 and len(data) < STAMP_MAX:
            self.head = data
            return None
        self.head, self.at_start = b"", False
        when = instant(data[:space]) if space >= 0 else None
        if when is None:
            return data  # unstamped: it goes with the line before
        text = data[space + 1:]
        if self.last is not None and when < self.last:
            self.skip = float("inf")  # written in an earlier reading
        elif when == self.last:
            self.seen += 1
            if self.seen < self.nth:
                self.skip = float("inf")
            elif self.seen == self.nth:
                self.skip = self.done  # the line where the last reading stopped
            else:
                self.nth, self.done, self.skip = self.seen, 0, 0
        else:
            self.last, self.nth, self.seen, self.done, self.skip = when, 1, 1, 0, 0
        return text


def _exit_code(pod):
    for s in pod["status"].get("containerStatuses") or []:
        terminated = (s.get("state") or {}).get("terminated")
        if terminated:
            return terminated.get("exitCode")
    return None
