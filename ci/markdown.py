"""Markdown shared by the reports a person reads (the action's job summary, the kind job's)."""

from __future__ import annotations


def cell(text: object) -> str:
    """Text that stays inside one cell of a Markdown table."""
    return str(text).replace("|", "\\|").replace("\n", " ")
