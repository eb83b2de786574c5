"""A real artifact server (gunicorn + the Flask app) on loopback, for any test that needs one.

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
import os
import signal
from collections.abc import Iterator, Sequence
from pathlib import Path

from server import background
from tests.helpers.net import free_port


class ServerURL(str):
    pid: int
    root: Path
    log: Path
    port: int

    def workers(self) -> list[int]:
        """Pids of the gunicorn workers (children of the master)."""
        children = Path(f"/proc/{self.pid}/task/{self.pid}/children")
        try:
            return [int(p) for p in children.read_text().split()]
        except OSError:
            return []

    def kill_hard(self) -> None:
        """SIGKILL the master and its workers at once, like a machine losing power."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, 0)


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
