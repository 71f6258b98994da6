"""What a user meets after the first day: a restarted share server, womm shell --local."""

from __future__ import annotations

import time

import pexpect
import pytest
from womm_fixtures import WOMM, womm_env

pytestmark = pytest.mark.e2e


def test_a_restarted_share_server_gets_the_share_again(womm, tmp_path):
    d = womm.setup_dir(tmp_path / "proj", "eager")
    (d / "data.txt").write_text("before the restart\n")
    assert womm("parallel", "--kube-pods", "1", "--", "cat", ":::", "data.txt", cwd=d).stdout == "before the restart\n"
    # The server loses its state (its shares live in an emptyDir).
    k8s = womm.k8s
    for pod in k8s.core.list_namespaced_pod(womm.namespace, label_selector="womm.dev/role=share-server").items:
        k8s.core.delete_namespaced_pod(pod.metadata.name, womm.namespace, grace_period_seconds=0)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        pods = k8s.core.list_namespaced_pod(womm.namespace, label_selector="womm.dev/role=share-server").items
        if [p for p in pods if p.status.phase == "Running" and not p.metadata.deletion_timestamp]:
            break
        time.sleep(0.5)
    assert womm("parallel", "--kube-pods", "1", "--", "cat", ":::", "data.txt", cwd=d).stdout == "before the restart\n"


def test_shell_local_offers_to_save_changes(womm, tmp_path, docker_client):
    d = womm.setup_dir(tmp_path / "proj", "none")
    before = womm("share", "-o", "json", cwd=d).stdout
    child = pexpect.spawn(WOMM, ["shell", "--local"], cwd=str(d), env=womm_env(womm.home), timeout=300,
                          encoding="utf-8", dimensions=(40, 250))
    child.expect(r"[$#] ")
    child.sendline("echo saved > /etc/womm-e2e-local; echo done-$((1 + 1))")
    child.expect("done-2")
    child.expect(r"[$#] ")
    child.sendline("exit")
    child.expect(r"Save the changes into it.*y/n")
    child.sendline("y")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    after = womm("share", "-o", "json", cwd=d).stdout
    assert after != before  # a new image
    import json

    image = json.loads(after)["image"]
    out = docker_client.containers.run(image, ["cat", "/etc/womm-e2e-local"], remove=True)
    assert out == b"saved\n"
