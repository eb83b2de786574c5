"""`invoke image`: build the proxyv2 image, prove its MOSN is the dist's, then tag and push it.

Both modes end the same way. An image is first built under a throwaway tag; its
`/usr/local/bin/mosn --version` must print the dist's version before any real tag is applied,
and only then is anything pushed. So no tag, local or in a registry, ever names an image that
failed the check.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import secrets
import tarfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ci import log, names
from ci.config import Settings
from ci.dist import Dist
from ci.errors import UserError
from ci.fsutil import atomic_write
from ci.proc import redact

MODES = ("quick", "full")
# Throwaway tags carry this prefix; they exist only between a build and its verification.
UNVERIFIED_PREFIX = "unverified-"
VERIFY_TIMEOUT = 120

# The Docker reference grammar, lowercase path components; a registry host may carry a port.
_HOST = r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::[0-9]+)?)"
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
REPOSITORY_RE = re.compile(rf"^(?:{_HOST}/)?{_COMPONENT}(?:/{_COMPONENT})*$")
TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


@dataclass(frozen=True)
class ImageName:
    repository: str
    tag: str = ""

    @property
    def registry(self) -> str:
        """The registry host, as `docker login` wants it (Docker Hub when the name has none)."""
        first, _, rest = self.repository.partition("/")
        if rest and ("." in first or ":" in first or first == "localhost"):
            return first
        return "docker.io"

    @property
    def hub(self) -> str:
        """Everything before the last path component: Istio's HUB for this name."""
        return self.repository.rsplit("/", 1)[0]


@dataclass
class ImageResult:
    repository: str
    tags: list[str]
    image_id: str
    labels: dict[str, str]
    digest: str | None = None
    pushed_tags: list[str] = field(default_factory=list)

    @property
    def references(self) -> list[str]:
        return [f"{self.repository}:{tag}" for tag in self.tags]

    def as_json(self) -> dict[str, Any]:
        return {
            "image": self.repository,
            "tags": self.tags,
            "references": self.references,
            "id": self.image_id,
            "digest": self.digest,
            "pinned": f"{self.repository}@{self.digest}" if self.digest else None,
            "labels": self.labels,
        }


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


def image_tags(name: ImageName, extra: Iterable[str], default_tag: str) -> list[str]:
    """The tag from --image (else the default `<mosn>-<istio>` tag) first, then --tags."""
    tags = [name.tag or default_tag, *extra]
    for tag in tags:
        if not TAG_RE.match(tag):
            raise UserError(
                f"{tag!r} is not a valid image tag (letters, digits, _ . -, up to 128); fix --tags"
            )
    return list(dict.fromkeys(tags))


def rfc3339(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def image_labels(dist: Dist, istio_version: str, source: str) -> dict[str, str]:
    """OCI labels plus the two versions; `created` is the dist's SOURCE_DATE_EPOCH so a rebuild
    of the same dist carries the same labels."""
    return {
        "org.opencontainers.image.version": names.default_image_tag(
            dist.mosn_version_safe, istio_version
        ),
        "org.opencontainers.image.revision": dist.git_commit,
        "org.opencontainers.image.source": source,
        "org.opencontainers.image.created": rfc3339(dist.source_date_epoch),
        "io.mosn.version": dist.mosn_version,
        "io.istio.version": istio_version,
    }


# ---- the engine ---------------------------------------------------------------------------


def connect():
    """A Docker SDK client that has answered a ping, or a UserError saying how to get one."""
    import docker
    import requests

    try:
        client = docker.from_env(timeout=600)
        client.ping()
    except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
        where = os.environ.get("DOCKER_HOST") or "the default socket"
        raise UserError(
            f"Docker engine not reachable at {where} ({type(exc).__name__}); start dockerd or"
            " point DOCKER_HOST at a running engine"
        ) from None
    return client


def image_exists(client, reference: str) -> bool:
    import docker

    try:
        client.images.get(reference)
    except docker.errors.ImageNotFound:
        return False
    return True


def require_image(client, reference: str, what: str) -> None:
    if not image_exists(client, reference):
        raise UserError(
            f"{what} {reference} is not in the Docker engine; get it with `docker pull {reference}`"
            " (or `docker load`) and run again"
        )


def _dockerfile_quote(value: str) -> str:
    """A LABEL value in double quotes; `$` escaped because LABEL expands variables."""
    if "\n" in value or "\r" in value:
        raise UserError(f"label value {value!r} spans lines; rebuild the dist with `invoke build`")
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$")
    return f'"{escaped}"'


def dockerfile(base: str, with_binary: bool, labels: dict[str, str]) -> str:
    """FROM the base, COPY the binary, all labels in one LABEL step (each builder step commits
    a container, which is slow on some storage drivers)."""
    lines = [f"FROM {base}"]
    if with_binary:
        lines.append(f"COPY mosn {names.BINARY_PATH_IN_IMAGE}")
    if labels:
        pairs = " ".join(f"{key}={_dockerfile_quote(value)}" for key, value in labels.items())
        lines.append(f"LABEL {pairs}")
    return "\n".join(lines) + "\n"


def build_context(base: str, binary: bytes | None, labels: dict[str, str], mtime: int) -> bytes:
    """An in-memory build context: the Dockerfile, plus the mosn binary if given.

    The binary's mode in the tar (0755) is what COPY keeps, so the Dockerfile needs no chmod
    layer; fixed owner and time keep the context byte-identical across runs.
    """
    files = [("Dockerfile", dockerfile(base, binary is not None, labels).encode(), 0o644)]
    if binary is not None:
        files.append(("mosn", binary, 0o755))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data, mode in files:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), mode, mtime
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _stream_build(chunks: Iterator[dict[str, Any]]) -> str:
    """Echo a build's output; return the image id, or raise with the build's last lines."""
    image_id = ""
    lines: list[str] = []
    for chunk in chunks:
        if "error" in chunk:
            raise UserError(
                f"docker build failed: {chunk['error'].strip()}", detail="\n".join(lines[-30:])
            )
        text = chunk.get("stream", "")
        for line in text.splitlines():
            if line.strip():
                lines.append(line)
                log.info(f"    {line}")
        aux = chunk.get("aux") or {}
        image_id = aux.get("ID", image_id)
    return image_id


