"""The pod watch (womm_run.pods.TaskPods) against a local API server that goes silent
(tests/unit/silentapi.py): a watch that ends well goes on from its last bookmark; one dropped on the
way is given up and the pods are listed again, the new pod handed on and the one that went in the
meantime forgotten; a version the server forgot is listed again at once."""

import time
from types import SimpleNamespace

import pytest
from silentapi import bookmark, cluster_for, pod, wait_until

from womm import kube
from womm_run import pods as pods_module
from womm_run.pods import TaskPods


def task_pods(cluster):
    handed, fatal, said = [], [], []
    task = SimpleNamespace(id="t1", pods=1)
    pods = TaskPods(cluster, task, share=None, log=said.append, on_fatal=fatal.append)
    pods.start(handed.append)
    return pods, handed, fatal, said


@pytest.mark.slow
def test_after_a_silent_drop_the_pod_watch_lists_again_hands_on_the_new_pod_and_forgets_the_old(
        apis, tmp_path, monkeypatch):
    monkeypatch.setattr(kube, "WATCH_SECONDS", 1)
    monkeypatch.setattr(kube, "WATCH_GRACE", 1)
    api = apis(watches=[
        [("event", "ADDED", pod("a", version="5")), bookmark("10", ends_list=True), ("silent",)],  # dropped
        # Meanwhile pod a was deleted and b replaced it: the new list says so.
        [("event", "ADDED", pod("b", version="15")), bookmark("20", ends_list=True), ("end",)],
        [bookmark("30"), ("end",)],
        [("silent",)],
    ])
    pods, handed, fatal, said = task_pods(cluster_for(api.url, tmp_path, monkeypatch))
    try:
        wait_until("pod b handed on", 8, lambda: handed == ["a", "b"])
        # b is handed on at its event; a is forgotten at the end of the list, a moment later.
        wait_until("pod a forgotten", 5, lambda: pods.ready == {"b"} and pods.latest.get("a", 0) is None)
        assert not pods.running("a")
        assert "pod a was deleted" in pods.why("a")
        wait_until("the fourth watch", 5, lambda: len(api.watch_queries()) >= 4)
    finally:
        pods.stopping.set()
    versions = [q.get("resourceVersion") for q in api.watch_queries()[:4]]
    # Listed first, listed again after the silence, then on from each bookmark.
    assert versions == [None, None, "20", "30"]
    assert handed == ["a", "b"]  # a watch that goes on hands nothing on again
    assert not fatal
    assert [m for m in said if "said nothing for 2 s" in m and m.startswith("watching the pods:")], said


def test_a_watch_from_a_version_the_server_forgot_lists_again_at_once(apis, tmp_path, monkeypatch):
    gone = ("event", "ERROR", {"kind": "Status", "code": 410, "reason": "Expired", "message": "too old"})
    api = apis(watches=[
        [("event", "ADDED", pod("a", version="5")), bookmark("10", ends_list=True), ("end",)],
        [gone, ("end",)],
        [("event", "ADDED", pod("a", version="5")), bookmark("40", ends_list=True), ("silent",)],
    ])
    pods, handed, fatal, said = task_pods(cluster_for(api.url, tmp_path, monkeypatch))
    try:
        wait_until("the third watch", 5, lambda: len(api.watch_queries()) >= 3)
    finally:
        pods.stopping.set()
    assert [q.get("resourceVersion") for q in api.watch_queries()] == [None, "10", None]
    assert not said and not fatal and pods.ready == {"a"}


def pending_on_node(name, version="1", restarts=0, reason="ContainerCreating", containers=("womm", "job"), **spec):
    """A pod the kubelet has (it said its containers are being created), not ready yet."""
    waiting = {"waiting": {"reason": reason}}
    statuses = [{"name": n, "ready": False, "restartCount": restarts, "state": waiting} for n in containers]
    return {"metadata": {"name": name, "resourceVersion": version},
            "spec": {"nodeName": "node1", "containers": [{"name": n} for n in containers], **spec},
            "status": {"phase": "Pending", "containerStatuses": statuses}}


def early_pods(api, tmp_path, monkeypatch, answers):
    """TaskPods with an on_early that answers from `answers` (then True), and the pods it was asked."""
    tried = []

    def on_early(name):
        tried.append(name)
        return answers.pop(0) if answers else True

    handed, fatal = [], []
    pods = TaskPods(cluster_for(api.url, tmp_path, monkeypatch), SimpleNamespace(id="t1", pods=2),
                    share=None, log=fatal.append, on_fatal=fatal.append)
    pods.start(handed.append, on_early)
    return pods, tried, handed, fatal


