"""`womm-fs serve-sftp DIR`: an SFTP v3 server for DIR alone; `womm-fs sftp-connect`: its client's end
(in a worker's share container, the connection for sshfs).

On the user's machine it answers on stdin and stdout: the lazy share's one stream, to the
task's share cache in the cluster (womm.shares.lazy). In the share cache, with --listen, it
answers the task's pods over TCP: one process (Gate) reads each connection's token, and only a
connection that gave it gets a process of its own. Either way each server confines itself to
DIR first: womm.sftp's docstring says how.
"""

# Everything the server will touch is imported here: once confined, Python can no longer read its own modules.
import hmac
import json  # noqa: F401 - womm.errors' last-resort error path imports it lazily
import os
import re  # noqa: F401 - likewise
import selectors
import socket
import sys
import time

from womm import confine, sftp
from womm.errors import UsageError, WommError

TOKEN_BYTES = 64  # hex characters, then a newline, before the first SFTP byte
PENDING = 64  # connections that have not given the token yet, at most: a new one closes the oldest
TOKEN_WAIT = 5.0  # seconds a connection has to give it
CONNECT_TIMEOUT = 10  # seconds a worker's share container waits for the cache to answer (below the mount's 20)
MAX_CONNECTIONS = 256  # served at once, unless --max-connections says
# A pod gone without closing its connection (its node lost) frees its place in about two minutes.
KEEPALIVE = ((socket.TCP_KEEPIDLE, 60), (socket.TCP_KEEPINTVL, 10), (socket.TCP_KEEPCNT, 6))


def main(args):
    confine.check()
    if getattr(args, "listen", None) is not None:
        if not args.token_file:
            raise UsageError("serve-sftp: --listen needs --token-file")
        if args.max_connections is not None and args.max_connections < 1:
            raise UsageError("serve-sftp: --max-connections must be 1 or more")
        return listen(args.directory, args.listen, args.token_file, args.max_connections or MAX_CONNECTIONS)
    serve(args.directory, 0, 1, getattr(args, "exclude", None) or (), getattr(args, "protect", None) or ())
    return 0


def serve(directory, infd, outfd, exclude=(), protected=()):
    server = sftp.Server(directory, exclude, protected)
    time.localtime()  # the time zone, read now from /etc/localtime
    try:
        confine.restrict(server.rootfd)
    except OSError as e:  # check() passed, so something (a seccomp filter?) refuses it here
        raise WommError(f"cannot confine the server to {directory}: {e.filename}: {e.strerror}") from None
    server.serve(infd, outfd)


def listen(directory, port, token_file, most=MAX_CONNECTIONS):
    try:
        with open(token_file, "rb") as f:
            token = f.read().strip()
    except OSError as e:
        raise UsageError(f"{token_file}: {e.strerror}") from None
    if len(token) != TOKEN_BYTES:
        raise UsageError(f"{token_file}: not a token of {TOKEN_BYTES} characters")
    sock = socket.create_server(("0.0.0.0", port), backlog=128)
    print(f"womm: serving {directory} on port {port}", file=sys.stderr, flush=True)
    Gate(sock, token, lambda conn: _serve_connection(directory, conn), most).run()


def _serve_connection(directory, conn):
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for option, value in KEEPALIVE:
        conn.setsockopt(socket.IPPROTO_TCP, option, value)
    serve(directory, conn.fileno(), conn.fileno())


