"""`womm logs` (womm_run.logs) asked again for a log, from where it was, after a silence or a break:
every line printed once, nothing lost, whatever the points where readings break, lines sharing an
instant, or the long lines the kubelet stamps only once."""

import random
import time

import pytest

from womm import kube
from womm_run import logs


def kubelet_log(entries):
    """(serve(second): the log as the kubelet gives it from that second on, the text printed) for the
    entries of a container's log file: (instant as (seconds, nanoseconds), text, whether it ends its
    line). As the kubelet does, an entry is stamped only when the entry before it in the file, shown or
    not, ended its line: the part of a long line after the first goes unstamped."""
    def serve(since):
        out, new_line = b"", True
        for (seconds, nanos), text, ends in entries:
            if since is None or seconds >= since:
                stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{nanos:09d}Z "
                out += (stamp.encode() if new_line else b"") + text.encode() + (b"\n" if ends else b"")
            new_line = ends
        return out

    return serve, "".join(text + ("\n" if ends else "") for _, text, ends in entries)


def reading_from(serve, since):
    import calendar

    return serve(None if since is None else calendar.timegm(time.strptime(since, "%Y-%m-%dT%H:%M:%SZ")))


LOG = [((1_800_000_000, 0), "first", True), ((1_800_000_000, 5), "same second", True),
       ((1_800_000_001, 7), "a", True), ((1_800_000_001, 7), "a", True),  # the same instant twice, the same text
       ((1_800_000_001, 7), "b", True), ((1_800_000_002, 0), "x" * 300, True), ((1_800_000_002, 1), "", True),
       ((1_800_000_029, 900), "a long line's first part, ", False),  # its next part comes a second later
       ((1_800_000_030, 100), "its second part", True),
       ((1_800_000_030, 123), "after a silence", True), ((1_800_000_030, 124), "ünïcødé", True),
       ((1_800_000_031, 0), "last", True)]


@pytest.mark.parametrize("seed", range(40))
def test_a_log_read_again_from_where_it_was_prints_every_line_once(seed):
    serve, expected = kubelet_log(LOG)
    rng = random.Random(seed)
    written = bytearray()
    printed = logs.Printed(written.extend)
    while True:
        printed.begin()
        data = reading_from(serve, printed.since())
        cut = rng.randrange(len(data) + 1) if rng.random() < 0.7 else len(data)  # a reading broken there
        pos = 0
        while pos < cut:
            step = rng.randint(1, 40)
            printed.feed(data[pos:min(cut, pos + step)])
            pos += step
        if cut == len(data):
            break
    assert written.decode() == expected


def test_womm_logs_asks_again_after_a_silence_from_where_it_was(monkeypatch):
    serve, expected = kubelet_log(LOG)
    queries = []

    class Cluster:
        def stream(self, path, query=None, silent_after=None):
            queries.append((path, dict(query), silent_after))
            data = reading_from(serve, query.get("sinceTime"))
            if len(queries) < 4:  # the first readings go silent after a part of the log
                yield data[:len(data) // 3]
                raise kube.Silent("said nothing")
            yield data

    written = bytearray()
    logs.read_log(Cluster(), "/api/v1/namespaces/team/pods/leader", logs.Printed(written.extend), follow=True)
    assert written.decode() == expected
    assert len(queries) == 4
    assert all(q["timestamps"] == "true" and q["follow"] == "true" and after == logs.FOLLOW_SILENCE < 60
               for _, q, after in queries)
    assert queries[0][1].get("sinceTime") is None and queries[1][1]["sinceTime"].endswith("Z")


def test_a_log_without_timestamps_is_printed_as_it_comes():
    written = bytearray()
    printed = logs.Printed(written.extend)
    printed.feed(b"plain line\nand")
    printed.feed(b" another\n")
    assert written == b"plain line\nand another\n"


def test_lines_come_out_as_they_come_not_when_a_reading_ends():
    written = bytearray()
    printed = logs.Printed(written.extend)
    printed.feed(b"2026-12-03T09:30:28.603801824Z hel")
    assert written == b"hel"
    printed.feed(b"lo\n2026-12-03T09:30:28.7")
    assert written == b"hello\n"
