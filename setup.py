"""Build hook: generate the man pages from the real parsers and ship them as data files.

argparse-manpage's own install hook does not run for wheels, so the pages are
written under build/man/man1 whenever setuptools runs this file, and listed as
data files for share/man/man1 (so `man womm-run` works after `pip install`).
Everything else is in pyproject.toml.
"""

import os
import sys

from setuptools import setup

HERE = os.path.dirname(os.path.abspath(__file__))
MAN_DIR = os.path.join("build", "man", "man1")

# page: (module with build_parser(), the NAME line's summary)
PAGES = {
    "womm": ("womm.dispatch", "Works On My Machine: scale your scripts onto Kubernetes"),
    "womm-setup": ("womm_setup.cli", "the testbed that becomes the pods' image"),
    "womm-run": ("womm_run.cli", "GNU parallel with Kubernetes pods as job slots; womm shell; womm logs"),
    "womm-fs": ("womm_fs.cli", "cluster setup, the share server, and the shares"),
    "womm-reap": ("womm_reap.cli", "womm status, womm finish, and the reaper for cron"),
}


def write_man_pages(out_dir=MAN_DIR):
    import importlib

    from argparse_manpage.manpage import Manpage

    for sub in ("lib", "cmd/womm-setup", "cmd/womm-run", "cmd/womm-fs", "cmd/womm-reap"):
        sys.path.insert(0, os.path.join(HERE, sub))
    import womm

    os.makedirs(os.path.join(HERE, out_dir), exist_ok=True)
    for page, (module, summary) in PAGES.items():
        parser = importlib.import_module(module).build_parser()
        include = os.path.join(HERE, "man", f"{page}.include")
        data = {
            "prog": page,
            "description": summary,
            "project_name": "womm",
            "version": womm.__version__,
            "manual_title": "womm manual",
            "url": "https://github.com/womm/womm",
        }
        if os.path.exists(include):
            data["include"] = include
        text = str(Manpage(parser, _data=data, format="single-commands-section"))
        # A text line starting with ' or . would be read as a troff request.
        lines = ["\\&" + line if line.startswith("'") else line for line in text.split("\n")]
        with open(os.path.join(HERE, out_dir, f"{page}.1"), "w") as f:
            f.write("\n".join(lines))


def image_files():
    """images/ ships as share/womm/images, for `womm build-images` (see womm_fs.images)."""
    out = []
    for root, _, files in os.walk(os.path.join(HERE, "images")):
        rel = os.path.relpath(root, HERE)
        out.append((os.path.join("share", "womm", rel), [os.path.join(rel, f) for f in sorted(files)]))
    return out


if __name__ == "__main__":
    write_man_pages()
    setup(
        data_files=[("share/man/man1", [os.path.join(MAN_DIR, f"{p}.1") for p in PAGES])] + image_files(),
    )
