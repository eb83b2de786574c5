"""DIST/istio.env: the KEY=VALUE lines `invoke publish` writes for Istio's build to read.

One variable a line, split at the first `=` (URLs keep their own `=`), no quoting; blank
lines and lines starting with `#` are ignored.
"""

from __future__ import annotations

from pathlib import Path

from ci.errors import UserError
from ci.fsutil import atomic_write


def read(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    for number, raw in enumerate(Path(path).read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise UserError(
                f"{path}:{number} is not a KEY=VALUE line; rerun `invoke publish` to rewrite it"
            )
        values[key.strip()] = value.strip()
    return values


def write(path: Path, values: dict[str, str]) -> None:
    for key, value in values.items():
        if "\n" in value or "=" in key or not key:
            raise ValueError(f"cannot write {key!r} as one KEY=VALUE line")
    atomic_write(Path(path), "".join(f"{k}={v}\n" for k, v in values.items()))
