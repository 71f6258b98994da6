"""What a shared cluster's admission does to womm's pods (womm.admission, womm.manifests), without a
cluster: every container declared, Pod Security met, LimitRanges fitted, refusals read and classed."""

import json

import pytest

from womm import admission, kube, manifests, quantity
from womm.errors import WommError
from womm.tasks import Task
from womm_run.pods import SAY_AFTER, Pending


def task(**kw):
    fields = dict(id="abcdefgh", kind="parallel", mode="sync", command=["parallel"], cwd="/d", root="/d",
                  namespace="team", image="user/img:1", host="h", helper_image="reg/womm:1", cpu="100m", mem="96Mi")
    fields.update(kw)
    return Task(**fields)


def containers(body):
    spec = body["spec"]["template"]["spec"] if body["kind"] != "Pod" else body["spec"]
    return [*spec["containers"], *spec.get("initContainers", [])]


def eager_parts():
    volume = {"name": "womm-dir", "emptyDir": {}}
    mount = {"name": "womm-dir", "mountPath": "/d", "subPath": "tree"}
    pull = {"name": "womm-share-pull", "image": "reg/womm:1", "command": ["womm-share-pull"],
            "volumeMounts": [{"name": "womm-dir", "mountPath": "/womm/pulled"}]}
    return {"volumes": [volume], "mounts": [mount], "init_containers": [pull], "agent_mounts": [mount]}


def test_workers_go_to_nodes_of_their_images_platform_and_anywhere_when_it_is_not_known():
    spec = manifests.worker_replicaset(task(platform="linux/arm64"), {}, "reg/womm:1", "true")["spec"]
    assert spec["template"]["spec"]["nodeSelector"] == {"kubernetes.io/os": "linux", "kubernetes.io/arch": "arm64"}
    assert manifests.node_selector("linux/arm/v7") == {"kubernetes.io/os": "linux", "kubernetes.io/arch": "arm"}
    assert manifests.node_selector("linux/x86_64") == {"kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64"}
    assert manifests.node_selector("linux") == manifests.node_selector("/arm64") == {}  # a record spoiled by hand
    spoiled = manifests.worker_replicaset(task(platform="linux"), {}, "reg/womm:1", "true")["spec"]["template"]
    assert "nodeSelector" not in spoiled["spec"]
    spec = manifests.worker_replicaset(task(), {}, "reg/womm:1", "true")["spec"]  # a project set up before
    assert "nodeSelector" not in spec["template"]["spec"]


def test_every_container_of_every_pod_womm_makes_declares_cpu_and_memory_both_ways():
    t = task()
    bodies = [manifests.worker_replicaset(t, eager_parts(), "reg/womm:1", "true"),
              *[o for o in manifests.share_server("reg/womm:1", "team") if o["kind"] == "Deployment"],
              manifests.leader_pod(t, "reg/womm:1"), manifests.share_cache(t, 2222)[0],
              manifests.fuse_probe("p", "reg/womm:1"),
              {"kind": "Pod", "spec": manifests.reaper("reg/womm:1", "team")[-1]["spec"]["jobTemplate"]["spec"]
               ["template"]["spec"]}]
    for body in bodies:
        for c in containers(body):
            for kind in ("requests", "limits"):
                assert set(c["resources"][kind]) == {"cpu", "memory"}, (body["kind"], c["name"], kind)


def test_a_worker_pod_asks_for_what_the_user_asked_plus_womms_stated_overhead():
    body = manifests.worker_replicaset(task(cpu="2", mem="1Gi"), eager_parts(), "reg/womm:1", "true")
    by_name = {c["name"]: c["resources"] for c in containers(body)}
    assert by_name["job"] == {"requests": {"cpu": "2", "memory": "1Gi"}, "limits": {"cpu": "2", "memory": "1Gi"}}
    # womm's agent: 50m and 64Mi asked; its CPU limit follows the job's, at most 1 CPU
    assert by_name["womm"] == {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"cpu": "1", "memory": "128Mi"}}
    small = manifests.worker_replicaset(task(cpu="10m"), {}, "reg/womm:1", "true")
    assert containers(small)[0]["resources"]["limits"]["cpu"] == "100m"  # never throttled below 100m


def test_settings_change_womms_own_share_of_a_pod():
    t = task(agent_cpu="20m/200m", agent_mem="32Mi")
    agent = containers(manifests.worker_replicaset(t, {}, "reg/womm:1", "true"))[0]
    assert agent["resources"] == {"requests": {"cpu": "20m", "memory": "32Mi"}, "limits": {"cpu": "200m", "memory": "32Mi"}}


