"""`womm-fs serve-sftp DIR`: an SFTP v3 server on stdin and stdout for DIR alone.

The lazy share's side of sshfs. What confines it is in womm.sftp's docstring.
"""

# Everything the server will touch is imported here: once confined, Python can no longer read its own modules.
import json  # noqa: F401 - womm.errors' last-resort error path imports it lazily
import re  # noqa: F401 - likewise
import time

from womm import confine, sftp
from womm.errors import WommError


def main(args):
    confine.check()
    server = sftp.Server(args.directory)
    time.localtime()  # the time zone, read now from /etc/localtime
    try:
        confine.restrict(server.rootfd)
    except OSError as e:  # check() passed, so something (a seccomp filter?) refuses it here
        raise WommError(f"cannot confine the server to {args.directory}: {e.filename}: {e.strerror}") from None
    server.serve(0, 1)
    return 0
