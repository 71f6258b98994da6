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
        if not getattr(args, "no_wait", False):
            wait_rolled_out(cluster)
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


ROLLOUT_TIMEOUT = 180


def wait_rolled_out(cluster, timeout=ROLLOUT_TIMEOUT):
    """Like `kubectl rollout status`: the share server as applied is running, or its own reason why not."""
    import time

    from womm import manifests, taskobjects
    from womm.report import Progress
    from womm.shares.eager import ShareServer

    server, progress = ShareServer(cluster), Progress()
    path = cluster.path("deployments", manifests.SHARE_SERVER)
    deadline = time.monotonic() + timeout
    try:
        while True:
            d = cluster.request("GET", path)
            want, status = d["spec"].get("replicas", 1), d.get("status") or {}
            if (status.get("observedGeneration", 0) >= d["metadata"].get("generation", 0)
                    and status.get("updatedReplicas", 0) >= want and status.get("availableReplicas", 0) >= want
                    and status.get("replicas", 0) == want):
                progress.done()
                print(f"deployment/{manifests.SHARE_SERVER} rolled out")
                return
            pods = cluster.request("GET", cluster.path("pods"), {"labelSelector": taskobjects.selector(role="share-server")})
            why, hopeless = server.why_not([p for p in pods["items"] if not p["metadata"].get("deletionTimestamp")])
            if hopeless or time.monotonic() > deadline:
                raise WommError(f"the share server did not start within {timeout} s: {why} (run `womm doctor`)")
            progress.update(f"waiting for the share server: {why}")
            time.sleep(1)
    finally:
        progress.done()


def apply(cluster, obj):
    """Create the object, or update it if it exists (so applying twice is no error)."""
    label = f"{obj['kind'].lower()}/{obj['metadata']['name']}"
    return f"{label} {cluster.apply(obj)}"
