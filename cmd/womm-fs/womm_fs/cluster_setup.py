"""`womm cluster-setup`: the objects that prepare a namespace for womm, printed or applied."""

import json
import sys

from womm import manifests
from womm.errors import WommError
from womm.settings import resolve


def objects(namespace, share_image, leader_image):
    objs = manifests.share_server(share_image, namespace) + manifests.leader_rbac(namespace)
    # The leader image is not used by an object of its own (each --async task
    # creates its leader pod); record it where `womm parallel --async` looks.
    objs.append({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": manifests.metadata("womm-config", {**manifests.MANAGED_BY}, namespace=namespace),
        "data": {"leader-image": leader_image, "share-image": share_image},
    })
    return objs


def images(args):
    share_image = resolve("share-image", args.share_image)
    leader_image = resolve("leader-image", args.leader_image)
    missing = [n for n, v in (("--share-image", share_image), ("--leader-image", leader_image)) if not v]
    if missing:
        raise WommError(
            f"no {' or '.join(missing)}: build them with `womm build-images --prefix REGISTRY/PATH/` "
            "(it remembers them), or name existing ones"
        )
    return share_image, leader_image


def main(args):
    share_image, leader_image = images(args)
    if args.apply:
        from womm.kube import Cluster

        cluster = Cluster(args.context, args.namespace)
        for obj in objects(cluster.namespace, share_image, leader_image):
            print(apply(cluster, obj))
        return 0
    namespace = args.namespace or _current_namespace(args.context)
    print_objects(objects(namespace, share_image, leader_image), args.output)
    return 0


def print_objects(objs, output="yaml", out=None):
    out = out or sys.stdout
    if output == "json":
        json.dump({"apiVersion": "v1", "kind": "List", "items": objs}, out, indent=2)
        out.write("\n")
        return
    import yaml

    out.write(yaml.safe_dump_all(objs, sort_keys=False))


def _current_namespace(context):
    # The namespace is needed in the RoleBinding's subject; reading the kubeconfig
    # is enough (no API call), and without one "default" is what kubectl would use.
    try:
        from womm.kube import Cluster

        return Cluster(context).namespace
    except WommError:
        return "default"


def apply(cluster, obj):
    """Create the object, or update it if it exists (so applying twice is no error)."""
    label = f"{obj['kind'].lower()}/{obj['metadata']['name']}"
    return f"{label} {cluster.apply(obj)}"
