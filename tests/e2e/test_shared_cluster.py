"""Shared clusters, on the real local cluster: a user who holds only `edit` in a namespace an admin
prepared (`womm cluster-setup --apply` by the admin: the `womm` fixture), with the policies a
platform team sets: a ResourceQuota (with and without LimitRange defaults), a LimitRange maximum,
and Pod Security `restricted`. Small pods, as on a shared cluster: --kube-cpu 100m --kube-mem 96Mi."""

from __future__ import annotations

import subprocess
import time

import pytest

pytestmark = pytest.mark.e2e

SMALL = ["--kube-cpu", "100m", "--kube-mem", "96Mi"]


def example_dir(womm, tmp_path, share="eager", files=4):
    """The product page's directory: a few files of lines, shared as asked."""
    d = womm.setup_dir(tmp_path / "proj", share)
    (d / "src").mkdir(exist_ok=True)
    for i in range(files):
        (d / ("src" if i % 2 else ".") / f"f{i}.txt").write_text("".join(f"{n}\n" for n in range(i * 7 + 3)))
    return d


def local_lines(d):
    """What local GNU parallel prints for the example, sorted."""
    out = subprocess.run("find . -type f | parallel wc -l {}", shell=True, cwd=d, capture_output=True, text=True,
                         check=True).stdout
    return sorted(out.splitlines())


def run_example(womm, d, user, *options, pods=2, timeout=300):
    files = subprocess.run(["find", ".", "-type", "f"], cwd=d, capture_output=True, text=True, check=True).stdout
    return womm("parallel", "--kube-pods", str(pods), *SMALL, *options, "--", "wc", "-l", "{}", cwd=d,
                input=files, env=user, check=False, timeout=timeout)


def as_user(edit_user):
    return {"KUBECONFIG": str(edit_user.kubeconfig())}


def quota(k8s, namespace, hard, name="team-quota"):
    import kubernetes.client as k

    k8s.core.create_namespaced_resource_quota(namespace, k.V1ResourceQuota(
        metadata=k.V1ObjectMeta(name=name), spec=k.V1ResourceQuotaSpec(hard=hard)))
    # The quota controller fills in what is used already (the share server): wait for it.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        q = k8s.core.read_namespaced_resource_quota(name, namespace)
        if q.status and q.status.used is not None:
            return q
        time.sleep(0.3)
    pytest.fail("the quota's usage was never computed")


def limit_range(k8s, namespace, limit, name="team-limits"):
    import kubernetes.client as k

    k8s.core.create_namespaced_limit_range(namespace, k.V1LimitRange(
        metadata=k.V1ObjectMeta(name=name), spec=k.V1LimitRangeSpec(limits=[k.V1LimitRangeItem(**limit)])))


def test_a_quota_on_requests_and_limits_without_limit_range_defaults(womm, tmp_path, edit_user, k8s):
    d = example_dir(womm, tmp_path)
    quota(k8s, womm.namespace, {"requests.cpu": "1", "limits.cpu": "3", "requests.memory": "1Gi",
                                "limits.memory": "2Gi"})
    r = run_example(womm, d, as_user(edit_user))
    assert r.returncode == 0, r.stderr
    assert sorted(r.stdout.splitlines()) == local_lines(d)
    womm.wait_no_objects()


def test_a_quota_that_fits_three_of_six_pods_with_limit_range_defaults(womm, tmp_path, edit_user, k8s):
    d = example_dir(womm, tmp_path, files=12)
    limit_range(k8s, womm.namespace, {"type": "Container", "default": {"cpu": "100m", "memory": "128Mi"},
                                      "default_request": {"cpu": "100m", "memory": "64Mi"}})
    # The share server asks for 100m; each worker 150m (100m for the job, 50m for womm's agent).
    quota(k8s, womm.namespace, {"requests.cpu": "600m"})
    r = run_example(womm, d, as_user(edit_user), pods=6)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert sorted(lines) == local_lines(d) and len(lines) == len(set(lines))
    said = [line for line in r.stderr.splitlines() if "pods could not be created: exceeded quota: team-quota" in line]
    assert len(said) == 1, r.stderr
    assert said[0].split("womm: task ")[1].split(": ", 1)[1].startswith("3 of 6 pods"), said


