"""The lazy share's per-pod part, on a fake cluster; what it reads of its cache."""

import threading
import tracemalloc

import pytest

from womm.errors import WommError
from womm.shares import lazy


class Stream:
    def __init__(self, answer):
        self.answer = answer

    def collect(self, stdin):
        assert stdin.endswith(b"\n")  # the token, one line
        return self.answer


class Cluster:
    def __init__(self, answers):
        self.answers, self.execs = list(answers), []

    def exec_stream(self, pod, argv, container=None):
        self.execs.append((pod, argv[0], container))
        return Stream(self.answers.pop(0))


def share(answers, monkeypatch):
    monkeypatch.setattr(lazy.time, "sleep", lambda s: None)
    s = lazy.LazyShare("/home/u/proj", "sid", Cluster(answers), log=lambda m: None)
    s.cache_ip = "10.0.0.9"
    s.ready.set()
    return s


def test_a_mount_that_fails_for_a_moment_is_tried_again(monkeypatch):
    s = share([(1, b"", b"read: Connection reset by peer\n"), (0, b"", b"mounted\n")], monkeypatch)
    s.attach_pod("w-1", {})
    assert [e[1] for e in s.cluster.execs] == ["womm-lazy-mount", "womm-lazy-mount"]


def test_a_mount_that_keeps_failing_fails_the_pod_naming_it(monkeypatch):
    s = share([(1, b"", b"read: Connection reset by peer\n")] * lazy.MOUNT_ATTEMPTS, monkeypatch)
    with pytest.raises(WommError, match=r"did not mount in pod w-1 \(3 tries\): read: Connection reset"):
        s.attach_pod("w-1", {})


class CacheStream:
    """The cache's exec stream as lazy._from_cache reads it: (channel, bytes) items, then None."""

    def __init__(self, items):
        self.items = iter(items)

    def recv(self):
        return next(self.items, None)


class Stdin:
    def write(self, data):
        pass

    def flush(self):
        pass


def test_the_caches_stderr_keeps_bounded_memory_and_shows_control_characters():
    """16 MiB said without a newline (a hostile cache), then a line that would retitle and clear the terminal."""
    chunk = b"x" * 65536

    def said():
        for _ in range(256):
            yield 2, chunk
        yield 2, b"\n\x1b]0;owned\x07\x1b[2Jcleared\nmounted\n"

    logs = []
    s = lazy.LazyShare("/home/u/proj", "sid", Cluster([]), log=logs.append)
    s.stream, s.server = CacheStream(said()), type("Server", (), {"stdin": Stdin()})()
    mounted = threading.Event()
    tracemalloc.start()
    try:
        s._from_cache(mounted)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert mounted.is_set() and s.failed is None
    assert peak < 1 << 20, f"{peak} bytes held"
    assert logs[0] == "lazy share: " + "x" * lazy.MAX_LINE + " [...]"
    assert logs[1] == "lazy share: \\x1b]0;owned\\x07\\x1b[2Jcleared"


def test_lines_are_split_anywhere_and_bounded():
    lines = lazy.Lines(most=5)
    assert lines.feed(b"ab") == []
    assert lines.feed(b"c\nde") == [b"abc"]
    assert lines.feed(b"fghij\n\nk") == [b"defgh [...]", b""]
    assert lines.rest() == b"k"
