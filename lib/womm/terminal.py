"""A real terminal for a remote shell: raw mode, window size, and the bytes both ways.

Used by `womm setup` (a docker exec) and `womm shell` (a Kubernetes exec).
Ctrl-C and Ctrl-D are just bytes in raw mode: the remote terminal turns them
into SIGINT for its foreground job and end-of-file for the shell.
"""

import contextlib
import os
import select
import signal
import struct
import sys
import termios
import tty


def window_size(fd=None):
    """(columns, lines) of the terminal on fd (stdout by default)."""
    import fcntl

    fd = sys.stdout.fileno() if fd is None else fd
    try:
        lines, columns, _, _ = struct.unpack("HHHH", fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8))
        return columns, lines
    except OSError:
        return 80, 24


@contextlib.contextmanager
def raw_mode(fd):
    if not os.isatty(fd):
        yield
        return
    saved = termios.tcgetattr(fd)
    try:
        tty.setraw(fd)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def relay(send, recv_fd, recv, resize, stdin_fd=0, stdout_fd=1, pending=None):
    """Join the local terminal to a remote one until the remote side ends.

    send(bytes): to the remote terminal; recv_fd: a descriptor that becomes
    readable when recv() has data; recv(): bytes, or None at the end;
    resize(columns, lines): tell the remote terminal its new size; pending():
    data already read from recv_fd but not yet returned (TLS buffers it).
    """
    wake_r, wake_w = os.pipe()

    def on_winch(signum, frame):
        os.write(wake_w, b"w")

    old = signal.signal(signal.SIGWINCH, on_winch)
    resize(*window_size(stdout_fd))
    stdin_open = True
    try:
        with raw_mode(stdin_fd):
            while True:
                watch = [recv_fd, wake_r] + ([stdin_fd] if stdin_open else [])
                if pending and pending():
                    readable = [recv_fd]
                else:
                    readable, _, _ = select.select(watch, [], [])
                if wake_r in readable:
                    os.read(wake_r, 64)
                    resize(*window_size(stdout_fd))
                if stdin_fd in readable:
                    data = os.read(stdin_fd, 4096)
                    if data:
                        send(data)
                    else:
                        stdin_open = False
                if recv_fd in readable:
                    data = recv()
                    if data is None:
                        return
                    if data:
                        os.write(stdout_fd, data)
    finally:
        signal.signal(signal.SIGWINCH, old)
        os.close(wake_r)
        os.close(wake_w)
