"""Every Kubernetes object womm creates, built here and nowhere else.

Objects are plain dicts: the API accepts them, and cluster-setup prints them.
Everything carries womm's labels (womm.taskobjects owns them, and a task's Lease,
and finds and deletes a task's objects by them).
"""

import json

from womm.taskobjects import MANAGED_BY, ROLE, SHARE, TASK, annotations, labels

SHARE_SERVER = "womm-fs"  # the share server's Deployment and Service
LEADER_ACCOUNT = "womm-leader"  # ServiceAccount, Role and RoleBinding of --async leaders
REAPER = "womm-reaper"  # the optional in-cluster reaper's CronJob, and its account
SHARE_CONTAINER = "womm-share"  # the share's container in a worker pod
AGENT_CONTAINER = "womm"  # the agent's container in a worker pod: womm's image
JOB_CONTAINER = "job"
RSYNC_PORT = 873
POD_RUN = "/.womm-pod"  # a worker's directory shared by its agent and job containers
KILL_GRACE = 2  # seconds between TERM and KILL for a job being killed

# PID 1 of a worker's agent container: makes the directory the agent and the job runner
# share, then idles (and is gone at once on SIGTERM: a plain `sleep` as PID 1 would hold
# pod deletion for the whole grace period).
AGENT_IDLE = ["sh", "-c", f"mkdir -p {POD_RUN}/jobs && chmod 0777 {POD_RUN} {POD_RUN}/jobs && "
              f"{{ [ -p {POD_RUN}/ctl ] || mkfifo -m 0666 {POD_RUN}/ctl; }} && exec womm-idle"]


def metadata(name, labels_, annotations_=None, namespace=None, owner=None):
    meta = {"name": name, "labels": labels_}
    if annotations_:
        meta["annotations"] = annotations_
    if namespace:
        meta["namespace"] = namespace
    if owner:  # the task's Lease: deleting it deletes this (the garbage collector)
        meta["ownerReferences"] = [owner]
    return meta


def worker_replicaset(task, share_spec, womm_image, runner):
    """The task's worker pods: `pods` replicas of the user's image, whose runner waits for jobs,
    and beside it womm's agent (womm_run.podagent), which the controller reaches.

    share_spec: what the share adds to the pod (womm.shares' pod_parts()):
    {"volumes", "mounts", "agent_mounts", "containers", "init_containers"}. runner: the job container's
    PID 1, a POSIX sh script (womm_run's runner.sh).
    A ReplicaSet, so that a pod that dies (deleted, evicted) comes back; not a
    Deployment, whose extra controller only delays the first pod.
    """
    task_labels = labels(task)
    if task.get("share") in ("eager", "eager-syncback") and task.get("share_id"):
        task_labels[SHARE] = task["share_id"]  # what lets its helpers reach the share server (NetworkPolicy)
    resources = {"cpu": str(task["cpu"]), "memory": str(task["mem"])}
    run_mount = {"name": "womm-pod", "mountPath": POD_RUN}
    job = {
        "name": JOB_CONTAINER,
        "image": task["image"],
        "command": ["sh", "-c", runner, "womm-runner", POD_RUN, task["cwd"], task.get("shell") or "sh",
                    str(KILL_GRACE)],
        "workingDir": task["cwd"],
        "resources": {"requests": resources, "limits": resources},
        "volumeMounts": [*share_spec.get("mounts", []), run_mount],
        "securityContext": {"allowPrivilegeEscalation": False},
    }
    agent = {
        "name": AGENT_CONTAINER,
        "image": womm_image,
        "command": AGENT_IDLE,
        "volumeMounts": [run_mount, *share_spec.get("agent_mounts", [])],
        # No CPU request: the pod's request stays what the user asked for (--kube-cpu).
        "resources": {"requests": {"memory": "32Mi"}, "limits": {"memory": "256Mi"}},
        "securityContext": {"allowPrivilegeEscalation": False},
    }
    pod_spec = {
        # The agent first: it makes the shared directory the runner waits for.
        "containers": [agent, job, *share_spec.get("containers", [])],
        "initContainers": share_spec.get("init_containers", []),
        "volumes": [*share_spec.get("volumes", []), {"name": "womm-pod", "emptyDir": {}}],
        # Jobs get no API credentials: only the leader of --async tasks has any.
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": 2,
        "restartPolicy": "Always",
    }
    if task.get("pull_secret"):
        pod_spec["imagePullSecrets"] = [{"name": task["pull_secret"]}]
    return {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": metadata(f"womm-task-{task['id']}", task_labels, annotations(task), owner=task.get("owner")),
        "spec": {
            "replicas": task["pods"],
            "selector": {"matchLabels": {TASK: task["id"], ROLE: "worker"}},
            "template": {
                "metadata": {"labels": task_labels,
                             "annotations": {"kubectl.kubernetes.io/default-container": JOB_CONTAINER}},
                "spec": pod_spec,
            },
        },
    }


