"""Unit-test isolation: no WOMM_* from the developer's shell, a private WOMM_HOME, fake programs on PATH."""

import os
import stat
import sys
import textwrap

import pytest


@pytest.fixture(autouse=True)
def womm_env(tmp_path, monkeypatch):
    for name in list(os.environ):
        if name.startswith("WOMM_"):
            monkeypatch.delenv(name)
    home = tmp_path / "womm-home"
    monkeypatch.setenv("WOMM_HOME", str(home))
    return home


@pytest.fixture
def fake_bin(tmp_path):
    """make(dir_name, program, shell body) writes an executable sh script and returns its path."""

    def make(dir_name, program, body, mode=0o755):
        d = tmp_path / dir_name
        d.mkdir(exist_ok=True)
        path = d / program
        path.write_text("#!/bin/sh\n" + textwrap.dedent(body))
        path.chmod(mode)
        return path

    return make


@pytest.fixture
def dispatcher(tmp_path):
    """A `womm` dispatcher script in its own directory, like a console-script install."""
    d = tmp_path / "install"
    d.mkdir(exist_ok=True)
    path = d / "womm"
    path.write_text(
        f"#!{sys.executable}\nimport sys\nfrom womm_dispatch.cli import main\nsys.exit(main())\n"
    )
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


# Fixtures of the local stand-in for the API server (silentapi.py): pki, apis.
from silentapi import apis, pki  # noqa: E402, F401
