"""Fixtures for the artifact server tests: one live server per session and mode (gunicorn
alone, and behind nginx), the same app in-process for the detailed API cases, and helpers."""

from __future__ import annotations

import hashlib
import subprocess
import uuid

import pytest
import requests

from server.front import find_nginx
from tests.helpers import tools
from tests.helpers.artifact_server import InProcess, running_server

TOKEN = "test-token-7f3a"
OTHER_TOKEN = "second-token-19c2"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# The two ways the server runs: gunicorn alone (the default) and behind the nginx front.
FRONTS = ["app", "nginx"]


@pytest.fixture(scope="session", params=FRONTS)
def live_server(request, tmp_path_factory):
    """A real server (gunicorn, 2 workers; alone, and behind nginx) shared by tests that need
    no special options."""
    if request.param == "nginx" and find_nginx() is None:
        tools.need("nginx", "nginx is not installed")
    with running_server(
        tmp_path_factory.mktemp("live") / "root",
        tokens=[TOKEN, OTHER_TOKEN],
        front=None if request.param == "app" else request.param,
    ) as url:
        yield url


@pytest.fixture(scope="session")
def app(tmp_path_factory) -> InProcess:
    """The app in this process (Flask's test client), configured as live_server is: for the
    API's detailed cases, which need no network. It is both the base URL and the client."""
    return InProcess(tmp_path_factory.mktemp("in-process") / "root", [TOKEN, OTHER_TOKEN])


@pytest.fixture
def prefix() -> str:
    """A fresh directory name per test, so tests sharing the live server never collide."""
    return f"t-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def small_disk(tmp_path):
    """A real 2 MiB filesystem (tmpfs) to fill up; needs root, as CI has."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        tools.need("tmpfs", f"cannot mount a tmpfs here ({result.stderr.strip()})")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


@pytest.fixture
def http():
    with requests.Session() as session:
        yield session


def raw_request(
    base_url: str, method: str, target: str, body: bytes = b"", headers: dict | None = None
) -> int:
    """Send one request with the target exactly as given (no client-side normalising of '..',
    '//' or escapes) and return the status code."""
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(base_url)
    lines = [
        f"{method} {target} HTTP/1.1",
        f"Host: {parts.netloc}",
        "Connection: close",
        f"Content-Length: {len(body)}",
    ]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall("\r\n".join(lines).encode("latin-1") + b"\r\n\r\n" + body)
        reply = b""
        while b"\r\n" not in reply:
            chunk = sock.recv(4096)
            if not chunk:
                break
            reply += chunk
    return int(reply.split(b" ", 2)[1])
