"""Writing files so that a reader sees either the old file or the whole new one, never a part,
and reading back the JSON records the stages write that way."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

from ci.errors import UserError

T = TypeVar("T")


@contextlib.contextmanager
def atomic_file(path: Path, mode: int = 0o644) -> Iterator[BinaryIO]:
    """Yield a temporary file beside `path`; on success fsync it and rename it into place.

    The temporary name starts with a dot so a listing of the folder never offers it.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write(path: Path, data: bytes | str, mode: int = 0o644) -> None:
    with atomic_file(path, mode) as handle:
        handle.write(data.encode() if isinstance(data, str) else data)


def read_record(path: Path, parse: Callable[[Any], T], *, what: str, rerun: str) -> T:
    """`parse` applied to the JSON in `path`, a record a stage wrote; a missing, unreadable or
    malformed one is one UserError saying to run the stage (`rerun`) again."""
    if not path.is_file():
        raise UserError(f"{path} is missing: the stage that writes it did not finish; run {rerun}")
    try:
        return parse(json.loads(path.read_text()))
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
        raise UserError(
            f"{path} is not {what} this tool wrote ({type(exc).__name__}: {exc}); run {rerun} again"
        ) from None
