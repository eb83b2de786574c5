"""`invoke serve`: the artifact server run from the settings, in the foreground, or stopped.

The server is its own program (server/); this is the pipeline's side of it: the registry's
serve options (ci/config.py), already checked, turned into the server's own config.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from ci.config import Settings
from ci.errors import UserError
from server.background import stop_and_report
from server.config import ServeOptions, build_config, front_options
from server.serve import serve


def bind_from_url(url: str) -> str:
    """`http://127.0.0.1:8080/...` -> `127.0.0.1:8080`: where a server for that URL listens."""
    parts = urlsplit(url)
    if not parts.hostname:
        raise UserError(f"server URL {url!r} has no host; give e.g. http://127.0.0.1:8080")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{host}:{parts.port or (443 if parts.scheme == 'https' else 80)}"


def run(s: Settings, *, stop: bool = False) -> None:
    """Stop the server running from server_root, or serve it in the foreground."""
    config = build_config(
        str(s.path("server_root")),
        token_file=s.token_file or None,
        read_token=s.read_token or None,
        read_token_file=s.read_token_file or None,
        max_upload_size=s.max_upload_size,
        overwrite=s.overwrite,
        read_only=s.read_only,
    )
    if stop:
        stop_and_report(config.root)
        return
    options = ServeOptions(
        bind=s.bind or bind_from_url(s.server_url),
        workers=s.workers,
        connections=s.connections,
        header_timeout=s.header_timeout,
        send_timeout=s.send_timeout,
        trusted_proxies=s.trusted_proxies,
        access_log=s.access_log,
        **front_options(s.front, s.front_cache),
    )
    serve(config, options)
