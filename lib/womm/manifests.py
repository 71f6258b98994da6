"""Every Kubernetes object womm creates, built here and nowhere else.

Objects are plain dicts: the API accepts them, and cluster-setup prints them.
Everything carries womm's labels (womm.taskobjects owns them, and a task's Lease,
and finds and deletes a task's objects by them).
"""

import json

from womm import quantity
from womm.podrun import POD_RUN, prepare_script
from womm.taskobjects import HOST, MANAGED_BY, ROLE, SHARE, TASK, annotations, labels

SHARE_SERVER = "womm-fs"  # the share server's Deployment and Service
LEADER_ACCOUNT = "womm-leader"  # ServiceAccount, Role and RoleBinding of --async leaders
REAPER = "womm-reaper"  # the optional in-cluster reaper's CronJob, and its account
SHARE_CONTAINER = "womm-share"  # the share's container in a worker pod
AGENT_CONTAINER = "womm"  # the agent's container in a worker pod: womm's image
JOB_CONTAINER = "job"
RSYNC_PORT = 873  # the share server's Service
RSYNC_CONTAINER_PORT = 8873  # its daemon's: not a privileged port, for a server that is not root
KILL_GRACE = 2  # seconds between TERM and KILL for a job being killed
# The pod's run directory in memory: every job makes and removes its fifos there (tmpfs does it for
# about half the CPU of a disk's file system). It holds fifos, a few lines per job, the env scripts
# and the static setsid (2 MB); its pages count against the womm container's memory.
RUN_DIR_LIMIT = "32Mi"
HELPER_USER = 10001  # womm's own pods that need no user's files run as this user, never as root

# What womm's own containers ask for (requests) and may use (limits), every one of them
# declared: a namespace's ResourceQuota refuses a pod whose containers leave out what it
# counts, and a LimitRange's defaults would land on them otherwise. In each worker pod, womm's
# containers beside the job's (the agent, the share's helpers) ask for AGENT_CPU and
# AGENT_MEM (the settings agent-cpu and agent-mem change them, as REQUEST or REQUEST/LIMIT);
# their CPU limit is the job's CPU (--kube-cpu), within AGENT_CPU_LIMIT: what they do grows
# with the job's traffic, and must not be throttled below it.
AGENT_CPU = "50m"
AGENT_CPU_LIMIT = ("100m", "1")
AGENT_MEM = "64Mi/128Mi"
SHARE_SERVER_RESOURCES = {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "1", "memory": "256Mi"}}
LEADER_RESOURCES = {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}}
REAPER_RESOURCES = {"requests": {"cpu": "10m", "memory": "64Mi"}, "limits": {"cpu": "200m", "memory": "256Mi"}}
PROBE_RESOURCES = {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"cpu": "100m", "memory": "64Mi"}}
# Its page cache is what spares the user's machine: room for it.
CACHE_RESOURCES = {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "1", "memory": "2Gi"}}

ARCH_NAMES = {"x86_64": "amd64", "aarch64": "arm64"}  # the kernel's names, as Go's (the nodes' labels) say them

# What Pod Security's `restricted` asks of every container, and of a pod that runs as no root.
HARDENED = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
SECCOMP = {"type": "RuntimeDefault"}

# The job container's first words: its runner (runner.sh, this script's $0) under the image's bash
# where it has one, whose job control gives each job a process group of its own as it forks it, with
# no setsid to exec at each job's start (README: Performance); under the image's sh elsewhere.
# POSIX mode: no startup file ($BASH_ENV, the image's: a `set -e` there would end a slot's loop at
# its first failing job), and a redirection that fails ends the shell, as in sh.
UNDER_BASH = ('command -v bash >/dev/null 2>&1 && bash --posix -c : 2>/dev/null && '
              'exec bash --posix -c "$0" womm-runner "$@"; exec sh -c "$0" womm-runner "$@"')

# PID 1 of a worker's agent container: makes the directory the agent and the job runner
# share, then idles (and is gone at once on SIGTERM: a plain `sleep` as PID 1 would hold
# pod deletion for the whole grace period).
AGENT_IDLE = ["sh", "-c", f"{prepare_script(POD_RUN)} && exec womm-idle"]


