"""`womm build-images`: womm's helper image, built from images/womm and pushed.

One image for everything womm runs in the cluster: the share server, each worker pod's
agent and share helpers, the leader of --async tasks. It carries this very womm: its
packages are packed into a wheel beside the wheels of its dependencies, so the image
build needs nothing but Debian's packages.
"""

import hashlib
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import womm
from womm import docker_engine, records
from womm.errors import WommError
from womm.report import say
from womm.settings import resolve

PACKAGES = ("womm", "womm_dispatch", "womm_setup", "womm_run", "womm_fs", "womm_reap")
DEFAULT_BASE = "debian:bookworm"


def images_dir():
    """images/ of a source checkout, or share/womm/images of an installation."""
    candidates = [
        Path(womm.__file__).resolve().parents[2] / "images",
        Path(sys.prefix) / "share" / "womm" / "images",
    ]
    for d in candidates:
        if (d / "womm" / "Dockerfile").exists():
            return d
    raise WommError("womm's images/ directory is missing: reinstall womm")


def main(args):
    prefix = resolve("prefix", args.prefix)
    if not prefix:
        raise WommError("no registry prefix: give --prefix REGISTRY/PATH/ (or run `womm setup` first)")
    base = resolve("images-base", args.base_image, DEFAULT_BASE)
    c = docker_engine.client()
    log = say
    with tempfile.TemporaryDirectory(prefix="womm-images-") as tmp:
        ctx = Path(tmp) / "womm"
        shutil.copytree(images_dir() / "womm", ctx)
        log("packing womm and its dependencies into wheels")
        pack_wheels(ctx / "wheels")
        tag = f"{prefix}womm:{womm.__version__}-{_context_hash(ctx, base)}"
        log(f"building {tag} on {base}")
        docker_engine.build(c, ctx, tag, {"BASE": base}, log=log)
        if not args.no_push:
            docker_engine.push(c, tag)
    records.set_setting("helper-image", tag)
    log(f"helper image: {tag}")
    from womm_fs import cluster_setup

    args.helper_image, args.apply, args.output, args.reaper = tag, False, "yaml", False
    return cluster_setup.main(args)


def _context_hash(ctx, base):
    h = hashlib.sha256(base.encode())
    for path in sorted(p for p in ctx.rglob("*") if p.is_file()):
        h.update(str(path.relative_to(ctx)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:10]


DEPENDENCIES = ("kubernetes", "docker", "psutil")


def pack_wheels(dest):
    """womm's own wheel (from the running installation) and its dependencies' wheels, at the versions
    installed here: the image's womm runs on what this one was tested with, and the same source gives
    the same tag whatever the package index has published since."""
    dest.mkdir(parents=True, exist_ok=True)
    own = pack_self_wheel(dest)
    with tempfile.NamedTemporaryFile("w", prefix="womm-pins-", suffix=".txt") as pins:
        pins.write("".join(f"{name}=={version}\n" for name, version in installed_versions().items()))
        pins.flush()
        proc = _pip_wheel(dest, "--constraint", pins.name)
    if proc.returncode != 0:
        # Installed from elsewhere than pip's index (a local build, another index): the index's versions,
        # and none of the pinned attempt's wheels beside them.
        say(f"womm's dependencies cannot be fetched at the versions installed here ({_last_line(proc)}); "
            "taking the package index's")
        for wheel in dest.iterdir():
            if wheel != own:
                wheel.unlink()
        proc = _pip_wheel(dest)
    if proc.returncode != 0:
        raise WommError(f"cannot fetch womm's dependencies as wheels: {_last_line(proc)}")


def _pip_wheel(dest, *options):
    return subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--wheel-dir", str(dest), *options,
                           *DEPENDENCIES], capture_output=True, text=True)


def _last_line(proc):
    return (proc.stderr.strip().splitlines() or [f"pip exited {proc.returncode}"])[-1]


# A version as PEP 440 writes it once normalized (what pip accepts in a pin); others are left unpinned.
PIN_VERSION = re.compile(r"([0-9]+!)?[0-9]+(\.[0-9]+)*((a|b|rc)[0-9]+)?(\.post[0-9]+)?(\.dev[0-9]+)?"
                         r"(\+[a-z0-9]+(\.[a-z0-9]+)*)?")


def installed_versions():
    """{distribution: version} of what is installed beside this womm (womm itself aside, and what pip
    could not read as a pin)."""
    from importlib.metadata import distributions

    found = {}
    for dist in distributions():
        try:
            name, version = dist.metadata["Name"] or "", dist.version or ""
        except (KeyError, OSError, ValueError):  # a broken dist-info (an uninstall cut short)
            continue
        name = re.sub(r"[-_.]+", "-", name).lower()
        if name and name != "womm" and PIN_VERSION.fullmatch(version):
            found.setdefault(name, version)  # the first on sys.path is the one imported
    return dict(sorted(found.items()))


def pack_self_wheel(dest):
    """A wheel of the womm that is running (installed or in a checkout): its packages and metadata."""
    import importlib

    version = womm.__version__
    name = f"womm-{version}-py3-none-any.whl"
    dist_info = f"womm-{version}.dist-info"
    records_ = []
    def put(arc, data):
        # A fixed time and mode: the same source makes the same wheel, so the image keeps its tag.
        info = zipfile.ZipInfo(arc, date_time=(1980, 1, 1, 0, 0, 0))
        info.external_attr = 0o644 << 16
        info.compress_type = zipfile.ZIP_DEFLATED
        whl.writestr(info, data)

    with zipfile.ZipFile(dest / name, "w", zipfile.ZIP_DEFLATED) as whl:
        for package in PACKAGES:
            root = Path(importlib.import_module(package).__file__).parent
            for path in sorted(root.rglob("*")):
                if path.is_file() and "__pycache__" not in path.parts:
                    arc = f"{package}/{path.relative_to(root)}"
                    data = path.read_bytes()
                    put(arc, data)
                    records_.append((arc, data))
        meta = {
            "METADATA": f"Metadata-Version: 2.1\nName: womm\nVersion: {version}\n"
            + "".join(f"Requires-Dist: {d}\n" for d in ("kubernetes", "docker", "psutil")),
            "WHEEL": "Wheel-Version: 1.0\nGenerator: womm\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
            "entry_points.txt": "[console_scripts]\n" + "".join(
                f"{script} = {target}\n" for script, target in _entry_points().items()
            ),
        }
        for fname, text in meta.items():
            put(f"{dist_info}/{fname}", text)
            records_.append((f"{dist_info}/{fname}", text.encode()))
        lines = [f"{arc},sha256={_b64digest(data)},{len(data)}" for arc, data in records_]
        lines.append(f"{dist_info}/RECORD,,")
        put(f"{dist_info}/RECORD", "\n".join(lines) + "\n")
    return dest / name


def _entry_points():
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        points = distribution("womm").entry_points
    except PackageNotFoundError:
        raise WommError("womm is not installed (pip install .): cannot pack it for the leader image") from None
    return {ep.name: ep.value for ep in points if ep.group == "console_scripts"}


def _b64digest(data):
    import base64

    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()

