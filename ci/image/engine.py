"""The image stage's work in the Docker engine: build under a throwaway tag, verify, tag.

No tag, local or in a registry, ever names an image that failed the check: an image is
built under an `unverified-` tag, its mosn must print the dist's version, and only then is
a real tag applied.
"""

from __future__ import annotations

import contextlib
import io
import secrets
import tarfile
from collections.abc import Iterator
from typing import Any

from ci import engine, log, names
from ci.builder import smoke
from ci.errors import UserError

# Throwaway tags carry this prefix; they exist only between a build and its verification.
UNVERIFIED_PREFIX = "unverified-"
VERIFY_TIMEOUT = 120
# A build or a push can be silent for minutes.
ENGINE_TIMEOUT = 600


def connect():
    """A Docker SDK client that has answered a ping, or a UserError saying how to get one."""
    return engine.client(ENGINE_TIMEOUT)


def unverified_tag() -> str:
    return UNVERIFIED_PREFIX + secrets.token_hex(6)


def require_image(client, reference: str, what: str) -> None:
    if not engine.image_exists(client, reference):
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

    reference = f"{repository}:{unverified_tag()}"
    context = build_context(base, binary, labels, mtime)
    with removed_on_failure(client, reference):
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
            raise UserError(f"docker build failed: {exc.explanation or exc}") from None


def remove_quietly(client, reference: str) -> None:
    """Drop a reference this run made (untag; the image goes if nothing else names it)."""
    import docker

    with contextlib.suppress(docker.errors.DockerException):
        client.images.remove(reference, noprune=False)


@contextlib.contextmanager
def removed_on_failure(client, reference: str) -> Iterator[None]:
    """Whatever goes wrong inside, `reference` is removed before the error goes on."""
    try:
        yield
    except BaseException:
        remove_quietly(client, reference)
        raise


def mosn_version_in(client, reference: str) -> tuple[int, str]:
    """Run the image's mosn --version, cut off from any network; return (exit code, output)."""
    import docker
    import requests

    container = client.containers.create(
        reference,
        command=["--version"],
        entrypoint=[names.BINARY_PATH_IN_IMAGE],
        network_mode="none",
        labels={engine.PURPOSE_LABEL: "verify"},
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
    with removed_on_failure(client, reference):
        code, output = mosn_version_in(client, reference)
        first_line = names.mosn_version_line(output)
        if code != 0 or first_line != expected:
            got = f"exit code {code}: {first_line!r}" if code != 0 else repr(first_line)
            raise UserError(
                f"the built image's {names.BINARY_PATH_IN_IMAGE} --version gave {got}, expected"
                f" {expected!r}{smoke.exec_hint(output)}; the image was removed and nothing was"
                " tagged or pushed",
                detail=output,
            )
    log.info(f"    {names.BINARY_PATH_IN_IMAGE} --version: {first_line}")


def apply_tags(client, unverified: str, image_id: str, repository: str, tags: list[str]) -> None:
    for tag in tags:
        client.api.tag(image_id, repository, tag, force=True)
        log.info(f"    tagged {repository}:{tag}")
    # The real tags hold the image now, so this only drops the throwaway name.
    remove_quietly(client, unverified)
