"""What womm does in a namespace, as RBAC rules, and whether we may: SelfSubjectAccessReview.

NEEDS lists what a user's runs do, HELPS what they do better with (the --async leader's own,
narrower rules are womm.manifests.leader_rbac's). `womm doctor` asks the API about each; so may any program
that would rather say what is missing before it starts than fail halfway.
"""

import threading

# (verb, API group, resource, subresource, what for)
NEEDS = [
    ("create", "apps", "replicasets", None, "a task's worker pods"),
    ("get", "apps", "replicasets", None, "pods a quota or a webhook refused, named"),
    ("list", "apps", "replicasets", None, "womm status"),
    ("deletecollection", "apps", "replicasets", None, "removing a task"),
    ("create", "", "pods", None, "the lazy share's cache, --async leaders"),
    ("get", "", "pods", None, "waiting for a pod"),
    ("list", "", "pods", None, "finding the share server, womm status"),
    ("watch", "", "pods", None, "seeing the workers become ready"),
    ("deletecollection", "", "pods", None, "removing a task"),
    ("get", "", "pods", "log", "womm logs (an --async task's output, from its leader)"),
    ("create", "", "pods", "exec", "the job slots' streams"),
    ("get", "", "pods", "exec", "the job slots' streams where SPDY does not pass (over WebSocket, an exec is a GET)"),
    ("create", "coordination.k8s.io", "leases", None, "a task's heartbeat"),
    ("patch", "coordination.k8s.io", "leases", None, "a task's heartbeat"),
    ("list", "coordination.k8s.io", "leases", None, "womm status"),
    ("deletecollection", "coordination.k8s.io", "leases", None, "removing a task"),
    ("create", "", "secrets", None, "a share's key, an --async task's record"),
    ("get", "", "secrets", None, "a share's key"),
    ("update", "", "secrets", None, "a share's key"),
    ("deletecollection", "", "secrets", None, "removing a task"),
    ("get", "", "configmaps", None, "the helper image (womm-config)"),
    ("create", "networking.k8s.io", "networkpolicies", None, "the lazy share's cache"),
    ("deletecollection", "networking.k8s.io", "networkpolicies", None, "removing a task"),
    ("get", "", "services", None, "the share server's address"),
]

# What runs do without, only later: `womm doctor` says so, and a run never asks.
HELPS = [
    ("list", "", "events", None, "trying each pod as the kubelet starts it (else on a timer)"),
    ("watch", "", "events", None, "trying each pod as the kubelet starts it (else on a timer)"),
    ("list", "", "limitranges", None, "womm's containers fitted within a LimitRange (else it may refuse them)"),
    ("list", "", "resourcequotas", None, "womm doctor naming a full quota"),
]


def allowed(cluster, verb, group, resource, subresource=None, timeout=5):
    """Whether the API would let us do verb on resource in the cluster's namespace (True/False)."""
    attributes = {"namespace": cluster.namespace, "verb": verb, "group": group, "resource": resource}
    if subresource:
        attributes["subresource"] = subresource
    review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
              "spec": {"resourceAttributes": attributes}}
    # A review makes nothing: it may be sent again (a connection lost under it).
    answer = cluster.request("POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", body=review,
                             timeout=timeout, idempotent=True)
    return bool((answer.get("status") or {}).get("allowed"))


def name(verb, group, resource, subresource=None):
    """A rule as people read it: "create pods/exec", "patch leases.coordination.k8s.io"."""
    return f"{verb} {resource}" + (f"/{subresource}" if subresource else "") + (f".{group}" if group else "")


def missing(cluster, needs=None, timeout=5):
    """The rules of needs (default NEEDS) we are not allowed, as (verb, group, resource, subresource, what for).

    One review per rule, eight at a time; an error reaching the API is raised.
    """
    needs = NEEDS if needs is None else needs
    answers, errors = {}, []
    lock = threading.Lock()
    pending = list(enumerate(needs))

    def work():
        while True:
            with lock:
                if not pending or errors:
                    return
                i, rule = pending.pop()
            try:
                answers[i] = allowed(cluster, *rule[:4], timeout=timeout)
            except Exception as e:  # noqa: BLE001 - raised below, in the caller's thread
                with lock:
                    errors.append(e)

    threads = [threading.Thread(target=work, daemon=True) for _ in range(min(8, len(needs)))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return [rule for i, rule in enumerate(needs) if not answers.get(i)]
