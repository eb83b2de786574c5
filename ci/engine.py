"""The Docker engine: the one way the pipeline gets a client, and how engine errors read.

The build (--in-docker) and the image stage both use it; neither imports the other. The
Docker SDK is imported when a client is wanted, so a host build works without it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path

from ci import extras
from ci.errors import UserError

# An unreachable engine must be found out quickly, whatever the operations' timeout.
PING_TIMEOUT = 30
# On the containers the pipeline starts (verify, smoke), to tell them apart.
PURPOSE_LABEL = "io.mosn.proxyv2.purpose"


def client(timeout: float, hint: str = "start dockerd or point DOCKER_HOST at a running engine"):
    """A Docker SDK client that has answered a ping, its calls allowed `timeout` seconds.

    An engine that does not answer is one UserError ("Docker engine not reachable at ..."),
    ending with `hint`: what the caller's user can do about it.
    """
    extras.require("image", "the Docker engine (invoke image, invoke build --in-docker)")
    import docker
    import requests

    try:
        found = docker.from_env(timeout=PING_TIMEOUT)
        found.ping()
    except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
        where = os.environ.get("DOCKER_HOST") or "the default socket"
        raise UserError(f"Docker engine not reachable at {where} ({reason(exc)}); {hint}") from None
    found.api.timeout = timeout
    return found


def reason(exc: Exception) -> str:
    """An engine error in one line: the engine's own explanation when it gave one."""
    explanation = getattr(exc, "explanation", None)
    return " ".join(str(explanation or exc).split()) or type(exc).__name__


@contextlib.contextmanager
def errors() -> Iterator[None]:
    """An engine failure the caller did not foresee still ends as one line, not a traceback."""
    import docker
    import requests

    try:
        yield
    except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
        raise UserError(
            f"the Docker engine failed: {reason(exc)}; check dockerd and run again"
        ) from None


def image_exists(engine, reference: str) -> bool:
    import docker

    try:
        engine.images.get(reference)
    except docker.errors.ImageNotFound:
        return False
    return True


def copy_out(container, path: str, dest: Path, mode: int = 0o755) -> None:
    """`docker cp CONTAINER:path dest` for one regular file, given `mode` (executable).

    The engine sends a tar stream; it is spooled to disk beside `dest` (binaries here are
    50-120 MB). A path the container lacks raises the SDK's NotFound.
    """
    stream, _ = container.get_archive(path)
    with tempfile.TemporaryFile(dir=dest.parent) as archive:
        for chunk in stream:
            archive.write(chunk)
        archive.seek(0)
        with tarfile.open(fileobj=archive, mode="r:") as tar:
            member = tar.next()
            source = tar.extractfile(member) if member is not None and member.isfile() else None
            if source is None:
                raise UserError(f"{path} in the container is not a regular file")
            with open(dest, "wb") as out:
                shutil.copyfileobj(source, out)
    dest.chmod(mode)
