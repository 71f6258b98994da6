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


def resolve_list(name, default):
    """A setting that is a list of paths (share-exclude, share-protect): WOMM_<NAME> comma-separated, or
    a list (or a comma-separated string) in settings.json; the default where neither is set."""
    from womm.errors import WommError

    value = resolve(name)
    if value is None:
        return list(default)
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise WommError(f"the setting {name} must be a list of paths, or one string of them separated by commas")
    return [v.strip().strip("/") for v in value if v.strip().strip("/")]


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
    except ApiError as e:
        if e.status != 404:  # only an absent ConfigMap means that none was set up
            said = f"{e.status} {e.reason}".strip()
            message = str(e) if str(e) != said else ""
            raise WommError(f"cannot read ConfigMap womm-config in namespace {cluster.namespace}: {said}"
                            + (f": {message}" if message else ""), doctor=e.doctor) from None
        image = None
    if not image:
        raise WommError(f"no {name.replace('-', ' ')} known for namespace {cluster.namespace}: "
                        "run `womm build-images` and `womm cluster-setup --apply`", doctor=True)
    return image


def configured_pull_secret(cluster):
    """The Secret pods pull womm's helper image with: this user's setting helper-pull-secret, else
    the namespace's womm-config (`womm cluster-setup --pull-secret`); None where there is none."""
    from womm.kube import ApiError

    secret = resolve("helper-pull-secret")
    if secret:
        return secret
    try:
        return (cluster.request("GET", cluster.path("configmaps", "womm-config")).get("data") or {}).get("pull-secret")
    except ApiError as e:
        if e.status == 404:
            return None
        raise
