"""Run the tool's CLI as a user would: `python3 -m invoke ...` in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent.parent


def clean_environ() -> dict[str, str]:
    """This process's environment without the tool's own settings, so a developer's
    MOSN_PROXYV2_* variables cannot change what a test sees."""
    return {k: v for k, v in os.environ.items() if not k.startswith("MOSN_PROXYV2_")}


def run_invoke(
    *args: str | os.PathLike,
    env: Mapping[str, str] | None = None,
    cwd: Path = REPO_ROOT,
    timeout: float = 600,
) -> subprocess.CompletedProcess:
    """`python3 -m invoke ARGS` with `env` as the whole environment (default: clean_environ())."""
    return subprocess.run(
        [sys.executable, "-m", "invoke", *map(str, args)],
        cwd=cwd,
        env=dict(clean_environ() if env is None else env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def project_with_invoke_yaml(folder: Path, text: str) -> Path:
    """`folder` made a project of its own: this checkout's tasks.py and packages (symlinked)
    with `text` as its invoke.yaml. Run the CLI there (cwd=folder) to try an invoke.yaml."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("tasks.py", "ci", "server"):
        (folder / name).symlink_to(REPO_ROOT / name)
    (folder / "invoke.yaml").write_text(text)
    return folder
