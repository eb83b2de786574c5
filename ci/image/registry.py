"""Image names and the registry: the reference grammar, login, push and the digest it gives."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from ci import log
from ci.config import Settings
from ci.errors import UserError
from ci.image.result import ImageResult
from ci.proc import redact

DOCKER_HUB = "docker.io"
# The Docker reference grammar, lowercase path components; a registry host may carry a port.
_HOST = r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::[0-9]+)?)"
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
REPOSITORY_RE = re.compile(rf"^(?:{_HOST}/)?{_COMPONENT}(?:/{_COMPONENT})*$")
TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


def registry_host(name: str) -> str:
    """The registry host an image name names, or "" for Docker Hub (the engine's default).

    Docker's own rule: the first /-separated part is a host when it has a dot or a port, or
    is `localhost`; otherwise it is a Docker Hub namespace.
    """
    first, _, rest = name.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return first
    return ""


@dataclass(frozen=True)
class ImageName:
    repository: str
    tag: str = ""

    @property
    def registry(self) -> str:
        """The registry host, as `docker login` wants it (Docker Hub when the name has none)."""
        return registry_host(self.repository) or DOCKER_HUB

    @property
    def hub(self) -> str:
        """Everything before the last path component: Istio's HUB for this name."""
        return self.repository.rsplit("/", 1)[0]


def parse_image_name(image: str) -> ImageName:
    """`REGISTRY/NAMESPACE/REPO[:TAG]`, lowercased; a bare name is refused (Istio would prefix
    its hub to it)."""
    text = image.strip()
    if not text:
        raise UserError("no image name given; pass --image REGISTRY/REPO[:TAG]")
    if "@" in text:
        raise UserError(
            f"image name {image!r} has a digest; pass --image REGISTRY/REPO[:TAG] without @sha256:..."
        )
    repository, tag = text, ""
    last_colon = text.rfind(":")
    if last_colon > text.rfind("/"):
        repository, tag = text[:last_colon], text[last_colon + 1 :]
        if not TAG_RE.match(tag):
            raise UserError(
                f"{tag!r} in {image!r} is not a valid image tag (letters, digits, _ . -, up to 128)"
            )
    repository = repository.lower()
    if "/" not in repository:
        raise UserError(
            f"image name {image!r} has no registry or namespace; Istio's charts would prefix their"
            f" hub to it: pass a full name such as registry.example.com/mesh/{repository}"
        )
    if not REPOSITORY_RE.match(repository):
        raise UserError(
            f"{repository!r} is not a valid image repository; use lowercase letters, digits and"
            " . _ - separated by /"
        )
    return ImageName(repository, tag)


def image_tags(
    name: ImageName, extra: Iterable[str], default_tag: str, where: str = "--image or --tags"
) -> list[str]:
    """The tag from --image (else the default `<mosn>-<istio>` tag) first, then --tags; `where`
    names those settings as the caller's user knows them."""
    tags = [name.tag or default_tag, *extra]
    for tag in tags:
        if not TAG_RE.match(tag):
            raise UserError(
                f"{tag!r} is not a valid image tag (letters, digits, _ . -, up to 128); fix {where}"
            )
    return list(dict.fromkeys(tags))


def credentials(settings: Settings) -> dict[str, str] | None:
    """--registry-username with REGISTRY_PASSWORD, or None to leave it to the Docker config."""
    username = settings.registry_username
    password = str(settings.registry_password or "")
    if not username:
        return None
    if not password:
        raise UserError(
            f"--registry-username {username} given but REGISTRY_PASSWORD is empty; export it"
            " (or drop --registry-username to use your Docker config)"
        )
    return {"username": username, "password": password}


def login(client, auth: dict[str, str], name: ImageName) -> None:
    """Log in before anything is built, so a refused login costs nothing."""
    import docker

    try:
        registry = None if name.registry == DOCKER_HUB else name.registry
        client.login(**auth, registry=registry, reauth=True)
    except docker.errors.APIError as exc:
        reason = redact(str(exc.explanation or exc), [auth["password"]])
        raise UserError(
            f"registry {name.registry} refused login for {auth['username']} ({reason}); check"
            " --registry-username and REGISTRY_PASSWORD"
        ) from None


# How the engine words a registry it could not talk to (Go's net/http and crypto/tls), as
# opposed to one that answered: "manifest unknown", "unauthorized", "denied".
_UNREACHABLE = re.compile(
    r"dial tcp|no such host|connection refused|i/o timeout|network is unreachable"
    r"|no route to host|x509:|tls:|HTTP response to HTTPS client|context deadline exceeded"
)


def check_reachable(client, name: ImageName, auth: dict[str, str] | None) -> None:
    """Ask the engine, which pushes, to talk to the registry (it looks the image up there),
    so a push that cannot happen fails before anything is built. Any answer from the
    registry, "not found" or "unauthorized" included, means it is reachable."""
    import docker

    reference = f"{name.repository}:{name.tag or 'latest'}"
    try:
        client.api.inspect_distribution(reference, auth_config=auth)
    except docker.errors.APIError as exc:
        reason = redact(str(exc.explanation or exc), [auth["password"]] if auth else [])
        if _UNREACHABLE.search(reason):
            raise UserError(
                f"registry {name.registry} cannot be reached from the Docker engine ({reason});"
                " nothing was built: start the registry or fix --image, then run again"
            ) from None


class _PushFailed(Exception):
    pass


def push_tag(
    client, repository: str, tag: str, auth: dict[str, str] | None, secret_values: list[str]
) -> str:
    """Push one tag with progress lines; return the manifest digest the registry reported."""
    import docker

    digest = ""
    last_status: dict[str, str] = {}
    try:
        for chunk in client.api.push(
            repository, tag=tag, stream=True, decode=True, auth_config=auth
        ):
            if "error" in chunk:
                raise _PushFailed(redact(chunk["error"].strip(), secret_values))
            status, layer = chunk.get("status", ""), chunk.get("id", "")
            # One line per state change of a layer, not one per progress tick.
            if status and last_status.get(layer) != status:
                last_status[layer] = status
                log.info(f"    {layer + ': ' if layer else ''}{status}")
            digest = (chunk.get("aux") or {}).get("Digest", digest)
    except docker.errors.APIError as exc:
        raise _PushFailed(redact(str(exc.explanation or exc), secret_values)) from None
    if not digest:
        raise _PushFailed("the engine reported no digest")
    return digest


def push_all(
    client, result: ImageResult, auth: dict[str, str] | None, secret_values: list[str]
) -> None:
    """Push every tag. All tags name one verified image, so each pushed tag is whole; if one
    fails, the ones already pushed stay (deleting a manifest would also delete any other tag
    sharing its digest) and the error names them: a re-run pushes only manifests."""
    for tag in result.tags:
        reference = f"{result.repository}:{tag}"
        try:
            with log.stage(f"push {reference}"):
                digest = push_tag(client, result.repository, tag, auth, secret_values)
        except _PushFailed as exc:
            done = (
                f"; already pushed (verified, same image): {', '.join(result.pushed_tags)}"
                if result.pushed_tags
                else ""
            )
            raise UserError(
                f"push of {reference} failed: {exc}{done}; check the registry address, your"
                " credentials (--registry-username, REGISTRY_PASSWORD or docker login) and"
                " your push rights, then run again"
            ) from None
        if result.digest and digest != result.digest:
            raise UserError(
                f"{reference} was pushed as {digest} but earlier tags as {result.digest};"
                " the tags no longer name one image: run again"
            )
        result.digest = digest
        result.pushed_tags.append(tag)
    log.info(f"pushed {result.repository}@{result.digest}")
