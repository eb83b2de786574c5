"""A real Docker registry (Debian's docker-registry) on loopback, for tests."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path

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


@contextlib.contextmanager
def running_registry(workdir: Path, htpasswd: Path | None = None) -> Iterator[str]:
    """Start a registry bound to 127.0.0.1 and yield its address, `127.0.0.1:PORT`."""
    binary = shutil.which("docker-registry") or "/usr/bin/docker-registry"
    port = free_port()
    (workdir / "data").mkdir(parents=True, exist_ok=True)
    auth = AUTH.format(htpasswd=htpasswd) if htpasswd else ""
    config = workdir / "config.yml"
    config.write_text(CONFIG.format(root=workdir / "data", port=port, auth=auth))
    with running_process([binary, "serve", str(config)], port, log=workdir / "registry.log"):
        yield f"127.0.0.1:{port}"
