"""What a publish did, as DIST/published.json records it: written last, read back here.

The action's report reads it (and image.json) instead of URLs handed through the
environment, so what it shows is what the stage wrote, not what a step passed along.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from ci import log, names
from ci.fsutil import atomic_write, read_record


@dataclass(frozen=True)
class PublishedFile:
    name: str
    url: str
    sha256: str
    size: int


@dataclass(frozen=True)
class Record:
    store: str  # the --to choice: server or s3
    location: str  # where, for people: `the artifact server at http://...`, `s3://bucket`
    files: tuple[PublishedFile, ...]
    istio_env: str  # the path of the istio.env this publish wrote
    wasm_base_url: str | None = None  # ISTIO_ENVOY_BASE_URL when WASM placeholders were published

    def url(self, name: str) -> str:
        return next((f.url for f in self.files if f.name == name), "")

    def tarballs(self, names: Iterable[str]) -> list[dict[str, str]]:
        """The files `names` as the action's `tarballs` output lists them."""
        by_name = {f.name: f for f in self.files}
        return [{"file": n, "url": by_name[n].url, "sha256": by_name[n].sha256} for n in names]

    def write(self, root: Path) -> None:
        atomic_write(root / names.PUBLISHED_JSON, json.dumps(asdict(self), indent=2) + "\n")
        log.info(f"wrote {root / names.PUBLISHED_JSON}")


def _parse(data: dict) -> Record:
    files = tuple(PublishedFile(**f) for f in data.pop("files"))
    if not all(isinstance(v, str) for f in files for v in (f.name, f.url, f.sha256)):
        raise TypeError("file names, URLs and digests must be strings")
    return Record(files=files, **data)


def load(path: Path) -> Record:
    """Read a published.json back; a missing or unreadable one is one UserError."""
    return read_record(path, _parse, what="a published.json", rerun="`invoke publish`")
