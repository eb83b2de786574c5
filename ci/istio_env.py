"""istio.env: the hand-off from publish to Istio's build, as plain KEY=VALUE lines.

The file is read by `docker run --env-file`, by the action and by the image step, so values
are written raw (no quotes): do not `source` it in a shell, since a presigned URL holds `&`.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from ci import names
from ci.errors import UserError
from ci.fsutil import atomic_write

# The order the variables are written and passed to make.
ORDER = (
    names.SIDECAR_VAR,
    names.ISTIO_ENVOY_VERSION,
    names.ISTIO_ENVOY_RELEASE_URL,
    names.ISTIO_ENVOY_CENTOS_RELEASE_URL,
    names.ISTIO_ENVOY_MACOS_RELEASE_URL,
    names.ISTIO_ENVOY_MACOS_RELEASE_NAME,
    names.ISTIO_ENVOY_BASE_URL,
)


def istio_values(
    envoy_version: str, tarball_urls: dict[str, str], base_url: str | None
) -> dict[str, str]:
    """The variables for Istio's build, given the URL of each published tarball by file name."""
    if names.LINUX_TARBALL not in tarball_urls:
        raise UserError(
            f"the dist has no {names.LINUX_TARBALL}, which Istio's build always downloads;"
            " rebuild with linux/amd64 in --platforms"
        )
    values = {names.SIDECAR_VAR: names.SIDECAR, names.ISTIO_ENVOY_VERSION: envoy_version}
    for var, tarball in names.RELEASE_URL_VARS.items():
        if tarball in tarball_urls:
            values[var] = tarball_urls[tarball]
    if names.MACOS_TARBALL in tarball_urls:
        values[names.ISTIO_ENVOY_MACOS_RELEASE_NAME] = names.macos_release_name(envoy_version)
    if base_url:
        values[names.ISTIO_ENVOY_BASE_URL] = base_url
    return {key: values[key] for key in ORDER if key in values}


def render(values: dict[str, str]) -> str:
    for key, value in values.items():
        if "\n" in value or "\r" in value:
            raise UserError(
                f"{key} would span lines in {names.ISTIO_ENV}; this is a bug, report it"
            )
    return "".join(f"{key}={value}\n" for key, value in values.items())


def write(path: Path, values: dict[str, str]) -> None:
    atomic_write(path, render(values))


def parse(text: str) -> dict[str, str]:
    """KEY=VALUE lines; blank lines and lines starting with # are skipped."""
    values = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not key:
            raise UserError(
                f"{names.ISTIO_ENV} line {number} is not KEY=VALUE; re-run `invoke publish`"
            )
        values[key] = value
    return values


def read(path: Path) -> dict[str, str]:
    if not path.is_file():
        raise UserError(f"{path} does not exist: run `invoke publish --dist {path.parent}` first")
    return parse(path.read_text())


def make_command(values: dict[str, str]) -> str:
    """The command to run in an Istio checkout, every value a make argument, shell-quoted."""
    args = " ".join(shlex.quote(f"{key}={value}") for key, value in values.items())
    return f"make clean && make docker.proxyv2 {args}"


def blocklist_warnings(values: dict[str, str]) -> list[str]:
    """One warning per variable that Istio's build container would silently drop."""
    warnings = []
    for key, value in values.items():
        found = names.blocked_substrings(key, value)
        if not found:
            continue
        quoted = ", ".join(f'"{s}"' for s in found)
        _, _, query = value.partition("?")
        if query and any(s in query for s in found):
            where = "in the URL's signature"
            avoid = "use --public (plain object URLs, no signature)"
        else:
            where = "in the URL's path"
            avoid = "use another --prefix (or --version) without it"
        warnings.append(
            f"{key} contains {quoted} {where}: Istio's build container (BUILD_WITH_CONTAINER=1)"
            f" drops it, as an environment variable and as a make argument alike (make passes"
            f" arguments on through MAKEFLAGS, which goes through the same filter); {avoid}, or"
            f" run Istio's build with BUILD_WITH_CONTAINER=0"
        )
    return warnings
