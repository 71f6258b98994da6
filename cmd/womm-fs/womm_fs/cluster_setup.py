"""`womm cluster-setup`: the objects that prepare a namespace for womm, printed or applied."""

import json
import sys

from womm import manifests
from womm.errors import WommError
from womm.settings import resolve


def objects(namespace, image, reaper=False):
    objs = manifests.share_server(image, namespace) + manifests.leader_rbac(namespace)
    if reaper:
        objs += manifests.reaper(image, namespace)
    # Worker pods and --async leaders use the image too: record it where they look.
    objs.append({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": manifests.metadata("womm-config", {**manifests.MANAGED_BY}, namespace=namespace),
        "data": {"helper-image": image},
    })
    return objs


def helper_image(args):
    image = resolve("helper-image", args.helper_image)
    if not image:
        raise WommError("no --helper-image: build it with `womm build-images --prefix REGISTRY/PATH/` "
                        "(it remembers it), or name an existing one")
    return image


def main(args):
    image = helper_image(args)
    if args.apply:
        from womm.kube import Cluster

        cluster = Cluster(args.context, args.namespace)
        for obj in objects(cluster.namespace, image, args.reaper):
            print(apply(cluster, obj))
        return 0
    namespace = args.namespace or _current_namespace(args.context)
    print_objects(objects(namespace, image, args.reaper), args.output)
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
