"""What a pod's status says: ready or not, and if not, why, and whether waiting can help.

Pods are dicts, as the API sends them. The reasons are the kubelet's (a container waiting)
and the scheduler's (not scheduled); a pull that failed is retried by the kubelet (throttled,
a registry hiccup) unless the registry said the image is not there, or not ours to pull.
"""

HOPELESS = {"InvalidImageName", "ErrImageNeverPull", "CreateContainerConfigError", "CreateContainerError",
            "CrashLoopBackOff", "RunContainerError"}
PULL = {"ErrImagePull", "ImagePullBackOff"}
PULL_HOPELESS = ("not found", "manifest unknown", "unauthorized", "denied", "no such host", "invalid reference",
                 "repository does not exist")


def hopeless(reason, message):
    return reason in HOPELESS or (reason in PULL and any(p in (message or "").lower() for p in PULL_HOPELESS))


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
    for s in (status.get("containerStatuses") or []) + (status.get("initContainerStatuses") or []):
        w = (s.get("state") or {}).get("waiting") or {}
        reason, message = w.get("reason"), w.get("message") or s.get("image")
        if hopeless(reason, message):
            return f"{reason}: {message}", True
        if reason in PULL:
            why = f"{reason}: {message}"
    for c in status.get("conditions") or []:
        if c.get("type") == "PodScheduled" and c.get("status") == "False":
            why = f"not scheduled: {c.get('message') or c.get('reason')}"
    return why, lost


def trouble(pod):
    """Why one of womm's pods does not run (yet), as the scheduler or the kubelet says it
    ("ImagePullBackOff: ...", "not scheduled: ..."); None while it is merely starting, or runs."""
    meta, status = pod.get("metadata") or {}, pod.get("status") or {}
    if meta.get("deletionTimestamp"):
        return "being deleted"
    if status.get("reason") == "Evicted":
        return f"evicted: {status.get('message', '')}".strip()
    for s in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
        waiting = (s.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") not in (None, "ContainerCreating", "PodInitializing"):
            return f"{waiting['reason']}: {waiting.get('message') or s.get('image')}"
    for c in status.get("conditions") or []:
        if c.get("type") == "PodScheduled" and c.get("status") == "False":
            return f"not scheduled: {c.get('message') or c.get('reason')}"
    return None
