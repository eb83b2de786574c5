"""Progress lines: one place decides what is printed, how, and how quietly."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

_quiet = False


def set_quiet(quiet: bool) -> None:
    global _quiet
    _quiet = quiet


def is_quiet() -> bool:
    return _quiet


def in_github_actions() -> bool:
    return os.environ.get("GITHUB_ACTIONS") == "true"


def info(message: str) -> None:
    if not _quiet:
        print(message, flush=True)


def warn(message: str) -> None:
    # Warnings print even when quiet: they are the reason a user reads the log.
    if in_github_actions():
        print(f"::warning::{message}", flush=True)
    else:
        print(f"warning: {message}", file=sys.stderr, flush=True)


@contextmanager
def stage(name: str) -> Iterator[None]:
    """Announce a stage and, when it ends, how long it took (a log group in Actions)."""
    grouped = in_github_actions() and not _quiet
    if grouped:
        print(f"::group::{name}", flush=True)
    else:
        info(f"==> {name}")
    started = time.monotonic()
    ok = False
    try:
        yield
        ok = True
    finally:
        elapsed = time.monotonic() - started
        if grouped:
            print("::endgroup::", flush=True)
        info(f"    {name}: {'done' if ok else 'failed'} in {elapsed:.1f}s")
