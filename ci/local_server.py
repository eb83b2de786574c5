"""The bundled artifact server started on demand, so `invoke build publish` works out of the box.

When --server-url names this host and nothing listens there, publish starts `python -m server`
in the background with its storage in `server_root`, a pid file there (`invoke serve --stop`
stops it) and a write token generated once and kept in `<server_root>/.write-token` (mode 0600;
the server never serves names starting with a dot).
"""

from __future__ import annotations

import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import requests

from ci import log
from ci.config import Secret, Settings
from ci.errors import UserError
from ci.fsutil import atomic_write

LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
TOKEN_FILE = ".write-token"  # noqa: S105 (a file name, not a secret)
LOG_FILE = ".server.log"
START_TIMEOUT = 30.0
# `python -m server` runs from here, whatever folder invoke was started in.
REPO_ROOT = Path(__file__).resolve().parent.parent


def _address(url: str) -> tuple[str, int] | None:
    parts = urlsplit(url)
    if parts.hostname not in LOCAL_HOSTS:
        return None
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return parts.hostname, port


def answering(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def token_path(root: Path) -> Path:
    return root / TOKEN_FILE


def stored_token(root: Path) -> str:
    try:
        return token_path(root).read_text().strip()
    except OSError:
        return ""


def write_token(settings: Settings) -> str:
    """The token publish sends to the server at server_url, starting that server if needed."""
    address = _address(settings.server_url)
    root = settings.path("server_root").resolve()
    if address is None:
        return settings.token
    host, port = address
    if answering(host, port):
        # Our own earlier auto-started server, or one the user runs: the flag/env token wins.
        return settings.token or stored_token(root)
    if urlsplit(settings.server_url).scheme != "http" or urlsplit(settings.server_url).path.strip(
        "/"
    ):
        raise UserError(
            f"nothing answers at {settings.server_url}, and the bundled server can only be"
            " started for a plain http://HOST:PORT URL; start your server or fix --server-url"
        )
    token = settings.token or stored_token(root) or secrets.token_urlsafe(32)
    start(root, host, port, token)
    return Secret(token)


def start(root: Path, host: str, port: int, token: str) -> int:
    """Start the bundled server in the background; return its pid once it answers."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        atomic_write(token_path(root), token + "\n", mode=0o600)
    except OSError as exc:
        raise UserError(
            f"cannot prepare {root} for the artifact server: {exc.strerror}; set --server-root"
            " to a writable folder"
        ) from None
    bind = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    cmd = [
        sys.executable,
        "-m",
        "server",
        "--root",
        str(root),
        "--bind",
        bind,
        "--token-file",
        str(token_path(root)),
    ]
    with open(root / LOG_FILE, "ab") as server_log:
        process = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=server_log,
            stderr=subprocess.STDOUT,
            # Its own session: the server outlives this invoke run and its Ctrl-C.
            start_new_session=True,
            cwd=REPO_ROOT,
        )
    health = f"http://{bind}/-/healthz"
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise UserError(
                f"the bundled artifact server exited at start (code {process.returncode});"
                f" see {root / LOG_FILE}"
            )
        try:
            if requests.get(health, timeout=1).status_code == 200:
                break
        except requests.RequestException:
            pass
        time.sleep(0.1)
    else:
        process.terminate()
        raise UserError(
            f"the bundled artifact server did not answer at {health} within"
            f" {START_TIMEOUT:.0f}s; see {root / LOG_FILE}"
        )
    log.info(
        f"    nothing answered at http://{bind}: started the bundled artifact server there in"
        f" the background (pid {process.pid}, storage {root}, log {root / LOG_FILE});"
        " stop it with `invoke serve --stop`"
    )
    return process.pid
