"""What a namespace's admission lets womm create: Pod Security, ResourceQuotas, LimitRanges and
webhooks, asked before a pod is made and read from the refusals after.

A refused pod never exists: nothing about it reaches a pod watch. So womm asks first, with a
dry run of one pod of the template (the API runs every admission step, and keeps nothing),
and reads its ReplicaSets' (and Deployments') ReplicaFailure condition while pods are missing.
A refusal is curable when waiting can cure it (a quota that is full now) and not otherwise
(Pod Security, a LimitRange, a request a quota needs, a webhook): that ends the wait at once.
"""

import re
from dataclasses import dataclass

from womm import quantity

# The API's own words for each kind of refusal, and whether waiting can cure it.
KINDS = (
    ("violates PodSecurity", "Pod Security", False),
    ("exceeded quota", "ResourceQuota", True),
    ("must specify", "ResourceQuota", False),
    ("per Container is", "LimitRange", False),
    ("per Pod is", "LimitRange", False),
    ("LimitRange", "LimitRange", False),
    ("admission webhook", "an admission webhook", False),
)


@dataclass(frozen=True)
class Refusal:
    message: str  # the API's own, without the pod's name
    policy: str  # "Pod Security", "ResourceQuota", "LimitRange", "an admission webhook", "admission"
    curable: bool  # whether waiting can cure it

    def __str__(self):
        return self.message


def refusal(message):
    """The Refusal the API's message (of a create, or a ReplicaFailure condition) says."""
    message = re.sub(r'^pods? "[^"]*" is forbidden: ', "", (message or "").strip())
    for words, policy, curable in KINDS:
        if words in message:
            return Refusal(message, policy, curable)
    return Refusal(message, "admission", False)


def pod_of(template, name="womm-admission-check"):
    """A pod as a ReplicaSet or Deployment would make it from its template."""
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"generateName": name + "-", "labels": dict(template["metadata"].get("labels") or {})},
            "spec": template["spec"]}


def try_pod(cluster, template):
    """Ask the API whether it would create a pod of the template (a dry run: nothing is made).
    None if it would (or if we may not ask: the real create will say); else its Refusal."""
    from womm.kube import ApiError

    try:
        cluster.request("POST", cluster.path("pods"), {"dryRun": "All"}, body=pod_of(template), timeout=30)
    except ApiError as e:
        if e.status == 403 and "violates PodSecurity" not in str(e) and "forbidden: exceeded quota" not in str(e) \
                and " is forbidden: User " in str(e):
            return None  # RBAC: we may not create pods here (an --async leader); the ReplicaSet will tell
        if e.status in (400, 403, 422) or "admission webhook" in str(e):
            return refusal(str(e))
        raise
    return None


