"""Whether an image is in its registry, asked over the registry's HTTP API (v2), without Docker.

    GET https://REGISTRY/v2/REPOSITORY/manifests/TAG    (http for localhost and 127.0.0.1)

An answer of 401 with a Bearer challenge is followed by one request for an anonymous token
(what Docker Hub, ghcr.io or quay.io give for public images); a 401 after that means the
answer needs credentials womm does not read (they are Docker's and the cluster's).
"""

import json

MANIFEST_TYPES = ", ".join([
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
])
DOCKER_HUB = "registry-1.docker.io"
LOCAL = ("localhost", "127.0.0.1", "[::1]")

PRESENT, ABSENT, UNKNOWN = "present", "absent", "unknown"


def parse(image):
    """(registry host, repository, tag or digest) of an image reference, as Docker reads it."""
    rest, _, digest = image.partition("@")
    first, _, remainder = rest.partition("/")
    if remainder and ("." in first or ":" in first or first == "localhost"):
        host, path = first, remainder
    else:
        host, path = DOCKER_HUB, rest
    if host in ("docker.io", "index.docker.io"):
        host = DOCKER_HUB
    if host == DOCKER_HUB and "/" not in path:
        path = "library/" + path
    name, _, tag = path.rpartition(":") if ":" in path.rsplit("/", 1)[-1] else (path, "", "latest")
    return host, name, digest or tag


def _is_local(host):
    return host.rsplit(":", 1)[0] in LOCAL or host in LOCAL


def manifest(image, timeout=5):
    """(PRESENT, where it is), (ABSENT, the registry's error), or (UNKNOWN, why not known) about an image."""
    import urllib3

    host, repository, reference = parse(image)
    http = urllib3.PoolManager(timeout=urllib3.Timeout(connect=timeout, read=timeout), retries=False)
    headers = {"Accept": MANIFEST_TYPES}
    schemes = ["https", "http"] if _is_local(host) else ["https"]
    for scheme in schemes:
        url = f"{scheme}://{host}/v2/{repository}/manifests/{reference}"
        try:
            response = http.request("GET", url, headers=headers, redirect=True)
        except urllib3.exceptions.SSLError:
            if scheme == schemes[-1]:
                return UNKNOWN, f"no TLS connection to {host}"
            continue  # a local registry over plain http
        except urllib3.exceptions.HTTPError as e:
            if scheme != schemes[-1]:
                continue
            return UNKNOWN, f"cannot reach {host}: {_reason(e)}"
        if response.status == 401:
            token = _anonymous_token(http, response.headers.get("WWW-Authenticate", ""))
            if token:
                response = http.request("GET", url, headers={**headers, "Authorization": f"Bearer {token}"})
        return _verdict(response, host, repository, reference)
    return UNKNOWN, f"cannot reach {host}"


def _verdict(response, host, repository, reference):
    where = f"{host}/{repository}:{reference}" if ":" not in reference else f"{host}/{repository}@{reference}"
    if 200 <= response.status < 300:
        return PRESENT, where
    if response.status == 404:
        return ABSENT, _error_code(response.data) or "not found"
    if response.status in (401, 403):
        return UNKNOWN, f"{host} answers {response.status}: cannot tell without credentials"
    return UNKNOWN, f"{host} answers {response.status} {response.reason or ''}".strip()


def _error_code(data):
    """The registry's own error code ("MANIFEST_UNKNOWN", "NAME_UNKNOWN"), lower case."""
    try:
        errors = json.loads(data or b"{}").get("errors") or []
        return errors[0].get("code", "").lower().replace("_", " ") or None
    except (ValueError, AttributeError, IndexError, TypeError):
        return None


def _anonymous_token(http, challenge):
    """A token for `Bearer realm="...",service="...",scope="..."`, asked for without credentials."""
    import re
    from urllib.parse import urlencode

    if not challenge.lower().startswith("bearer "):
        return None
    params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
    realm = params.pop("realm", None)
    if not realm or not realm.startswith("https://"):
        return None
    try:
        response = http.request("GET", realm + "?" + urlencode(params))
        if response.status != 200:
            return None
        answer = json.loads(response.data)
    except Exception:  # noqa: BLE001 - no token: the 401 stands
        return None
    return answer.get("token") or answer.get("access_token")


def _reason(e):
    text = str(getattr(e, "reason", None) or e)
    for marker in ("Connection refused", "timed out", "Name or service not known", "No route to host",
                   "certificate verify failed"):
        if marker in text:
            return marker
    return text.splitlines()[0][:160] if text else type(e).__name__