def metadata(name, labels_, annotations_=None, namespace=None, owner=None):
    meta = {"name": name, "labels": labels_}
    if annotations_:
        meta["annotations"] = annotations_
    if namespace:
        meta["namespace"] = namespace
    if owner:  # the task's Lease: deleting it deletes this (the garbage collector)
        meta["ownerReferences"] = [owner]
    return meta


def request_limit(text, default_limit=None):
    """(request, limit) of a setting written REQUEST or REQUEST/LIMIT."""
    request, _, limit = str(text).partition("/")
    return request, limit or default_limit or request


def agent_resources(task):
    """What womm's containers in one of the task's worker pods ask for and may use."""
    low, high = (quantity.millicores(q) for q in AGENT_CPU_LIMIT)
    job_cpu = quantity.cpu(min(max(quantity.millicores(task.cpu), low), high))
    cpu_request, cpu_limit = request_limit(task.agent_cpu or AGENT_CPU, job_cpu)
    mem_request, mem_limit = request_limit(task.agent_mem or AGENT_MEM)
    return {"requests": {"cpu": cpu_request, "memory": mem_request}, "limits": {"cpu": cpu_limit, "memory": mem_limit}}


def run_as(task):
    """(uid, gid) every container of the task's worker pods runs as, or None: the images' own users."""
    if not task.run_as:
        return None
    uid, _, gid = str(task.run_as).partition(":")
    return int(uid), int(gid or uid)


def non_root_pod(uid, gid):
    """The pod's securityContext for containers that run as uid:gid (Pod Security `restricted`)."""
    return {"runAsNonRoot": True, "runAsUser": uid, "runAsGroup": gid, "fsGroup": gid, "seccompProfile": SECCOMP}


def _womm_container(container, resources, hardened):
    """One of womm's containers in a worker pod: its resources declared, and hardened where asked
    (a privileged one, a lazy share's, stays as it is: Pod Security refuses it anyway)."""
    container.setdefault("resources", resources)
    context = container.setdefault("securityContext", {})
    if not context.get("privileged"):
        context.setdefault("allowPrivilegeEscalation", False)
        if hardened:
            context.update(HARDENED)
    return container


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
    if task.share in ("eager", "eager-syncback") and task.share_id:
        task_labels[SHARE] = task.share_id  # what lets its helpers reach the share server (NetworkPolicy)
    resources = {"cpu": str(task.cpu), "memory": str(task.mem)}
    run_mount = {"name": "womm-pod", "mountPath": POD_RUN}
    user = run_as(task)
    job = {
        "name": JOB_CONTAINER,
        "image": task.image,
        "command": ["sh", "-c", UNDER_BASH, runner, POD_RUN, task.cwd, task.shell or "sh", str(KILL_GRACE)],
        "workingDir": task.cwd,
        "resources": {"requests": resources, "limits": resources},
        "volumeMounts": [*share_spec.get("mounts", []), run_mount],
        "securityContext": {"allowPrivilegeEscalation": False, **(HARDENED if user else {})},
    }
    agent = {
        "name": AGENT_CONTAINER,
        "image": womm_image,
        "command": AGENT_IDLE,
        "volumeMounts": [run_mount, *share_spec.get("agent_mounts", [])],
    }
    helpers = agent_resources(task)
    womm_containers = [agent, *share_spec.get("containers", [])]
    init_containers = share_spec.get("init_containers", [])
    for container in [*womm_containers, *init_containers]:
        _womm_container(container, helpers, hardened=bool(user))
    pod_spec = {
        # The agent first: it makes the shared directory the runner waits for.
        "containers": [agent, job, *womm_containers[1:]],
        "initContainers": init_containers,
        "volumes": [*share_spec.get("volumes", []), {"name": "womm-pod", "emptyDir": {"medium": "Memory", "sizeLimit": RUN_DIR_LIMIT}}],
        # Jobs get no API credentials: only the leader of --async tasks has any.
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": 2,
        "restartPolicy": "Always",
        # Spread over the nodes, softly: a node's failure takes fewer of the task's slots, and its jobs
        # get more of the cluster's machines; where the spread cannot be kept, the pods go anyway.
        "topologySpreadConstraints": [worker_spread(task)],
    }
    if node_selector(task.platform):
        # On a cluster of x86 and Arm nodes, only where the image runs (else: "exec format error").
        pod_spec["nodeSelector"] = node_selector(task.platform)
    if user:
        pod_spec["securityContext"] = non_root_pod(*user)
    pull_secrets(pod_spec, task.pull_secret, task.helper_pull_secret)
    return {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": metadata(f"womm-task-{task.id}", task_labels, annotations(task), owner=task.owner),
        "spec": {
            "replicas": task.pods,
            "selector": {"matchLabels": {TASK: task.id, ROLE: "worker"}},
            "template": {
                "metadata": {"labels": task_labels,
                             "annotations": {"kubectl.kubernetes.io/default-container": JOB_CONTAINER}},
                "spec": pod_spec,
            },
        },
    }


