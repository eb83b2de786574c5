"""What every store (the artifact server, S3) offers publish, and what they share."""

from __future__ import annotations

import hashlib
import io
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

import requests

from ci import retry
from ci.errors import UserError
from ci.progress import Progress, ReadCounter

CONNECT_TIMEOUT = 10
READ_TIMEOUT = 120


@dataclass(frozen=True)
class Item:
    """One file to publish: `key` is its path in the store, `<prefix>/<version>/<name>`."""

    name: str
    key: str
    size: int
    sha256: str
    source: Path | None = None  # None: an empty WASM placeholder

    @property
    def placeholder(self) -> bool:
        """Placeholders are fetched through ISTIO_ENVOY_BASE_URL, a folder URL: never signed."""
        return self.source is None

    @contextmanager
    def open(self, progress: Progress):
        handle: BinaryIO = open(self.source, "rb") if self.source else io.BytesIO(b"")  # noqa: SIM115
        try:
            yield ReadCounter(handle, self.size, progress)
        except BaseException:
            progress.abandon()
            raise
        finally:
            handle.close()


@dataclass(frozen=True)
class Stored:
    """What a store says it holds at a key. sha256 is None when the store does not know it."""

    size: int
    sha256: str | None


class Store(Protocol):
    def describe(self) -> str:
        """Where files go, for messages: `artifact server http://...`, `s3://bucket`."""

    def display(self, key: str) -> str:
        """The URL of `key` for messages: never a token or a signature."""

    def stat(self, key: str) -> Stored | None: ...

    def put(self, item: Item, *, replace: bool) -> None:
        """Store the item's bytes, sending its sha256 for the store to check on receipt."""

    def check_write(self, item: Item) -> None:
        """Prove the credentials may write, when every file is already there and nothing else
        would show they may not. `item` is one of those files (the smallest)."""

    def url(self, key: str) -> str:
        """The URL Istio's build fetches with plain curl."""

    def folder_url(self, folder: str) -> str:
        """A URL that `<it>/<file name>` under `folder` resolves against (ISTIO_ENVOY_BASE_URL)."""

    def unreadable_hint(self, item: Item) -> str:
        """What to change when a plain GET of the item's URL is refused."""


def transient_status(status: int) -> bool:
    # 501 Not Implemented and 505 HTTP Version Not Supported say the same on every attempt.
    return status == 429 or (status >= 500 and status not in (501, 505))


def name_not_resolved(exc: Exception) -> bool:
    """Whether a requests error is a host name that did not resolve: no retry will help."""
    import urllib3

    cause = exc.args[0] if exc.args else None
    return isinstance(getattr(cause, "reason", cause), urllib3.exceptions.NameResolutionError)


def retry_after(response: requests.Response) -> float | None:
    try:
        return float(response.headers.get("Retry-After", ""))
    except ValueError:
        return None


def download_digest(url: str, display: str, unreadable_hint: str) -> Stored:
    """Fetch `url` the way Istio's build does (plain GET, redirects followed), hash the body."""

    def attempt() -> Stored:
        try:
            with requests.get(url, stream=True, timeout=(CONNECT_TIMEOUT, READ_TIMEOUT)) as resp:
                if transient_status(resp.status_code):
                    raise retry.Transient(f"HTTP {resp.status_code}", retry_after(resp))
                if resp.status_code != 200:
                    raise UserError(
                        f"{display} answered HTTP {resp.status_code} to a plain GET, so Istio's"
                        f" build could not download it; {unreadable_hint}"
                    )
                digest, size = hashlib.sha256(), 0
                for block in resp.iter_content(1 << 20):
                    digest.update(block)
                    size += len(block)
                return Stored(size, digest.hexdigest())
        except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
            raise retry.Transient(f"connection failed ({type(exc).__name__})") from None
        except requests.Timeout:
            raise retry.Transient("timed out") from None

    return retry.call(
        attempt, what=display, hint="check that the URL is reachable from this machine"
    )
