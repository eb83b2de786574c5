"""The artifact server's options, declared once.

`python -m server` builds its flags from this table (server/config.py), and the pipeline's
option registry builds its `invoke serve` settings from it (ci/config.py): one list of names,
defaults, help, variables, choices and checks for both, the registry's validator and its
generated docs included. Plain data and small pure functions: the server imports nothing
from the pipeline.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from server.errors import ServerError

# Variables the server reads itself, beside an option rather than as its value: write tokens
# add up with --token-file's, and the read token comes after --read-token-file's.
ENV_TOKENS = "ARTIFACT_TOKENS"
ENV_READ_TOKEN = "ARTIFACT_READ_TOKEN"  # noqa: S105 - a variable name, not a token


@dataclass(frozen=True)
class Option:
    name: str  # the flag is --<name, dashed>; the pipeline's setting has the same name
    default: bool | int | float | str  # its type is the option's type
    help: str  # what it is; each program adds the default and the variable (help_text)
    env: str = ""  # the server's own variable for the value (the pipeline reads it too)
    choices: tuple[str, ...] = ()  # compared lower-cased
    # What is wrong with a value of the right type, as the end of "<where> <value> ...", or
    # "" when nothing is.
    check: Callable[[Any], str] | None = None
    # The default as the help says it when the value itself would not tell ("" says nothing).
    shown_default: str | None = None
    secret: bool = False

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


def at_least(low: float, unit: str = "") -> Callable[[Any], str]:
    def check(value: float) -> str:
        return "" if value >= low else f"is out of range: give {low} or more{unit}"

    return check


def above_zero(unit: str = "") -> Callable[[Any], str]:
    def check(value: float) -> str:
        return "" if value > 0 else f"is out of range: give more than 0{unit}"

    return check


_SIZE = re.compile(r"^\s*(\d+)\s*([kmgt]?)i?b?\s*$", re.IGNORECASE)


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


def size_text(size: int) -> str:
    """Bytes in the largest unit that divides them: 4294967296 -> `4G` (parse_size's inverse)."""
    for power, unit in ((4, "T"), (3, "G"), (2, "M"), (1, "K")):
        if size and size % 1024**power == 0:
            return f"{size // 1024**power}{unit}"
    return str(size)


def size_problem(value: str) -> str:
    return (
        ""
        if _SIZE.match(value)
        else "is not a size: write bytes or a number with K, M, G or T, e.g. 2G"
    )


OPTIONS: dict[str, Option] = {
    option.name: option
    for option in (
        Option(
            "root", "", "directory to serve and store into", env="ARTIFACT_ROOT", shown_default=""
        ),
        Option("bind", "127.0.0.1:8080", "HOST:PORT to listen on", env="ARTIFACT_BIND"),
        Option(
            "workers",
            0,
            "gunicorn worker processes",
            env="ARTIFACT_WORKERS",
            check=at_least(0, " (0: 2 per CPU core)"),
            shown_default="2 per CPU core",
        ),
        Option("connections", 1000, "connections held at once per worker", check=at_least(1)),
        Option(
            "header_timeout",
            10.0,
            "seconds a request head or an idle keep-alive may take",
            check=above_zero(" seconds"),
        ),
        Option(
            "send_timeout",
            60.0,
            "seconds a send or body read may stall before the client is dropped",
            check=above_zero(" seconds"),
        ),
        Option(
            "trusted_proxies",
            "",
            "comma-separated proxy addresses whose X-Forwarded-* headers are believed",
            env="ARTIFACT_TRUSTED_PROXIES",
            shown_default="none",
        ),
        Option(
            "token_file",
            "",
            f"file of write tokens, one a line (also env {ENV_TOKENS}, comma-separated)",
            shown_default="",
        ),
        Option(
            "read_token",
            "",
            f"require this bearer token for reads (prefer env {ENV_READ_TOKEN}: argv shows in ps)",
            shown_default="",
            secret=True,
        ),
        Option("read_token_file", "", "file whose first line is the read token", shown_default=""),
        Option(
            "max_upload_size",
            "4G",
            "largest accepted upload, e.g. 2G",
            env="ARTIFACT_MAX_UPLOAD_SIZE",
            check=size_problem,
        ),
        Option(
            "overwrite",
            "deny",
            "deny or allow replacing an artifact with different bytes",
            env="ARTIFACT_OVERWRITE",
            choices=("deny", "allow"),
        ),
        Option(
            "read_only",
            False,
            "refuse every PUT and DELETE",
            env="ARTIFACT_READ_ONLY",
            shown_default="",
        ),
        Option(
            "access_log",
            "-",
            "access log file, '-' for stdout, '' for none",
            shown_default="'-'",
        ),
        Option(
            "front",
            "none",
            "none, or nginx in front of the app: the production mode, fastest, with nginx holding slow clients",
            env="ARTIFACT_FRONT",
            choices=("none", "nginx"),
        ),
        Option(
            "front_cache",
            1,
            "seconds nginx may reuse a small download before asking the app again, 0 for no cache",
            env="ARTIFACT_FRONT_CACHE",
            check=at_least(0, " seconds (0: off)"),
        ),
    )
}


def show(value: Any) -> str:
    """A value as a user types it: 10.0 as 10."""
    return f"{value:g}" if isinstance(value, float) else str(value)


def help_text(option: Option, shown_default: str | None = None) -> str:
    """The option's help as both programs print it: what it is, then its default and its
    variable in parentheses."""
    if shown_default is None:
        shown_default = option.shown_default
    if shown_default is None:
        shown_default = show(option.default)
    notes = [f"default {shown_default}"] if shown_default else []
    notes += [f"env {option.env}"] if option.env else []
    return f"{option.help} ({'; '.join(notes)})" if notes else option.help
