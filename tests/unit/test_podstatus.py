"""What a pod's status says, as womm reads it: an init container that failed, named by its own words."""

from womm import podstatus

SAID = ("womm-share-pull: cannot connect to the share server at 10.96.0.12:873 for 10 s (failed to connect to "
        "10.96.0.12 (10.96.0.12): Connection refused (111)): a NetworkPolicy may deny this pod's egress to it, "
        "or its ingress from this pod; run `womm doctor`")


def pod(init_status, phase="Pending"):
    return {"metadata": {"name": "w-1"},
            "status": {"phase": phase, "initContainerStatuses": [{"name": "womm-share-pull", **init_status}],
                       "containerStatuses": [{"name": "job", "state": {"waiting": {"reason": "PodInitializing"}}}]}}


def test_an_init_container_that_ended_says_why_and_waiting_will_not_help():
    failed = pod({"state": {"terminated": {"exitCode": 1, "reason": "Error", "message": SAID}}})
    assert podstatus.waiting(failed) == (SAID, True)
    assert podstatus.trouble(failed) == SAID


def test_its_last_end_counts_while_the_kubelet_backs_off():
    backing_off = pod({"state": {"waiting": {"reason": "CrashLoopBackOff",
                                             "message": "back-off 10s restarting failed container=womm-share-pull"}},
                       "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "message": SAID + "\n"}}})
    assert podstatus.waiting(backing_off) == (SAID, True)


def test_a_failure_without_a_message_is_named_by_reason_and_status():
    killed = pod({"state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}})
    assert podstatus.waiting(killed) == ("init container womm-share-pull failed: OOMKilled (exit 137)", True)
    other = pod({"state": {"terminated": {"exitCode": 2, "reason": "Error", "message": "no such file"}}})
    assert podstatus.trouble(other) == "init container womm-share-pull failed: no such file"


def test_an_init_container_that_waits_runs_or_succeeded_is_no_failure():
    for state in ({"running": {}}, {"waiting": {"reason": "PodInitializing"}},
                  {"terminated": {"exitCode": 0, "reason": "Completed"}}):
        assert podstatus.init_failure(pod({"state": state})) is None
    assert podstatus.waiting(pod({"state": {"running": {}}})) == (None, False)


def test_a_pod_no_node_of_its_platform_takes_names_the_platform():
    said = "0/2 nodes are available: 2 node(s) didn't match Pod's node affinity/selector."
    unplaced = {"metadata": {"name": "w-1"},
                "spec": {"nodeSelector": {"kubernetes.io/os": "linux", "kubernetes.io/arch": "arm64"}},
                "status": {"phase": "Pending", "conditions": [
                    {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": said}]}}
    hint = " (womm asks for linux/arm64 nodes: the platform the image was built for)"
    assert podstatus.trouble(unplaced) == f"not scheduled: {said}{hint}"
    assert podstatus.waiting(unplaced) == (f"not scheduled: {said}{hint}", False)  # a node may yet come
    # Another reason, or no platform asked for: the scheduler's words alone.
    unplaced["status"]["conditions"][0]["message"] = "0/2 nodes are available: 2 Insufficient cpu."
    assert podstatus.trouble(unplaced) == "not scheduled: 0/2 nodes are available: 2 Insufficient cpu."
    unplaced["status"]["conditions"][0]["message"] = said
    del unplaced["spec"]["nodeSelector"]
    assert podstatus.trouble(unplaced) == f"not scheduled: {said}"
