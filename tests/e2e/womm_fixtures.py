"""Fixtures for running the real `womm` programs against the local cluster.

- `womm_images`: womm's helper image, built and pushed once per session by `womm build-images`.
- `base_project_image`: a user image made once per session by a scripted `womm setup`.
- `womm`: a Womm for one test: its own WOMM_HOME, the test's namespace prepared by
  `womm cluster-setup --apply`, and helpers to set up directories and run commands.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

WOMM = shutil.which("womm") or str(Path(sys.executable).parent / "womm")


def womm_env(home, extra=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("WOMM_") or k.startswith("WOMM_TEST_")}
    env["WOMM_HOME"] = str(home)
    env["PATH"] = f"{Path(WOMM).parent}:{env.get('PATH', '/usr/bin:/bin')}"
    env.update(extra or {})
    return env


def run_womm(args, home, cwd=None, input=None, timeout=300, check=True, env=None):
    proc = subprocess.run(
        [WOMM, *args], cwd=cwd, input=input, capture_output=True, timeout=timeout,
        env=womm_env(home, env), text=isinstance(input, str) or input is None,
    )
    if check and proc.returncode != 0:
        pytest.fail(f"womm {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}", pytrace=False)
    return proc


def wait_for(what, seconds, check):
    """check()'s first true value within seconds; the test fails naming what it waited for."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    pytest.fail(f"timed out after {seconds}s waiting for {what}")


@pytest.fixture(scope="session")
def womm_session_home(tmp_path_factory):
    return tmp_path_factory.mktemp("womm-session-home")


@pytest.fixture(scope="session")
def womm_images(cluster, womm_session_home):
    """womm's helper image, built from images/ and pushed to the local registry."""
    prefix = f"{cluster.registry}/womm-e2e/"
    run_womm(["build-images", "--prefix", prefix, "--base-image", cluster.base_image],
             womm_session_home, timeout=1200)
    from womm import records

    return in_home(womm_session_home, records.load_settings)["helper-image"]


def in_home(home, fn, *args):
    """fn(*args) of womm's library, with home as ~/.womm (what the programs run with see)."""
    os.environ["WOMM_HOME"] = str(home)
    try:
        return fn(*args)
    finally:
        del os.environ["WOMM_HOME"]


@pytest.fixture(scope="session")
def project_image(cluster, womm_session_home, tmp_path_factory):
    """A user image made by a scripted `womm setup` on the test base image (has wc, sleep)."""
    d = tmp_path_factory.mktemp("image-project")
    (d / "s.sh").write_text("export WOMM_E2E_IMAGE=1\n")
    run_womm(["setup", "--share", "none", "--base-image", cluster.base_image,
              "--prefix", f"{cluster.registry}/womm-e2e/", "--script", "s.sh", "--yes"],
             womm_session_home, cwd=d, timeout=600)
    from womm import records

    return in_home(womm_session_home, records.load_project, d)["image"]


class Womm:
    def __init__(self, home, namespace, images, image, registry, k8s):
        self.home = home
        self.namespace = namespace
        self.helper_image = images
        self.image = image
        self.registry = registry
        self.k8s = k8s

    def __call__(self, *args, cwd=None, input=None, timeout=300, check=True, env=None):
        return run_womm(list(args), self.home, cwd=cwd, input=input, timeout=timeout, check=check, env=env)

    def setup_dir(self, directory, share):
        """Set a directory up with the session's image and a share kind, as `womm setup` does."""
        directory.mkdir(parents=True, exist_ok=True)
        self("setup", "--share", share, "--image", self.image, "--namespace", self.namespace,
             "--prefix", f"{self.registry}/womm-e2e/", "--yes", cwd=directory)
        return directory

    def popen(self, *args, cwd=None, stdin=None, env=None, **kw):
        return subprocess.Popen([WOMM, *args], cwd=cwd, env=womm_env(self.home, env), stdin=stdin, **kw)

    def objects(self, task_id=None):
        """Names of womm's objects in the namespace (of one task, or of every task)."""
        selector = "app.kubernetes.io/managed-by=womm" + (f",womm.dev/task={task_id}" if task_id else ",womm.dev/task")
        out = []
        for lister in (self.k8s.apps.list_namespaced_deployment, self.k8s.apps.list_namespaced_replica_set,
                       self.k8s.core.list_namespaced_pod, self.k8s.core.list_namespaced_config_map,
                       self.k8s.core.list_namespaced_secret):
            out += [f"{type(o).__name__}/{o.metadata.name}" for o in lister(self.namespace, label_selector=selector).items]
        return out

    def wait_no_objects(self, task_id=None, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            left = self.objects(task_id)
            if not left:
                return
            time.sleep(0.5)
        pytest.fail(f"objects left after {timeout}s: {left}")


@pytest.fixture
def womm(cluster, k8s, namespace, womm_images, project_image, tmp_path):
    yield prepared_womm(tmp_path / "womm-home", cluster, k8s, namespace, womm_images, project_image)


def prepared_womm(home, cluster, k8s, namespace, womm_images, project_image):
    """A Womm of its own WOMM_HOME, its namespace prepared by `womm cluster-setup --apply`."""
    w = Womm(home, namespace, womm_images, project_image, cluster.registry, k8s)
    w("cluster-setup", "--apply", "--namespace", namespace, "--helper-image", womm_images)
    # The share server is ready before the first test uses it.
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        pods = k8s.core.list_namespaced_pod(namespace, label_selector="womm.dev/role=share-server").items
        if pods and all(p.status.phase == "Running" for p in pods):
            break
        time.sleep(0.5)
    else:
        pytest.fail("the share server did not start")
    return w
