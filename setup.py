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

SOURCES = ["lib", "cmd/womm", "cmd/womm-setup", "cmd/womm-run", "cmd/womm-fs", "cmd/womm-reap"]
for sub in SOURCES:
    sys.path.insert(0, os.path.join(HERE, sub))
from womm.programs import PROGRAMS  # noqa: E402

PAGES = list(PROGRAMS)  # one page per program, from its parser


def write_man_pages(out_dir=MAN_DIR):
    import importlib

    from argparse_manpage.manpage import Manpage

    import womm

    os.makedirs(os.path.join(HERE, out_dir), exist_ok=True)
    for page in PAGES:
        # womm_dispatch.cli, womm_setup.cli, ...: every program's parser is build_parser() in its cli module.
        module = "womm_dispatch.cli" if page == "womm" else page.replace("-", "_") + ".cli"
        summary = PROGRAMS[page]
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
