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