def build_unverified(
    client,
    base: str,
    binary: bytes | None,
    labels: dict[str, str],
    repository: str,
    mtime: int,
    nocache: bool = False,
) -> tuple[str, str]:
    """Build FROM `base` under a throwaway tag; return (that reference, image id)."""
    import docker

    reference = f"{repository}:{UNVERIFIED_PREFIX}{secrets.token_hex(6)}"
    context = build_context(base, binary, labels, mtime)
    try:
        image_id = _stream_build(
            client.api.build(
                fileobj=io.BytesIO(context),
                custom_context=True,
                tag=reference,
                pull=False,
                rm=True,
                forcerm=True,
                nocache=nocache,
                decode=True,
            )
        )
        return reference, image_id or client.images.get(reference).id
    except docker.errors.APIError as exc:
        remove_quietly(client, reference)
        raise UserError(f"docker build failed: {exc.explanation or exc}") from None
    except BaseException:
        remove_quietly(client, reference)
        raise


def remove_quietly(client, reference: str) -> None:
    """Drop a reference this run made (untag; the image goes if nothing else names it)."""
    import docker

    with contextlib.suppress(docker.errors.DockerException):
        client.images.remove(reference, noprune=False)


def mosn_version_in(client, reference: str) -> tuple[int, str]:
    """Run the image's mosn --version, cut off from any network; return (exit code, output)."""
    import docker
    import requests

    container = client.containers.create(
        reference,
        command=["--version"],
        entrypoint=[names.BINARY_PATH_IN_IMAGE],
        network_mode="none",
        labels={"io.mosn.proxyv2.purpose": "verify"},
    )
    try:
        try:
            container.start()
        except docker.errors.APIError as exc:
            return -1, str(exc.explanation or exc)
        try:
            code = container.wait(timeout=VERIFY_TIMEOUT)["StatusCode"]
        except requests.exceptions.RequestException:
            return -1, f"still running after {VERIFY_TIMEOUT}s (a proxy starting, not --version?)"
        output = container.logs(stdout=True, stderr=True).decode(errors="replace")
        return code, output.strip()
    finally:
        container.remove(force=True)


def verify(client, reference: str, expected_version: str) -> None:
    """Check the image's mosn prints the dist's version; if not, remove the image and fail."""
    expected = f"mosn version {expected_version}"
    try:
        code, output = mosn_version_in(client, reference)
    except BaseException:
        remove_quietly(client, reference)
        raise
    first_line = names.mosn_version_line(output)
    if code != 0 or first_line != expected:
        remove_quietly(client, reference)
        got = f"exit code {code}: {first_line!r}" if code != 0 else repr(first_line)
        raise UserError(
            f"the built image's {names.BINARY_PATH_IN_IMAGE} --version gave {got}, expected"
            f" {expected!r}; the image was removed and nothing was tagged or pushed",
            detail=output,
        )
    log.info(f"    {names.BINARY_PATH_IN_IMAGE} --version: {first_line}")


def smoke_in_image(client, reference: str) -> None:
    """Quick mode: ci/smoke inside the image; on failure the image is removed, nothing tagged."""
    from ci.build import smoke

    try:
        smoke.run_in_image(client, reference, names.BINARY_PATH_IN_IMAGE)
    except BaseException:
        remove_quietly(client, reference)
        raise


