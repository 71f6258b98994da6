"""The lazy share's per-pod part, on a fake cluster."""

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
