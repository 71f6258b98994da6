"""`womm cluster-setup`: the objects that prepare a namespace for womm, printed or applied."""

import json
import sys

from womm import exitcodes, manifests
from womm.errors import WommError
from womm.settings import resolve


def objects(namespace, image, reaper=False, pull_secret=None):
    objs = manifests.share_server(image, namespace, pull_secret) + manifests.leader_rbac(namespace)
    if reaper:
        objs += manifests.reaper(image, namespace, pull_secret=pull_secret)
    # Worker pods and --async leaders use the image too: record it where they look.
    data = {"helper-image": image}
    if pull_secret:
        data["pull-secret"] = pull_secret
    objs.append({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": manifests.metadata("womm-config", {**manifests.MANAGED_BY}, namespace=namespace),
        "data": data,
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
    pull_secret = getattr(args, "pull_secret", None)
    if args.apply:
        from womm.kube import Cluster

        cluster = Cluster(args.context, args.namespace)
        objs = objects(cluster.namespace, image, args.reaper, pull_secret)
        check_allowed(cluster, objs, args)
        fit_limit_ranges(cluster, objs)
        for obj in objs:
            print(apply(cluster, obj))
        if not getattr(args, "no_wait", False):
            wait_rolled_out(cluster)
        return 0
    namespace = args.namespace or _current_namespace(args.context)
    print_objects(objects(namespace, image, args.reaper, pull_secret), args.output)
    return 0


def check_allowed(cluster, objs, args):
    """Before anything is made: may we make all of it? A user with only `edit` may not make Roles
    and RoleBindings (the --async leader's account): then nothing is made, and what an admin must
    do is said, as one line."""
    from womm import access
    from womm.kube import KINDS

    rules, seen = [], set()
    for obj in objs:
        group_path, resource = KINDS[obj["kind"]]
        group = "" if group_path == "/api/v1" else group_path.split("/")[2]
        for verb in ("create", "patch"):
            if (verb, group, resource) not in seen:
                seen.add((verb, group, resource))
                rules.append((verb, group, resource, None, obj["kind"]))
    missing = access.missing(cluster, rules)
    if not missing:
        return
    names = ", ".join(dict.fromkeys(access.name(*rule[:4]) for rule in missing))
    again = f"womm cluster-setup --apply --namespace {cluster.namespace}" + (" --reaper" if args.reaper else "")
    raise WommError(f"preparing namespace {cluster.namespace} needs rights you do not have ({names}): nothing was "
                    f"made; an admin of the namespace runs `{again}` (or applies what `womm cluster-setup "
                    f"--namespace {cluster.namespace}` prints), and womm then works with the `edit` role",
                    exit_code=exitcodes.FAILURE)


def fit_limit_ranges(cluster, objs):
    """womm's own pods (share server, reaper) brought within the namespace's LimitRanges."""
    from womm import admission

    ranges = admission.limit_ranges(cluster)
    for obj in objs:
        spec = _pod_spec(obj)
        if spec is not None and ranges:
            admission.fit(spec["containers"], ranges)


def _pod_spec(obj):
    if obj["kind"] == "Deployment":
        return obj["spec"]["template"]["spec"]
    if obj["kind"] == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return None


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
            why, hopeless = server.why_not([p for p in pods["items"] if not p["metadata"].get("deletionTimestamp")], d)
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
