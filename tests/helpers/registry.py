"""A real Docker registry (Debian's docker-registry) on loopback, for tests."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

from tests.helpers import tools
from tests.helpers.net import free_port, running_process

CONFIG = """version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: {root}
  delete:
    enabled: true
http:
  addr: 127.0.0.1:{port}
{auth}"""

AUTH = """auth:
  htpasswd:
    realm: test
    path: {htpasswd}
"""


def htpasswd_file(path: Path, user: str, password: str) -> Path:
    """A bcrypt htpasswd file (the registry accepts bcrypt only), made with apache2-utils."""
    tools.which("htpasswd")
    line = subprocess.run(
        ["htpasswd", "-Bbn", user, password], capture_output=True, text=True, check=True
    ).stdout.strip()
    path.write_text(line + "\n")
    return path


@contextlib.contextmanager
def running_registry(workdir: Path, credentials: tuple[str, str] | None = None) -> Iterator[str]:
    """Start a registry bound to 127.0.0.1 and yield its address, `127.0.0.1:PORT`.

    With `credentials` (user, password) it asks every client for them.
    """
    binary = shutil.which("docker-registry") or "/usr/bin/docker-registry"
    port = free_port()
    (workdir / "data").mkdir(parents=True, exist_ok=True)
    auth = ""
    if credentials:
        htpasswd = htpasswd_file(workdir / "htpasswd", *credentials)
        auth = AUTH.format(htpasswd=htpasswd)
    config = workdir / "config.yml"
    config.write_text(CONFIG.format(root=workdir / "data", port=port, auth=auth))
    with running_process([binary, "serve", str(config)], port, log=workdir / "registry.log"):
        yield f"127.0.0.1:{port}"
