"""Reproducible tarballs: one file, usr/local/bin/mosn, that GNU `tar xz` extracts."""

from __future__ import annotations

import gzip
import os
import shutil
import tarfile
from collections.abc import Mapping
from pathlib import Path
from typing import BinaryIO

from ci import names
from ci.dist import Dist, DistFile, sha256_file
from ci.fsutil import atomic_file

GZIP_LEVEL = 6


def write_tarball(binary: Path, sink: BinaryIO, mtime: int) -> None:
    """Write the gzip'd tar of `binary` to `sink`: fixed owner, mode and time, no gzip name."""
    info = tarfile.TarInfo(names.BINARY_PATH_IN_TARBALL)
    info.size = binary.stat().st_size
    info.mode = 0o755
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mtime = mtime
    with (
        gzip.GzipFile(
            filename="", mode="wb", fileobj=sink, mtime=0, compresslevel=GZIP_LEVEL
        ) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.USTAR_FORMAT) as tar,
        open(binary, "rb") as src,
    ):
        tar.addfile(info, src)


def write_dist(out: Path, binaries: Mapping[str, Path], template: Dist) -> Dist:
    """Package each platform's binary into `out` and describe them in the manifest.

    Every tarball is written under a temporary name and renamed into place, so `out` never
    holds a partial one; the manifest and SHA256SUMS come last.
    """
    out.mkdir(parents=True, exist_ok=True)
    files: list[DistFile] = []
    for platform_name, binary in binaries.items():
        platform = names.PLATFORMS[platform_name]
        first, *copies = platform.tarballs
        with atomic_file(out / first) as sink:
            write_tarball(binary, sink, template.source_date_epoch)
        for copy in copies:
            # Same bytes under a second name: copy rather than compress again.
            with atomic_file(out / copy) as sink, open(out / first, "rb") as src:
                shutil.copyfileobj(src, sink)
        for name in platform.tarballs:
            path = out / name
            files.append(DistFile(name, platform_name, path.stat().st_size, sha256_file(path)))
    _remove_stale_tarballs(out, {f.name for f in files})
    dist = Dist(**{**template.__dict__, "root": out, "files": tuple(files)})
    dist.write_manifest()
    return dist


def _remove_stale_tarballs(out: Path, keep: set[str]) -> None:
    """A tarball of ours left from an earlier build with other platforms would be published
    beside the new ones by a careless `cp`; drop it."""
    for platform in names.PLATFORMS.values():
        for name in platform.tarballs:
            if name not in keep and (out / name).exists():
                os.unlink(out / name)
