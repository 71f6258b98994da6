"""Silent drops, on the real local cluster: womm reaches the API server through tests/faultproxy.py's
blackhole mode, which forgets a connection idle for 60 s without a FIN or a RST, as load balancers
do (nginx's and ELB's default). Each test leaves one of womm's long-lived connections with nothing
to say for longer than that, and checks that womm carries on as if nothing stood in between: the pod
watch, `womm logs`, the lazy share's stream to its cache, `womm shell`.

The four spend most of their time being silent, which they can do together: the first test starts
them all at once (`silences`), each in a namespace of its own through a proxy of its own, and each
test waits for its own (8 minutes of the suite in one after another, 3 together)."""

from __future__ import annotations

import concurrent.futures
import signal
import subprocess
import threading
import time

import pexpect
import pytest
from access_fixtures import start_blackhole
from conftest import delete_namespace, new_namespace
from womm_fixtures import WOMM, prepared_womm, wait_for, womm_env

pytestmark = pytest.mark.e2e

IDLE = 60  # seconds: the proxy forgets a connection silent for this long
SMALL = ("--kube-cpu", "0.1")  # the node's 2 cores are shared with other tests' pods
STARTED = "/tmp/womm-e2e-started"  # where a job writes when it began (in its container)


def start(womm, d, proxy, *args):
    """A womm command through the proxy, in the background: (process, {stdout, stderr} once it ended)."""
    proc = womm.popen(*args, cwd=d, env={"KUBECONFIG": str(proxy.kubeconfig)}, stdin=subprocess.DEVNULL,
                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out = {}

    def communicate():
        out["stdout"], out["stderr"] = proc.communicate()

    out["thread"] = threading.Thread(target=communicate, daemon=True)
    out["thread"].start()
    return proc, out


def finish(proc, out, seconds, since):
    """Wait for the command's end; one still running after `seconds` fails the test, stopped first."""
    out["thread"].join(seconds)
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)  # it cleans up what it made
        out["thread"].join(60)
        pytest.fail(f"womm had not ended {seconds} s after {since}; its stderr: {out.get('stderr')}")
    assert "Traceback" not in out["stderr"], out["stderr"]


def job_started(womm):
    """(the worker pod, when its job began, in seconds since the epoch) once a job wrote STARTED."""
    for pod in womm.k8s.core.list_namespaced_pod(womm.namespace, label_selector="womm.dev/role=worker").items:
        if pod.status.phase == "Running" and not pod.metadata.deletion_timestamp:
            code, text, _ = womm.k8s.exec(womm.namespace, pod.metadata.name, ["cat", STARTED], container="job")
            if code == 0 and text.strip().isdigit():
                return pod.metadata.name, int(text)
    time.sleep(1)
    return None


def running_job(womm, pattern):
    """The worker pod whose job container runs a process matching `pattern` (a grep regex), or None."""
    pods = womm.k8s.core.list_namespaced_pod(womm.namespace, label_selector="womm.dev/role=worker").items
    for pod in pods:
        if pod.status.phase != "Running" or pod.metadata.deletion_timestamp:
            continue
        code, _, _ = womm.k8s.exec(womm.namespace, pod.metadata.name,
                                   ["sh", "-c", f"cat /proc/[0-9]*/cmdline | tr '\\0' ' ' | grep -q '{pattern}'"],
                                   container="job")
        if code == 0:
            return pod.metadata.name
    time.sleep(1)
    return None


def a_pod_deleted_while_the_pod_watch_has_nothing_to_say(womm, tmp_path, proxy):
    d = womm.setup_dir(tmp_path / "proj", "none")
    proc, out = start(womm, d, proxy, "parallel", "--kube-pods", "1", *SMALL, "--",
                      f"date +%s >{STARTED}; sleep 100; echo job {{}}", ":::", "a")
    pod, began = wait_for("the job started in its pod", 180, lambda: job_started(womm))
    # 85 s in, the pod watch has had nothing to say for longer than the proxy's patience.
    time.sleep(max(0.0, began + 85 - time.time()))
    womm.k8s.core.delete_namespaced_pod(pod, womm.namespace, grace_period_seconds=0)
    deleted = time.monotonic()
    finish(proc, out, 240, f"its pod {pod} was deleted")  # a new pod, then the job's 100 s again
    print(f"ended {time.monotonic() - deleted:.1f} s after the pod's deletion; the proxy: {proxy.stats()}")
    assert proc.returncode == 0, out["stderr"]
    assert out["stdout"] == "job a\n"
    assert "(pod " + pod + " was deleted); running it again" in out["stderr"]  # in the pod that replaced it
    womm.wait_no_objects()


