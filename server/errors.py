"""The server's own error types: it is a separate program and imports nothing from `ci`."""

from __future__ import annotations


class ServerError(Exception):
    """Something the operator can fix: the message says what is wrong and what to do.

    `python -m server` prints `detail` (if any), then the one-line message, and exits 1.
    """

    def __init__(self, message: str, *, detail: str = "") -> None:
        super().__init__(message)
        # Extra lines (the tail of a log, say) printed before the one-line message.
        self.detail = detail

    def __str__(self) -> str:
        return " ".join(str(self.args[0]).split())


class Secret(str):
    """A token: a str that does not show itself in repr, logs or f-string debugging."""

    def __repr__(self) -> str:
        return "Secret('***')" if self else "Secret('')"
