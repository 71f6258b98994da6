"""The Docker engine, through the docker SDK: connecting, building, pushing with progress.

`docker` is imported inside functions (it costs ~0.14 s).
"""

from womm.errors import WommError

DEFAULT_SOCKET = "/var/run/docker.sock"


def client(timeout=600):
    """A docker client for DOCKER_HOST (or the default socket), or one clear error.

    timeout: seconds for each request (`womm doctor` asks for a few, builds and pushes need many).
    """
    import os

    import docker
    from docker.errors import DockerException

    if not os.environ.get("DOCKER_HOST") and os.path.exists(DEFAULT_SOCKET) \
            and not os.access(DEFAULT_SOCKET, os.R_OK | os.W_OK):
        raise WommError(f"you may not use the Docker engine's socket {DEFAULT_SOCKET} (permission denied): "
                        "add yourself to the docker group (`sudo usermod -aG docker $USER`, then log in again), "
                        "or set DOCKER_HOST", doctor=True)
    try:
        c = docker.from_env(timeout=timeout)
        c.ping()
        return c
    except DockerException as e:
        raise WommError(
            f"cannot reach the Docker engine ({_short(e)}): start dockerd, or set DOCKER_HOST", doctor=True
        ) from None


def _short(e):
    text = str(e)
    for marker in ("Connection refused", "No such file or directory", "Permission denied"):
        if marker in text:
            return marker
    return text.splitlines()[0][:160] if text else type(e).__name__


def split_tag(image):
    """("repo", "tag") of an image reference; tag "latest" when there is none."""
    name, _, digestless = image.partition("@")
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        repo, tag = name.rsplit(":", 1)
        return repo, tag
    return name, "latest"


def build(c, path, tag, buildargs=None, log=None):
    """docker build, its steps shown by log(); the image id."""
    from docker.errors import APIError

    image_id = None
    try:
        for chunk in c.api.build(path=str(path), tag=tag, buildargs=buildargs or {}, rm=True, decode=True, forcerm=True):
            if "error" in chunk:
                raise WommError(f"building {tag} failed: {chunk['error'].strip()}")
            text = chunk.get("stream", "")
            if log and text.strip().startswith("Step "):
                log(text.strip())
            aux = chunk.get("aux") or {}
            image_id = aux.get("ID", image_id)
    except APIError as e:
        raise WommError(f"building {tag} failed: {e.explanation or e}") from None
    return image_id


def push(c, image, progress=True):
    """Push image with a progress display on a terminal; raises WommError on failure.

    The image stays in the local engine whatever happens.
    """
    from docker.errors import APIError

    from womm.report import Progress

    repo, tag = split_tag(image)
    line = Progress() if progress else None
    layers = {}
    try:
        for chunk in c.api.push(repo, tag=tag, stream=True, decode=True):
            if "error" in chunk:
                raise WommError(_push_error(image, chunk["error"]))
            if line is not None and chunk.get("id"):
                line.update(f"pushing {image}: {push_progress(layers, chunk)}")
    except APIError as e:
        raise WommError(_push_error(image, e.explanation or str(e))) from None
    finally:
        if line is not None:
            line.done()


def push_progress(layers, chunk):
    """What a push has done, from the engine's messages so far: layers, and bytes of those sending."""
    layer = layers.setdefault(chunk["id"], {"status": "", "current": 0, "total": 0})
    layer["status"] = chunk.get("status", "")
    detail = chunk.get("progressDetail") or {}
    if detail.get("total"):
        layer["current"], layer["total"] = detail.get("current", 0), detail["total"]
    finished = ("Pushed", "Layer already exists", "Mounted from")
    done = sum(1 for x in layers.values() if x["status"].startswith(finished))
    total = sum(x["total"] for x in layers.values())
    sent = sum(x["total"] if x["status"].startswith(finished) else x["current"] for x in layers.values())
    size = f", {sent / 1e6:.1f}/{total / 1e6:.1f} MB" if total else ""
    return f"{done}/{len(layers)} layers{size}"


def _push_error(image, message):
    message = message.strip().splitlines()[0] if message else "unknown error"
    return (f"pushing {image} failed: {message}. The image is kept locally: fix the registry "
            f"(or your rights to it) and run `docker push {image}`, or run womm setup again")


def exists(c, image):
    from docker.errors import ImageNotFound

    try:
        c.images.get(image)
        return True
    except ImageNotFound:
        return False


def platform(attrs):
    """"os/architecture" of an image from its attributes (what `docker inspect` gives), as the
    nodes' labels kubernetes.io/os and kubernetes.io/arch name them; None where it does not say."""
    os_name, arch = attrs.get("Os"), attrs.get("Architecture")
    return f"{os_name}/{arch}" if os_name and arch else None


def image_platform(image):
    """What an image's nodes must run, "os/architecture": the one platform its registry lists, or
    (not pushed, or its registry not reachable from here) that of the copy this machine's Docker
    engine holds; None where it is made for several (each node's runtime takes its own), or where
    nothing is known (then nothing is asked of the nodes)."""
    from docker.errors import DockerException
    from requests import RequestException

    try:
        c = client(timeout=10)
    except WommError:
        return None
    try:
        listed = c.images.get_registry_data(image).attrs.get("Platforms") or []
    except (DockerException, RequestException):
        listed = []
    if len(listed) > 1:
        return None
    if listed:
        return platform({"Os": listed[0].get("os"), "Architecture": listed[0].get("architecture")})
    try:
        return platform(c.images.get(image).attrs)
    except (DockerException, RequestException):
        return None
