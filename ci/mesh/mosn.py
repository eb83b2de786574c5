"""The MOSN under test: the binary from the dist's tarball or from a built proxyv2 image.

Either way it is the very file that ships: the tarball's usr/local/bin/mosn (the one Istio's
build copies into proxyv2), or /usr/local/bin/mosn copied out of the image through the Docker
SDK. It runs on this machine, so it must be built for it (linux/amd64 here).
"""

from __future__ import annotations

import io
import tarfile
from dataclasses import dataclass
from pathlib import Path

from ci import engine, names, proc
from ci.builder.smoke import host_platform
from ci.config import Settings
from ci.dist import Dist
from ci.errors import UserError

ENGINE_TIMEOUT = 120


@dataclass(frozen=True)
class Mosn:
    binary: Path
    # Where it came from, for the report: a dist's tarball or an image.
    origin: str
    # What `mosn --version` printed ("mosn version v1.0.0(...)").
    version: str


def fetch(settings: Settings, into: Path) -> Mosn:
    """The MOSN binary to prove, written to `into/mosn`."""
    binary = into / "mosn"
    if settings.image:
        origin = _from_image(settings.image, binary)
    else:
        origin = _from_dist(settings.path("dist"), binary)
    binary.chmod(0o755)
    output = proc.run(
        [binary, "--version"], stream=False, check=False, what="mosn --version"
    ).strip()
    version = names.mosn_version_line(output)
    if not version.startswith("mosn version "):
        raise UserError(
            f"{origin}: `mosn --version` printed {output[-200:]!r}, not 'mosn version ...'; "
            f"is it a MOSN built for {host_platform() or 'this machine'}?"
        )
    return Mosn(binary, origin, version)


def _host_tarball() -> str:
    platform = names.PLATFORMS.get(host_platform())
    if platform is None:
        raise UserError(
            f"MOSN cannot run on this machine ({host_platform() or 'unknown platform'}) to be "
            f"proven; run the check on one of {', '.join(p for p in names.PLATFORMS if p.startswith('linux/'))}"
        )
    return platform.tarballs[0]


def _from_dist(root: Path, binary: Path) -> str:
    dist = Dist.load(root)
    tarball = _host_tarball()
    dist.file(tarball)  # a dist without it says which platform to build
    dist.verify()
    binary.write_bytes(dist.binary(tarball))
    return f"{root / tarball} ({dist.mosn_version}, built with {dist.go_version})"


def _from_image(reference: str, binary: Path) -> str:
    import docker

    client = engine.client(ENGINE_TIMEOUT, "the check copies MOSN out of the image --image names")
    with engine.errors():
        if not engine.image_exists(client, reference):
            raise UserError(
                f"image {reference!r} is not in the Docker engine; build it (invoke image) or "
                "pull it, or leave --image empty to take MOSN from the dist"
            )
        container = client.containers.create(
            reference, command=["true"], network_mode="none", labels={engine.PURPOSE_LABEL: "mesh"}
        )
        try:
            try:
                stream, _ = container.get_archive(names.BINARY_PATH_IN_IMAGE)
            except docker.errors.NotFound as exc:
                raise UserError(
                    f"image {reference!r} has no {names.BINARY_PATH_IN_IMAGE} ({engine.reason(exc)});"
                    " is it a MOSN proxyv2 image?"
                ) from None
            archive = io.BytesIO(b"".join(stream))
        finally:
            container.remove(force=True)
    with tarfile.open(fileobj=archive) as tar:
        member = next((m for m in tar.getmembers() if m.isfile()), None)
        data = tar.extractfile(member).read() if member else None
    if not data:
        raise UserError(f"image {reference!r}: {names.BINARY_PATH_IN_IMAGE} is not a file")
    binary.write_bytes(data)
    return f"image {reference}: {names.BINARY_PATH_IN_IMAGE}"
