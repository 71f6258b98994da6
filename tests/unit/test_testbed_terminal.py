"""The testbed shell's start (womm_setup.testbed.WAIT_FOR_SIZE): a terminal that has no size yet
(Docker's exec gets it with the first resize, just after it starts) is waited for, so the shell's
first prompt is drawn at the user's width, not 80 columns."""

import fcntl
import os
import struct
import subprocess
import termios
import threading
import time

from womm_setup.testbed import WAIT_FOR_SIZE


def set_size(fd, lines, columns):
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", lines, columns, 0, 0))


def test_the_shell_starts_once_its_terminal_has_a_size():
    master, slave = os.openpty()
    set_size(master, 0, 0)
    proc = subprocess.Popen(["sh", "-c", WAIT_FOR_SIZE + "stty size"], stdin=slave, stdout=slave, stderr=slave)
    os.close(slave)
    threading.Timer(0.3, set_size, (master, 50, 150)).start()  # the resize comes a moment later
    out = b""
    deadline = time.monotonic() + 10
    while proc.poll() is None or not out.strip():
        try:
            out += os.read(master, 1024)
        except OSError:
            break
        assert time.monotonic() < deadline
    proc.wait(10)
    os.close(master)
    assert out.strip() == b"50 150"