def womm_logs_through_90_s_of_silence(womm, tmp_path, proxy):
    d = womm.setup_dir(tmp_path / "proj", "none")
    env = {"KUBECONFIG": str(proxy.kubeconfig)}
    # One slot, in order: 100 lines at once, 90 s of silence, 100 lines, 5 s of silence, 100 lines.
    task = womm("parallel", "--async", "--kube-pods", "1", *SMALL, "-k", "--", "sleep {}; seq -f 'line-{}-%g' 100",
                ":::", "0", "90", "5", cwd=d, env=env).stdout.strip()
    proc, out = start(womm, d, proxy, "logs", task)
    finish(proc, out, 400, "`womm logs` started")
    print(f"the proxy: {proxy.stats()}")
    assert proc.returncode == 0, out["stderr"]
    lines = [line for line in out["stdout"].splitlines() if line.startswith("line-")]
    assert lines == [f"line-{s}-{i}" for s in (0, 90, 5) for i in range(1, 101)]
    assert "COMPLETE" in out["stderr"]
    womm("finish", task, cwd=d)
    womm.wait_no_objects(task)


def a_lazy_share_read_after_90_s_of_silence(womm, tmp_path, proxy):
    d = womm.setup_dir(tmp_path / "lazy", "lazy")
    proc, out = start(womm, d, proxy, "parallel", "--kube-pods", "1", *SMALL, "--", "sleep 90; cat {}",
                      ":::", "late.txt")
    wait_for("the job's sleep 90 in its pod", 180, lambda: running_job(womm, "sleep[ ]90"))
    # Written here during the silence: the job can only read it through the share's stream.
    (d / "late.txt").write_text("written during the silence\n")
    finish(proc, out, 180, "its job started")
    print(f"the proxy: {proxy.stats()}")
    assert proc.returncode == 0, out["stderr"]
    assert out["stdout"] == "written during the silence\n"
    womm.wait_no_objects()


def womm_shell_left_idle_for_90_s(womm, tmp_path, proxy):
    d = womm.setup_dir(tmp_path / "proj", "none")
    child = pexpect.spawn(WOMM, ["shell", *SMALL], cwd=str(d), timeout=180, encoding="utf-8",
                          env=womm_env(womm.home, {"KUBECONFIG": str(proxy.kubeconfig)}))
    try:
        child.expect(r"[$#] ")  # the remote shell's prompt: raw mode, set once attached, flushes what was typed before
        child.sendline("echo ready-$((1 + 1))")
        child.expect("ready-2")  # the output, not the echo of the typed line
        time.sleep(90)
        typed = time.monotonic()
        child.sendline("echo still-$((2 + 3))")
        child.expect("still-5", timeout=30)
        print(f"answered {time.monotonic() - typed:.2f} s after 90 s idle; the proxy: {proxy.stats()}")
        child.sendline("exit 3")
        child.expect(pexpect.EOF, timeout=60)
    finally:
        child.close(force=True)
    assert child.exitstatus == 3, child.before
    womm.wait_no_objects()


SCENARIOS = (a_pod_deleted_while_the_pod_watch_has_nothing_to_say, womm_logs_through_90_s_of_silence,
             a_lazy_share_read_after_90_s_of_silence, womm_shell_left_idle_for_90_s)


@pytest.fixture(scope="module")
def silences(cluster, k8s, womm_images, project_image, tmp_path_factory):
    """{scenario: its Future}, every scenario started at once."""
    made, proxies = [], []

    def run(scenario):
        tmp = tmp_path_factory.mktemp(scenario.__name__[:30])
        namespace = new_namespace(k8s, scenario.__name__)
        made.append(namespace)
        womm = prepared_womm(tmp / "womm-home", cluster, k8s, namespace, womm_images, project_image)
        proxies.append(start_blackhole(cluster, tmp, IDLE))
        scenario(womm, tmp, proxies[-1])

    pool = concurrent.futures.ThreadPoolExecutor(len(SCENARIOS), thread_name_prefix="silence")
    yield {scenario: pool.submit(run, scenario) for scenario in SCENARIOS}
    pool.shutdown(wait=True)
    for proxy in proxies:
        proxy.stop()
    for namespace in made:
        delete_namespace(k8s, namespace)


def test_a_pod_deleted_while_the_pod_watch_has_nothing_to_say_is_replaced_and_its_job_runs_once(silences):
    silences[a_pod_deleted_while_the_pod_watch_has_nothing_to_say].result()


def test_womm_logs_follows_a_task_through_90_s_of_silence_and_prints_every_later_line_once(silences):
    silences[womm_logs_through_90_s_of_silence].result()


def test_a_lazy_share_read_after_90_s_of_silence_is_still_there(silences):
    silences[a_lazy_share_read_after_90_s_of_silence].result()


def test_womm_shell_left_idle_for_90_s_still_answers(silences):
    silences[womm_shell_left_idle_for_90_s].result()
