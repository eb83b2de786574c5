"""Publishing to the bundled artifact server (`server/`): PUT with a bearer token, HEAD to compare."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import requests

from ci import log, retry
from ci.errors import UserError
from ci.progress import Progress
from ci.publish.base import (
    CONNECT_TIMEOUT,
    READ_TIMEOUT,
    Item,
    Stored,
    name_not_resolved,
    retry_after,
    transient_status,
)

CHECKSUM_HEADER = "X-Checksum-Sha256"
HEALTHZ = "-/healthz"


class ServerStore:
    """`token_file`: the file the token was read from when the user set none (publish's own
    server's token), so that a refusal says where the token came from."""

    def __init__(self, base_url: str, token: str, token_file: str = "") -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in {"http", "https"} or not parts.netloc:
            raise UserError(
                f"--server-url {base_url!r} is not an http(s) URL; pass e.g. http://127.0.0.1:8080"
            )
        if parts.username or parts.password:
            raise UserError(
                "--server-url must not carry credentials; pass the token with ARTIFACT_TOKEN"
            )
        if parts.query or parts.fragment:
            raise UserError(f"--server-url {base_url!r} must not have a query or fragment")
        self.base = base_url.rstrip("/")
        self.host = parts.hostname or ""
        self.token = token
        self.token_file = token_file
        self.session = requests.Session()

    def check_server(self) -> None:
        """Ask /-/healthz before anything else: something that is not this server (another
        web server, a wrong port) is named at once instead of after retries of each file."""
        response = self._retrying(HEALTHZ, lambda: self._request("GET", HEALTHZ, auth=False))
        answer = _json(response) if response.status_code == 200 else {}
        if answer.get("status") != "ok" or not isinstance(answer.get("read_only"), bool):
            raise UserError(
                f"{self.base} is not a mosn-proxyv2 artifact server (GET /-/healthz answered"
                f" {_answered(response)}); check --server-url"
            )
        if answer["read_only"]:
            raise UserError(
                f"the artifact server at {self.base} is read-only (GET /-/healthz), so nothing"
                " can be published to it; publish to a writable one (--server-url)"
            )

    def describe(self) -> str:
        return f"the artifact server at {self.base}"

    def display(self, key: str) -> str:
        return self.url(key)

    def url(self, key: str) -> str:
        return f"{self.base}/{key}"

    def folder_url(self, folder: str) -> str:
        return f"{self.base}/{folder}"

    def unreadable_hint(self, item: Item) -> str:
        return "run the artifact server with anonymous reads (no --read-token)"

    def _request(self, method: str, key: str, *, auth: bool, **kwargs: Any) -> requests.Response:
        """One request; transient failures raise retry.Transient, the rest return."""
        headers = kwargs.pop("headers", {})
        if auth and self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        try:
            response = self.session.request(
                method,
                self.url(key),
                headers=headers,
                timeout=(CONNECT_TIMEOUT, READ_TIMEOUT),
                allow_redirects=False,
                **kwargs,
            )
        except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
            if name_not_resolved(exc):
                raise UserError(
                    f"{self.base}: the host name {self.host} does not resolve; check --server-url"
                ) from None
            raise retry.Transient(_connection_reason(exc)) from None
        except requests.Timeout:
            raise retry.Transient("timed out") from None
        if transient_status(response.status_code):
            response.close()
            raise retry.Transient(f"HTTP {response.status_code}", retry_after(response))
        return response

    def _retrying(self, key: str, attempt):
        return retry.call(
            attempt,
            what=self.url(key),
            hint="check that the artifact server is running and --server-url is right"
            " (`curl URL/-/healthz`)",
        )

    def stat(self, key: str) -> Stored | None:
        response = self._retrying(key, lambda: self._request("HEAD", key, auth=False))
        if response.status_code == 404:
            return None
        if response.status_code == 200:
            return _stored(response)
        if response.status_code == 401:
            raise UserError(
                f"{self.base} wants a token for reads, but Istio's build downloads without one;"
                " run the artifact server with anonymous reads (no --read-token)"
            )
        raise self._error(response, key)

    def put(self, item: Item, *, replace: bool) -> None:
        response = self._upload(item)
        if response.status_code == 409 and replace:
            # The server refuses overwrites by default; --force replaces by delete and upload.
            self._delete(item.key)
            response = self._upload(item)
        if response.status_code not in (200, 201):
            raise self._error(response, item.key)
        answer = _json(response)
        if answer.get("sha256") != item.sha256 or answer.get("size") != item.size:
            # What the server holds is our own upload, damaged on the way: take it back, so
            # that a re-run is not refused as "different bytes".
            self._delete(item.key)
            raise UserError(
                f"{self.url(item.key)}: the server stored {answer.get('size')} bytes with sha256"
                f" {answer.get('sha256')}, but {item.size} bytes with sha256 {item.sha256} were"
                " sent (that copy was deleted); check for a proxy rewriting uploads, then run again"
            )

    def check_write(self, item: Item) -> None:
        """Send `item`, already there with the same bytes, again: the server checks the token
        and answers 200 without changing anything. One small PUT, authenticated as any."""
        body = item.source.read_bytes() if item.source else b""
        response = self._retrying(
            item.key,
            lambda: self._request(
                "PUT", item.key, auth=True, data=body, headers={CHECKSUM_HEADER: item.sha256}
            ),
        )
        if response.status_code not in (200, 201):
            raise self._error(response, item.key)
        log.info(f"    the server accepted the token (sent {item.name} again, unchanged)")

    def _upload(self, item: Item) -> requests.Response:
        def attempt() -> requests.Response:
            # Each attempt reopens the file: a failed one may have consumed the stream.
            progress = Progress("uploading", item.name, item.size)
            with item.open(progress) as body:
                response = self._request(
                    "PUT",
                    item.key,
                    auth=True,
                    data=body,
                    headers={
                        CHECKSUM_HEADER: item.sha256,
                        "Content-Length": str(item.size),
                        "Content-Type": "application/octet-stream",
                    },
                )
            if response.status_code in (200, 201):
                progress.finish("uploaded")
            return response

        return self._retrying(item.key, attempt)

    def _delete(self, key: str) -> None:
        response = self._retrying(key, lambda: self._request("DELETE", key, auth=True))
        if response.status_code not in (200, 204, 404):
            raise self._error(response, key)

    def _error(self, response: requests.Response, key: str) -> UserError:
        status = response.status_code
        url = self.url(key)
        if status == 401:
            return UserError(
                f"{url}: the artifact server wants a write token (HTTP 401); set ARTIFACT_TOKEN"
                " or pass --token"
            )
        if status == 403 and self.token_file:
            return UserError(
                f"{url}: the artifact server refused the token read from {self.token_file}"
                " (HTTP 403), which publish uses when ARTIFACT_TOKEN is not set: it is the"
                " token of the server publish starts itself; set ARTIFACT_TOKEN (or --token)"
                " to one of this server's write tokens"
            )
        if status == 403:
            return UserError(
                f"{url}: the artifact server refused the token (HTTP 403); check ARTIFACT_TOKEN"
                " against the server's --token-file or ARTIFACT_TOKENS"
            )
        if status == 409:
            return UserError(
                f"{url} already holds different bytes (HTTP 409); build a new version or pass"
                " --force to replace them"
            )
        if status == 413:
            return UserError(
                f"{url}: the file is larger than the server accepts (HTTP 413); raise the"
                " server's --max-upload-size"
            )
        if status == 507:
            return UserError(f"{url}: the artifact server's disk is full (HTTP 507); free space")
        message = _json(response).get("error") or response.reason
        return UserError(f"{url}: the artifact server answered HTTP {status} ({message})")


def _stored(response: requests.Response) -> Stored:
    etag = response.headers.get("ETag", "").removeprefix("W/").strip('"')
    sha = response.headers.get(CHECKSUM_HEADER) or etag or None
    return Stored(int(response.headers.get("Content-Length", -1)), sha)


def _json(response: requests.Response) -> dict:
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _answered(response: requests.Response) -> str:
    """An answer as a person would describe it: status, reason, where a redirect points."""
    said = f"HTTP {response.status_code} {response.reason or ''}".rstrip()
    if response.is_redirect:
        return f"{said}, to {response.headers.get('Location', '?')}"
    if response.status_code == 200:
        return f"{said} with {response.headers.get('Content-Type') or 'no content type'}"
    return said


def _connection_reason(exc: Exception) -> str:
    text = str(exc)
    if "Connection refused" in text:
        return "connection refused"
    if "reset" in text.lower():
        return "connection reset"
    return f"connection failed ({type(exc).__name__})"