def node_selector(platform):
    """The well-known node labels of a platform, "os/arch" (a variant, "arm/v7", has no label); {} for
    none, or one that does not say both."""
    os_name, _, arch = (platform or "").partition("/")
    arch = ARCH_NAMES.get(arch.split("/")[0], arch.split("/")[0])
    return {"kubernetes.io/os": os_name, "kubernetes.io/arch": arch} if os_name and arch else {}


def worker_spread(task):
    """A preference (not a requirement) for the task's worker pods to be spread evenly over the nodes."""
    return {
        "maxSkew": 1,
        "topologyKey": "kubernetes.io/hostname",
        "whenUnsatisfiable": "ScheduleAnyway",
        "labelSelector": {"matchLabels": {TASK: task.id, ROLE: "worker"}},
    }


def pull_secrets(pod_spec, *names):
    """The pod may pull its images with these Secrets (the user's image's, the helper image's)."""
    names = list(dict.fromkeys(n for n in names if n))
    if names:
        pod_spec["imagePullSecrets"] = [{"name": n} for n in names]
    return pod_spec


def helper_pod_spec(spec, pull_secret=None, user=HELPER_USER):
    """A pod of womm's own (share server, leader, reaper): as no root, hardened, able to pull."""
    spec["securityContext"] = non_root_pod(user, user)
    for container in spec["containers"]:
        container.setdefault("securityContext", {}).update(HARDENED)
    return pull_secrets(spec, pull_secret)


def share_cache_name(task):
    return f"womm-share-{task.id}"


def share_cache(task, port):
    """A lazy share's cache, one per task: a pod that mounts the directory from the user's machine
    over one exec stream and serves it to the task's pods (womm.shares.lazy), and the
    NetworkPolicy that lets only those pods reach it."""
    cache_labels = labels(task, role="share-cache")
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata(share_cache_name(task), cache_labels, owner=task.owner),
        "spec": {
            "containers": [{
                "name": SHARE_CONTAINER,
                "image": task.helper_image,
                "command": ["womm-idle"],
                "securityContext": {"privileged": True},  # FUSE
                "ports": [{"name": "sftp", "containerPort": port}],
                "resources": CACHE_RESOURCES,
            }],
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "terminationGracePeriodSeconds": 2,
            "restartPolicy": "Never",
            **pull_secrets({}, task.helper_pull_secret),
        },
    }
    policy = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(share_cache_name(task), labels(task, role="share-cache"), owner=task.owner),
        "spec": {
            "podSelector": {"matchLabels": {TASK: task.id, ROLE: "share-cache"}},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": [{"podSelector": {"matchLabels": {TASK: task.id, ROLE: "worker"}}}],
                         "ports": [{"protocol": "TCP", "port": port}]}],
        },
    }
    return [pod, policy]


# What `womm doctor`'s FUSE probe exits with, and what each status means.
FUSE_PROBE_SCRIPT = ("command -v sshfs >/dev/null || exit 3; test -c /dev/fuse || exit 4; "
                     "(exec 3<>/dev/fuse) 2>/dev/null || exit 5; exit 0")