class Gate:
    """The share cache's door. One process, forking nothing, reads the token of every connection
    waiting (PENDING at most, each for TOKEN_WAIT seconds at most): a flood of idle or wrong
    connections costs a socket each, briefly. Only a connection that gave the task's token gets a
    process (start(conn), in a child), and at most `most` at once."""

    def __init__(self, sock, token, start, most, pending=PENDING, wait=TOKEN_WAIT):
        self.sock, self.token, self.start, self.most = sock, token + b"\n", start, most
        self.pending_max, self.wait = pending, wait
        self.pending = {}  # fd: [connection, deadline, what it sent], oldest first
        self.children = set()
        self.said = set()
        sock.setblocking(False)
        self.selector = selectors.DefaultSelector()
        self.selector.register(sock, selectors.EVENT_READ)

    def run(self):
        while True:
            self.step()

    def step(self):
        now = time.monotonic()
        first = min((d for _, d, _ in self.pending.values()), default=now + 1)
        for key, _ in self.selector.select(max(0.0, min(first, now + 1) - now)):
            if key.fileobj is self.sock:
                self.accept()
            else:
                self.read(key.fileobj)
        now = time.monotonic()
        for conn, deadline, _ in list(self.pending.values()):
            if deadline <= now:
                self.drop(conn)
        self.reap()

    def accept(self):
        for _ in range(self.pending_max):  # a burst takes turns with the tokens already waiting
            try:
                conn, _ = self.sock.accept()
            except OSError:  # none left (or no fd left: the next round)
                return
            conn.setblocking(False)
            if len(self.pending) >= self.pending_max:
                self.drop(next(iter(self.pending.values()))[0])
            self.pending[conn.fileno()] = [conn, time.monotonic() + self.wait, b""]
            self.selector.register(conn, selectors.EVENT_READ)
            self.read(conn)  # a pod sends its token with its first packet: often here already

    def drop(self, conn):
        self.pending.pop(conn.fileno(), None)
        self.selector.unregister(conn)
        conn.close()

    def read(self, conn):
        waiting = self.pending.get(conn.fileno())
        if waiting is None:
            return
        try:
            data = conn.recv(len(self.token) - len(waiting[2]))  # never a byte of what follows the token
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.drop(conn)
            return
        waiting[2] += data
        if len(waiting[2]) < len(self.token):
            return
        self.pending.pop(conn.fileno())
        self.selector.unregister(conn)
        self.reap()
        if not hmac.compare_digest(waiting[2], self.token):
            self.say_once("token", "a connection without the task's token was refused (and any after it)")
            conn.close()
        elif len(self.children) >= self.most:
            self.say_once("most", f"a connection beyond {self.most} at once was refused (and any after it)")
            conn.close()
        else:
            self.fork(conn)

    def fork(self, conn):
        try:
            pid = os.fork()
        except OSError as e:  # out of processes or memory: this connection fails, the door stays open
            self.say_once("fork", f"cannot start a server for a connection: {e.strerror}")
            conn.close()
            return
        if pid == 0:
            try:
                # Only its own connection: those the gate closes must close for their clients.
                self.selector.close()
                self.sock.close()
                for other, _, _ in self.pending.values():
                    other.close()
                conn.setblocking(True)
                self.start(conn)
            finally:
                os._exit(0)
        self.children.add(pid)
        conn.close()

    def reap(self):
        while self.children:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                self.children.clear()
                return
            if pid == 0:
                return
            self.children.discard(pid)

    def say_once(self, what, message):
        if what not in self.said:
            self.said.add(what)
            print(f"womm: {message}", file=sys.stderr, flush=True)


def connect(args):
    """`sftp-connect HOST PORT TOKEN_FILE COMMAND...` in a worker's share container: the connection to
    the share cache's server, opened with the task's token, becomes COMMAND's stdin and stdout
    (`sshfs -o passive`). Nothing sits between sshfs and the socket: every byte a pod reads goes
    straight from the connection into sshfs."""
    if not args.command:
        raise UsageError("sftp-connect: give the command to run on the connection")
    with open(args.token_file, "rb") as f:
        token = f.read().strip()
    try:
        sock = socket.create_connection((args.host, args.port), timeout=CONNECT_TIMEOUT)
    except OSError as e:
        why = e.strerror or f"no answer in {CONNECT_TIMEOUT} s"
        raise WommError(f"cannot connect to the share cache at {args.host}:{args.port} ({why}): a NetworkPolicy "
                        "may deny this pod's egress to it, or its ingress from this pod") from None
    sock.settimeout(None)
    sock.sendall(token + b"\n")
    os.dup2(sock.fileno(), 0)
    os.dup2(sock.fileno(), 1)
    sock.close()
    try:
        os.execvp(args.command[0], args.command)
    except OSError as e:
        raise WommError(f"sftp-connect: cannot run {args.command[0]}: {e.strerror}") from None
