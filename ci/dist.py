"""A dist folder: the tarballs `invoke build` wrote, described by manifest.json.

Every later step (publish, image, the action's outputs) reads a dist through this module.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ci import names
from ci.errors import UserError
from ci.fsutil import atomic_write

SCHEMA = 1


@dataclass(frozen=True)
class DistFile:
    name: str
    platform: str
    size: int
    sha256: str


@dataclass(frozen=True)
class Dist:
    root: Path
    mosn_version: str  # as stamped into the binary: VERSION(<short hash>)
    mosn_version_safe: str  # for file names, URLs, image tags, ISTIO_ENVOY_VERSION
    istio_version: str
    git_commit: str
    go_version: str
    source_date_epoch: int
    cgo: bool
    files: tuple[DistFile, ...] = field(default_factory=tuple)
    dirty: bool = False  # built from a checkout with uncommitted changes
    # Modules --fix-deps moved: {"module", "from", "to"} each.
    fixes: tuple[dict[str, str], ...] = ()

    @classmethod
    def load(cls, root: Path | str) -> Dist:
        root = Path(root)
        manifest = root / names.MANIFEST
        if not manifest.is_file():
            raise UserError(
                f"{root} holds no {names.MANIFEST}: run `invoke build --out {root}` first"
            )
        try:
            data = json.loads(manifest.read_text())
            files = tuple(DistFile(**f) for f in data.pop("files"))
            fixes = tuple(data.pop("fixes", ()))
            data.pop("schema", None)
            return cls(root=root, files=files, fixes=fixes, **data)
        except (ValueError, TypeError, KeyError) as exc:
            raise UserError(
                f"{manifest} is not a manifest this tool wrote ({exc}); rebuild with `invoke build`"
            ) from None

    def write_manifest(self) -> None:
        """Write manifest.json and SHA256SUMS (the latter checkable with `sha256sum -c`)."""
        data = {"schema": SCHEMA, **asdict(self)}
        data.pop("root")
        atomic_write(self.root / names.MANIFEST, json.dumps(data, indent=2) + "\n")
        sums = "".join(f"{f.sha256}  {f.name}\n" for f in self.files)
        atomic_write(self.root / names.SHA256SUMS, sums)

    def file(self, name: str) -> DistFile:
        for f in self.files:
            if f.name == name:
                return f
        raise UserError(
            f"{self.root} has no {name} (built: {', '.join(f.name for f in self.files) or 'none'});"
            " rebuild with the platform that makes it in --platforms"
        )

    def path(self, name: str) -> Path:
        return self.root / self.file(name).name

    def verify(self) -> None:
        """Check each tarball on disk still has the size and sha256 the manifest records."""
        for f in self.files:
            path = self.root / f.name
            if not path.is_file():
                raise UserError(f"{path} is missing; rebuild with `invoke build`")
            if sha256_file(path) != f.sha256:
                raise UserError(
                    f"{path} does not match {names.MANIFEST}; rebuild with `invoke build`"
                )

    def binary(self, tarball: str = names.LINUX_TARBALL) -> bytes:
        """The mosn binary inside one of the tarballs."""
        with tarfile.open(self.path(tarball), "r:gz") as tar:
            member = tar.extractfile(names.BINARY_PATH_IN_TARBALL)
            if member is None:
                raise UserError(f"{tarball} has no {names.BINARY_PATH_IN_TARBALL}; rebuild it")
            return member.read()


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
