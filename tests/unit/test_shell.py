"""womm shell's wait for its pod (womm_run.shell.FirstPod)."""

import threading
from types import SimpleNamespace

import pytest

from womm.errors import WommError
from womm_run.shell import FirstPod


def first_pod():
    attached = []
    share = SimpleNamespace(attach_pod=lambda pod, task: attached.append(pod))
    return FirstPod(share, task=None), attached


def test_the_first_ready_pod_is_the_shells_and_a_later_one_changes_nothing():
    first, attached = first_pod()
    threading.Timer(0.05, first.on_ready, ("pod-a",)).start()
    assert first.wait() == "pod-a"
    first.on_ready("pod-b")
    assert first.wait() == "pod-a" and attached == ["pod-a"]


def test_a_fatal_message_ends_the_wait_in_one_line_and_the_first_one_is_kept():
    first, attached = first_pod()
    first.on_fatal("pod p cannot start: image not found")
    first.on_fatal("a later consequence")
    first.on_ready("pod-a")
    with pytest.raises(WommError) as e:
        first.wait()
    assert str(e.value).startswith("pod p cannot start: image not found")