def share_cache_name(task):
    return f"womm-share-{task['id']}"


def share_cache(task, port):
    """A lazy share's cache, one per task: a pod that mounts the directory from the user's machine
    over one exec stream and serves it to the task's pods (womm.shares.lazy), and the
    NetworkPolicy that lets only those pods reach it."""
    cache_labels = labels(task, role="share-cache")
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata(share_cache_name(task), cache_labels, owner=task.get("owner")),
        "spec": {
            "containers": [{
                "name": SHARE_CONTAINER,
                "image": task["helper_image"],
                "command": ["womm-idle"],
                "securityContext": {"privileged": True},  # FUSE
                "ports": [{"name": "sftp", "containerPort": port}],
                # Its page cache is what spares the user's machine: room for it, no CPU taken from the jobs.
                "resources": {"requests": {"memory": "64Mi"}, "limits": {"memory": "2Gi"}},
            }],
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "terminationGracePeriodSeconds": 2,
            "restartPolicy": "Never",
        },
    }
    policy = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(share_cache_name(task), labels(task, role="share-cache"), owner=task.get("owner")),
        "spec": {
            "podSelector": {"matchLabels": {TASK: task["id"], ROLE: "share-cache"}},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": [{"podSelector": {"matchLabels": {TASK: task["id"], ROLE: "worker"}}}],
                         "ports": [{"protocol": "TCP", "port": port}]}],
        },
    }
    return [pod, policy]


# What `womm doctor`'s FUSE probe exits with, and what each status means.
FUSE_PROBE_SCRIPT = ("command -v sshfs >/dev/null || exit 3; test -c /dev/fuse || exit 4; "
                     "(exec 3<>/dev/fuse) 2>/dev/null || exit 5; exit 0")
FUSE_PROBE_EXITS = {3: "the helper image has no sshfs", 4: "the node has no /dev/fuse (no fuse module loaded?)",
                    5: "/dev/fuse cannot be opened in a privileged container"}


def fuse_probe(name, image):
    """`womm doctor`'s test of what a lazy share needs: a privileged pod of the helper image, as a
    share container is, that exits 0 when FUSE can be used on its node (FUSE_PROBE_EXITS otherwise)."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata(name, {**MANAGED_BY, ROLE: "doctor"}),
        "spec": {
            "containers": [{
                "name": SHARE_CONTAINER,
                "image": image,
                "command": ["sh", "-c", FUSE_PROBE_SCRIPT],
                "securityContext": {"privileged": True},
                "resources": {"requests": {"memory": "16Mi"}, "limits": {"memory": "64Mi"}},
            }],
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "terminationGracePeriodSeconds": 0,
            "activeDeadlineSeconds": 120,  # if womm doctor is killed before it deletes the pod
            "restartPolicy": "Never",
        },
    }


def share_secret(share_id, password):
    """The key that lets one share's pods, and only them, read it from the share server."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata(f"womm-share-{share_id}", {**MANAGED_BY, SHARE: share_id}),
        "type": "Opaque",
        "stringData": {"password": password},
    }


def share_server(image, namespace=None):
    """The share server: an rsync daemon holding eager shares, one module per share."""
    server_labels = {**MANAGED_BY, ROLE: "share-server"}
    container = {
        "name": "server",
        "image": image,
        "command": ["womm-fs-server"],
        "ports": [{"name": "rsync", "containerPort": RSYNC_PORT}],
        "volumeMounts": [{"name": "shares", "mountPath": "/shares"}],
        "readinessProbe": {"tcpSocket": {"port": RSYNC_PORT}, "periodSeconds": 2},
    }
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(SHARE_SERVER, server_labels, namespace=namespace),
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {ROLE: "share-server"}},
            "strategy": {"type": "Recreate"},
            "template": {
                "metadata": {"labels": server_labels},
                "spec": {
                    "containers": [container],
                    "volumes": [{"name": "shares", "emptyDir": {}}],
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "terminationGracePeriodSeconds": 2,
                },
            },
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(SHARE_SERVER, server_labels, namespace=namespace),
        # ClusterIP: reachable from inside the cluster only.
        "spec": {
            "type": "ClusterIP",
            "selector": {ROLE: "share-server"},
            "ports": [{"name": "rsync", "port": RSYNC_PORT, "targetPort": RSYNC_PORT}],
        },
    }
    # Only womm's worker pods of some share may reach the server's port (each share's key
    # guards its own files there; where the network enforces no policies, only the keys do).
    policy = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(SHARE_SERVER, server_labels, namespace=namespace),
        "spec": {
            "podSelector": {"matchLabels": {ROLE: "share-server"}},
            "policyTypes": ["Ingress"],
            "ingress": [{
                "from": [{"podSelector": {"matchLabels": dict(MANAGED_BY),
                                          "matchExpressions": [{"key": SHARE, "operator": "Exists"}]}}],
                "ports": [{"protocol": "TCP", "port": RSYNC_PORT}],
            }],
        },
    }
    return [deployment, service, policy]


