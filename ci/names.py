"""Every name Istio's build and the published layout depend on, in one place."""

from __future__ import annotations

import re
from dataclasses import dataclass

BINARY_PATH_IN_TARBALL = "usr/local/bin/mosn"
BINARY_PATH_IN_IMAGE = "/usr/local/bin/mosn"


def mosn_version_line(output: str) -> str:
    """The `mosn version ...` line of `mosn --version` output, else its first line.

    Real MOSN logs its package init (to stderr) before it prints the version on stdout, and
    callers often see both streams together.
    """
    lines = output.strip().splitlines()
    return next((x for x in lines if x.startswith("mosn version ")), lines[0] if lines else "")


ENVOY_BINARY_PATH = "/usr/local/bin/envoy"
SIDECAR = "mosn"
MOSN_MODULE = "mosn.io/mosn"
MOSN_MAIN_PACKAGE = "mosn.io/mosn/cmd/mosn/main"
MOSN_MAIN_DIR = "cmd/mosn/main"
VERSION_SYMBOL = "main.Version"
ISTIO_VERSION_SYMBOL = "mosn.io/mosn/pkg/istio.IstioVersion"

SHA256SUMS = "SHA256SUMS"
MANIFEST = "manifest.json"
ISTIO_ENV = "istio.env"
IMAGE_JSON = "image.json"
PUBLISHED_JSON = "published.json"


@dataclass(frozen=True)
class Platform:
    goos: str
    goarch: str
    # Tarball names for this platform; more than one name means the same bytes under each.
    tarballs: tuple[str, ...]

    @property
    def name(self) -> str:
        return f"{self.goos}/{self.goarch}"


# Istio's init.sh asks for the Linux tarball and a "CentOS" one (same binary for us), and for
# the macOS one only on a macOS build host. arm64 has no name of Istio's own: pass its URL as
# ISTIO_ENVOY_RELEASE_URL when building an arm64 proxyv2 (TARGET_ARCH=arm64).
PLATFORMS: dict[str, Platform] = {
    p.name: p
    for p in (
        Platform("linux", "amd64", ("mosn.tar.gz", "mosn-centos.tar.gz")),
        Platform("darwin", "amd64", ("mosn-macos.tar.gz",)),
        Platform("linux", "arm64", ("mosn-linux-arm64.tar.gz",)),
    )
}
LINUX_TARBALL = "mosn.tar.gz"
CENTOS_TARBALL = "mosn-centos.tar.gz"
MACOS_TARBALL = "mosn-macos.tar.gz"

# The variables Istio's Makefile reads (Istio 1.10.x).
ISTIO_ENVOY_VERSION = "ISTIO_ENVOY_VERSION"
ISTIO_ENVOY_RELEASE_URL = "ISTIO_ENVOY_RELEASE_URL"
ISTIO_ENVOY_CENTOS_RELEASE_URL = "ISTIO_ENVOY_CENTOS_RELEASE_URL"
ISTIO_ENVOY_MACOS_RELEASE_URL = "ISTIO_ENVOY_MACOS_RELEASE_URL"
ISTIO_ENVOY_MACOS_RELEASE_NAME = "ISTIO_ENVOY_MACOS_RELEASE_NAME"
ISTIO_ENVOY_BASE_URL = "ISTIO_ENVOY_BASE_URL"
SIDECAR_VAR = "SIDECAR"

# Which tarball each release-URL variable points at.
RELEASE_URL_VARS = {
    ISTIO_ENVOY_RELEASE_URL: LINUX_TARBALL,
    ISTIO_ENVOY_CENTOS_RELEASE_URL: CENTOS_TARBALL,
    ISTIO_ENVOY_MACOS_RELEASE_URL: MACOS_TARBALL,
}


def macos_release_name(envoy_version: str) -> str:
    return f"mosn-{envoy_version}"


# How a build gets past the WASM filters Istio 1.10's init.sh downloads: serve empty
# placeholders under their names, or patch Istio's build files not to ask for them.
WASM_MODES = ("placeholder", "patch")


def wasm_placeholders(envoy_version: str) -> list[str]:
    """The files Istio 1.10's init.sh downloads from ISTIO_ENVOY_BASE_URL."""
    return [
        f"{filt}-{envoy_version}{suffix}"
        for filt in ("stats", "metadata_exchange")
        for suffix in (".wasm", ".compiled.wasm")
    ]


# Istio's build container (BUILD_WITH_CONTAINER=1) passes the environment through
# `env | grep -v BLOCKLIST`: a KEY=VALUE line containing any of these substrings, or
# starting with "_", is silently dropped. grep is case-sensitive here.
ISTIO_ENV_BLOCKLIST = (
    "PATH",
    "SHELL",
    "EDITOR",
    "TMUX",
    "USER",
    "HOME",
    "PWD",
    "TERM",
    "GO",
    "rvm",
    "SSH",
    "TMPDIR",
    "CC",
    "CXX",
    "MAKEFILE_LIST",
)


def blocked_substrings(key: str, value: str) -> list[str]:
    """The blocklisted substrings that would make Istio's build container drop KEY=VALUE."""
    line = f"{key}={value}"
    found = [s for s in ISTIO_ENV_BLOCKLIST if s in line]
    if line.startswith("_"):
        found.insert(0, "a leading _")
    return found


UNSAFE_CHARS = re.compile(r"[^A-Za-z0-9_.-]+")


def url_safe(version: str) -> str:
    """A form of a version usable in file names, URLs and image tags: `v1.0.0(abc1234)` ->
    `v1.0.0-abc1234`."""
    safe = UNSAFE_CHARS.sub("-", version).strip("-.")
    return safe[:128]


def default_image_tag(mosn_version_safe: str, istio_version: str) -> str:
    """The mosnio/proxyv2 scheme: `<mosn version>-<istio version>`."""
    return f"{mosn_version_safe}-{istio_version}"
