"""womm build-images: the same source gives the same helper image tag."""

import time

import pytest

from womm_fs import images


@pytest.mark.slow
def test_the_wheel_of_womm_is_the_same_twice(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    first = images.pack_self_wheel(a).read_bytes()
    time.sleep(2.1)  # a zip's times have a 2-second resolution: a later second would show
    second = images.pack_self_wheel(b).read_bytes()
    assert first == second
    assert images._context_hash(a, "base") == images._context_hash(b, "base")
