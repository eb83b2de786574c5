"""What the image stage made, as DIST/image.json records it: written once, read back here."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ci import log, names
from ci.fsutil import atomic_write, read_record


@dataclass
class ImageResult:
    repository: str
    tags: list[str]
    image_id: str
    labels: dict[str, str]
    digest: str | None = None
    pushed_tags: list[str] = field(default_factory=list)

    @property
    def references(self) -> list[str]:
        return [f"{self.repository}:{tag}" for tag in self.tags]

    @property
    def pinned(self) -> str | None:
        return f"{self.repository}@{self.digest}" if self.digest else None

    def as_json(self) -> dict[str, Any]:
        return {
            "image": self.repository,
            "tags": self.tags,
            "references": self.references,
            "id": self.image_id,
            "digest": self.digest,
            "pinned": self.pinned,
            "labels": self.labels,
        }

    def write(self, root: Path) -> None:
        atomic_write(root / names.IMAGE_JSON, json.dumps(self.as_json(), indent=2) + "\n")
        log.info(f"    {root / names.IMAGE_JSON}")

    @classmethod
    def load(cls, path: Path) -> ImageResult:
        """Read an image.json back; a missing or unreadable one is one UserError."""
        return read_record(path, cls._parse, what="an image.json", rerun="`invoke image`")

    @classmethod
    def _parse(cls, data: dict[str, Any]) -> ImageResult:
        result = cls(
            repository=data["image"],
            tags=list(data["tags"]),
            image_id=data["id"],
            labels=dict(data["labels"]),
            digest=data["digest"],
        )
        if not all(isinstance(v, str) for v in (result.repository, result.image_id, *result.tags)):
            raise TypeError("image, id and tags must be strings")
        return result
