"""The progress lines of long waits: an eager share's upload (rsync), an image's push (Docker)."""

from womm.docker_engine import push_progress
from womm.shares.eager import rsync_progress


def test_rsync_progress_says_bytes_and_files():
    assert rsync_progress("     50,000,000 100%  836.01MB/s    0:00:00 (xfr#1, to-chk=0/2)") == \
        "50.0 MB (100%), 2/2 files, 836.01MB/s"
    assert rsync_progress("         32,768   0%    0.00kB/s    0:00:00  ") == "0.0 MB (0%), 0.00kB/s"
    assert rsync_progress("      1,234,567  40%    1.20MB/s    0:00:01 (xfr#3, ir-chk=1000/1010)") == \
        "1.2 MB (40%), 10/1010 files, 1.20MB/s"
    assert rsync_progress("Number of files: 2 (reg: 1, dir: 1)") is None


def test_push_progress_counts_layers_and_bytes():
    layers = {}
    push_progress(layers, {"id": "a", "status": "Preparing"})
    push_progress(layers, {"id": "b", "status": "Layer already exists"})
    assert push_progress(layers, {"id": "a", "status": "Pushing", "progressDetail": {"current": 5e6, "total": 2e7}}) \
        == "1/2 layers, 5.0/20.0 MB"
    assert push_progress(layers, {"id": "a", "status": "Pushed"}) == "2/2 layers, 20.0/20.0 MB"

