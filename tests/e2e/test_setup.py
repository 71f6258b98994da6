"""`womm setup`: the testbed that becomes the pods' image, scripted and through a real terminal."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.request

import pexpect
import pytest
from womm_fixtures import WOMM, in_home, run_womm, womm_env

pytestmark = pytest.mark.e2e

SCRIPT = """\
set -e
if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi
$SUDO apt-get update -qq
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends hello > /dev/null
export WOMM_E2E_GREETING="set in the testbed"
"""


def project(home, d):
    from womm import records

    return in_home(home, records.load_project, d)


def registry_tags(registry, repository):
    with urllib.request.urlopen(f"http://{registry}/v2/{repository}/tags/list", timeout=10) as r:
        return json.load(r).get("tags") or []


def test_scripted_setup_makes_an_image_that_pods_run(cluster, k8s, namespace, tmp_path, docker_client):
    home, d = tmp_path / "home", tmp_path / "proj"
    d.mkdir()
    (d / "s.sh").write_text(SCRIPT)
    prefix = f"{cluster.registry}/womm-e2e-setup/"
    r = run_womm(["setup", "--share", "eager", "--base-image", cluster.base_image, "--prefix", prefix,
                  "--script", "s.sh", "--yes"], home, cwd=d, timeout=600)
    image = project(home, d)["image"]
    assert image.startswith(prefix + "womm-image-")
    # The platform it was built for, which its pods' nodes must run: this machine's, as docker says.
    built = docker_client.images.get(image).attrs
    assert project(home, d)["platform"] == f"{built['Os']}/{built['Architecture']}" == f"linux/{built['Architecture']}"
    repo, tag = image[len(cluster.registry) + 1:].rsplit(":", 1)
    assert tag in registry_tags(cluster.registry, repo)
    assert "Traceback" not in r.stderr

    log = run_pod(k8s, namespace, "setup-check", image,
                  'hello; echo "$WOMM_E2E_GREETING"; id -u; pwd; ls -A /root/.bash_history 2>&1 | head -1')
    assert log[0] == "Hello, world!"
    assert log[1] == "set in the testbed"
    assert log[2] == str(os.getuid())
    assert log[3] == str(d)
    assert "No such file" in log[4]  # no shell history in the image


def run_pod(k8s, namespace, name, image, script):
    """Run `script` in a pod of `image` to its end; its log lines."""
    pod = {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": image,
                                                           "command": ["sh", "-c", script]}]},
    }
    k8s.core.create_namespaced_pod(namespace, pod)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        phase = k8s.core.read_namespaced_pod(name, namespace).status.phase
        if phase in ("Succeeded", "Failed"):
            break
        time.sleep(0.5)
    log = k8s.core.read_namespaced_pod_log(name, namespace).splitlines()
    assert phase == "Succeeded", log
    return log


NOBODY_HERE = 4321  # a uid and gid with no account on this machine


def test_setup_by_a_user_who_is_not_root(cluster, k8s, namespace):
    """A caller who is not root: the testbed is theirs, sudo installs packages, the pods run as them.

    The tests run as root, so womm runs here under setpriv as an unused uid, with the
    Debian python and a copy of this environment's packages (root's own python and
    this checkout may not be reachable by another user).
    """
    python = "/usr/bin/python3"
    version = subprocess.run([python, "-c", "import sys; print(sys.version_info[:2])"], capture_output=True,
                             text=True, check=True).stdout.strip()
    assert version == str(sys.version_info[:2]), f"{python} is {version}: the packages copied need the same"
    top = tempfile.mkdtemp(prefix="womm-e2e-nonroot-")
    try:
        os.chmod(top, 0o755)
        site = os.path.join(top, "site-packages")
        shutil.copytree(sysconfig.get_paths()["purelib"], site, symlinks=True)
        home, d = os.path.join(top, "home"), os.path.join(top, "proj")
        for path in (home, d):
            os.mkdir(path)
            os.chown(path, NOBODY_HERE, NOBODY_HERE)
        with open(os.path.join(d, "s.sh"), "w") as f:
            f.write(SCRIPT)
        docker_gid = os.stat("/var/run/docker.sock").st_gid
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "WOMM_HOME": home, "HOME": home,
               **{k: os.environ[k] for k in ("DOCKER_HOST", "KUBECONFIG") if k in os.environ}}
        prefix = f"{cluster.registry}/womm-e2e-setup/"
        r = subprocess.run(
            ["setpriv", f"--reuid={NOBODY_HERE}", f"--regid={NOBODY_HERE}", f"--groups={docker_gid}", python,
             "-c", f"import site, sys; site.addsitedir({site!r}); from womm_setup.cli import main; sys.exit(main())",
             "setup", "--share", "none",
             "--base-image", cluster.base_image, "--prefix", prefix, "--script", "s.sh", "--yes"],
            cwd=d, env=env, capture_output=True, text=True, timeout=600,
        )
        assert r.returncode == 0, r.stderr
        assert "and sudo so that you can install packages" in r.stderr
        records = [os.path.join(root, f) for root, _, files in os.walk(home) for f in files if f.endswith(".json")]
        assert records and all(os.stat(f).st_uid == NOBODY_HERE for f in records)  # ~/.womm stays the user's
        image = json.load(open(next(f for f in records if "projects" in f)))["image"]
        log = run_pod(k8s, namespace, "setup-nonroot", image,
                      'hello; echo "$WOMM_E2E_GREETING"; id -u; id -g; pwd; touch here && echo writable')
        assert log == ["Hello, world!", "set in the testbed", str(NOBODY_HERE), str(NOBODY_HERE), d, "writable"]
    finally:
        shutil.rmtree(top, ignore_errors=True)


def test_no_credential_in_the_image(cluster, tmp_path, docker_client):
    home, d = tmp_path / "home", tmp_path / "proj"
    d.mkdir()
    (d / "s.sh").write_text("export API_TOKEN=hunter2\nexport KUBECONFIG=/mnt/root/.kube/config\nexport OK_VAR=1\n")
    run_womm(["setup", "--share", "none", "--base-image", cluster.base_image, "--prefix",
              f"{cluster.registry}/womm-e2e-setup/", "--script", "s.sh", "--yes"], home, cwd=d, timeout=600)
    env = docker_client.images.get(project(home, d)["image"]).attrs["Config"]["Env"]
    assert "OK_VAR=1" in env
    assert not [e for e in env if e.startswith(("API_TOKEN=", "KUBECONFIG=", "DOCKER_HOST="))]


def spawn(args, home, d):
    return pexpect.spawn(WOMM, args, cwd=str(d), env=womm_env(home), timeout=300, encoding="utf-8",
                         dimensions=(40, 120))


def test_interactive_setup_then_a_rerun_without_changes(cluster, tmp_path):
    home, d = tmp_path / "home", tmp_path / "proj"
    d.mkdir()
    child = spawn(["setup"], home, d)
    child.expect(r"How do you want to share .* to your cloud\?")
    child.expect(r"\*\) never mind, quit")
    child.expect(r"\[\*\] > ")
    child.sendline("2")
    child.expect("base image for your operating system")
    child.expect(r"\[ubuntu:22\.04\] > ")
    child.sendline(cluster.base_image)
    child.expect("authorized to push")
    child.expect("> ")
    child.sendline(f"{cluster.registry}/womm-e2e-interactive/")
    child.expect("Make it work!")
    child.expect(r"[$#] $")
    child.sendline("apt-get update -qq && apt-get install -y -qq --no-install-recommends hello >/dev/null; hello")
    child.expect("Hello, world!")
    child.sendline("export WOMM_E2E_TERM=yes; stty size")
    child.expect("40 120")  # the window size reached the testbed's terminal
    child.sendline("sleep 60")
    time.sleep(2)
    interrupted = time.monotonic()
    child.sendintr()  # Ctrl-C reaches the shell's job, not womm
    child.sendline("echo back-$((40 + 2))")
    child.expect("back-42", timeout=20)  # the output, not the echo of the typed line
    assert time.monotonic() - interrupted < 20
    child.expect(r"[$#] $")
    child.sendeof()  # Ctrl-D leaves the shell
    child.expect(r"Does it work\? y/n")
    child.sendline("y")
    child.expect(pexpect.EOF, timeout=300)
    child.close()
    assert child.exitstatus == 0, child.before
    p = project(home, d)
    repo = p["image"][len(cluster.registry) + 1:].rsplit(":", 1)[0]
    tags = registry_tags(cluster.registry, repo)
    assert p["share"] == "eager" and len(tags) == 1

    child = spawn(["setup"], home, d)
    for question in ("Change the share type", "Change the Kubernetes settings", "Start a new image", "Edit the image"):
        child.expect(question)
        child.sendline("n")
    child.expect(pexpect.EOF, timeout=120)
    child.close()
    assert child.exitstatus == 0
    assert project(home, d)["image"] == p["image"]
    assert registry_tags(cluster.registry, repo) == tags  # nothing pushed


def test_an_export_on_the_line_that_exits_is_kept(cluster, tmp_path, docker_client):
    """`export X=1; exit` leaves no prompt after the export: the shell's exit records it."""
    home, d = tmp_path / "home", tmp_path / "proj"
    d.mkdir()
    child = spawn(["setup", "--share", "none", "--base-image", cluster.base_image, "--prefix",
                   f"{cluster.registry}/womm-e2e-setup/"], home, d)
    child.expect(r"[$#] $")
    child.sendline("export WOMM_E2E_LAST='kept at exit'; exit")
    child.expect(r"Does it work\? y/n")
    child.sendline("y")
    child.expect(pexpect.EOF, timeout=300)
    child.close()
    assert child.exitstatus == 0, child.before
    env = docker_client.images.get(project(home, d)["image"]).attrs["Config"]["Env"]
    assert "WOMM_E2E_LAST=kept at exit" in env


