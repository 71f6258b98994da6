"""Debian's sshfs (-o passive, as in a lazy share's pod) mounted over the real `womm-fs serve-sftp DIR`.

Needs sshfs and FUSE (tests/deps installs sshfs). Prints the MB/s of a 100 MB write and read.
"""

import hashlib
import os
import shutil
import socket
import subprocess
import time

import pytest
from sftpclient import server_argv

pytestmark = pytest.mark.skipif(not (shutil.which("sshfs") and shutil.which("fusermount3")
                                     and os.access("/dev/fuse", os.R_OK | os.W_OK)),
                                reason="needs sshfs, fusermount3 and /dev/fuse (tests/deps installs sshfs)")

MB = 1 << 20


def fstype(path):
    with open("/proc/mounts") as f:
        for line in f:
            fields = line.split()
            if fields[1] == path:
                return fields[2]
    return None


class Mount:
    def __init__(self, directory, mnt):
        self.dir, self.mnt = directory, mnt
        a, b = socket.socketpair()
        self.server = subprocess.Popen(server_argv(directory), stdin=a, stdout=a)
        self.sshfs = subprocess.Popen(
            ["sshfs", "-f", "-o", "passive,dir_cache=no,no_contain_symlinks", f"womm:{directory}", mnt],
            stdin=b, stdout=b, stderr=subprocess.PIPE)
        a.close()
        b.close()
        deadline = time.monotonic() + 10
        while fstype(mnt) != "fuse.sshfs":
            if self.sshfs.poll() is not None:
                raise AssertionError(f"sshfs ended: {self.sshfs.stderr.read().decode()}")
            assert time.monotonic() < deadline, "sshfs did not mount within 10 s"
            time.sleep(0.02)

    def unmount(self):
        assert fstype(self.mnt) == "fuse.sshfs"  # never unmount what is not ours
        subprocess.run(["fusermount3", "-u", self.mnt], check=True)
        assert self.sshfs.wait(10) == 0
        assert self.server.wait(10) == 0, "the server exits 0 when its input ends"
        self.sshfs.stderr.close()


@pytest.fixture
def mount(tmp_path):
    d, mnt = os.path.realpath(tmp_path / "share"), str(tmp_path / "mnt")
    os.mkdir(d)
    os.mkdir(mnt)
    m = Mount(d, mnt)
    try:
        yield m
    finally:
        if fstype(mnt) == "fuse.sshfs":
            m.unmount()


def test_file_operations(mount):
    D, M = mount.dir, mount.mnt
    with open(M + "/a.txt", "w") as f:
        f.write("hello")
    assert open(D + "/a.txt").read() == "hello"
    with open(M + "/a.txt", "a") as f:
        f.write(" world")
    assert open(M + "/a.txt").read() == "hello world"
    os.truncate(M + "/a.txt", 5)
    assert open(D + "/a.txt").read() == "hello"
    os.mkdir(M + "/sub")
    os.rename(M + "/a.txt", M + "/sub/b.txt")
    assert os.listdir(D + "/sub") == ["b.txt"] and not os.path.exists(D + "/a.txt")
    with open(M + "/other", "w") as f:
        f.write("other")
    os.rename(M + "/other", M + "/sub/b.txt")  # over an existing file: posix-rename
    assert open(D + "/sub/b.txt").read() == "other"
    os.symlink("sub/b.txt", M + "/lnk")
    assert os.readlink(M + "/lnk") == "sub/b.txt" == os.readlink(D + "/lnk")
    assert open(M + "/lnk").read() == "other"
    os.symlink("/etc/passwd", M + "/abs")  # any target: the mount's side resolves it
    assert os.readlink(D + "/abs") == "/etc/passwd"
    os.chmod(M + "/sub/b.txt", 0o600)
    assert os.stat(D + "/sub/b.txt").st_mode & 0o777 == 0o600
    os.utime(M + "/sub/b.txt", (1_000_000_000, 1_000_000_000))
    assert os.stat(D + "/sub/b.txt").st_mtime == 1_000_000_000
    os.link(M + "/sub/b.txt", M + "/hard")
    assert os.stat(D + "/hard").st_nlink == 2
    assert os.statvfs(M).f_blocks == os.statvfs(D).f_blocks
    for p in ("/hard", "/lnk", "/abs", "/sub/b.txt"):
        os.unlink(M + p)
    os.rmdir(M + "/sub")
    assert os.listdir(D) == []


@pytest.mark.slow
def test_100_mb_each_way(mount):
    D, M = mount.dir, mount.mnt
    chunk = os.urandom(MB)
    blocks = [chunk[i:] + chunk[:i] for i in range(0, 100 * 4096, 4096)]  # 100 different MiB
    t = time.monotonic()
    with open(M + "/up", "wb") as f:
        for b in blocks:
            f.write(b)
        f.flush()
        os.fsync(f.fileno())
    write = 100 / (time.monotonic() - t)
    with open(D + "/down", "wb") as f:
        f.writelines(reversed(blocks))
    digest = hashlib.sha256()
    t = time.monotonic()
    with open(M + "/down", "rb", buffering=0) as f:
        while b := f.read(MB):
            digest.update(b)
    read = 100 / (time.monotonic() - t)
    print(f"through sshfs: write {write:.0f} MB/s, read {read:.0f} MB/s (MiB)")
    assert hashlib.sha256(open(D + "/up", "rb").read()).digest() == hashlib.sha256(b"".join(blocks)).digest()
    assert digest.digest() == hashlib.sha256(b"".join(reversed(blocks))).digest()
    assert write > 20 and read > 20, "far slower than this machine gives (over 100 MB/s each way when idle)"


@pytest.mark.slow
def test_ls_r_of_5000_files(mount):
    D, M = mount.dir, mount.mnt
    for i in range(50):
        os.makedirs(f"{D}/many/{i}")
        for j in range(100):
            open(f"{D}/many/{i}/{j}", "w").close()
    t = time.monotonic()
    out = subprocess.run(["ls", "-R", M + "/many"], capture_output=True, text=True, check=True).stdout
    took = time.monotonic() - t
    lines = [ln for ln in out.splitlines() if ln and not ln.endswith(":")]
    print(f"ls -R of 5,000 files through sshfs: {took:.2f} s")
    assert len(lines) == 50 + 5000


@pytest.mark.slow
def test_a_directory_swapped_for_an_escaping_link_under_the_kernels_cache(mount, tmp_path):
    """The mount's kernel still holds d/ as a directory when d becomes a link out of DIR: the
    OPEN of DIR/d/f that sshfs then sends must not read the outside file (an unconfined server does)."""
    D, M = mount.dir, mount.mnt
    os.mkdir(tmp_path / "outside")
    (tmp_path / "outside" / "f").write_bytes(b"OUTSIDE-MARKER")
    os.mkdir(D + "/d")
    with open(D + "/d/f", "wb") as f:
        f.write(b"inside-content")  # as long as the marker: the kernel reads no further than the size it holds
    leaked = 0
    for i in range(3):
        if i:
            time.sleep(1.1)  # let the kernel forget the link
        assert os.stat(M + "/d/f").st_size == 14  # looked up: cached by the kernel for a second
        os.rename(D + "/d", D + "/d.real")
        os.symlink("../outside", D + "/d")
        try:
            with open(M + "/d/f", "rb") as f:
                leaked += f.read() != b"inside-content"
        except OSError:
            pass
        os.unlink(D + "/d")
        os.rename(D + "/d.real", D + "/d")
    assert leaked == 0, f"{leaked} of 3 reads returned the outside file"