def apply_tags(client, unverified: str, image_id: str, repository: str, tags: list[str]) -> None:
    for tag in tags:
        client.api.tag(image_id, repository, tag, force=True)
        log.info(f"    tagged {repository}:{tag}")
    # The real tags hold the image now, so this only drops the throwaway name.
    remove_quietly(client, unverified)


# ---- the registry -------------------------------------------------------------------------


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

    registry = None if name.registry == "docker.io" else name.registry
    try:
        client.login(**auth, registry=registry, reauth=True)
    except docker.errors.APIError as exc:
        reason = redact(str(exc.explanation or exc), [auth["password"]])
        raise UserError(
            f"registry {name.registry} refused login for {auth['username']} ({reason}); check"
            " --registry-username and REGISTRY_PASSWORD"
        ) from None


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


class _PushFailed(Exception):
    pass


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


# ---- the task -----------------------------------------------------------------------------


def load_dist(settings: Settings) -> Dist:
    dist = Dist.load(settings.path("dist"))
    dist.path(names.LINUX_TARBALL)  # refuses a dist without the Linux tarball, naming it
    dist.verify()
    return dist


def image(settings: Settings) -> ImageResult:
    """Build (quick: binary swap; full: Istio's make), verify, tag, optionally push."""
    name = parse_image_name(settings.image)
    auth = credentials(settings) if settings.push else None
    dist = load_dist(settings)
    if settings.mode == "quick":
        if not settings.base:
            raise UserError(
                "quick mode needs a base image: pass --base, e.g. mosnio/proxyv2:v1.0.0-1.10.6"
            )
        istio_version = dist.istio_version
        binary = dist.binary(names.LINUX_TARBALL)
        prepare_full = None
    else:
        from ci.image import full as istio_build

        if settings.base:
            log.warn(
                "--base is for quick mode; full mode builds FROM Istio's own base image"
                " (--istio-base IMAGE stands in for it)"
            )
        istio_version = settings.istio_version
        if istio_version != dist.istio_version:
            raise UserError(
                f"the dist's MOSN was stamped for Istio {dist.istio_version}, not"
                f" {istio_version}; rebuild with `invoke build --istio-version {istio_version}`"
                " or pass the matching --istio-version"
            )
        prepare_full = istio_build.prepare(settings, dist)
        binary = None
    tags = image_tags(
        name, settings.tags, names.default_image_tag(dist.mosn_version_safe, istio_version)
    )
    labels = image_labels(dist, istio_version, settings.mosn_repo)
    secret_values = [str(settings.registry_password or "")]

    with log.stage("connect to the Docker engine"):
        client = connect()
    with engine_errors():
        result = _build_verify_tag(
            client, settings, name, tags, labels, dist, binary, prepare_full, auth
        )
        if settings.push:
            push_all(client, result, auth, secret_values)
    write_image_json(dist.root, result)
    return result


@contextlib.contextmanager
def engine_errors() -> Iterator[None]:
    """An engine failure this module did not foresee still ends as one line, not a traceback."""
    import docker
    import requests

    try:
        yield
    except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
        reason = getattr(exc, "explanation", None) or str(exc)
        raise UserError(
            f"the Docker engine failed: {reason}; check dockerd and run again"
        ) from None


def _build_verify_tag(
    client,
    settings: Settings,
    name: ImageName,
    tags: list[str],
    labels: dict[str, str],
    dist: Dist,
    binary: bytes | None,
    prepare_full: Callable[[Any, str, str], str] | None,
    auth: dict[str, str] | None,
) -> ImageResult:
    if auth:
        login(client, auth, name)
    cleanup: list[str] = []
    try:
        if prepare_full is None:
            require_image(client, settings.base, "base image")
            base = settings.base
        else:
            make_tag = UNVERIFIED_PREFIX + secrets.token_hex(6)
            cleanup.append(f"{name.hub}/proxyv2:{make_tag}")
            base = prepare_full(client, name.hub, make_tag)
            if not image_exists(client, base):
                raise UserError(
                    f"make docker.proxyv2 succeeded but left no image {base}; check that the"
                    " Istio checkout tags $(HUB)/proxyv2:$(TAG)"
                )
        with log.stage(f"build {name.repository} FROM {base}"):
            unverified, image_id = build_unverified(
                client, base, binary, labels, name.repository, dist.source_date_epoch
            )
        with log.stage("verify"):
            verify(client, unverified, dist.mosn_version)
        if prepare_full is None and not settings.skip_smoke:
            with log.stage("smoke run in the image"):
                smoke_in_image(client, unverified)
        apply_tags(client, unverified, image_id, name.repository, tags)
    finally:
        for reference in cleanup:
            remove_quietly(client, reference)
    return ImageResult(name.repository, tags, image_id, labels)


def write_image_json(root: Path, result: ImageResult) -> None:
    atomic_write(root / names.IMAGE_JSON, json.dumps(result.as_json(), indent=2) + "\n")
    log.info(f"    {root / names.IMAGE_JSON}")
