"""The lazy share's relay refuses SFTP requests for paths outside the shared directory."""

import os
import struct

from womm.shares.lazy import PathGuard, check_request, denied


def s(b):
    return struct.pack(">I", len(b)) + b


def req(kind, rid, *strings, extra=b""):
    return bytes([kind]) + struct.pack(">I", rid) + b"".join(s(x) for x in strings) + extra


def test_paths_inside_pass_and_outside_are_denied(tmp_path):
    d = tmp_path / "share"
    (d / "sub").mkdir(parents=True)
    (tmp_path / "secret").write_text("x")
    os.symlink("../secret", d / "escape")
    os.symlink("sub", d / "inner")
    g = PathGuard(d)
    inside = str(d / "sub" / "f").encode()
    outside = str(tmp_path / "secret").encode()
    assert check_request(req(3, 1, inside, extra=b"\0" * 8), g) is None  # OPEN
    assert check_request(req(3, 2, outside, extra=b"\0" * 8), g) == 2
    assert check_request(req(17, 3, str(d / "escape").encode()), g) == 3  # STAT follows the link out
    assert check_request(req(7, 4, str(d / "escape").encode()), g) is None  # LSTAT of the link itself
    assert check_request(req(19, 5, str(d / "escape").encode()), g) is None  # READLINK
    assert check_request(req(17, 6, str(d / "inner").encode()), g) is None
    assert check_request(req(11, 7, str(d / "..").encode()), g) == 7  # OPENDIR of the parent
    assert check_request(req(18, 8, inside, outside), g) == 8  # RENAME out
    assert check_request(req(20, 9, b"/etc/passwd", str(d / "link").encode()), g) is None  # SYMLINK: target is data
    assert check_request(req(200, 10, b"posix-rename@openssh.com", inside, outside), g) == 10
    assert check_request(req(200, 11, b"unknown@example.com", outside), g) == 11
    assert check_request(req(5, 12, b"handle", extra=b"\0" * 12), g) is None  # READ by handle


def test_denied_reply_is_a_status_packet():
    p = denied(42)
    (n,) = struct.unpack(">I", p[:4])
    assert n == len(p) - 4 and p[4] == 101
    assert struct.unpack(">II", p[5:13]) == (42, 3)
