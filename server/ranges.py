"""Which part of an artifact a GET asks for: Range and If-Range as RFC 9110 section 14 reads.

werkzeug answers a Range it cannot parse with 416, where RFC 9110 says a server ignores a
Range it does not understand or will not serve (another unit, garbage, several ranges: we
send no multipart) and sends the whole representation. So the request's Range is judged
here and handed to werkzeug only as one plain `bytes=FIRST-LAST` it cannot get wrong.
"""

from __future__ import annotations

import re

from werkzeug.http import http_date

from server.store import Artifact

_RANGE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$", re.IGNORECASE)


class Unsatisfiable(Exception):
    """A well-formed byte range that lies outside the artifact: 416."""


def effective_range(environ: dict, artifact: Artifact) -> str | None:
    """The range to send as `bytes=FIRST-LAST`, or None to send the whole artifact."""
    header = environ.get("HTTP_RANGE")
    if header is None or artifact.size == 0:
        return None
    if_range = environ.get("HTTP_IF_RANGE")
    if if_range is not None and not _validator_matches(if_range.strip(), artifact):
        return None
    match = _RANGE.match(header)
    if not match:
        return None
    first, last = match.groups()
    size = artifact.size
    if first:
        start = int(first)
        if last and int(last) < start:
            return None  # an invalid range-spec: the whole header is ignored
        if start >= size:
            raise Unsatisfiable()
        end = min(int(last), size - 1) if last else size - 1
        return f"bytes={start}-{end}"
    if not last:
        return None  # "bytes=-"
    suffix = int(last)
    if suffix == 0:
        raise Unsatisfiable()
    # A suffix longer than the artifact means all of it.
    return f"bytes={max(0, size - suffix)}-{size - 1}"


def _validator_matches(value: str, artifact: Artifact) -> bool:
    # If-Range needs a strong match: a weak entity tag never does, a date only when it is
    # exactly the Last-Modified we send.
    if value.startswith('"'):
        return value == f'"{artifact.sha256}"'
    if value.startswith("W/"):
        return False
    return value == http_date(int(artifact.modified))
