"""Make MOSN-like checkouts from the Go module under tests/fixtures/mosn-mini."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "mosn-mini"
COMMIT_DATE = "2022-03-25T00:00:00+00:00"


def git(path: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "test",
        "GIT_AUTHOR_EMAIL": "test@example.invalid",
        "GIT_COMMITTER_NAME": "test",
        "GIT_COMMITTER_EMAIL": "test@example.invalid",
        "GIT_AUTHOR_DATE": COMMIT_DATE,
        "GIT_COMMITTER_DATE": COMMIT_DATE,
    }
    return subprocess.run(
        ["git", "-C", str(path), *args], env=env, check=True, capture_output=True, text=True
    ).stdout.strip()


def make_checkout(dest: Path, version: str = "v1.0.0") -> Path:
    """A git repository holding the stand-in MOSN module, one commit, fixed dates."""
    shutil.copytree(FIXTURE, dest)
    (dest / "VERSION").write_text(version + "\n")
    git(dest, "init", "-q", "-b", "main")
    git(dest, "add", "-A")
    git(dest, "commit", "-q", "-m", "mosn-mini")
    return dest
