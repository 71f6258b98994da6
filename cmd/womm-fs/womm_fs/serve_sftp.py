"""`womm-fs serve-sftp DIR`: an SFTP v3 server on stdin and stdout for DIR alone.

The lazy share's side of sshfs. What confines it is in womm.sftp's docstring.
"""

# Everything the server will touch is imported here: once confined, Python can no longer read its own modules.
import json  # noqa: F401 - womm.errors' last-resort error path imports it lazily
import re  # noqa: F401 - likewise
import time

from womm import confine, sftp


def main(args):
    confine.check()
    server = sftp.Server(args.directory)
    time.localtime()  # the time zone, read now from /etc/localtime
    confine.restrict(server.rootfd)
    server.serve(0, 1)
    return 0
