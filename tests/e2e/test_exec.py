"""womm.kube's exec streams against the real API server, kubelet and runtime: SPDY where the API
server takes it (it carries SPDY as bytes, and translates every WebSocket message), WebSocket when
asked for; both carry stdin to its end, the output, and the exit status."""

from __future__ import annotations

import os
import time

import pytest

from womm import kube

TRANSPORTS = {"spdy": kube.SpdyExecStream, "websocket": kube.ExecStream}


@pytest.fixture
def pod(cluster, k8s, namespace, womm_images, monkeypatch):
    import kubernetes.client as k

    monkeypatch.setenv("KUBECONFIG", cluster.kubeconfig)
    container = k.V1Container(name="c", image=womm_images, command=["sleep", "600"])
    k8s.core.create_namespaced_pod(namespace, k.V1Pod(metadata=k.V1ObjectMeta(name="p"),
                                                      spec=k.V1PodSpec(containers=[container])))
    deadline = time.monotonic() + 120
    while k8s.core.read_namespaced_pod("p", namespace).status.phase != "Running":
        assert time.monotonic() < deadline, "pod p not Running after 120 s"
        time.sleep(0.25)
    return namespace


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_an_exec_carries_stdin_to_its_end_output_and_exit_status(pod, transport, monkeypatch):
    monkeypatch.setenv("WOMM_EXEC_TRANSPORT", transport)
    cluster = kube.Cluster(namespace=pod)
    stream = cluster.exec_stream("p", ["sh", "-c", "wc -c; echo to-stderr >&2; exit 3"])
    assert type(stream) is TRANSPORTS[transport]
    data = os.urandom(3 << 20)  # binary, and many frames
    stream.send(data[:1 << 20])
    stream.send(data[1 << 20:])
    stream.close_stdin()
    status, out, err = stream.collect(timeout=60)
    assert (status, out, err) == (3, b"%d\n" % len(data), b"to-stderr\n")


def test_a_spdy_exec_is_kept_alive_by_pings_the_pod_side_answers(pod):
    cluster = kube.Cluster(namespace=pod)
    stream = cluster.exec_stream("p", ["sleep", "30"])
    assert type(stream) is kube.SpdyExecStream
    stream.keepalive(every=1)
    time.sleep(3)
    assert time.monotonic() - stream.heard < 2  # the pongs came back through the API server and the kubelet
    stream.close()


def test_the_kubelets_refusal_of_a_container_not_started_leaves_spdy_on(pod, k8s, womm_images):
    # A pod's early try: its container does not run yet. Over SPDY the API server relays the kubelet's
    # bare text; womm once took that for a proxy's refusal and ran every later stream over WebSocket.
    import kubernetes.client as k

    wait = k.V1Container(name="wait", image=womm_images, command=["sleep", "600"])
    main = k.V1Container(name="c", image=womm_images, command=["sleep", "600"])
    k8s.core.create_namespaced_pod(pod, k.V1Pod(metadata=k.V1ObjectMeta(name="q"),
                                                spec=k.V1PodSpec(init_containers=[wait], containers=[main],
                                                                 termination_grace_period_seconds=1)))
    deadline = time.monotonic() + 120
    while not any(s.state.running for s in k8s.core.read_namespaced_pod("q", pod).status.init_container_statuses or ()):
        assert time.monotonic() < deadline, "pod q's init container not running after 120 s"
        time.sleep(0.25)
    cluster = kube.Cluster(namespace=pod)
    with pytest.raises(kube.ApiError) as refused:
        cluster.exec_stream("q", ["true"], container="c")
    assert refused.value.status == 500 and b"container not found" in refused.value.body
    stream = cluster.exec_stream("p", ["true"])
    stream.close()
    assert cluster.exec_spdy and type(stream) is kube.SpdyExecStream