FUSE_PROBE_EXITS = {3: "the helper image has no sshfs", 4: "the node has no /dev/fuse (no fuse module loaded?)",
                    5: "/dev/fuse cannot be opened in a privileged container"}


def fuse_probe(name, image, pull_secret=None):
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
                "resources": PROBE_RESOURCES,
            }],
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "terminationGracePeriodSeconds": 0,
            "activeDeadlineSeconds": 120,  # if womm doctor is killed before it deletes the pod
            "restartPolicy": "Never",
            **pull_secrets({}, pull_secret),
        },
    }


NETWORK_PROBE = "womm.dev/probe"  # `womm doctor`'s network probe's own label, beside a worker's
NETWORK_PROBE_SECONDS = 10  # how long it tries


def network_probe(name, image, server_ip, share_id, host, pull_secret=None):
    """`womm doctor`'s test of the path an eager share's pods take: a pod of the helper image,
    labelled as the share's worker pods are (but of no task), that tries the share server's rsync
    port as their init container does, again and again for NETWORK_PROBE_SECONDS (a new pod's
    policy rules may take a moment), and exits 0 once it connects; else with rsync's status
    (10: refused or unreachable, 35: no answer) and rsync's complaint as its termination message.
    The share server's NetworkPolicy admits it as it admits the workers; a policy that selects the
    workers selects it too."""
    script = (f"end=$(($(date +%s) + {NETWORK_PROBE_SECONDS})); while :; do "
              f"rsync --contimeout=3 rsync://{server_ip}:{RSYNC_PORT}/ >/dev/null 2>/tmp/said && exit 0; rc=$?; "
              "if [ $(date +%s) -ge $end ]; then head -n 1 /tmp/said >/dev/termination-log; exit $rc; fi; "
              "sleep 0.5; done")
    probe_labels = {**MANAGED_BY, ROLE: "worker", HOST: host, SHARE: share_id, NETWORK_PROBE: "network"}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata(name, probe_labels),
        "spec": helper_pod_spec({
            "containers": [{
                "name": "probe",
                "image": image,
                "command": ["sh", "-c", script],
                "resources": PROBE_RESOURCES,
            }],
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "terminationGracePeriodSeconds": 0,
            "activeDeadlineSeconds": 120,  # if womm doctor is killed before it deletes the pod
            "restartPolicy": "Never",
        }, pull_secret),
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