def test_a_pod_the_kubelet_has_is_tried_early_until_its_agent_takes(apis, tmp_path, monkeypatch):
    monkeypatch.setattr(pods_module, "EARLY_EVERY", 0.05)
    api = apis(watches=[[("event", "ADDED", pending_on_node("a")),
                         ("event", "ADDED", pod("b", ready=False)),  # no node's word yet: not tried
                         ("event", "ADDED", pending_on_node("c", restarts=1)),  # restarted: the ready path's
                         ("event", "ADDED", pending_on_node("d", reason="PodInitializing")),  # init containers run
                         ("event", "ADDED", pending_on_node("e", containers=("womm", "job", "istio-proxy"))),
                         ("event", "ADDED", pending_on_node("f", readinessGates=[{"conditionType": "x"}])),
                         bookmark("10", ends_list=True), ("silent",)]])
    pods, tried, handed, fatal = early_pods(api, tmp_path, monkeypatch, [False, False])
    try:
        wait_until("pod a's agent taken", 5, pods.working.is_set)
        time.sleep(0.3)
    finally:
        pods.stopping.set()
    assert tried == ["a", "a", "a"]
    assert handed == [] and pods.ready == set() and not fatal


def test_early_tries_end_when_the_pod_is_said_ready_and_it_is_handed_on_as_before(apis, tmp_path, monkeypatch):
    monkeypatch.setattr(pods_module, "EARLY_EVERY", 1.0)  # the ready event comes well before the first try
    api = apis(watches=[[("event", "ADDED", pending_on_node("a")), ("event", "MODIFIED", pod("a", version="2")),
                         bookmark("10", ends_list=True), ("silent",)]])
    pods, tried, handed, fatal = early_pods(api, tmp_path, monkeypatch, [False] * 100)
    try:
        wait_until("pod a handed on", 5, lambda: handed == ["a"])
        time.sleep(1.2)
    finally:
        pods.stopping.set()
    assert tried == [] and not fatal


def test_early_tries_stop_after_their_time_and_the_tasks_tries_are_spaced(apis, tmp_path, monkeypatch):
    monkeypatch.setattr(pods_module, "EARLY_EVERY", 0.0)
    monkeypatch.setattr(pods_module, "EARLY_SPACING", 0.1)
    monkeypatch.setattr(pods_module, "EARLY_FOR", 0.75)
    api = apis(watches=[[("event", "ADDED", pending_on_node("a")), ("event", "ADDED", pending_on_node("b")),
                         bookmark("10", ends_list=True), ("silent",)]])
    pods, tried, handed, fatal = early_pods(api, tmp_path, monkeypatch, [False] * 100)
    try:
        time.sleep(1.5)
    finally:
        pods.stopping.set()
    # Two pods' tries, one per 0.1 s between them, for 0.75 s: about 8, whatever each pod's pace.
    assert 3 <= len(tried) <= 9 and set(tried) == {"a", "b"}, tried
    assert not pods.working.is_set() and not handed and not fatal


def test_an_early_try_refused_otherwise_than_not_yet_ends_the_tasks_early_tries(apis, tmp_path, monkeypatch):
    monkeypatch.setattr(pods_module, "EARLY_EVERY", 0.05)
    api = apis(watches=[[("event", "ADDED", pending_on_node("a")), ("event", "ADDED", pending_on_node("b")),
                         bookmark("10", ends_list=True), ("silent",)]])
    pods, tried, handed, fatal = early_pods(api, tmp_path, monkeypatch, [None] + [False] * 100)
    try:
        time.sleep(1)
    finally:
        pods.stopping.set()
    assert len(tried) <= 2  # the first refusal (and a try of the other pod already on its way), no more
    assert not pods.working.is_set() and not fatal


EVENTS = "/api/v1/namespaces/team/events"


def started(pod_name):
    """The kubelet's Event: womm's container of the pod started."""
    return {"metadata": {"name": f"{pod_name}.1", "resourceVersion": "12"}, "reason": "Started",
            "involvedObject": {"kind": "Pod", "name": pod_name, "fieldPath": "spec.containers{womm}"}}


