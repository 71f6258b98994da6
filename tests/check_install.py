"""What `pip install .` gives: the five programs, and man pages that render and that
`womm help VERB` opens.

Run inside an environment where womm is installed (tox -e man).
"""

import os
import subprocess
import sys

PAGES = ("womm", "womm-setup", "womm-run", "womm-fs", "womm-reap")


def main():
    mandir = os.path.join(sys.prefix, "share", "man")
    bindir = os.path.join(sys.prefix, "bin")
    failed = False
    for program in PAGES:
        path = os.path.join(bindir, program)
        if not os.access(path, os.X_OK):
            print(f"missing program: {path}")
            failed = True
    env = dict(os.environ, MANPAGER="cat", PAGER="cat", MANWIDTH="80")
    for verb, title in (("run", "WOMM-RUN(1)"), ("status", "WOMM-REAP(1)"), ("setup", "WOMM-SETUP(1)")):
        out = subprocess.run([os.path.join(bindir, "womm"), "help", verb], capture_output=True, text=True, env=env)
        if out.returncode != 0 or title not in out.stdout:
            print(f"womm help {verb}: exit {out.returncode}, no {title}:\n{out.stdout[:300]}{out.stderr}")
            failed = True
        else:
            print(f"ok: womm help {verb} shows {title}")
    for page in PAGES:
        path = os.path.join(mandir, "man1", f"{page}.1")
        if not os.path.exists(path):
            print(f"missing: {path}")
            failed = True
            continue
        out = subprocess.run(
            ["man", "--warnings", "-l", path], capture_output=True, text=True,
            env=dict(os.environ, MANWIDTH="80", MANPAGER="cat"),
        )
        if out.returncode != 0 or out.stderr.strip():
            print(f"{page}: exit {out.returncode}\n{out.stderr}")
            failed = True
        elif f"{page.upper()}(1)" not in out.stdout:
            print(f"{page}: no title line")
            failed = True
        else:
            print(f"ok: {page} ({len(out.stdout.splitlines())} lines)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
