"""What nodes an image needs (womm.docker_engine.image_platform), as `womm setup` records it: one
platform its registry lists, else the local copy's; none for an image made for several."""

import pytest
import requests
from docker.errors import APIError, ImageNotFound

from womm import docker_engine


class FakeImages:
    def __init__(self, listed, local):
        self.listed, self.local = listed, local

    def get_registry_data(self, image):
        if isinstance(self.listed, Exception):
            raise self.listed
        return type("RegistryData", (), {"attrs": {"Platforms": self.listed}})()

    def get(self, image):
        if isinstance(self.local, Exception):
            raise self.local
        return type("Image", (), {"attrs": self.local})()


@pytest.mark.parametrize(("listed", "local", "expected"), [
    ([{"os": "linux", "architecture": "arm64"}], {"Os": "linux", "Architecture": "amd64"}, "linux/arm64"),
    ([{"os": "linux", "architecture": "amd64"}, {"os": "linux", "architecture": "arm64"}],
     {"Os": "linux", "Architecture": "amd64"}, None),  # made for both: each node's runtime takes its own
    (APIError("no such manifest"), {"Os": "linux", "Architecture": "amd64"}, "linux/amd64"),  # not pushed
    (requests.ConnectionError("registry away"), {"Os": "linux", "Architecture": "amd64"}, "linux/amd64"),
    (APIError("no such manifest"), ImageNotFound("no such image"), None),  # nothing known: nothing asked
    ([], requests.ReadTimeout("engine busy"), None),
])
def test_the_platform_an_image_needs(monkeypatch, listed, local, expected):
    monkeypatch.setattr(docker_engine, "client", lambda timeout=600: type("C", (), {"images": FakeImages(listed, local)})())
    assert docker_engine.image_platform("reg/img:1") == expected


def test_without_a_docker_engine_nothing_is_known(monkeypatch):
    def unreachable(timeout=600):
        raise docker_engine.WommError("cannot reach the Docker engine")

    monkeypatch.setattr(docker_engine, "client", unreachable)
    assert docker_engine.image_platform("reg/img:1") is None