def account(name, rules, namespace, role):
    """A ServiceAccount with a Role of exactly `rules`, bound to it."""
    account_labels = {**MANAGED_BY, ROLE: role}
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": metadata(name, account_labels, namespace=namespace)},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": metadata(name, account_labels, namespace=namespace), "rules": rules,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": metadata(name, account_labels, namespace=namespace),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}],
        },
    ]


def reaper(image, namespace, schedule="*/15 * * * *"):
    """The optional in-cluster reaper (`womm cluster-setup --reaper`), for teams whose laptops go away:
    every 15 minutes it finishes the tasks whose heartbeat stopped, and COMPLETE ones past a day."""
    rules = [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["list", "deletecollection"]},
        {"apiGroups": ["apps"], "resources": ["replicasets"], "verbs": ["list", "deletecollection"]},
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "deletecollection"]},
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["deletecollection"]},
        {"apiGroups": ["networking.k8s.io"], "resources": ["networkpolicies"], "verbs": ["deletecollection"]},
    ]
    job = {
        "backoffLimit": 0,
        "ttlSecondsAfterFinished": 3600,
        "template": {
            "metadata": {"labels": {**MANAGED_BY, ROLE: "reaper"}},
            "spec": {
                "serviceAccountName": REAPER,
                "restartPolicy": "Never",
                "enableServiceLinks": False,
                "containers": [{
                    "name": "reaper", "image": image,
                    "command": ["womm-reap", "reap", "--all-hosts", "--ttl", "24h"],
                    "env": [{"name": "WOMM_HOME", "value": "/tmp/womm"}, {"name": "HOME", "value": "/tmp"}],
                    "resources": {"requests": {"cpu": "10m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
                }],
            },
        },
    }
    cron = {
        "apiVersion": "batch/v1", "kind": "CronJob",
        "metadata": metadata(REAPER, {**MANAGED_BY, ROLE: "reaper"}, namespace=namespace),
        "spec": {"schedule": schedule, "concurrencyPolicy": "Forbid", "successfulJobsHistoryLimit": 1,
                 "failedJobsHistoryLimit": 1, "jobTemplate": {"spec": job}},
    }
    return account(REAPER, rules, namespace, "reaper") + [cron]


def leader_rbac(namespace):
    """What the in-cluster leader of an --async task may do, and nothing more."""
    rules = [
        # its workers: create the ReplicaSet, watch the pods, remove them all at the end
        {"apiGroups": ["apps"], "resources": ["replicasets"], "verbs": ["create", "list", "deletecollection"]},
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch", "deletecollection"]},
        # one exec stream per job slot, and the share's syncback into the share server
        # (an exec over WebSocket is a GET: both verbs, as kubectl exec needs)
        {"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["create", "get"]},
        # the share server's address, for the workers
        {"apiGroups": [""], "resources": ["services"], "verbs": ["get"]},
        # the task's heartbeat (womm.taskobjects)
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "patch"]},
    ]
    return account(LEADER_ACCOUNT, rules, namespace, "leader")


def leader_pod(task, image):
    """The in-cluster coordinator of an --async task: GNU parallel and the controller, run from the
    task record (and GNU parallel's stdin) in the task's ConfigMap, at womm_run.leader.TASK_DIR."""
    container = {
        "name": "leader",
        "image": image,
        "command": ["womm-run", "leader", "/womm/task/task.json"],
        "env": [{"name": "WOMM_HOME", "value": "/tmp/womm"}, {"name": "HOME", "value": "/tmp"}],
        "workingDir": "/tmp",
        "resources": {"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"memory": "1Gi"}},
        "volumeMounts": [{"name": "task", "mountPath": "/womm/task", "readOnly": True}],
    }
    pod_spec = {
        "containers": [container],
        "volumes": [{"name": "task", "configMap": {"name": f"womm-task-{task['id']}"}}],
        "serviceAccountName": LEADER_ACCOUNT,
        "restartPolicy": "Never",
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": 5,
    }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata(f"womm-leader-{task['id']}", labels(task, role="leader"), annotations(task),
                             owner=task.get("owner")),
        "spec": pod_spec,
    }


def leader_task(task, stdin, files=None):
    """An --async task's record, and its jobs' input (GNU parallel's stdin), for its leader.

    A ConfigMap, not the pod's arguments: a command of 100,000 arguments fits (up to ~1 MiB in all).
    """
    import base64

    data = {"task.json": base64.b64encode(json.dumps(task).encode()).decode()}
    if stdin:
        data["input"] = base64.b64encode(stdin).decode()
    for key, content in (files or {}).items():  # the input files, travelling with the task
        data[key] = base64.b64encode(content).decode()
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(f"womm-task-{task['id']}", labels(task, role="input"), owner=task.get("owner")),
        "binaryData": data,
    }
