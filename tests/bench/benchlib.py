"""What the bench scripts share: running a command, the API server's counts, a prepared namespace."""

import os
import re
import subprocess
import sys
import tempfile
import time


def sh(cmd, **kw):
    return subprocess.run(cmd, shell=isinstance(cmd, str), check=True, capture_output=True, text=True, **kw)


def api_requests():
    """The API server's request counts (all clients) by (verb, resource/subresource)."""
    text = sh(["kubectl", "get", "--raw", "/metrics"]).stdout
    counts = {}
    for m in re.finditer(r"^apiserver_request_total\{([^}]*)\} ([0-9.e+]+)$", text, re.M):
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
        key = (labels.get("verb", ""), "/".join(filter(None, (labels.get("resource"), labels.get("subresource")))))
        counts[key] = counts.get(key, 0) + float(m.group(2))
    return counts


def delta(after, before):
    return {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0) > 0}


def prepare(namespace, image=None):
    """The local cluster's namespace made ready for womm (its helper image built and applied) and a
    directory set up there with no share; (WOMM_HOME, the directory, the environment for womm)."""
    registry, base = os.environ.get("WOMM_TEST_REGISTRY"), os.environ.get("WOMM_TEST_BASE_IMAGE")
    if not (registry and base):
        sys.exit("bench: eval \"$(tests/cluster/env)\" first")
    deadline = time.monotonic() + 120
    while "Terminating" in subprocess.run(["kubectl", "get", "namespace", namespace], capture_output=True,
                                          text=True).stdout and time.monotonic() < deadline:
        time.sleep(1)  # a previous run's, still going away
    subprocess.run(["kubectl", "create", "namespace", namespace], capture_output=True)
    home, work = tempfile.mkdtemp(prefix="womm-bench-home-"), tempfile.mkdtemp(prefix="womm-bench-dir-")
    env = dict(os.environ, WOMM_HOME=home)
    sh(["womm", "build-images", "--prefix", f"{registry}/womm-bench/", "--base-image", base], env=env)
    sh(["womm", "cluster-setup", "--apply", "--namespace", namespace], env=env)
    sh(["womm", "setup", "--share", "none", "--image", image or base, "--namespace", namespace, "--yes"], cwd=work,
       env=env)
    return home, work, env