def test_a_limit_range_maximum_below_womms_defaults(womm, tmp_path, edit_user, k8s):
    d = example_dir(womm, tmp_path)
    limit_range(k8s, womm.namespace, {"type": "Container", "max": {"memory": "128Mi"}})
    user = as_user(edit_user)
    r = run_example(womm, d, user, "--kube-mem", "64Mi")
    assert r.returncode == 0, r.stderr
    assert sorted(r.stdout.splitlines()) == local_lines(d)
    # A job asking for more than the LimitRange allows ends at once, naming it.
    start = time.monotonic()
    r = run_example(womm, d, user, "--kube-mem", "256Mi")
    assert time.monotonic() - start < 30 and r.returncode == 255
    assert "LimitRange team-limits's maximum per container, 128Mi" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    womm.wait_no_objects()


def restrict(womm, k8s):
    """Pod Security `restricted` on the namespace, and its share server made again under it by the admin."""
    k8s.core.patch_namespace(womm.namespace, {"metadata": {"labels": {
        "pod-security.kubernetes.io/enforce": "restricted"}}})
    k8s.apps.delete_namespaced_deployment("womm-fs", womm.namespace)
    r = womm("cluster-setup", "--apply", "--namespace", womm.namespace, "--helper-image", womm.helper_image,
             timeout=200, check=False)
    assert r.returncode == 0 and "deployment/womm-fs rolled out" in r.stdout, r.stderr


def test_pod_security_restricted(womm, tmp_path, edit_user, k8s):
    restrict(womm, k8s)
    user = as_user(edit_user)
    d = example_dir(womm, tmp_path, share="eager-syncback")
    r = womm("parallel", "--kube-pods", "2", *SMALL, "--", "wc -l {} && id -u > {}.uid", ":::", "f0.txt", "f2.txt",
             cwd=d, env=user, check=False)
    assert r.returncode == 0, r.stderr
    assert sorted(r.stdout.splitlines()) == sorted(["3 f0.txt", "17 f2.txt"])
    assert "enforces Pod Security: the jobs run as user" in r.stderr
    assert (d / "f0.txt.uid").read_text().strip() not in ("", "0")  # written by a user, brought back
    womm.wait_no_objects()

    # A lazy share needs privileged pods: refused at once, naming Pod Security.
    lazy = womm.setup_dir(tmp_path / "lazy", "lazy")
    start = time.monotonic()
    r = womm("parallel", "--kube-pods", "1", *SMALL, "--", "echo", ":::", "x", cwd=lazy, env=user, check=False)
    assert time.monotonic() - start < 30 and r.returncode == 255
    assert "PodSecurity" in r.stderr and "Traceback" not in r.stderr, r.stderr
    womm.wait_no_objects()


def test_an_edit_user_cannot_prepare_a_namespace_and_is_told_who_can(womm, tmp_path, edit_user, k8s):
    """cluster-setup --apply by a user who may not make Roles: nothing made, one line, within 60 s."""
    k8s.apps.delete_namespaced_deployment("womm-fs", womm.namespace)
    k8s.core.delete_namespaced_config_map("womm-config", womm.namespace)
    before = womm.objects() + _setup_objects(womm, k8s)
    start = time.monotonic()
    r = womm("cluster-setup", "--apply", "--namespace", womm.namespace, "--helper-image", womm.helper_image,
             env=as_user(edit_user), check=False, timeout=90)
    assert time.monotonic() - start < 60 and r.returncode != 0
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "create roles.rbac.authorization.k8s.io" in r.stderr and "an admin" in r.stderr
    assert f"womm cluster-setup --apply --namespace {womm.namespace}" in r.stderr
    assert womm.objects() + _setup_objects(womm, k8s) == before  # nothing made


def _setup_objects(womm, k8s):
    ns = womm.namespace
    return sorted([f"deployment/{d.metadata.name}" for d in k8s.apps.list_namespaced_deployment(ns).items]
                  + [f"configmap/{c.metadata.name}" for c in k8s.core.list_namespaced_config_map(ns).items])


def test_an_edit_user_runs_every_verb_and_sees_what_only_an_admin_can_fix(womm, tmp_path, edit_user, k8s):
    user = as_user(edit_user)
    d = example_dir(womm, tmp_path)
    r = womm("doctor", cwd=d, env=user, check=False)
    assert "ok   Pod Security, quotas and limits" in r.stdout, r.stdout
    task = womm("parallel", "--async", "--kube-pods", "1", *SMALL, "--", "echo", "{}", ":::", "a", "b", cwd=d,
                env=user).stdout.strip()
    logs = womm("logs", task, cwd=d, env=user, timeout=300)
    assert sorted(logs.stdout.splitlines()) == ["a", "b"]
    womm("finish", task, cwd=d, env=user)
    assert womm("shell", *SMALL, "--", "echo", "hi", cwd=d, env=user, timeout=300).stdout == "hi\n"
    r = womm("status", "--all-namespaces", cwd=d, env=user, check=False)
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1 and "womm doctor" not in r.stderr
    # Without the namespace's womm-config (no admin prepared it), doctor says who can.
    k8s.core.delete_namespaced_config_map("womm-config", womm.namespace)
    r = womm("doctor", cwd=d, env={**user, "WOMM_HELPER_IMAGE": ""}, check=False)
    line = next(x for x in r.stdout.splitlines() if "helper image" in x)
    assert line.startswith("FAIL") and "only an admin of namespace" in line, r.stdout


