"""Quick mode: the dist's mosn copied into a proxyv2 image the engine already has (--base)."""

from __future__ import annotations

from ci import names
from ci.builder import smoke as build_smoke
from ci.config import Settings
from ci.dist import Dist
from ci.errors import UserError
from ci.image.engine import removed_on_failure, require_image


def prepare(settings: Settings, dist: Dist) -> bytes:
    """Refuse what can be refused without the engine; return the binary to copy in."""
    if not settings.base:
        raise UserError(
            "quick mode needs a base image: pass --base, e.g. mosnio/proxyv2:v1.0.0-1.10.6"
        )
    return dist.binary(names.LINUX_TARBALL)


def base(client, settings: Settings) -> str:
    require_image(client, settings.base, "base image")
    return settings.base


def smoke(client, reference: str) -> None:
    """ci.builder.smoke inside the image; on failure the image is removed, nothing tagged."""
    with removed_on_failure(client, reference):
        build_smoke.run_in_image(client, reference, names.BINARY_PATH_IN_IMAGE)
