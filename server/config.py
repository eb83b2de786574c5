"""The server's own configuration: flags and environment, read once at start.

The server is a separate program from the pipeline (an operator may run it without the rest of
the tool): its options are declared in server/options.py, which `invoke serve` reads too, and
read here into a ServerConfig (what the API does) and ServeOptions (how gunicorn runs it).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from server.errors import Secret, ServerError
from server.options import (
    ENV_READ_TOKEN,
    ENV_TOKENS,
    OPTIONS,
    help_text,
    parse_size,
    show,
    size_text,
)

__all__ = [
    "ENV_READ_TOKEN",
    "ENV_TOKENS",
    "ServeOptions",
    "ServerConfig",
    "build_config",
    "from_args",
    "from_values",
    "parse_size",
    "size_text",
]

DEFAULT_MAX_UPLOAD = parse_size(OPTIONS["max_upload_size"].default)


def _default(name: str) -> Any:
    return OPTIONS[name].default


def _or_default(value: Any, name: str) -> Any:
    return _default(name) if value is None else value


def _variable(name: str, environ: Mapping[str, str]) -> str:
    """The server's own variable for option `name`, "" when unset."""
    return environ.get(OPTIONS[name].env, "")


@dataclass(frozen=True)
class ServerConfig:
    root: Path
    tokens: tuple[Secret, ...] = field(default=(), repr=False)
    read_token: Secret = field(default=Secret(""), repr=False)
    max_upload_size: int = DEFAULT_MAX_UPLOAD
    overwrite: str = _default("overwrite")
    read_only: bool = False
    # Behind the nginx front (server/front.py): large downloads go out as X-Accel-Redirect,
    # small 200s may be cached by nginx for front_cache seconds.
    front: bool = False
    front_cache: int = _default("front_cache")

    @property
    def anonymous_reads(self) -> bool:
        return not self.read_token

    @property
    def allow_overwrite(self) -> bool:
        return self.overwrite == "allow"


@dataclass(frozen=True)
class ServeOptions:
    """How gunicorn runs the app: process and network settings, not API behaviour."""

    bind: str = _default("bind")
    workers: int = _default("workers")  # 0: two per CPU core
    # Connections one (gevent) worker holds at once; a slow client costs a greenlet, not a
    # thread, so this can be large.
    connections: int = _default("connections")
    # A request head must arrive within header_timeout seconds (also the keep-alive idle
    # limit); each send or body read must progress within send_timeout.
    header_timeout: float = _default("header_timeout")
    send_timeout: float = _default("send_timeout")
    # Addresses whose X-Forwarded-Proto / X-Forwarded-For are believed (comma-separated);
    # none by default, so a client cannot make the server build https:// URLs.
    trusted_proxies: str = _default("trusted_proxies")
    access_log: str = _default("access_log")
    timeout: int = 120
    # "nginx": nginx on `bind`, gunicorn behind it on a socket in <root>/.front (server/front.py).
    front: str = _default("front")
    front_cache: int = _default("front_cache")
    front_workers: int = 0  # 0: one nginx worker per core


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


def _one_of(name: str, what: str, value: str) -> str:
    """`value` lower-cased, if it is one of the option's choices."""
    choices = OPTIONS[name].choices
    if value.lower() not in choices:
        raise ServerError(f"{what} {value!r} is unknown; use {' or '.join(choices)}")
    return value.lower()


def _count(name: str, what: str, example: str, environ: Mapping[str, str]) -> int | None:
    """The whole number in option `name`'s variable, or None when it is unset."""
    text = _variable(name, environ)
    if not text:
        return None
    if not text.strip().isdigit():
        raise ServerError(
            f"{OPTIONS[name].env}={text!r} is not a number of {what}; give e.g. {example}"
        )
    return int(text)


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
        max_upload_size = _variable("max_upload_size", env) or ServerConfig.max_upload_size
    overwrite = _one_of(
        "overwrite",
        "overwrite policy",
        overwrite or _variable("overwrite", env) or ServerConfig.overwrite,
    )
    if read_only is None:
        read_only = _truthy(_variable("read_only", env))
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


def front_options(
    front: str | None, front_cache: int | None, environ: Mapping[str, str] | None = None
) -> dict:
    """The front's ServeOptions fields from flags over the environment, checked."""
    env = os.environ if environ is None else environ
    front = _one_of("front", "front", front or _variable("front", env) or ServeOptions.front)
    if front_cache is None:
        front_cache = _count("front_cache", "seconds", "1", env)
    return {"front": front, "front_cache": _or_default(front_cache, "front_cache")}


def from_values(
    root: str | os.PathLike, values: Mapping[str, Any], environ: Mapping[str, str] | None = None
) -> tuple[ServerConfig, ServeOptions]:
    """The server's config from option values by name, as `python -m server`'s flags or
    `invoke serve`'s settings give them: None (or absent) leaves an option to its variable,
    then its default."""
    env = os.environ if environ is None else environ
    given = {name: values.get(name) for name in OPTIONS}
    config = build_config(
        root,
        token_file=given["token_file"] or None,
        read_token=given["read_token"] or None,
        read_token_file=given["read_token_file"] or None,
        max_upload_size=given["max_upload_size"],
        overwrite=given["overwrite"],
        read_only=given["read_only"],
        environ=env,
    )
    workers = given["workers"]
    if workers is None:
        workers = _count("workers", "processes", "4", env)
    options = ServeOptions(
        bind=given["bind"] or _variable("bind", env) or ServeOptions.bind,
        workers=_or_default(workers, "workers"),
        connections=_or_default(given["connections"], "connections"),
        header_timeout=_or_default(given["header_timeout"], "header_timeout"),
        send_timeout=_or_default(given["send_timeout"], "send_timeout"),
        trusted_proxies=given["trusted_proxies"] or _variable("trusted_proxies", env),
        access_log=_or_default(given["access_log"], "access_log"),
        **front_options(given["front"], given["front_cache"], env),
    )
    return config, options


def argument_parser() -> argparse.ArgumentParser:
    """`python -m server`'s flags, one per option of server/options.py. No flag has a default
    of its own (None: not given), so the variable, then the option's default, decide."""
    parser = argparse.ArgumentParser(
        prog="python -m server",
        description="Self-hosted artifact server: GET/HEAD to read, PUT/DELETE with a token to write.",
    )
    for option in OPTIONS.values():
        kind = type(option.default)
        if kind is bool:
            parser.add_argument(
                option.flag, action="store_true", default=None, help=help_text(option)
            )
        else:
            parser.add_argument(
                option.flag,
                type=kind,
                choices=option.choices or None,
                help=help_text(option),
            )
    parser.add_argument(
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
    args = vars(argument_parser().parse_args(list(argv)))
    for name, value in args.items():
        check = name in OPTIONS and value is not None and OPTIONS[name].check
        problem = check(value) if check else ""
        if problem:
            # Quoted as invoke serve's registry quotes what was typed: one message for both.
            raise ServerError(f"{OPTIONS[name].flag} {show(value)!r} {problem}")
    root = args["root"] or _variable("root", env)
    if not root:
        raise ServerError(f"no server root given; pass --root DIR or set {OPTIONS['root'].env}")
    return (*from_values(root, args, env), args["stop"])
