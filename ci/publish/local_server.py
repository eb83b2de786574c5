"""The bundled artifact server started on demand, so `invoke build publish` works out of the box.

When --server-url names this host and nothing listens there, publish starts the bundled server
(server.background) with its storage in `server_root`, its pid file there (`stop(root)` below,
or `invoke serve --stop`, stops it), and a write token generated once and kept in `<server_root>/.write-token` (mode 0600;
the server never serves names starting with a dot). Later runs find the token there.
"""

from __future__ import annotations

import secrets
import socket
from pathlib import Path
from urllib.parse import urlsplit

from ci import extras, log
from ci.config import Secret, Settings
from ci.errors import UserError
from ci.fsutil import atomic_write

LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
TOKEN_FILE = ".write-token"  # noqa: S105 (a file name, not a secret)


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


def write_token(settings: Settings) -> tuple[Secret, str]:
    """The token publish sends to the server at server_url, starting that server if needed,
    and the file it was read from when the user set none ("" when they did)."""
    address = _address(settings.server_url)
    root = settings.path("server_root").resolve()
    if address is None or settings.token:
        # The user's token wins, for our own server too (it may run with the user's tokens).
        token, source = settings.token, ""
    else:
        token, source = stored_token(root), str(token_path(root))
    if address is None:
        return Secret(token), source
    host, port = address
    if answering(host, port):
        if source and token:
            log.info(
                f"    no token set (ARTIFACT_TOKEN, --token): using the one in {source}, the"
                " token of the server publish starts itself"
            )
        return Secret(token), source if token else ""
    parts = urlsplit(settings.server_url)
    if parts.scheme != "http" or parts.path.strip("/"):
        raise UserError(
            f"nothing answers at {settings.server_url}, and the bundled server can only be"
            " started for a plain http://HOST:PORT URL; start your server or fix --server-url"
        )
    token = token or secrets.token_urlsafe(32)
    start(root, host, port, token)
    return Secret(token), source


def start(root: Path, host: str, port: int, token: str) -> int:
    """Start the bundled server in the background; return its pid once it answers."""
    extras.require("server", f"nothing answers at {host}:{port}, and starting the bundled server")
    from server import background

    try:
        root.mkdir(parents=True, exist_ok=True)
        atomic_write(token_path(root), token + "\n", mode=0o600)
    except OSError as exc:
        raise UserError(
            f"cannot prepare {root} for the artifact server: {exc.strerror}; set --server-root"
            " to a writable folder"
        ) from None
    bind = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    pid = background.start(root, bind, tokens=[token], workers=2)
    log.info(
        f"    nothing answered at {bind}: started the bundled artifact server there in the"
        f" background (pid {pid}, storage {root}, log {root / background.LOG_FILE});"
        " stop it with `invoke serve --stop`"
    )
    return pid


def stop(root: Path) -> int | None:
    """Stop the bundled server running from `root` (its `<root>/.server.pid`).

    Returns the pid it stopped, or None when none ran (so it is safe to call whether or not
    publish started one). SIGTERM, up to 15 s for transfers in flight, then SIGKILL; the
    master removes the partial uploads of its workers. This is what a job that started the
    server calls when it ends; from a shell the same is `python -m server --root <root> --stop`.
    """
    from server import background

    return background.stop(Path(root).resolve())
