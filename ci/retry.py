"""Retrying a network call: bounded in attempts and in total time, one policy for every store."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from ci import log
from ci.errors import UserError

T = TypeVar("T")


class Transient(Exception):
    """A failure worth trying again: connection refused or reset, 5xx, 429, S3 SlowDown."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


@dataclass(frozen=True)
class Policy:
    attempts: int = 5
    first_delay: float = 0.5
    max_delay: float = 8.0
    # No new attempt starts after this many seconds; a slow store fails instead of hanging CI.
    deadline: float = 90.0

    def delay(self, attempt: int, retry_after: float | None) -> float:
        backoff = min(self.max_delay, self.first_delay * 2 ** (attempt - 1))
        if retry_after is not None:
            return min(self.max_delay, max(backoff, retry_after))
        return backoff


DEFAULT = Policy()


def call(fn: Callable[[], T], *, what: str, hint: str, policy: Policy = DEFAULT) -> T:
    """Run `fn`, retrying on Transient with exponential backoff.

    `what` names the target in messages (a URL without any secret); `hint` says what to
    check when every attempt failed.
    """
    started = time.monotonic()
    attempt = 1
    while True:
        try:
            return fn()
        except Transient as exc:
            elapsed = time.monotonic() - started
            wait = policy.delay(attempt, exc.retry_after)
            if attempt >= policy.attempts or elapsed + wait > policy.deadline:
                raise UserError(
                    f"{what}: {exc.reason} (gave up after {attempt} attempts in {elapsed:.0f}s);"
                    f" {hint}"
                ) from None
            log.info(
                f"    {what}: {exc.reason}; retry {attempt}/{policy.attempts - 1} in {wait:.1f}s"
            )
            time.sleep(wait)
            attempt += 1
