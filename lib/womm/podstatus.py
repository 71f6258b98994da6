"""What a pod's status says: ready or not, and if not, why, and whether waiting can help.

Pods are dicts, as the API sends them. The reasons are the kubelet's (a container waiting)
and the scheduler's (not scheduled); a pull that failed is retried by the kubelet (throttled,
a registry hiccup) unless the registry said the image is not there, or not ours to pull.
An init container that failed (womm's share helpers end only when waiting cannot help) says
why in its termination message, which is what is said then ("womm-share-pull: cannot connect
to the share server ...: a NetworkPolicy may deny ...").
"""

HOPELESS = {"InvalidImageName", "ErrImageNeverPull", "CreateContainerConfigError", "CreateContainerError",
            "CrashLoopBackOff", "RunContainerError"}
PULL = {"ErrImagePull", "ImagePullBackOff"}
PULL_HOPELESS = ("not found", "manifest unknown", "unauthorized", "denied", "no such host", "invalid reference",
                 "repository does not exist")


def hopeless(reason, message):
    return reason in HOPELESS or (reason in PULL and any(p in (message or "").lower() for p in PULL_HOPELESS))


def init_failure(pod):
    """Why one of the pod's init containers failed: its termination message (its first line), else its
    reason and exit status; None while none has failed. The kubelet runs a failed one again after a
    back-off (CrashLoopBackOff): its last end is what counts then."""
    for s in (pod.get("status") or {}).get("initContainerStatuses") or []:
        state = s.get("state") or {}
        ended = state.get("terminated")
        if not ended and (state.get("waiting") or {}).get("reason") == "CrashLoopBackOff":
            ended = (s.get("lastState") or {}).get("terminated")
        if not ended or ended.get("exitCode") in (0, None):
            continue
        name = s.get("name") or "init"
        said = ((ended.get("message") or "").strip().splitlines() or [""])[0].strip()
        if not said:
            return f"init container {name} failed: {ended.get('reason') or 'Error'} (exit {ended['exitCode']})"
        return said if said.startswith(f"{name}: ") else f"init container {name} failed: {said}"
    return None


def ready(pod):
    """Running, not being deleted, and every container ready."""
    status = pod.get("status") or {}
    statuses = status.get("containerStatuses") or []
    return (status.get("phase") == "Running" and not pod["metadata"].get("deletionTimestamp")
            and bool(statuses) and all(s.get("ready") for s in statuses))


def waiting(pod):
    """(why the pod does not run yet, or None; whether that will not change by waiting)."""
    status = pod.get("status") or {}
    why, lost = None, False
    failed = init_failure(pod)
    if failed:
        return failed, True
    for s in (status.get("containerStatuses") or []) + (status.get("initContainerStatuses") or []):
        w = (s.get("state") or {}).get("waiting") or {}
        reason, message = w.get("reason"), w.get("message") or s.get("image")
        if hopeless(reason, message):
            return f"{reason}: {message}", True
        if reason in PULL:
            why = f"{reason}: {message}"
    why = not_scheduled(pod) or why
    return why, lost


def not_scheduled(pod):
    """What the scheduler said of a pod it did not place, or None; where no node matched, the platform
    womm asked for is named (an image built for Arm on a cluster of x86 nodes: no node will do)."""
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c.get("type") == "PodScheduled" and c.get("status") == "False":
            said = c.get("message") or c.get("reason") or ""
            wanted = (pod.get("spec") or {}).get("nodeSelector") or {}
            if "affinity/selector" in said and "kubernetes.io/arch" in wanted:
                said += (f" (womm asks for {wanted.get('kubernetes.io/os', 'linux')}/{wanted['kubernetes.io/arch']} "
                         "nodes: the platform the image was built for)")
            return f"not scheduled: {said}"
    return None


def trouble(pod):
    """Why one of womm's pods does not run (yet), as the scheduler or the kubelet says it
    ("ImagePullBackOff: ...", "not scheduled: ..."); None while it is merely starting, or runs."""
    meta, status = pod.get("metadata") or {}, pod.get("status") or {}
    if meta.get("deletionTimestamp"):
        return "being deleted"
    if status.get("reason") == "Evicted":
        return f"evicted: {status.get('message', '')}".strip()
    failed = init_failure(pod)
    if failed:
        return failed
    for s in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
        waiting = (s.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") not in (None, "ContainerCreating", "PodInitializing"):
            return f"{waiting['reason']}: {waiting.get('message') or s.get('image')}"
    return not_scheduled(pod)
