"""The hot path: a plain GET or HEAD of an artifact, answered without Flask.

Downloads are most of the traffic (every Istio build and every curl), so the common case
skips Flask's request, routing and response objects: check the path, open the file, read
its sidecar, send headers and hand the open file to gunicorn's sendfile. Anything less
common (a Range, a conditional request, a read token, a directory, a stale sidecar, any
error) goes to the Flask app, which answers it in full; both use download_headers.
"""

from __future__ import annotations

import json
import mimetypes
import re
from collections.abc import Callable, Iterable
from functools import lru_cache

from werkzeug.http import http_date
from werkzeug.wsgi import wrap_file

from server import front
from server.headers import CHECKSUM_HEADER
from server.metrics import Metrics
from server.store import Artifact, Store, StoreError

# Conditional and partial requests are answered by werkzeug, in the Flask app.
_SLOW_HEADERS = (
    "HTTP_RANGE",
    "HTTP_IF_NONE_MATCH",
    "HTTP_IF_MODIFIED_SINCE",
    "HTTP_IF_MATCH",
    "HTTP_IF_UNMODIFIED_SINCE",
    "HTTP_IF_RANGE",
)
_COMPRESSED = {"gzip": "application/gzip", "bzip2": "application/x-bzip2", "xz": "application/x-xz"}
SEND_BUFFER = 256 * 1024
INLINE_LIMIT = 64 * 1024
# RFC 3986 host (an IP literal in brackets, or reg-name characters) and an optional port.
_HOST = re.compile(r"^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~!$&'()*+,;=%-]+)(?::(\d{0,5}))?$")


def valid_host(host: str) -> bool:
    """Response URLs are built from the Host header: it must be one werkzeug can parse."""
    match = _HOST.match(host)
    return bool(match) and int(match.group(1) or 0) <= 65535


@lru_cache(maxsize=1024)
def content_type(name: str) -> str:
    guessed, encoding = mimetypes.guess_type(name, strict=False)
    # A .tar.gz is a gzip stream to HTTP clients; naming it tar + Content-Encoding would make
    # browsers and some clients unpack it on the fly.
    if encoding:
        return _COMPRESSED.get(encoding, "application/octet-stream")
    if guessed and guessed.startswith("text/"):
        return f"{guessed}; charset=utf-8"
    return guessed or "application/octet-stream"


def download_headers(artifact: Artifact) -> list[tuple[str, str]]:
    """Headers of a full download of `artifact` (werkzeug adjusts them for 206 and 304)."""
    return list(_download_headers(artifact))


@lru_cache(maxsize=4096)
def _download_headers(artifact: Artifact) -> tuple[tuple[str, str], ...]:
    return (
        ("Content-Type", content_type(artifact.path.rsplit("/", 1)[-1])),
        ("Content-Length", str(artifact.size)),
        ("ETag", f'"{artifact.sha256}"'),
        ("Last-Modified", http_date(int(artifact.modified))),
        # Clients may cache but must revalidate: an artifact can be replaced when overwrite is on.
        ("Cache-Control", "no-cache"),
        ("Accept-Ranges", "bytes"),
        (CHECKSUM_HEADER, artifact.sha256),
        # Served bytes are data, never a page of this origin: no script in an uploaded HTML runs.
        ("Content-Security-Policy", "sandbox"),
        ("X-Content-Type-Options", "nosniff"),
    )


def cache_for(seconds: int | None) -> list[tuple[str, str]]:
    """Behind the front: let nginx reuse this 200 for `seconds` (nginx strips the header)."""
    return [("X-Accel-Expires", str(seconds))] if seconds else []


def redirect_headers(
    store: Store, handle, artifact: Artifact, range_header: str | None, front_cache: int | None
) -> list[tuple[str, str]] | None:
    """Behind the front: the headers of a download nginx sends from the artifact's blob, whole
    or with the client's Range (judged already); None when the app must send the bytes itself.

    A whole file with --front-cache on goes through the name's link_current, and nginx may
    keep that redirect for front_cache seconds (server.front): the link leads to the blob
    whose sha256 is in these headers, and is gone as soon as a PUT or DELETE changes the
    name, so a kept redirect never sends old bytes after the write was answered.
    """
    blob = store.blob_of(handle, artifact)
    target = blob and front.accel_target(blob, range_header)
    if not target:
        return None
    headers = [(k, v) for k, v in _download_headers(artifact) if k != "Content-Length"]
    headers.append(("Content-Length", "0"))
    current = range_header is None and front_cache and store.link_current(handle, artifact)
    if current:
        target = front.ACCEL_CURRENT + current
        headers += cache_for(front_cache)
    return [*headers, ("X-Accel-Redirect", target)]


class FastDownloads:
    """WSGI middleware in front of the Flask app for anonymous, unconditional GET/HEAD."""

    def __init__(
        self,
        app: Callable,
        store: Store,
        metrics: Metrics,
        anonymous_reads: bool,
        front_cache: int | None = None,
    ) -> None:
        self.app = app
        self.store = store
        self.metrics = metrics
        self.enabled = anonymous_reads
        # Behind the nginx front (None: no front): seconds nginx may cache a small download.
        self.front_cache = front_cache

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        host = environ.get("HTTP_HOST")
        if host is not None and not valid_host(host):
            # Refused before any route runs: a PUT must not store and then fail on its URL.
            return self._bad_request(start_response, "the Host header is not a valid host[:port]")
        method = environ["REQUEST_METHOD"]
        raw = environ.get("PATH_INFO", "")
        if (
            not self.enabled
            or method not in ("GET", "HEAD")
            or raw.endswith("/")
            or raw.startswith("/-/")
            or any(name in environ for name in _SLOW_HEADERS)
        ):
            return self.app(environ, start_response)
        try:
            rel = raw.encode("latin-1").decode("utf-8")[1:]
            opened = self.store.open(rel, rehash=False)
        except (StoreError, UnicodeError):
            opened = None
        if opened is None:
            return self.app(environ, start_response)
        handle, artifact = opened
        if self.front_cache is not None:
            return self._via_front(environ, start_response, handle, artifact, rel)
        start_response("200 OK", download_headers(artifact))
        if method == "HEAD":
            handle.close()
            self.metrics.served(200, 0)
            return []
        self.metrics.served(200, artifact.size)
        if artifact.size <= INLINE_LIMIT:
            # A small body costs less as one buffer than as sendfile's extra system calls.
            with handle:
                return [handle.readall()]
        return wrap_file(environ, handle, SEND_BUFFER)

    def _via_front(self, environ, start_response, handle, artifact: Artifact, rel: str):
        head = environ["REQUEST_METHOD"] == "HEAD"
        if artifact.size <= INLINE_LIMIT:
            start_response("200 OK", download_headers(artifact) + cache_for(self.front_cache))
            self.metrics.served(200, 0 if head else artifact.size)
            with handle:
                return [] if head else [handle.readall()]
        with handle:
            headers = redirect_headers(self.store, handle, artifact, None, self.front_cache)
        if headers is None:
            return self.app(environ, start_response)
        self.metrics.served(200, 0 if head else artifact.size)
        start_response("200 OK", headers)
        return []

    def _bad_request(self, start_response: Callable, message: str) -> list[bytes]:
        body = json.dumps({"error": message, "reason": "bad_request", "status": 400}).encode()
        start_response(
            "400 BAD REQUEST",
            [
                ("Content-Type", "application/json"),
                ("Content-Length", str(len(body))),
                ("X-Content-Type-Options", "nosniff"),
            ],
        )
        self.metrics.served(400, len(body))
        return [body]
