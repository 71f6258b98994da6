"""One resolver for settings: command line, then WOMM_<OPTION>, then ~/.womm, then the default."""

import os

from womm import records


def env_name(name):
    return "WOMM_" + name.upper().replace("-", "_")


def resolve(name, cli_value=None, default=None):
    """The value of setting `name` (e.g. "prefix", "kube-mem") and nothing else."""
    if cli_value is not None:
        return cli_value
    value = os.environ.get(env_name(name))
    if value:
        return value
    value = records.load_settings().get(name)
    if value is not None:
        return value
    return default


def configured_image(cluster, name="helper-image"):
    """womm's helper image (the share server, the pods' agents, --async leaders): this user's
    settings first, then the namespace's womm-config (written by `womm cluster-setup`)."""
    from womm.errors import WommError
    from womm.kube import ApiError

    image = resolve(name)
    if image:
        return image
    try:
        image = (cluster.request("GET", cluster.path("configmaps", "womm-config")).get("data") or {}).get(name)
    except ApiError:
        image = None
    if not image:
        raise WommError(f"no {name.replace('-', ' ')} known for namespace {cluster.namespace}: "
                        "run `womm build-images` and `womm cluster-setup --apply`", doctor=True)
    return image