def share_server(image, namespace=None, pull_secret=None):
    """The share server: an rsync daemon holding eager shares, one module per share, as no root."""
    server_labels = {**MANAGED_BY, ROLE: "share-server"}
    container = {
        "name": "server",
        "image": image,
        "command": ["womm-fs-server", str(RSYNC_CONTAINER_PORT)],
        "ports": [{"name": "rsync", "containerPort": RSYNC_CONTAINER_PORT}],
        "volumeMounts": [{"name": "shares", "mountPath": "/shares"}],
        "readinessProbe": {"tcpSocket": {"port": RSYNC_CONTAINER_PORT}, "periodSeconds": 2},
        "resources": SHARE_SERVER_RESOURCES,
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
                "spec": helper_pod_spec({
                    "containers": [container],
                    "volumes": [{"name": "shares", "emptyDir": {}}],
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "terminationGracePeriodSeconds": 2,
                }, pull_secret),
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
            "ports": [{"name": "rsync", "port": RSYNC_PORT, "targetPort": RSYNC_CONTAINER_PORT}],
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
                "ports": [{"protocol": "TCP", "port": RSYNC_CONTAINER_PORT}],
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


def reaper(image, namespace, schedule="*/15 * * * *", pull_secret=None):
    """The optional in-cluster reaper (`womm cluster-setup --reaper`), for teams whose laptops go away:
    every 15 minutes it finishes the tasks whose heartbeat stopped, and COMPLETE ones past a day."""
    rules = [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["list", "deletecollection"]},
        {"apiGroups": ["apps"], "resources": ["replicasets"], "verbs": ["list", "deletecollection"]},
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "deletecollection"]},
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["deletecollection"]},
        {"apiGroups": ["networking.k8s.io"], "resources": ["networkpolicies"], "verbs": ["deletecollection"]},
    ]
    job = {
        "backoffLimit": 0,
        "ttlSecondsAfterFinished": 3600,
        "template": {
            "metadata": {"labels": {**MANAGED_BY, ROLE: "reaper"}},
            "spec": helper_pod_spec({
                "serviceAccountName": REAPER,
                "restartPolicy": "Never",
                "enableServiceLinks": False,
                "containers": [{
                    "name": "reaper", "image": image,
                    "command": ["womm-reap", "reap", "--all-hosts", "--ttl", "24h"],
                    "env": [{"name": "WOMM_HOME", "value": "/tmp/womm"}, {"name": "HOME", "value": "/tmp"}],
                    "resources": REAPER_RESOURCES,
                }],
            }, pull_secret),
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
        # its workers (their ReplicaSet made by the task's client: this account makes no pod, so its
        # token, in anyone's hands, mounts no Secret and no node's path): watch them, read their
        # ReplicaSet's conditions (pods that admission refused never exist), remove them at the end
        # (womm's code deletes by its own labels; RBAC cannot make a token do the same)
        {"apiGroups": ["apps"], "resources": ["replicasets"], "verbs": ["get", "list", "deletecollection"]},
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch", "deletecollection"]},
        # one exec stream per job slot, and the share's syncback into the share server
        # (an exec over SPDY is a POST, over WebSocket a GET: both verbs, as kubectl exec needs)
        {"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["create", "get"]},
        # the share server's address, for the workers
        {"apiGroups": [""], "resources": ["services"], "verbs": ["get"]},
        # the task's heartbeat (womm.taskobjects)
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "patch"]},
        # the kubelets' word that a worker's womm container started: its link is tried then (womm_run.pods)
        {"apiGroups": [""], "resources": ["events"], "verbs": ["list", "watch"]},
    ]
    return account(LEADER_ACCOUNT, rules, namespace, "leader")


def leader_pod(task, image):
    """The in-cluster coordinator of an --async task: GNU parallel and the controller, run from the
    task record (and GNU parallel's stdin) in the task's Secret, at womm_run.leader.TASK_DIR."""
    container = {
        "name": "leader",
        "image": image,
        "command": ["womm-run", "leader", "/womm/task/task.json"],
        "env": [{"name": "WOMM_HOME", "value": "/tmp/womm"}, {"name": "HOME", "value": "/tmp"}],
        "workingDir": "/tmp",
        "resources": LEADER_RESOURCES,
        "volumeMounts": [{"name": "task", "mountPath": "/womm/task", "readOnly": True}],
    }
    pod_spec = {
        "containers": [container],
        "volumes": [{"name": "task", "secret": {"secretName": f"womm-task-{task.id}", "defaultMode": 0o440}}],
        "serviceAccountName": LEADER_ACCOUNT,
        "restartPolicy": "Never",
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": 5,
    }
    helper_pod_spec(pod_spec, task.helper_pull_secret)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata(f"womm-leader-{task.id}", labels(task, role="leader"), annotations(task),
                             owner=task.owner),
        "spec": pod_spec,
    }


def leader_task(task, stdin, files=None):
    """An --async task's record, and its jobs' input (GNU parallel's stdin), for its leader.

    A Secret: the command, its inputs and the environment it carries are the user's, and whoever
    may only read pods or ConfigMaps (the built-in `view` role) must not read them. Not the pod's
    arguments: a command of 100,000 arguments fits (up to ~1 MiB in all).
    """
    import base64

    data = {"task.json": base64.b64encode(json.dumps(task.record()).encode()).decode()}
    if stdin:
        data["input"] = base64.b64encode(stdin).decode()
    for key, content in (files or {}).items():  # the input files, travelling with the task
        data[key] = base64.b64encode(content).decode()
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": metadata(f"womm-task-{task.id}", labels(task, role="input"), owner=task.owner),
        "data": data,
    }