def test_where_the_kubelets_started_events_come_a_pod_is_tried_at_its_word_and_not_before(
        apis, tmp_path, monkeypatch):
    monkeypatch.setattr(pods_module, "EARLY_EVERY", 5.0)  # a try at the old pace would come too late
    a, b = "womm-task-t1-a", "womm-task-t1-b"
    api = apis(watches=[[("event", "ADDED", pending_on_node(a)), ("event", "ADDED", pending_on_node(b)),
                         bookmark("10", ends_list=True), ("silent",)]],
               objects={EVENTS: {"metadata": {"resourceVersion": "11"}, "items": [started("womm-task-t0-x")]}},
               # Another task's pod's word, one about no pod of the task (made by anyone), then a's: b's
               # womm container never started.
               event_watches=[[("sleep", 0.5), ("event", "ADDED", started("womm-task-t2-a")),
                               ("event", "ADDED", started("womm-task-t1-forged")),
                               ("event", "ADDED", started(a)), ("silent",)]])
    t0 = time.monotonic()
    pods, tried, handed, fatal = early_pods(api, tmp_path, monkeypatch, [])
    try:
        wait_until("pod a's agent taken", 3, pods.working.is_set)
        took = time.monotonic() - t0
        time.sleep(0.5)
    finally:
        pods.stopping.set()
    assert tried == [a] and 0.5 <= took < 2, (tried, took)  # at its word, not before, and b not at all
    assert pods._started == {a}  # names of no pod of the task are not kept
    watched = [q for m, p, q in api.seen if p == EVENTS]
    assert all(q["fieldSelector"] == pods_module.STARTED["fieldSelector"] for q in watched)
    # Listed from the API server's cache, then watched from there.
    assert [q.get("resourceVersion") for q in watched] == ["0", "11"]
    assert not handed and not fatal


def test_while_the_started_events_watch_fails_the_early_tries_go_on_at_their_pace_and_it_is_made_again(
        apis, tmp_path, monkeypatch):
    monkeypatch.setattr(pods_module, "EARLY_EVERY", 0.05)
    a = "womm-task-t1-a"
    failed = ("event", "ERROR", {"kind": "Status", "code": 500, "reason": "InternalError", "message": "oops"})
    api = apis(watches=[[("event", "ADDED", pending_on_node(a)), bookmark("10", ends_list=True), ("silent",)]],
               objects={EVENTS: {"metadata": {"resourceVersion": "11"}, "items": []}},
               event_watches=[[("sleep", 0.3), failed], [("silent",)]])
    pods, tried, handed, fatal = early_pods(api, tmp_path, monkeypatch, [False, False])
    try:
        wait_until("pod a's agent taken", 3, pods.working.is_set)
        # After a pause, listed and watched again.
        wait_until("the events listed again", 3, lambda: len([p for m, p, q in api.seen if p == EVENTS]) >= 4)
        assert pods._told
    finally:
        pods.stopping.set()
    assert tried == [a, a, a] and not handed and not fatal


def test_where_events_may_not_be_listed_the_early_tries_keep_their_pace_and_never_ask_again(
        apis, tmp_path, monkeypatch):
    monkeypatch.setattr(pods_module, "EARLY_EVERY", 0.05)
    a = "womm-task-t1-a"
    api = apis(watches=[[("event", "ADDED", pending_on_node(a)), bookmark("10", ends_list=True), ("silent",)]])
    pods, tried, handed, fatal = early_pods(api, tmp_path, monkeypatch, [False, False])  # events: 404
    try:
        wait_until("pod a's agent taken", 3, pods.working.is_set)
        time.sleep(1.5)
    finally:
        pods.stopping.set()
    assert tried == [a, a, a] and not handed and not fatal
    assert len([p for m, p, q in api.seen if p == EVENTS]) == 1 and pods._told is False


def test_a_pod_whose_word_comes_late_is_still_tried_at_it(apis, tmp_path, monkeypatch):
    # Its womm image took long to pull, say: waiting for the word costs nothing, so no time limit on it.
    monkeypatch.setattr(pods_module, "EARLY_EVERY", 5.0)
    monkeypatch.setattr(pods_module, "EARLY_FOR", 0.3)
    a = "womm-task-t1-a"
    api = apis(watches=[[("event", "ADDED", pending_on_node(a)), bookmark("10", ends_list=True), ("silent",)]],
               objects={EVENTS: {"metadata": {"resourceVersion": "11"}, "items": []}},
               event_watches=[[("sleep", 0.8), ("event", "ADDED", started(a)), ("silent",)]])
    pods, tried, handed, fatal = early_pods(api, tmp_path, monkeypatch, [])
    try:
        wait_until("pod a's agent taken", 3, pods.working.is_set)
    finally:
        pods.stopping.set()
    assert tried == [a] and not handed and not fatal


def test_a_version_the_server_keeps_forgetting_is_listed_again_after_a_pause(apis, tmp_path, monkeypatch):
    gone = ("event", "ERROR", {"kind": "Status", "code": 410, "reason": "Expired", "message": "too old"})
    api = apis(watches=[[bookmark("10", ends_list=True), ("silent",)]],
               objects={EVENTS: {"metadata": {"resourceVersion": "11"}, "items": []}},
               event_watches=[[gone]])
    pods, tried, handed, fatal = early_pods(api, tmp_path, monkeypatch, [])
    try:
        time.sleep(2)
    finally:
        pods.stopping.set()
    # Listed again at once after the first 410, then after pauses of 1 s, 2 s...: not in a loop.
    assert 4 <= len([p for m, p, q in api.seen if p == EVENTS]) <= 8
    assert not tried and not fatal
