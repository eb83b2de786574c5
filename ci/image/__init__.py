"""`invoke image`: build the proxyv2 image, prove its MOSN is the dist's, then tag and push it.

Both modes end the same way (ci.image.engine): built under a throwaway tag, verified, only
then tagged, and only then pushed (ci.image.registry). Quick mode (ci.image.quick) copies the
dist's binary into a base image; full mode (ci.image.full) runs Istio's own make first.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from ci import engine as docker_engine
from ci import log, names
from ci.config import Settings
from ci.dist import Dist
from ci.image import engine, full, quick, registry
from ci.image.registry import ImageName, image_tags, parse_image_name
from ci.image.result import ImageResult

__all__ = ["ImageResult", "image", "image_tags", "parse_image_name"]


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
        # What --fix-deps moved, for whoever scans the image: "module from=>to, ...".
        **({"io.mosn.proxyv2.fix-deps": fixes_label(dist)} if dist.fixes else {}),
    }


def fixes_label(dist: Dist) -> str:
    return ", ".join(f"{f['module']} {f['from']}=>{f['to']}" for f in dist.fixes)


def load_dist(settings: Settings) -> Dist:
    dist = Dist.load(settings.path("dist"))
    dist.path(names.LINUX_TARBALL)  # refuses a dist without the Linux tarball, naming it
    dist.verify()
    return dist


def image(settings: Settings) -> ImageResult:
    """Build (quick: binary swap; full: Istio's make), verify, tag, optionally push."""
    name = parse_image_name(settings.image)
    auth = registry.credentials(settings) if settings.push else None
    dist = load_dist(settings)
    if settings.mode == "quick":
        binary, run_make = quick.prepare(settings, dist), None
    else:
        binary, run_make = None, full.prepare(settings, dist)
    # Full mode refused a dist stamped for another Istio, so both modes build for the dist's.
    istio_version = dist.istio_version
    tags = image_tags(
        name, settings.tags, names.default_image_tag(dist.mosn_version_safe, istio_version)
    )
    labels = image_labels(dist, istio_version, settings.mosn_repo)
    secret_values = [str(settings.registry_password or "")]

    with log.stage("connect to the Docker engine"):
        client = engine.connect()
    with docker_engine.errors():
        result = _build_verify_tag(
            client, settings, name, tags, labels, dist, binary, run_make, auth
        )
        if settings.push:
            registry.push_all(client, result, auth, secret_values)
    result.write(dist.root)
    return result


def _build_verify_tag(
    client,
    settings: Settings,
    name: ImageName,
    tags: list[str],
    labels: dict[str, str],
    dist: Dist,
    binary: bytes | None,
    run_make: Callable[[Any, str, str], str] | None,
    auth: dict[str, str] | None,
) -> ImageResult:
    if auth:
        registry.login(client, auth, name)
    cleanup: list[str] = []
    try:
        if run_make is None:
            base = quick.base(client, settings)
        else:
            make_tag = engine.unverified_tag()
            cleanup.append(f"{name.hub}/proxyv2:{make_tag}")
            base = run_make(client, name.hub, make_tag)
        with log.stage(f"build {name.repository} FROM {base}"):
            unverified, image_id = engine.build_unverified(
                client, base, binary, labels, name.repository, dist.source_date_epoch
            )
        with log.stage("verify"):
            engine.verify(client, unverified, dist.mosn_version)
        if run_make is None and not settings.skip_smoke:
            with log.stage("smoke run in the image"):
                quick.smoke(client, unverified)
        engine.apply_tags(client, unverified, image_id, name.repository, tags)
    finally:
        for reference in cleanup:
            engine.remove_quietly(client, reference)
    return ImageResult(name.repository, tags, image_id, labels)
