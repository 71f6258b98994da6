"""The share protocol: what every kind of share does, in the order a run uses it.

Every kind gives the pods the directory at the same absolute path. A run uses its
share in this order:

  prepare(task, on_fatal)  on the user's machine, before the pods can use it (eager: upload)
  pod_parts(task)          what the share adds to the workers' pod template
  agent_args(task)         what the pods' agents do for it as jobs end (syncback: send results)
  attach_pod(pod, task)    each pod, as it becomes ready (lazy: mount)
  bring_back(task)         on the user's machine, after the last job: the pods' changes into
                           the directory, and the task's copy in the cluster let go
  close()

A synchronous run does all of it; for an --async task the client prepares, its
leader attaches, and `womm finish` brings back. What a kind can do is its own to
say: check_async(), and sync_now() for `womm share sync`.
"""

from womm.errors import WommError


class Share:
    kind = "none"
    syncs_back = False  # brings the pods' changes back into the directory
    # attach_pod needs the pod ready (containers of its own running): its agent is not started
    # before the pod is said to be ready (womm_run.pods' early attempts)
    needs_ready_pods = False

    def __init__(self, directory, share_id, cluster, log):
        self.directory = directory
        self.share_id = share_id
        self.cluster = cluster
        self.log = log

    def check_async(self):
        """Refuse (UsageError) if an --async task, which outlives this client, cannot use this share."""

    def directory_volume(self, task, source=None):
        """The volume that holds the directory in the pod, at its local path."""
        volume = {"name": "womm-dir", **(source or {"emptyDir": {}})}
        mount = {"name": "womm-dir", "mountPath": self.directory}
        return volume, mount

    def prepare(self, task, on_fatal=None):
        """Before the pods start; on_fatal(message) ends the run if what it started later fails."""

    def wait_prepared(self):
        """Block until what prepare() started is done; raise its error."""

    def pod_parts(self, task):
        volume, mount = self.directory_volume(task)
        return {"volumes": [volume], "mounts": [mount]}

    def agent_args(self, task):
        return []

    def attach_pod(self, pod, task):
        pass

    def bring_back(self, task):
        pass

    def sync_now(self):
        """`womm share sync`: send the directory now; rsync's figures."""
        raise WommError(f"this directory's share is {self.kind}: only eager shares are synced")

    def close(self):
        pass


class NoShare(Share):
    """The pods get an empty directory at the same path: jobs run there, results stay there."""

    kind = "none"
