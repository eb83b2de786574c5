"""`invoke serve`: the artifact server run from the settings, in the foreground, or stopped.

The server is its own program (server/); this is the pipeline's side of it: the registry's
serve settings (server/options.py's options, already checked) handed to the server's config.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from ci.config import Settings
from ci.errors import UserError
from server.background import stop_and_report
from server.config import from_values
from server.options import OPTIONS
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
    values = {name: getattr(s, name) for name in OPTIONS if name != "root"}
    values["bind"] = s.bind or bind_from_url(s.server_url)
    config, options = from_values(s.path("server_root"), values)
    if stop:
        stop_and_report(config.root)
        return
    serve(config, options)