def test_run_as_makes_every_container_of_the_worker_pods_meet_pod_security_restricted():
    body = manifests.worker_replicaset(task(run_as="1000:2000"), eager_parts(), "reg/womm:1", "true")
    spec = body["spec"]["template"]["spec"]
    assert spec["securityContext"] == {"runAsNonRoot": True, "runAsUser": 1000, "runAsGroup": 2000, "fsGroup": 2000,
                                       "seccompProfile": {"type": "RuntimeDefault"}}
    for c in containers(body):
        assert c["securityContext"]["allowPrivilegeEscalation"] is False
        assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}, c["name"]
    root = manifests.worker_replicaset(task(), eager_parts(), "reg/womm:1", "true")["spec"]["template"]["spec"]
    assert "securityContext" not in root  # the images' own users where the namespace allows them


def test_womms_own_pods_run_as_no_root_and_pull_with_the_helpers_secret():
    server = manifests.share_server("reg/womm:1", "team", pull_secret="regcred")[0]["spec"]["template"]["spec"]
    leader = manifests.leader_pod(task(helper_pull_secret="regcred", pull_secret="mine"), "reg/womm:1")["spec"]
    for spec in (server, leader):
        assert spec["securityContext"]["runAsNonRoot"] and spec["securityContext"]["runAsUser"] == manifests.HELPER_USER
        assert spec["containers"][0]["securityContext"]["capabilities"] == {"drop": ["ALL"]}
        assert {"name": "regcred"} in spec["imagePullSecrets"]
    worker = manifests.worker_replicaset(task(helper_pull_secret="regcred", pull_secret="mine"), {}, "reg/womm:1",
                                         "true")["spec"]["template"]["spec"]
    assert worker["imagePullSecrets"] == [{"name": "mine"}, {"name": "regcred"}]
    assert manifests.share_server("i")[0]["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] > 1024


def test_a_tasks_worker_pods_prefer_to_spread_over_the_nodes_and_never_wait_for_it():
    spec = manifests.worker_replicaset(task(), {}, "reg/womm:1", "true")["spec"]["template"]["spec"]
    assert spec["topologySpreadConstraints"] == [{
        "maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "ScheduleAnyway",
        "labelSelector": {"matchLabels": {"womm.dev/task": "abcdefgh", "womm.dev/role": "worker"}}}]


@pytest.mark.parametrize("message, policy, curable", [
    ('pods "womm-task-x-1" is forbidden: violates PodSecurity "restricted:latest": runAsNonRoot != true',
     "Pod Security", False),
    ('pods "womm-task-x-1" is forbidden: exceeded quota: q, requested: requests.cpu=150m, used: requests.cpu=2, '
     'limited: requests.cpu=2', "ResourceQuota", True),
    ('pods "p" is forbidden: failed quota: q: must specify limits.cpu for: womm', "ResourceQuota", False),
    ('pods "p" is forbidden: maximum memory usage per Container is 128Mi, but limit is 256Mi', "LimitRange", False),
    ('admission webhook "deny.example.com" denied the request: no', "an admission webhook", False),
])
def test_refusals_are_read_and_classed_by_whether_waiting_cures_them(message, policy, curable):
    r = admission.refusal(message)
    assert (r.policy, r.curable) == (policy, curable)
    assert not r.message.startswith("pods ")


def test_a_replicasets_replica_failure_is_read():
    rs = {"status": {"conditions": [{"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate",
                                     "message": 'pods "w-1" is forbidden: exceeded quota: q, requested: pods=1'}]}}
    assert admission.replica_failure(rs) == admission.Refusal("exceeded quota: q, requested: pods=1",
                                                              "ResourceQuota", True)
    assert admission.replica_failure({"status": {}}) is None


def test_womms_containers_are_fitted_into_a_limit_range_and_the_users_are_not():
    ranges = [("small", {"type": "Container", "max": {"memory": "100Mi", "cpu": "1"}, "min": {"cpu": "80m"}})]
    own = {"name": "womm", "resources": {"requests": {"cpu": "50m", "memory": "64Mi"},
                                         "limits": {"cpu": "2", "memory": "128Mi"}}}
    job = {"name": "job", "resources": {"requests": {"memory": "64Mi"}, "limits": {"memory": "64Mi"}}}
    assert admission.fit([own, job], ranges, own=lambda c: c is own) == []
    assert own["resources"] == {"requests": {"cpu": "80m", "memory": "64Mi"}, "limits": {"cpu": "1", "memory": "100Mi"}}
    big = {"name": "job", "resources": {"requests": {"memory": "1Gi"}, "limits": {"memory": "1Gi"}}}
    problems = admission.fit([big], ranges, own=lambda c: False)
    assert problems[-1] == "its job container's memory limit 1Gi is above the LimitRange small's maximum per container, 100Mi"


def test_quantities():
    assert [quantity.millicores(q) for q in ("250m", "0.5", "2", "1e3m")] == [250, 500, 2000, 1000]
    assert [quantity.value(q) for q in ("96Mi", "1Gi", "500M", "128974848")] == [96 << 20, 1 << 30, 500e6, 128974848]
    assert (quantity.cpu(1500), quantity.cpu(2000), quantity.memory(96 << 20), quantity.memory(1000)) == \
        ("1500m", "2", "96Mi", "1000")
    with pytest.raises(ValueError):
        quantity.value("lots")


class Namespace(kube.Cluster):
    """A namespace's API for admit(): dry runs answered by admits(pod), LimitRanges as given."""

    def __init__(self, admits, ranges=()):
        self.namespace, self.context = "team", None
        self.admits, self.ranges, self.dry_runs = admits, list(ranges), 0

    def request(self, method, path, query=None, body=None, timeout=60, content_type=None, idempotent=None):
        if path.endswith("/limitranges"):
            return {"items": [{"metadata": {"name": n}, "spec": {"limits": [lim]}} for n, lim in self.ranges]}
        assert (method, query) == ("POST", {"dryRun": "All"}), (method, path, query)
        self.dry_runs += 1
        why = self.admits(body)
        if why:
            raise kube.ApiError(403, "Forbidden", json.dumps({"message": f'pods "x" is forbidden: {why}'}).encode())
        return body


def build(t):
    return lambda: manifests.worker_replicaset(t, {}, "reg/womm:1", "true")


def test_admit_runs_the_jobs_as_a_user_where_pod_security_refuses_root():
    def restricted(pod):
        return None if (pod["spec"].get("securityContext") or {}).get("runAsNonRoot") else \
            'violates PodSecurity "restricted:latest": runAsNonRoot != true'

    t, said = task(), []
    body = admission.admit(Namespace(restricted), t, build(t), said.append)
    assert t.run_as and body["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"]
    assert len(said) == 1 and "enforces Pod Security" in said[0] and t.run_as in said[0]


def test_admit_refuses_at_once_what_waiting_cannot_cure_and_lets_a_full_quota_wait():
    t = task()
    with pytest.raises(WommError) as e:
        admission.admit(Namespace(lambda pod: 'violates PodSecurity "baseline:latest": privileged'), t, build(t), print)
    assert "(Pod Security)" in str(e.value) and t.run_as is None
    full = Namespace(lambda pod: "exceeded quota: q, requested: requests.cpu=150m")
    assert admission.admit(full, t, build(t), print)["kind"] == "ReplicaSet"


def test_admit_fits_womms_containers_into_the_limit_range_in_the_task_itself():
    t = task(mem="64Mi")
    ns = Namespace(lambda pod: None, [("max100", {"type": "Container", "max": {"memory": "100Mi", "cpu": "500m"}})])
    said = []
    body = admission.admit(ns, t, build(t), said.append)
    assert (t.agent_cpu, t.agent_mem) == ("50m/100m", "64Mi/100Mi")
    assert said == ["namespace team's LimitRange max100: womm's containers in each pod ask for 50m CPU and 64Mi, "
                    "and may use 100m and 100Mi"]
    agent = body["spec"]["template"]["spec"]["containers"][0]
    assert agent["resources"]["limits"] == {"cpu": "100m", "memory": "100Mi"}
    with pytest.raises(WommError) as e:
        admission.admit(ns, task(mem="256Mi"), build(task(mem="256Mi")), print)
    assert "LimitRange max100" in str(e.value) and "--kube-mem" in str(e.value)


T0 = 1000.0


def test_pods_that_admission_refuses_for_a_full_quota_are_said_once_and_the_run_goes_on():
    p = Pending(pods=6, timeout=60, start=T0)
    quota = admission.refusal('pods "w" is forbidden: exceeded quota: q, requested: requests.cpu=150m')
    fatal, messages, _ = p.tick(T0 + 3, 3, True, {}, 0, quota, 3)
    assert fatal is None and messages == ["3 of 6 pods could not be created: exceeded quota: q, "
                                          "requested: requests.cpu=150m"]
    assert p.tick(T0 + 4, 3, True, {}, 0, quota, 3)[1] == []
    fatal, messages, _ = p.tick(T0 + 60, 3, True, {}, 0, quota, 3)
    assert fatal is None  # some pods work: it goes on with them


def test_with_no_pod_a_full_quota_is_named_at_the_pending_timeout():
    p = Pending(pods=2, timeout=30, start=T0)
    quota = admission.refusal("exceeded quota: q, requested: pods=1")
    assert p.tick(T0 + SAY_AFTER, 0, False, {}, 0, quota, 2)[0] is None
    assert p.tick(T0 + 30, 0, False, {}, 0, quota, 2)[0] == \
        "no pod started within 30 s: exceeded quota: q, requested: pods=1"


def test_a_refusal_waiting_cannot_cure_ends_the_wait_at_once():
    p = Pending(pods=2, timeout=300, start=T0)
    psa = admission.refusal('violates PodSecurity "restricted:latest": privileged')
    fatal, _, _ = p.tick(T0 + 1, 0, False, {}, 0, psa, 2)
    assert fatal == 'the namespace refuses the task\'s pods (Pod Security): violates PodSecurity "restricted:latest": privileged'
