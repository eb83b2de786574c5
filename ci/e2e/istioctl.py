"""The programs the kind job runs, fetched from their releases, checksum-verified and cached.

istioctl and Bookinfo come from one Istio release tarball (bin/istioctl and samples/), so the
sample manifests always match the control plane. kind and kubectl are pinned by the version
table. Every download is checked against a sha256 before it is used, and lands in the cache by
rename, so an interrupted or corrupt download never looks like a cached one.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import platform
import re
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import requests

from ci import log
from ci.e2e.versions import ClusterVersions
from ci.errors import UserError
from ci.fsutil import atomic_file

GITHUB = "https://github.com"
K8S_RELEASES = "https://dl.k8s.io"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def host_arch() -> str:
    machine = platform.machine().lower()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


def istio_release_url(istio_version: str, arch: str, github: str = GITHUB) -> str:
    name = f"istio-{istio_version}-linux-{arch}.tar.gz"
    return f"{github}/istio/istio/releases/download/{istio_version}/{name}"


def kind_url(row: ClusterVersions, arch: str, github: str = GITHUB) -> str:
    return f"{github}/kubernetes-sigs/kind/releases/download/{row.kind_release}/kind-linux-{arch}"


def kubectl_url(row: ClusterVersions, arch: str, k8s: str = K8S_RELEASES) -> str:
    return f"{k8s}/release/{row.kubectl_version}/bin/linux/{arch}/kubectl"


@dataclass(frozen=True)
class Tools:
    """Where each program lives in the cache (whether or not it is there yet)."""

    kind: Path
    kubectl: Path
    istio_home: Path

    @property
    def istioctl(self) -> Path:
        return self.istio_home / "bin" / "istioctl"

    @property
    def samples(self) -> Path:
        return self.istio_home / "samples"

    @classmethod
    def in_cache(cls, cache_dir: Path, row: ClusterVersions, istio_version: str) -> Tools:
        tools = cache_dir / "tools"
        return cls(
            kind=tools / f"kind-{row.kind_release}" / "kind",
            kubectl=tools / f"kubectl-{row.kubectl_version}" / "kubectl",
            istio_home=tools / f"istio-{istio_version}" / f"istio-{istio_version}",
        )


def published_sha256(url: str, timeout: float = 60.0) -> str:
    """The digest in a release's `.sha256`/`.sha256sum` file (first field of its first line)."""
    try:
        response = requests.get(url, timeout=timeout)
    except requests.RequestException as exc:
        raise UserError(
            f"could not fetch checksum {url} ({type(exc).__name__}); check the network"
        ) from None
    if response.status_code != 200:
        raise UserError(f"checksum {url} answered {response.status_code}; check the version")
    fields = response.text.split()
    digest = fields[0].lower() if fields else ""
    if not _SHA256.match(digest):
        raise UserError(f"checksum file {url} does not start with a sha256 digest")
    return digest


def download(url: str, dest: Path, sha256: str, timeout: float = 300.0) -> None:
    """Fetch url into dest if sha256 matches; on mismatch or error nothing is left at dest."""
    made_folder = not dest.parent.exists()
    ok = False
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        # The digest is taken while writing: atomic_file renames into place on a clean exit.
        with atomic_file(dest, mode=0o755) as handle:
            actual = _fetch_into(url, handle, timeout)
            if actual != sha256.lower():
                raise UserError(
                    f"{url} has sha256 {actual}, expected {sha256}; the download is corrupt or "
                    "was replaced: nothing was kept, retry or check the release"
                )
        ok = True
    except OSError as exc:
        raise _unwritable(dest, exc) from None
    finally:
        if made_folder and not ok:
            with contextlib.suppress(OSError):
                dest.parent.rmdir()


def _fetch_into(url: str, handle: BinaryIO, timeout: float) -> str:
    """Stream url's body into handle; its sha256."""
    digest = hashlib.sha256()
    # requests' errors are OSErrors too: caught here so they are not taken for the disk's.
    try:
        with requests.get(url, stream=True, timeout=timeout) as response:
            if response.status_code != 200:
                raise UserError(
                    f"download {url} answered {response.status_code}; check the version"
                )
            for chunk in response.iter_content(chunk_size=1 << 20):
                digest.update(chunk)
                handle.write(chunk)
    except requests.RequestException as exc:
        raise UserError(
            f"could not download {url} ({type(exc).__name__}); check the network"
        ) from None
    return digest.hexdigest()


def _safe_extract(archive: Path, into: Path) -> None:
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar.getmembers():
            target = (into / member.name).resolve()
            if not target.is_relative_to(into.resolve()) or member.isdev():
                raise UserError(f"{archive.name} has an unsafe member {member.name!r}; not used")
            if member.issym() or member.islnk():
                link = (target.parent / member.linkname).resolve()
                if not link.is_relative_to(into.resolve()):
                    raise UserError(f"{archive.name} has a link leaving the archive; not used")
        tar.extractall(into)  # noqa: S202 - every member was checked above


def ensure_istio(tools: Tools, istio_version: str, arch: str, github: str = GITHUB) -> None:
    """Download and unpack the Istio release (istioctl + samples) unless it is cached."""
    if tools.istioctl.is_file():
        return
    url = istio_release_url(istio_version, arch, github)
    digest = published_sha256(url + ".sha256")
    release_dir = tools.istio_home.parent
    staging: Path | None = None
    try:
        release_dir.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{release_dir.name}.", dir=release_dir.parent))
        archive = staging / "release.tar.gz"
        log.info(f"    fetching {url}")
        download(url, archive, digest)
        unpacked = staging / "unpacked"
        unpacked.mkdir()
        _safe_extract(archive, unpacked)
        if not (unpacked / tools.istio_home.name / "bin" / "istioctl").is_file():
            raise UserError(f"{url} has no {tools.istio_home.name}/bin/istioctl; wrong asset")
        shutil.rmtree(release_dir, ignore_errors=True)
        os.replace(unpacked, release_dir)
    except OSError as exc:
        raise _unwritable(release_dir, exc) from None
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)


def _unwritable(path: Path, exc: OSError) -> UserError:
    return UserError(
        f"could not write {path} ({exc.strerror or exc}); check the free space and "
        f"permissions of {path.parent}"
    )
