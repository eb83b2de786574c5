"""The images a kind cluster would pull, read from the manifests; pulled once, loaded into kind.

Docker Hub rate-limits anonymous pulls and a Bookinfo cluster pulls about a dozen images, so
the run pulls each once on the host (authenticated when the workflow logged in) and `kind
load`s it, and no pod pulls from the internet. The list is derived, never kept by hand:
every container image in `istioctl manifest generate` output and in Bookinfo's bookinfo.yaml,
plus the two images the sidecar injector adds to each pod (istio-proxy and istio-init), which
appear in the generated manifest only as values of the `istio-sidecar-injector` ConfigMap.

`kind load docker-image` (kind v0.17.0) pipes `docker save` into `ctr images import
--all-platforms`. With Docker's containerd image store (the default from Docker 29, on
GitHub's runners now) `docker save` of a pulled multi-platform image names platforms whose
content was never pulled, and the import fails with "content digest ... not found"
(kubernetes-sigs/kind#3795, #4066; workaround documented in kind#4247). The fallback saves
one platform (`docker image save --platform`) and loads that archive with `kind load
image-archive`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

import yaml

from ci import log, proc
from ci.errors import UserError

INJECTOR_CONFIGMAP = "istio-sidecar-injector"
# The injected containers' images, as `global` values of the injector ConfigMap.
INJECTED_VALUES = (("proxy", "image"), ("proxy_init", "image"))
_REFERENCE = re.compile(r"^[a-z0-9][\w.:/@-]*$", re.IGNORECASE)


def _documents(text: str) -> Iterator[dict]:
    for doc in yaml.safe_load_all(text):
        if isinstance(doc, dict):
            if doc.get("kind") == "List":
                yield from (item for item in doc.get("items") or [] if isinstance(item, dict))
            else:
                yield doc


def _container_images(node: object) -> Iterator[str]:
    """Every `image` of a container or init container anywhere under `node`."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("containers", "initContainers", "ephemeralContainers") and isinstance(
                value, list
            ):
                for container in value:
                    if isinstance(container, dict) and isinstance(container.get("image"), str):
                        yield container["image"]
            yield from _container_images(value)
    elif isinstance(node, list):
        for item in node:
            yield from _container_images(item)


def _injected_images(doc: dict) -> Iterator[str]:
    """The sidecar injector's istio-proxy and istio-init images, as its template resolves them."""
    name = (doc.get("metadata") or {}).get("name", "")
    if doc.get("kind") != "ConfigMap" or not name.startswith(INJECTOR_CONFIGMAP):
        return
    try:
        values = json.loads((doc.get("data") or {}).get("values") or "{}")
    except ValueError:
        raise UserError(
            f"ConfigMap {name} has a `values` entry that is not JSON; is this istioctl's output?"
        ) from None
    g = values.get("global") or {}
    for section, key in INJECTED_VALUES:
        image = str((g.get(section) or {}).get(key) or "")
        if not image:
            continue
        # The injection template: a value with a `/` is a full reference, else hub/name:tag.
        yield image if "/" in image else f"{g.get('hub')}/{image}:{g.get('tag')}"


def derive(manifests: Iterable[str]) -> list[str]:
    """The distinct images of these manifests, in first-seen order."""
    found: dict[str, None] = {}
    for text in manifests:
        for doc in _documents(text):
            for image in (*_container_images(doc), *_injected_images(doc)):
                image = image.strip()
                if not _REFERENCE.match(image):
                    # Not worth failing the run over: the cluster pulls it itself, if it can.
                    log.warn(f"not preloading {image!r}: the manifest's image is no reference")
                    continue
                found.setdefault(image, None)
    return list(found)


def present(image: str) -> bool:
    try:
        proc.run(["docker", "image", "inspect", "--format", "{{.Id}}", image], stream=False)
    except UserError:
        return False
    return True


def pull(images: Iterable[str]) -> list[str]:
    """Pull what the engine lacks; the images that were pulled."""
    pulled = []
    for image in images:
        if present(image):
            continue
        proc.run(
            ["docker", "pull", image],
            what=f"docker pull {image}",
            hint="Docker Hub rate-limits anonymous pulls: give the workflow DOCKERHUB_USERNAME "
            "and DOCKERHUB_TOKEN secrets so that it logs in first",
        )
        pulled.append(image)
    return pulled


def load_argv(kind: Path, cluster: str, image: str) -> list[str]:
    return [str(kind), "load", "docker-image", "--name", cluster, image]


def fallback_argvs(
    kind: Path, cluster: str, image: str, archive: Path, platform: str
) -> list[list[str]]:
    return [
        ["docker", "image", "save", "--platform", platform, "--output", str(archive), image],
        [str(kind), "load", "image-archive", "--name", cluster, str(archive)],
    ]


def load(kind: Path, cluster: str, image: str, scratch: Path, platform: str) -> str | None:
    """`kind load docker-image`; on failure the one-platform archive route. A note when used."""
    try:
        proc.run(load_argv(kind, cluster, image), stream=False)
        return None
    except UserError as exc:
        lines = (exc.detail or "").strip().splitlines() or [str(exc)]
        why = next((line for line in reversed(lines) if "digest" in line), lines[-1]).strip()
    scratch.mkdir(parents=True, exist_ok=True)
    archive = scratch / (re.sub(r"[^\w.-]+", "_", image) + ".tar")
    log.warn(
        f"kind load docker-image {image} failed ({why[:200]}); "
        f"loading it as a {platform} archive instead (docker image save --platform + kind load "
        "image-archive: Docker's containerd image store, kind#3795)"
    )
    try:
        for argv in fallback_argvs(kind, cluster, image, archive, platform):
            proc.run(argv, stream=False)
    finally:
        archive.unlink(missing_ok=True)
    return f"{image} via docker image save --platform {platform} + kind load image-archive"
