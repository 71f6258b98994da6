"""womm build-images: the same source gives the same helper image tag."""

import time
from types import SimpleNamespace

import pytest

from womm_fs import images


@pytest.mark.slow
def test_the_wheel_of_womm_is_the_same_twice(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    first = images.pack_self_wheel(a).read_bytes()
    time.sleep(2.1)  # a zip's times have a 2-second resolution: a later second would show
    second = images.pack_self_wheel(b).read_bytes()
    assert first == second
    assert images._context_hash(a, "base") == images._context_hash(b, "base")


def test_the_dependencies_are_fetched_at_the_versions_installed_here(tmp_path, monkeypatch):
    """The package index publishes new versions at any time: the image's dependencies are those this
    womm runs on (the same source gives the same tag, and the image's womm runs on what was tested)."""
    calls = []

    def pip(argv, **kw):
        pins = argv[argv.index("--constraint") + 1] if "--constraint" in argv else None
        calls.append((argv, open(pins).read().splitlines() if pins else None))
        return SimpleNamespace(returncode=0, stderr="")

    monkeypatch.setattr(images.subprocess, "run", pip)
    monkeypatch.setattr(images, "pack_self_wheel", lambda dest: None)
    images.pack_wheels(tmp_path / "wheels")
    [(argv, pins)] = calls
    assert argv[-3:] == ["kubernetes", "docker", "psutil"]
    from importlib.metadata import version

    assert f"kubernetes=={version('kubernetes')}" in pins and f"psutil=={version('psutil')}" in pins
    assert not [p for p in pins if p.startswith("womm==")]


def test_dependencies_installed_from_elsewhere_come_from_the_index_and_it_is_said(tmp_path, monkeypatch, capsys):
    calls = []

    def pip(argv, **kw):
        calls.append(argv)
        pinned = "--constraint" in argv
        dest = argv[argv.index("--wheel-dir") + 1]
        open(f"{dest}/dep-{1 if pinned else 2}.whl", "w").close()  # pip keeps what it fetched before failing
        return SimpleNamespace(returncode=1 if pinned else 0, stderr="ERROR: No matching distribution" * pinned)

    def own(dest):
        (dest / "womm.whl").write_text("")
        return dest / "womm.whl"

    monkeypatch.setattr(images.subprocess, "run", pip)
    monkeypatch.setattr(images, "pack_self_wheel", own)
    images.pack_wheels(tmp_path / "wheels")
    assert ["--constraint" in argv for argv in calls] == [True, False]
    assert "(ERROR: No matching distribution); taking the package index's" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "wheels").iterdir()) == ["dep-2.whl", "womm.whl"]

    monkeypatch.setattr(images.subprocess, "run", lambda argv, **kw: SimpleNamespace(returncode=1, stderr="x\nERROR: gone"))
    with pytest.raises(images.WommError, match="cannot fetch womm's dependencies as wheels: ERROR: gone$"):
        images.pack_wheels(tmp_path / "again")


def test_only_versions_pip_reads_as_pins_are_pinned(monkeypatch):
    """One legacy version (a system package's `2004d`) in a constraints file makes pip refuse all of it."""
    import importlib.metadata

    class Dist:
        def __init__(self, name, version):
            self.metadata, self.version = {"Name": name}, version

    class Broken:
        @property
        def metadata(self):
            raise KeyError("Name")

    found = [Dist("Old_Thing", "2004d"), Dist("requests", "2.34.2"), Dist("zope.interface", "7.0.post1"),
             Dist("womm", "0.2.0"), Broken(), Dist("requests", "1.0")]
    monkeypatch.setattr(importlib.metadata, "distributions", lambda: iter(found))
    assert images.installed_versions() == {"requests": "2.34.2", "zope-interface": "7.0.post1"}
