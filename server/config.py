"""The server's own configuration: flags and environment, read once at start.

The server is a separate program from the pipeline (an operator may run it without the rest of
the tool), so it has its own small config rather than a slice of ci.config.Settings.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from server.errors import Secret, ServerError

DEFAULT_BIND = "127.0.0.1:8080"
DEFAULT_MAX_UPLOAD = 4 * 1024**3
OVERWRITE_POLICIES = ("deny", "allow")

# Environment variables, for containers and service managers that prefer them to flags.
ENV_TOKENS = "ARTIFACT_TOKENS"
ENV_READ_TOKEN = "ARTIFACT_READ_TOKEN"  # noqa: S105 - a variable name, not a token
ENV_ROOT = "ARTIFACT_ROOT"
ENV_BIND = "ARTIFACT_BIND"
ENV_WORKERS = "ARTIFACT_WORKERS"
ENV_MAX_UPLOAD = "ARTIFACT_MAX_UPLOAD_SIZE"
ENV_OVERWRITE = "ARTIFACT_OVERWRITE"
ENV_READ_ONLY = "ARTIFACT_READ_ONLY"
ENV_TRUSTED_PROXIES = "ARTIFACT_TRUSTED_PROXIES"
ENV_FRONT = "ARTIFACT_FRONT"
ENV_FRONT_CACHE = "ARTIFACT_FRONT_CACHE"
FRONTS = ("none", "nginx")
DEFAULT_FRONT_CACHE = 1

_SIZE = re.compile(r"^\s*(\d+)\s*([kmgt]?)i?b?\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class ServerConfig:
    root: Path
    tokens: tuple[Secret, ...] = field(default=(), repr=False)
    read_token: Secret = field(default=Secret(""), repr=False)
    max_upload_size: int = DEFAULT_MAX_UPLOAD
    overwrite: str = "deny"
    read_only: bool = False
    # Behind the nginx front (server/front.py): large downloads go out as X-Accel-Redirect,
    # small 200s may be cached by nginx for front_cache seconds.
    front: bool = False
    front_cache: int = DEFAULT_FRONT_CACHE

    @property
    def anonymous_reads(self) -> bool:
        return not self.read_token

    @property
    def allow_overwrite(self) -> bool:
        return self.overwrite == "allow"


@dataclass(frozen=True)
class ServeOptions:
    """How gunicorn runs the app: process and network settings, not API behaviour."""

    bind: str = DEFAULT_BIND
    workers: int = 0  # 0: two per CPU core
    # Connections one (gevent) worker holds at once; a slow client costs a greenlet, not a
    # thread, so this can be large.
    connections: int = 1000
    # A request head must arrive within header_timeout seconds (also the keep-alive idle
    # limit); each send or body read must progress within send_timeout.
    header_timeout: float = 10.0
    send_timeout: float = 60.0
    # Addresses whose X-Forwarded-Proto / X-Forwarded-For are believed (comma-separated);
    # none by default, so a client cannot make the server build https:// URLs.
    trusted_proxies: str = ""
    access_log: str = "-"
    timeout: int = 120
    # "nginx": nginx on `bind`, gunicorn behind it on a socket in <root>/.front (server/front.py).
    front: str = "none"
    front_cache: int = DEFAULT_FRONT_CACHE
    front_workers: int = 0  # 0: one nginx worker per core


def parse_size(text: str | int) -> int:
    """`1048576`, `512K`, `64M`, `2G`, `1T` (powers of 1024) -> bytes."""
    if isinstance(text, int):
        return text
    match = _SIZE.match(str(text))
    if not match:
        raise ServerError(
            f"max upload size {text!r} is not a size; write bytes or a number with K, M, G or T"
        )
    number, unit = match.groups()
    return int(number) * 1024 ** "_kmgt".index(unit.lower() or "_")


def read_tokens(path: str | os.PathLike) -> list[str]:
    """One token per line; blank lines and lines starting with # are ignored."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ServerError(
            f"cannot read token file {path}: {exc.strerror}; give a readable file, one token a line"
        ) from None
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def _truthy(value: str) -> bool:
    return value.strip().lower() in {"1", "true", "yes", "on"}


