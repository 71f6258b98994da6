"""The man pages are installed with womm and render without troff warnings.

Run inside an environment where womm is installed (tox -e man).
"""

import os
import subprocess
import sys

PAGES = ("womm", "womm-setup", "womm-run", "womm-fs", "womm-reap")


def main():
    mandir = os.path.join(sys.prefix, "share", "man")
    failed = False
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
