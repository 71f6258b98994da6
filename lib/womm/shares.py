"""The share protocol: how a directory reaches a task's pods, one class per kind.

Every kind gives the pods the directory at the same absolute path:

  none            an empty directory (the pods get nothing of yours)
  eager           rsync'ed to the share server before jobs start; each pod copies
                  it from there (an init container); what jobs write stays there
  eager-syncback  as eager, then after the last job each pod's changes go back to
                  the share server and from there into the local directory, which
                  never loses a file (see womm.syncback)
  lazy            mounted live: sshfs in a privileged container of each pod, its
                  SFTP stream served by a local sftp-server through the exec API

A Share is used in this order: pod_parts() for the pod template, before_run(),
attach_pod() for each pod as it becomes ready, after_run(), close().
"""

def for_project(project, cluster, log):
    kind = project.get("share", "none")
    if kind == "none":
        return NoShare(project, cluster, log)
    if kind in ("eager", "eager-syncback"):
        from womm.eager import EagerShare

        return EagerShare(project, cluster, log, syncback=kind == "eager-syncback")
    if kind == "lazy":
        from womm.lazy import LazyShare

        return LazyShare(project, cluster, log)
    raise ValueError(f"unknown share kind {kind!r}")


class Share:
    kind = "none"
    privileged = False

    def __init__(self, project, cluster, log):
        self.project = project
        self.cluster = cluster
        self.log = log

    def directory_volume(self, task, source=None):
        """The volume that holds the directory in the pod, at its local path."""
        volume = {"name": "womm-dir", **(source or {"emptyDir": {}})}
        mount = {"name": "womm-dir", "mountPath": task["cwd"]}
        return volume, mount

    def pod_parts(self, task):
        volume, mount = self.directory_volume(task)
        return {"volumes": [volume], "mounts": [mount]}

    def before_run(self, task, on_fatal=None):
        """Before the pods start: on_fatal(message) ends the run if what it started later fails."""

    def attach_pod(self, pod, task):
        pass

    def after_run(self, task, pods):
        pass

    def close(self):
        pass


class NoShare(Share):
    """The pods get an empty directory at the same path: jobs run there, results stay there."""

    kind = "none"



def configured_image(cluster, name):
    """The share or leader image ("share-image", "leader-image"): this user's settings first,
    then the namespace's womm-config (written by `womm cluster-setup`)."""
    from kubernetes.client.rest import ApiException

    from womm.errors import WommError
    from womm.settings import resolve

    image = resolve(name)
    if image:
        return image
    try:
        image = (cluster.request("GET", cluster.path("configmaps", "womm-config")).get("data") or {}).get(name)
    except ApiException:
        image = None
    if not image:
        raise WommError(f"no {name.replace('-', ' ')} known for namespace {cluster.namespace}: "
                        "run `womm build-images` and `womm cluster-setup --apply`")
    return image
