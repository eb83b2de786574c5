"""A real artifact server (gunicorn + the Flask app) on loopback, for any test that needs one;
and the same app in-process (InProcess, below) for the API cases that need no network.

    with running_server(tmp_path / "root", tokens=["t"]) as base_url:
        requests.put(f"{base_url}/a/b.tar.gz", data=..., headers={"Authorization": "Bearer t"})

`base_url` is a str (`http://127.0.0.1:PORT`) that also carries `.pid` (gunicorn master),
`.root`, `.log` (its log file) and `.workers()` (the worker pids), for tests that kill or
measure the server. Extra keyword options go to server.background.start (read_token,
max_upload_size, overwrite, read_only, workers, connections, header_timeout, send_timeout,
trusted_proxies).
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import os
import signal
from collections.abc import Iterator, Sequence
from pathlib import Path

from requests.utils import parse_header_links

from server import background
from tests.helpers.net import free_port


class ServerURL(str):
    pid: int
    root: Path
    log: Path
    port: int

    def workers(self) -> list[int]:
        """Pids of the gunicorn workers (children of the master but nginx's)."""
        children = Path(f"/proc/{self.pid}/task/{self.pid}/children")
        try:
            pids = [int(p) for p in children.read_text().split()]
        except OSError:
            return []
        return [pid for pid in pids if _command(pid) != "nginx"]

    def kill_hard(self) -> None:
        """SIGKILL the master and its workers at once, like a machine losing power."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        background.collect(self.root)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, 0)


def _command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


@contextlib.contextmanager
def running_server(
    root: Path, tokens: Sequence[str] = ("test-token",), **options
) -> Iterator[ServerURL]:
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = root.parent / f"{root.name}-server-{port}.log"
    options.setdefault("workers", 2)
    pid = background.start(root, f"127.0.0.1:{port}", tokens, log_file=log, **options)
    url = ServerURL(f"http://127.0.0.1:{port}")
    url.pid, url.root, url.log, url.port = pid, root, log, port
    try:
        yield url
    finally:
        if background.running(root) == pid:
            background.stop(root)
        else:
            url.kill_hard()


class Answer:
    """A test-client response seen through the parts of requests.Response the tests read."""

    def __init__(self, response) -> None:
        self.status_code = response.status_code
        self.headers = response.headers
        self.content = response.get_data()
        response.close()

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self):
        return json.loads(self.content)

    @property
    def links(self) -> dict:
        header = self.headers.get("Link")
        if not header:
            return {}
        return {link.get("rel") or link["url"]: link for link in parse_header_links(header)}


class InProcess(str):
    """The app in this process, on Flask's test client, behind the base URL http://localhost.

    Its calls take what requests.Session's take (a full URL, data=bytes or an iterable of
    chunks, headers=, params=), so a test reads the same in-process as over the wire. The
    WSGI stack is the one gunicorn runs (the fast path included), without the network.
    """

    root: Path

    def __new__(cls, root: Path, tokens: Sequence[str], **config) -> InProcess:
        from server import create_app

        url = super().__new__(cls, "http://localhost")
        url.root = Path(root)
        url.client = create_app({"root": url.root, "tokens": list(tokens), **config}).test_client()
        return url

    def request(self, method: str, url: str, data=b"", headers=None, params=None) -> Answer:
        assert url.startswith(self), url
        headers = dict(headers or {})
        extra = {}
        if isinstance(data, bytes):  # requests sends a length, 0 included
            extra = {"content_length": len(data)}
        else:  # an iterable of chunks: sent chunked, no length
            headers["Transfer-Encoding"] = "chunked"
            extra = {
                "input_stream": io.BytesIO(b"".join(data)),
                "environ_overrides": {"wsgi.input_terminated": True},
            }
            data = None
        path, _, query = url.removeprefix(self).partition("?")
        response = self.client.open(
            path or "/",  # werkzeug decodes %XX into PATH_INFO, as gunicorn does
            method=method,
            data=data,
            headers=headers,
            query_string=params if params is not None else query,
            **extra,
        )
        return Answer(response)

    def __getattr__(self, name: str):
        # .get(url, ...), .put(...), ...: requests.Session's method names.
        if name in ("get", "head", "put", "delete", "post", "options"):
            return functools.partial(self.request, name.upper())
        raise AttributeError(name)
