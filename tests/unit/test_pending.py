"""The pending watchdog's decisions (womm_run.pods.Pending), second by second, without a cluster."""

from womm_run.pods import SAY_AFTER, Pending

T0 = 1000.0


def test_no_pod_by_the_timeout_ends_the_run_with_the_reasons():
    p = Pending(pods=2, timeout=60, start=T0)
    waiting = {"a": ("not scheduled: Insufficient cpu", T0), "b": ("not scheduled: Insufficient cpu", T0)}
    fatal, messages, line = p.tick(T0 + 1, 0, False, waiting)
    assert (fatal, messages, line) == (None, [], "0/2 pods ready (2 waiting)")
    fatal, messages, _ = p.tick(T0 + SAY_AFTER, 0, False, waiting)
    assert fatal is None and messages == ["2 of 2 pods wait: not scheduled: Insufficient cpu"]
    fatal, messages, _ = p.tick(T0 + SAY_AFTER + 1, 0, False, waiting)
    assert messages == []  # each reason once
    fatal, _, line = p.tick(T0 + 60, 0, False, waiting)
    assert fatal == "no pod started within 60 s: not scheduled: Insufficient cpu" and line is None


def test_a_moment_of_churn_is_not_said():
    p = Pending(pods=1, timeout=60, start=T0)
    assert p.tick(T0 + 5, 0, False, {"a": ("ContainerCreating", T0 + 1)})[1] == []


def test_without_reasons_the_timeout_says_they_are_still_being_created():
    p = Pending(pods=3, timeout=30, start=T0)
    assert p.tick(T0 + 30, 0, False, {})[0] == "no pod started within 30 s: they are still being created"


def test_some_pods_working_by_the_timeout_go_on_with_those_saying_so_once():
    p = Pending(pods=3, timeout=30, start=T0)
    waiting = {"c": ("Insufficient memory", T0 + 25)}
    fatal, messages, line = p.tick(T0 + 30, 2, True, waiting, done=7)
    assert fatal is None and line is None
    assert messages == ["1 of 3 pods did not start within 30 s (Insufficient memory); going on with the others"]
    assert p.tick(T0 + 31, 2, True, waiting) == (None, [], None)  # the line stays away, nothing said again


def test_the_progress_line_counts_ready_pods_and_jobs_and_ends_when_all_are_ready():
    p = Pending(pods=3, timeout=300, start=T0)
    assert p.tick(T0 + 2, 1, True, {}, done=12)[2] == "1/3 pods ready, 12 jobs done"
    assert p.tick(T0 + 3, 3, True, {}, done=20)[2] is None


def test_a_run_left_without_pods_ends_after_the_timeout_and_not_before():
    p = Pending(pods=2, timeout=15, start=T0)
    assert p.tick(T0 + 100, 2, True, {})[0] is None
    assert p.tick(T0 + 101, 0, True, {})[0] is None  # they went: the count starts
    assert p.tick(T0 + 110, 0, True, {})[0] is None
    fatal = p.tick(T0 + 116, 0, True, {})[0]
    assert fatal == "no pod has been ready for 15 s: its pods were deleted and none replaced them"


def test_a_pod_back_in_time_resets_the_count():
    p = Pending(pods=1, timeout=15, start=T0)
    p.tick(T0 + 100, 0, True, {})
    p.tick(T0 + 110, 1, True, {})  # a replacement came
    assert p.tick(T0 + 116, 0, True, {"a": ("ErrImagePull", T0 + 112)})[0] is None
    assert p.tick(T0 + 131, 0, True, {"a": ("ErrImagePull", T0 + 112)})[0] == \
        "no pod has been ready for 15 s: ErrImagePull"
