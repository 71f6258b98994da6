"""Deleting a task's objects: every command waits for it, so what can go at once goes at once."""

import threading

import pytest

from womm import taskobjects


class FakeCluster:
    """Records the order of DELETEs; the kinds of one step must all be in flight together."""

    def __init__(self, together=(), fail=()):
        self.log, self.lock = [], threading.Lock()
        self.barrier = threading.Barrier(len(together), timeout=5) if together else None
        self.together, self.fail = set(together), set(fail)

    def path(self, kind, namespace=None):
        return kind

    def request(self, method, path, query, timeout=None):
        with self.lock:
            self.log.append(("start", path))
        if path in self.together:
            self.barrier.wait()  # broken (an error) unless all of them are waiting at once
        with self.lock:
            self.log.append(("end", path))
        if path in self.fail:
            raise OSError(f"cannot delete {path}")


def test_replicasets_first_then_pods_secrets_and_policies_at_once_then_the_lease():
    middle = ("pods", "secrets", "networkpolicies")
    cluster = FakeCluster(together=middle)
    taskobjects.delete(cluster, "abcdefgh")
    log = cluster.log
    assert log[:2] == [("start", "replicasets"), ("end", "replicasets")]
    assert {p for _, p in log[2:8]} == set(middle)
    assert log[-2:] == [("start", "leases"), ("end", "leases")]


def test_a_leader_deletes_only_its_workers():
    cluster = FakeCluster()
    taskobjects.delete(cluster, "abcdefgh", role="worker")
    assert [p for what, p in cluster.log if what == "start"] == ["replicasets", "pods"]


def test_a_failure_is_raised_and_the_lease_stays():
    cluster = FakeCluster(fail=("secrets",))
    with pytest.raises(OSError, match="secrets"):
        taskobjects.delete(cluster, "abcdefgh")
    started = [p for what, p in cluster.log if what == "start"]
    assert "leases" not in started and {"pods", "networkpolicies"} <= set(started)