def build_config(
    root: str | os.PathLike,
    *,
    tokens: Sequence[str] = (),
    token_file: str | os.PathLike | None = None,
    read_token: str | None = None,
    read_token_file: str | os.PathLike | None = None,
    max_upload_size: str | int | None = None,
    overwrite: str | None = None,
    read_only: bool | None = None,
    environ: Mapping[str, str] | None = None,
) -> ServerConfig:
    """Merge explicit values (flags) over the environment into a checked ServerConfig."""
    env = os.environ if environ is None else environ
    all_tokens = list(tokens)
    if token_file:
        all_tokens += read_tokens(token_file)
    all_tokens += [t.strip() for t in env.get(ENV_TOKENS, "").split(",") if t.strip()]
    if read_token_file:
        lines = read_tokens(read_token_file)
        read_token = read_token or (lines[0] if lines else "")
    read_token = read_token or env.get(ENV_READ_TOKEN, "")
    if max_upload_size is None:
        max_upload_size = env.get(ENV_MAX_UPLOAD) or ServerConfig.max_upload_size
    overwrite = (overwrite or env.get(ENV_OVERWRITE) or ServerConfig.overwrite).lower()
    if overwrite not in OVERWRITE_POLICIES:
        raise ServerError(
            f"overwrite policy {overwrite!r} is unknown; use {' or '.join(OVERWRITE_POLICIES)}"
        )
    if read_only is None:
        read_only = _truthy(env.get(ENV_READ_ONLY, ""))
    size = parse_size(max_upload_size)
    if size <= 0:
        raise ServerError("max upload size must be positive; give e.g. 2G")
    root_path = Path(root).expanduser().absolute()
    if root_path.exists() and not root_path.is_dir():
        raise ServerError(f"server root {root_path} is not a directory; give a directory")
    # Deduplicated, order kept: each is compared on every write request.
    unique = tuple(Secret(t) for t in dict.fromkeys(all_tokens))
    return ServerConfig(
        root=root_path,
        tokens=unique,
        read_token=Secret(read_token or ""),
        max_upload_size=size,
        overwrite=overwrite,
        read_only=bool(read_only),
    )


def size_text(size: int) -> str:
    """Bytes in the largest unit that divides them: 4294967296 -> `4G` (parse_size's inverse)."""
    for power, unit in ((4, "T"), (3, "G"), (2, "M"), (1, "K")):
        if size and size % 1024**power == 0:
            return f"{size // 1024**power}{unit}"
    return str(size)


