"""How a directory reaches a task's pods: the share of a task or of a directory, by its kind.

  none            an empty directory (the pods get nothing of yours)
  eager           rsync'ed to the share server before jobs start (shares.eager)
  eager-syncback  as eager, and the pods' changes come back (shares.syncback's rules)
  lazy            mounted live over the exec API (shares.lazy)

The protocol every kind follows is shares.base.Share.
"""

KINDS = ("lazy", "eager", "eager-syncback", "none")


def for_task(task, cluster, log):
    """The share of a task (its record says the kind, the share id and the directory: its project's,
    which holds the directory the jobs run in)."""
    return _make(task.share, task.root or task.cwd, task.share_id, cluster, log)


def for_project(project, cluster, log):
    """The share of a directory set up with `womm setup` (for `womm share`)."""
    return _make(project.get("share", "none"), project["path"], project.get("share_id"), cluster, log)


def _make(kind, directory, share_id, cluster, log):
    if kind == "none":
        from womm.shares.base import NoShare

        return NoShare(directory, share_id, cluster, log)
    if kind in ("eager", "eager-syncback"):
        from womm.shares.eager import EagerShare

        return EagerShare(directory, share_id, cluster, log, syncback=kind == "eager-syncback")
    if kind == "lazy":
        from womm.shares.lazy import LazyShare

        return LazyShare(directory, share_id, cluster, log)
    raise ValueError(f"unknown share kind {kind!r}")