@pytest.mark.parametrize("prompt_count", [1, 2, 3, 4])
def test_ctrl_c_at_a_prompt_writes_nothing(cluster, tmp_path, prompt_count, docker_client):
    """Ctrl-C at each question: share, base image, prefix, and "Does it work?" after the shell."""
    home, d = tmp_path / "home", tmp_path / "proj"
    d.mkdir()
    child = spawn(["setup"], home, d)
    answers = ["2", cluster.base_image, f"{cluster.registry}/x/"]
    for answer in answers[: prompt_count - 1]:
        child.expect("> ")
        child.sendline(answer)
    if prompt_count == 4:
        child.expect(r"[$#] $")
        child.sendline("exit")
        child.expect(r"Does it work\? y/n")
    else:
        child.expect("> ")
    child.sendintr()
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 130 or child.signalstatus
    assert not home.exists() or not list(home.rglob("*.json"))
    left = docker_client.containers.list(all=True, filters={"label": f"womm.dev/pid={child.pid}"})
    assert not left, [c.name for c in left]  # the testbed container went with it


def test_saying_no_writes_nothing(cluster, tmp_path):
    home, d = tmp_path / "home", tmp_path / "proj"
    d.mkdir()
    child = spawn(["setup", "--share", "none", "--base-image", cluster.base_image, "--prefix",
                   f"{cluster.registry}/x/"], home, d)
    child.expect(r"[$#] $")
    child.sendline("exit")
    child.expect(r"Does it work\? y/n")
    child.sendline("n")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 1
    assert not list(home.rglob("*.json"))


@pytest.mark.parametrize("case", ["no-docker", "unknown-base", "unwritable-prefix"])
def test_failures_are_one_line_and_write_nothing(cluster, tmp_path, case):
    home, d = tmp_path / "home", tmp_path / "proj"
    d.mkdir()
    (d / "s.sh").write_text("true\n")
    base, prefix, env = cluster.base_image, f"{cluster.registry}/womm-e2e-fail/", {}
    if case == "no-docker":
        env["DOCKER_HOST"] = f"unix://{tmp_path}/no-docker.sock"
    elif case == "unknown-base":
        base = f"{cluster.registry}/no/such-image:1"
    else:
        prefix = "127.0.0.1:5999/nobody-listens/"
    r = run_womm(["setup", "--share", "none", "--base-image", base, "--prefix", prefix, "--script", "s.sh", "--yes"],
                 home, cwd=d, check=False, env=env, timeout=600)
    errors = [line for line in r.stderr.splitlines() if "error:" in line]
    assert r.returncode == 1, r.stderr
    assert len(errors) == 1 and "Traceback" not in r.stderr
    assert {"no-docker": "Docker engine", "unknown-base": "base image",
            "unwritable-prefix": "kept locally"}[case] in errors[0]
    assert not list(home.rglob("*.json"))