def replica_failure(obj):
    """The Refusal a ReplicaSet's or Deployment's ReplicaFailure condition says, or None."""
    for condition in (obj.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "ReplicaFailure" and condition.get("status") == "True":
            return refusal(condition.get("message"))
    return None


def admit(cluster, task, build, log):
    """What the namespace allows a task's worker pods, asked before any is made: womm's own
    containers brought within its LimitRanges (kept in the task: an --async leader builds the
    same pods); where Pod Security refuses pods whose jobs run as the image's user (root,
    mostly), every container runs as a user of the task's (task.run_as, said once); a refusal
    that waiting cannot cure raises. build(): the task's ReplicaSet as it stands. Returns it."""
    from womm.errors import WommError

    fitted = fit_task(cluster, task)
    if fitted:
        log(f"namespace {cluster.namespace}'s {fitted}: womm's containers in each pod ask for "
            f"{task.agent_cpu.split('/')[0]} CPU and {task.agent_mem.split('/')[0]}, and may use "
            f"{task.agent_cpu.split('/')[1]} and {task.agent_mem.split('/')[1]}")
    body = build()
    refused = try_pod(cluster, body["spec"]["template"])
    if refused is not None and refused.policy == "Pod Security" and not task.run_as:
        task.run_as = default_run_as()
        candidate = build()
        still = try_pod(cluster, candidate["spec"]["template"])
        if still is None:
            body, refused = candidate, None
            log(f"namespace {cluster.namespace} enforces Pod Security: the jobs run as user {task.run_as}, not as "
                "the image's (--kube-run-as UID[:GID] chooses; the share's files are theirs)")
        else:
            task.run_as, refused = None, still  # what is left to refuse once no root is asked for
    if refused is not None and not refused.curable:
        raise WommError(f"namespace {cluster.namespace} refuses the task's pods ({refused.policy}): {refused.message}"
                        + _hint(refused))
    return body


def _hint(refused):
    from womm import manifests

    if refused.policy == "Pod Security" and f'"{manifests.SHARE_CONTAINER}" must not set securityContext.privileged' \
            in refused.message:
        return "; a lazy share needs privileged pods, which this namespace refuses: `womm setup --share eager` works here"
    return ""


def default_run_as():
    """Who the jobs run as where the namespace wants no root: this user (not root), else 1000."""
    import os

    uid, gid = os.getuid(), os.getgid()
    return f"{uid}:{gid}" if uid else "1000:1000"


# ---------------------------------------------------------------- LimitRanges

def fit_task(cluster, task):
    """womm's containers in a task's worker pods brought within the namespace's LimitRanges, in
    the task itself (its agent_cpu and agent_mem); a job's own size beyond them refused. Returns
    the LimitRanges that changed womm's own (as "LimitRange A, B"), or ""."""
    from womm import manifests
    from womm.errors import WommError

    ranges = limit_ranges(cluster)
    if not ranges:
        return ""
    size = {"cpu": str(task.cpu), "memory": str(task.mem)}
    helpers = {"name": manifests.AGENT_CONTAINER, "resources": manifests.agent_resources(task)}
    job = {"name": manifests.JOB_CONTAINER, "resources": {"requests": dict(size), "limits": dict(size)}}
    problems = fit([helpers, job], ranges, own=lambda c: c is helpers)
    if problems:
        raise WommError(f"namespace {cluster.namespace} refuses the task's pods: {problems[0]}: "
                        "ask for less (--kube-cpu, --kube-mem), or ask its admins")
    before = manifests.agent_resources(task)
    requests, limits = helpers["resources"]["requests"], helpers["resources"]["limits"]
    task.agent_cpu, task.agent_mem = f"{requests['cpu']}/{limits['cpu']}", f"{requests['memory']}/{limits['memory']}"
    if helpers["resources"] == before:
        return ""
    return "LimitRange " + ", ".join(dict.fromkeys(name for name, _ in ranges))


def limit_ranges(cluster):
    """The namespace's LimitRanges' Container limits: [(name, {"max": {...}, "min": {...}})]; [] if
    there are none, or we may not read them (the dry run still tells)."""
    from womm.kube import ApiError

    try:
        items = cluster.request("GET", cluster.path("limitranges"), timeout=10)["items"]
    except ApiError:
        return []
    out = []
    for item in items:
        for limit in item["spec"].get("limits") or []:
            if limit.get("type") == "Container":
                out.append((item["metadata"]["name"], limit))
    return out


RESOURCES = (("cpu", quantity.millicores, quantity.cpu), ("memory", quantity.value, quantity.memory))


def fit(containers, ranges, own=lambda c: True):
    """Bring womm's own containers (own(c)) within the namespace's LimitRanges: each request and
    limit raised to a minimum, lowered to a maximum, and a request no higher than its limit.
    Returns what cannot fit: a user's container above a maximum, one line each, naming it."""
    problems = []
    for name, limit in ranges:
        for container in containers:
            resources = container.setdefault("resources", {})
            for resource, convert, back in RESOURCES:
                bounds = (limit.get("min", {}).get(resource), limit.get("max", {}).get(resource))
                for kind in ("requests", "limits"):
                    value = resources.get(kind, {}).get(resource)
                    if value is None:
                        continue
                    fitted = _within(convert(value), *(convert(b) if b is not None else None for b in bounds))
                    if fitted == convert(value):
                        continue
                    if own(container):
                        resources[kind][resource] = back(fitted)
                    elif bounds[1] is not None and fitted < convert(value):
                        problems.append(f"its {container['name']} container's {resource} {kind[:-1]} {value} is "
                                        f"above the LimitRange {name}'s maximum per container, {bounds[1]}")
            _requests_within_limits(resources)
    return problems


def _within(value, low, high):
    if high is not None and value > high:
        return high
    if low is not None and value < low:
        return low
    return value


def _requests_within_limits(resources):
    requests, limits = resources.get("requests", {}), resources.get("limits", {})
    for resource, convert, _ in RESOURCES:
        if resource in requests and resource in limits and convert(requests[resource]) > convert(limits[resource]):
            requests[resource] = limits[resource]


# ---------------------------------------------------------------- ResourceQuotas

def quotas(cluster):
    """The namespace's ResourceQuotas: [(name, {resource: (used, hard)})]; [] if we may not read them."""
    from womm.kube import ApiError

    try:
        items = cluster.request("GET", cluster.path("resourcequotas"), timeout=10)["items"]
    except ApiError:
        return []
    out = []
    for item in items:
        status = item.get("status") or {}
        hard, used = status.get("hard") or item["spec"].get("hard") or {}, status.get("used") or {}
        out.append((item["metadata"]["name"], {r: (used.get(r, "0"), h) for r, h in hard.items()}))
    return out


def _amount(resource, text):
    try:
        return quantity.millicores(text) if "cpu" in resource else quantity.value(text)
    except ValueError:
        return None


def full_quotas(cluster):
    """The quota resources womm's pods count against that are used up, as one line; "" if none."""
    full = []
    for name, resources in quotas(cluster):
        for resource, (used, hard) in sorted(resources.items()):
            counted = resource in ("pods", "count/pods") or resource.startswith(("requests.", "limits.", "cpu", "memory"))
            u, h = _amount(resource, used), _amount(resource, hard)
            if counted and u is not None and h is not None and u >= h:
                full.append(f"quota {name}: {resource} {used} of {hard} used")
    return "; ".join(full)


def quota_summary(cluster):
    """["quota NAME: RESOURCE USED/HARD, ..."] of the namespace's quotas."""
    return [f"quota {name}: " + ", ".join(f"{r} {u}/{h}" for r, (u, h) in sorted(resources.items()))
            for name, resources in quotas(cluster)]
