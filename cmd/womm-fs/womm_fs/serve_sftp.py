"""`womm-fs serve-sftp DIR`: an SFTP v3 server for DIR alone; `womm-fs sftp-connect`: its client's end
(in a worker's share container, the connection for sshfs).

On the user's machine it answers on stdin and stdout: the lazy share's one stream, to the
task's share cache in the cluster (womm.shares.lazy). In the share cache, with --listen, it
answers the task's pods over TCP, each connection in a process of its own that first reads
the task's token. Either way each server confines itself to DIR first: womm.sftp's
docstring says how.
"""

# Everything the server will touch is imported here: once confined, Python can no longer read its own modules.
import hmac
import json  # noqa: F401 - womm.errors' last-resort error path imports it lazily
import os
import re  # noqa: F401 - likewise
import signal
import socket
import sys
import time

from womm import confine, sftp
from womm.errors import UsageError, WommError

TOKEN_BYTES = 64  # hex characters, then a newline, before the first SFTP byte


def main(args):
    confine.check()
    if getattr(args, "listen", None):
        return listen(args.directory, args.listen, args.token_file)
    serve(args.directory, 0, 1, getattr(args, "exclude", None) or ())
    return 0


def serve(directory, infd, outfd, exclude=()):
    server = sftp.Server(directory, exclude)
    time.localtime()  # the time zone, read now from /etc/localtime
    try:
        confine.restrict(server.rootfd)
    except OSError as e:  # check() passed, so something (a seccomp filter?) refuses it here
        raise WommError(f"cannot confine the server to {directory}: {e.filename}: {e.strerror}") from None
    server.serve(infd, outfd)


def listen(directory, port, token_file):
    with open(token_file, "rb") as f:
        token = f.read().strip()
    if len(token) != TOKEN_BYTES:
        raise UsageError(f"{token_file}: not a token of {TOKEN_BYTES} characters")
    sock = socket.create_server(("0.0.0.0", port), backlog=128)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the connections' processes reap themselves
    print(f"womm: serving {directory} on port {port}", file=sys.stderr, flush=True)
    while True:
        conn, _ = sock.accept()
        if os.fork() == 0:
            sock.close()
            conn.settimeout(10)
            try:
                given = conn.recv(TOKEN_BYTES + 1, socket.MSG_WAITALL)
            except OSError:
                os._exit(1)
            if not hmac.compare_digest(given, token + b"\n"):
                os._exit(1)
            conn.settimeout(None)
            try:
                serve(directory, conn.fileno(), conn.fileno())
            finally:
                os._exit(0)
        conn.close()


def connect(args):
    """`sftp-connect HOST PORT TOKEN_FILE COMMAND...` in a worker's share container: the connection to
    the share cache's server, opened with the task's token, becomes COMMAND's stdin and stdout
    (`sshfs -o passive`). Nothing sits between sshfs and the socket: every byte a pod reads goes
    straight from the connection into sshfs."""
    if not args.command:
        raise UsageError("sftp-connect: give the command to run on the connection")
    with open(args.token_file, "rb") as f:
        token = f.read().strip()
    sock = socket.create_connection((args.host, args.port), timeout=30)
    sock.settimeout(None)
    sock.sendall(token + b"\n")
    os.dup2(sock.fileno(), 0)
    os.dup2(sock.fileno(), 1)
    sock.close()
    try:
        os.execvp(args.command[0], args.command)
    except OSError as e:
        raise WommError(f"sftp-connect: cannot run {args.command[0]}: {e.strerror}") from None
