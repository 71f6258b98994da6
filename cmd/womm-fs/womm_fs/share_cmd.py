"""`womm share [status|sync]`: this directory's share, and an eager upload on demand."""

import json
import os

from womm import home, records, shares
from womm.report import say


def main(args):
    project = records.require_project(os.getcwd())
    if args.action == "sync":
        from womm.kube import Cluster

        cluster = Cluster.of(project, args)
        stats = shares.for_project(project, cluster, say).sync_now()
        if args.output == "json":
            print(json.dumps(stats))
        else:
            print(f"sent {stats.get('files_transferred', 0)} files "
                  f"({stats.get('bytes_transferred', 0)} bytes) of {stats.get('files', 0)}")
        return 0
    info = {
        "path": project.get("path"),
        "share": project.get("share"),
        "share_id": project.get("share_id"),
        "image": project.get("image"),
        "namespace": project.get("namespace"),
        "log": str(home.share_log(project["share_id"])) if project.get("share_id") else None,
    }
    if args.output == "json":
        print(json.dumps(info))
    else:
        for key, value in info.items():
            print(f"{key + ':':11} {value if value is not None else '-'}")
    return 0