def test_a_user_holding_only_the_rules_womm_names_runs_every_verb(womm, tmp_path, cluster, k8s):
    """womm.access.NEEDS is what doctor asks for and cluster admins read: it must be all a user needs.
    Without the rules that only help (access.HELPS: events, LimitRanges, ResourceQuotas), doctor passes
    and says what each would do."""
    from access_fixtures import rules_user

    from womm import access

    user = {"KUBECONFIG": str(rules_user(cluster, k8s, womm.namespace, tmp_path, "womm-e2e-needs",
                                         access.NEEDS).kubeconfig())}
    for share in ("lazy", "eager"):  # the eager one's directory goes on: --async needs it
        d = example_dir(womm, tmp_path / share, share)
        r = run_example(womm, d, user)
        assert r.returncode == 0, r.stderr
        assert sorted(r.stdout.splitlines()) == local_lines(d)
    task = womm("parallel", "--async", "--kube-pods", "1", *SMALL, "--", "echo", "{}", ":::", "a", "b", cwd=d,
                env=user).stdout.strip()
    assert task in womm("status", cwd=d, env=user).stdout
    logs = womm("logs", task, cwd=d, env=user, timeout=300)
    assert sorted(logs.stdout.splitlines()) == ["a", "b"]
    womm("finish", task, cwd=d, env=user)
    assert womm("shell", *SMALL, "--", "echo", "hi", cwd=d, env=user, timeout=300).stdout == "hi\n"
    womm("reap", "--all-hosts", cwd=d, env=user)
    r = womm("doctor", cwd=d, env=user, check=False, timeout=60)
    assert r.returncode == 0, r.stdout
    permissions = next(line for line in r.stdout.splitlines() if line.startswith("ok   permissions: "))
    helps = ", ".join(access.name(*rule[:4]) for rule in access.HELPS)
    assert f"; not {helps}: trying each pod as the kubelet starts it (else on a timer), " in permissions
    # A quota that refuses one of two pods: named once, read from the ReplicaSet, as for `edit`.
    womm.wait_no_objects()
    quota(k8s, womm.namespace, {"pods": str(len(k8s.core.list_namespaced_pod(womm.namespace).items) + 1)})
    r = run_example(womm, d, user, pods=2)
    assert r.returncode == 0 and sorted(r.stdout.splitlines()) == local_lines(d), r.stderr
    assert "1 of 2 pods could not be created: exceeded quota: team-quota" in r.stderr, r.stderr
    womm.wait_no_objects()


def test_the_helper_images_pull_secret_reaches_every_pod_womm_makes(womm, tmp_path, k8s):
    """A private registry: `cluster-setup --pull-secret` names the Secret once; every pod gets it."""
    import kubernetes.client as k

    k8s.core.create_namespaced_secret(womm.namespace, k.V1Secret(
        metadata=k.V1ObjectMeta(name="regcred"), type="kubernetes.io/dockerconfigjson",
        string_data={".dockerconfigjson": '{"auths": {}}'}))
    womm("cluster-setup", "--apply", "--namespace", womm.namespace, "--helper-image", womm.helper_image,
         "--pull-secret", "regcred", timeout=200)
    server = k8s.apps.read_namespaced_deployment("womm-fs", womm.namespace)
    assert [s.name for s in server.spec.template.spec.image_pull_secrets] == ["regcred"]
    d = example_dir(womm, tmp_path)
    task = womm("parallel", "--async", "--kube-pods", "1", "--", "sleep 5; echo {}", ":::", "a", cwd=d).stdout.strip()
    deadline = time.monotonic() + 120
    seen = {}
    while time.monotonic() < deadline and set(seen) != {"leader", "worker"}:
        for pod in k8s.core.list_namespaced_pod(womm.namespace, label_selector=f"womm.dev/task={task}").items:
            seen[pod.metadata.labels["womm.dev/role"]] = [s.name for s in pod.spec.image_pull_secrets or []]
        time.sleep(0.5)
    assert seen == {"leader": ["regcred"], "worker": ["regcred"]}, seen
    womm("logs", task, cwd=d, timeout=300)
    womm("finish", task, cwd=d)
