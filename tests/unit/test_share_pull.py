"""images/womm/bin/womm-share-pull, an eager share pod's init container, run here with a fake rsync
(and a fake clock: each `date +%s` a few seconds later) in front of the real tools."""

import os
import subprocess

import pytest

SCRIPT = os.path.join(os.path.dirname(__file__), "..", "..", "images", "womm", "bin", "womm-share-pull")
REFUSED = "rsync: [Receiver] failed to connect to 10.96.0.12 (10.96.0.12): Connection refused (111)"


@pytest.fixture
def pull(tmp_path):
    """run(uploaded, base): the script's status, stderr, termination message and rsync calls; each of
    uploaded and base a list of (status, stderr) that rsync's calls for it take in turn (the last repeats)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "date").write_text(f'#!/bin/sh\nn=$(cat {tmp_path}/clock 2>/dev/null || echo 1000)\n'
                                  f'echo $((n + 3)) > {tmp_path}/clock\necho "$n"\n')
    (bin_dir / "rsync").write_text(f'''#!/bin/sh
echo "$*" >> {tmp_path}/calls
case $* in */uploaded*) kind=uploaded ;; *) kind=base ;; esac
n=$(grep -c "$kind" {tmp_path}/calls)
line=$(sed -n "${{n}}p" {tmp_path}/$kind); [ -n "$line" ] || line=$(tail -n 1 {tmp_path}/$kind)
echo "${{line#* }}" >&2
exit "${{line%% *}}"
''')
    for f in ("date", "rsync"):
        (bin_dir / f).chmod(0o755)
    # Its termination message, where a test may write it.
    script = tmp_path / "womm-share-pull"
    script.write_text(open(SCRIPT).read().replace("/dev/termination-log", str(tmp_path / "termination-log")))

    def run(uploaded, base):
        for kind, steps in (("uploaded", uploaded), ("base", base)):
            (tmp_path / kind).write_text("".join(f"{status} {said}\n" for status, said in steps))
        p = subprocess.run(["sh", str(script), "10.96.0.12", "s1", "t1", str(tmp_path / "dir")],
                           capture_output=True, text=True, timeout=30,
                           env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"})
        log = tmp_path / "termination-log"
        calls = (tmp_path / "calls").read_text().splitlines()
        return p.returncode, p.stderr, log.read_text() if log.exists() else None, calls

    return run


def test_it_waits_for_the_upload_then_copies_the_base(pull, tmp_path):
    status, _, said, calls = pull([(23, "not uploaded yet"), (0, "")], [(0, "")])
    assert (status, said) == (0, None)
    url = "rsync://womm@10.96.0.12/share-s1/t1"
    assert [c.split()[-2:] for c in calls] == [[f"{url}/uploaded", "/tmp/"]] * 2 + [[f"{url}/base/", f"{tmp_path}/dir/"]]


def test_a_copy_refused_after_the_upload_was_seen_says_a_policy_may_deny_it(pull):
    """A NetworkPolicy made while the pod started let the upload's check through and refused the copy:
    the pod says why in its termination message, as for a check refused, not rsync's bare exit 10."""
    status, err, said, calls = pull([(0, "")], [(10, REFUSED)])
    assert status == 1
    assert said.startswith("womm-share-pull: cannot connect to the share server at 10.96.0.12:873 for ")
    assert "Connection refused (111)" in said and "a NetworkPolicy may deny" in said and said in err
    assert len(calls) > 2  # the copy was tried again before giving up


def test_a_copy_that_fails_otherwise_says_why(pull):
    status, _, said, _ = pull([(0, "")], [(23, "rsync: [Receiver] some files could not be transferred")])
    assert status == 1
    assert said == ("womm-share-pull: copying share s1 from the share server at 10.96.0.12 failed "
                    "(some files could not be transferred)")
