"""Which URL paths name an artifact, and where under the root they live.

Every rule here exists so a request cannot reach outside the root or see the server's own
files: names starting with a dot are refused, which also hides the temporary and lock
directories and the checksum sidecars the store keeps beside each artifact.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

MAX_PATH_BYTES = 1024
MAX_SEGMENT_BYTES = 255
# An artifact's checksum sidecar is `.<name>.meta`, 6 bytes longer than its name, and must fit
# the filesystem's 255-byte limit too.
SIDECAR_EXTRA_BYTES = len(".") + len(".meta")
MAX_NAME_BYTES = MAX_SEGMENT_BYTES - SIDECAR_EXTRA_BYTES
# The first segment "-" is the server's own namespace (/-/healthz, /-/api/...).
RESERVED_FIRST_SEGMENT = "-"
# The same rules as check() minus the byte lengths, as a regular expression for the OpenAPI
# document: segments of non-control characters without backslashes, not starting with a dot,
# the first segment not "-".
_SEGMENT = r"[^/.\\\x00-\x1f\x7f][^/\\\x00-\x1f\x7f]*"
PATTERN = rf"^(?!-/|-$){_SEGMENT}(/{_SEGMENT})*$"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class BadPath(ValueError):
    """The path breaks a naming rule; the message says which."""


def check(path: str, *, allow_root: bool = False, directory: bool = False) -> str:
    """Return `path` as a clean relative artifact path (`a/b/c`), or raise BadPath.

    A trailing slash is allowed only for directories, so callers that store files pass the
    raw path; `allow_root` accepts "" (the root directory itself). The last segment of a file
    path may have at most MAX_NAME_BYTES (its sidecar must fit), a directory's 255.
    """
    if path == "":
        if allow_root:
            return ""
        raise BadPath("empty path; name an artifact, e.g. /mosn/v1/mosn.tar.gz")
    if _CONTROL.search(path):
        raise BadPath("path contains NUL or control characters")
    if "\\" in path:
        raise BadPath("path contains a backslash; use / between segments")
    if path.startswith("/"):
        raise BadPath("absolute path; paths are relative to the server root")
    try:
        encoded = path.encode("utf-8")
    except UnicodeEncodeError:
        raise BadPath("path is not valid UTF-8") from None
    if len(encoded) > MAX_PATH_BYTES:
        raise BadPath(f"path longer than {MAX_PATH_BYTES} bytes")
    segments = path.split("/")
    for segment in segments:
        if segment == "":
            raise BadPath("empty path segment (// or a trailing /)")
        if segment in (".", ".."):
            raise BadPath("'.' and '..' segments are not allowed")
        if segment.startswith("."):
            raise BadPath("names starting with a dot are reserved")
        if len(segment.encode("utf-8")) > MAX_SEGMENT_BYTES:
            raise BadPath(f"a path segment is longer than {MAX_SEGMENT_BYTES} bytes")
    if not directory and len(segments[-1].encode("utf-8")) > MAX_NAME_BYTES:
        raise BadPath(
            f"an artifact's name (the last path segment) is longer than {MAX_NAME_BYTES} bytes"
        )
    if segments[0] == RESERVED_FIRST_SEGMENT:
        raise BadPath("the /-/ prefix is reserved for the server's own endpoints")
    return path


def check_directory(path: str) -> str:
    """A directory URL may end with one slash: `a/b/` and `a/b` name the same directory."""
    return check(path[:-1] if path.endswith("/") else path, allow_root=True, directory=True)


def inside(root: Path, candidate: Path) -> bool:
    """True if `candidate`, with every symlink resolved, is the root or below it."""
    real_root = os.path.realpath(root)
    real = os.path.realpath(candidate)
    return real == real_root or real.startswith(real_root + os.sep)