def argument_parser() -> argparse.ArgumentParser:
    """`python -m server`'s flags. A default a help shows is read from where it is set:
    argparse's own (%(default)g), or the dataclass field that applies it later."""
    parser = argparse.ArgumentParser(
        prog="python -m server",
        description="Self-hosted artifact server: GET/HEAD to read, PUT/DELETE with a token to write.",
    )
    add = parser.add_argument
    serve = ServeOptions()
    add("--root", help=f"directory to serve and store into (env {ENV_ROOT})")
    add("--bind", help=f"HOST:PORT to listen on (default {serve.bind}; env {ENV_BIND})")
    add(
        "--workers",
        type=int,
        help=f"gunicorn worker processes (default 2 per core; env {ENV_WORKERS})",
    )
    for flag, kind, text in (
        ("--connections", int, "connections held at once per worker"),
        ("--header-timeout", float, "seconds a request head (or an idle keep-alive) may take"),
        (
            "--send-timeout",
            float,
            "seconds a send or body read may stall before the client is dropped",
        ),
    ):
        default = getattr(serve, flag.removeprefix("--").replace("-", "_"))
        add(flag, type=kind, default=default, help=f"{text} (default %(default)g)")
    add(
        "--trusted-proxies",
        help=f"comma-separated proxy addresses whose X-Forwarded-* headers are believed (default none; env {ENV_TRUSTED_PROXIES})",
    )
    add(
        "--front",
        choices=FRONTS,
        help=f"nginx: put nginx in front (production mode: fastest, slow clients held by nginx); default {serve.front}; env {ENV_FRONT}",
    )
    add(
        "--front-cache",
        type=int,
        help=f"seconds nginx may reuse a small download before asking the app again (default {serve.front_cache}; 0: no cache; env {ENV_FRONT_CACHE})",
    )
    add(
        "--token-file",
        help=f"file of write tokens, one a line (also env {ENV_TOKENS}, comma-separated)",
    )
    add(
        "--read-token",
        help=f"require this bearer token for reads (prefer env {ENV_READ_TOKEN}: argv is visible in ps)",
    )
    add("--read-token-file", help="file whose first line is the read token")
    add(
        "--max-upload-size",
        help=f"largest accepted upload, e.g. 2G (default {size_text(ServerConfig.max_upload_size)}; env {ENV_MAX_UPLOAD})",
    )
    add(
        "--overwrite",
        choices=OVERWRITE_POLICIES,
        help=f"replace an artifact with different bytes? (default {ServerConfig.overwrite}; env {ENV_OVERWRITE})",
    )
    add(
        "--read-only",
        action="store_true",
        default=None,
        help=f"refuse every PUT and DELETE (env {ENV_READ_ONLY}=1)",
    )
    add(
        "--access-log",
        default=serve.access_log,
        help="access log file, '-' for stdout, '' for none",
    )
    add(
        "--stop",
        action="store_true",
        help="stop the server running from --root (its pid file) and exit",
    )
    return parser


def from_args(
    argv: Sequence[str], environ: Mapping[str, str] | None = None
) -> tuple[ServerConfig, ServeOptions, bool]:
    """Parse `python -m server` arguments: (config, serve options, stop requested)."""
    env = os.environ if environ is None else environ
    args = argument_parser().parse_args(list(argv))
    root = args.root or env.get(ENV_ROOT)
    if not root:
        raise ServerError(f"no server root given; pass --root DIR or set {ENV_ROOT}")
    config = build_config(
        root,
        token_file=args.token_file,
        read_token=args.read_token,
        read_token_file=args.read_token_file,
        max_upload_size=args.max_upload_size,
        overwrite=args.overwrite,
        read_only=args.read_only,
        environ=env,
    )
    workers = args.workers
    if workers is None:
        text = env.get(ENV_WORKERS) or "0"
        if not text.strip().isdigit():
            raise ServerError(f"{ENV_WORKERS}={text!r} is not a number of processes; give e.g. 4")
        workers = int(text)
    options = ServeOptions(
        bind=args.bind or env.get(ENV_BIND) or DEFAULT_BIND,
        workers=workers,
        connections=args.connections,
        header_timeout=args.header_timeout,
        send_timeout=args.send_timeout,
        trusted_proxies=args.trusted_proxies or env.get(ENV_TRUSTED_PROXIES, ""),
        access_log=args.access_log,
        **front_options(args.front, args.front_cache, env),
    )
    return config, options, args.stop


def front_options(
    front: str | None, front_cache: int | None, environ: Mapping[str, str] | None = None
) -> dict:
    """The front's ServeOptions fields from flags over the environment, checked."""
    env = os.environ if environ is None else environ
    front = (front or env.get(ENV_FRONT) or ServeOptions.front).lower()
    if front not in FRONTS:
        raise ServerError(f"front {front!r} is unknown; use {' or '.join(FRONTS)}")
    if front_cache is None:
        text = env.get(ENV_FRONT_CACHE) or str(DEFAULT_FRONT_CACHE)
        if not text.strip().isdigit():
            raise ServerError(f"{ENV_FRONT_CACHE}={text!r} is not a number of seconds; give e.g. 1")
        front_cache = int(text)
    if front_cache < 0:
        raise ServerError("front cache seconds must be 0 or more; give e.g. 1")
    return {"front": front, "front_cache": front_cache}
