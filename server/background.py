"""Start and stop an artifact server in the background (for `invoke publish` and tests).

    pid = background.start(root, "127.0.0.1:8080", tokens=["t0ken"])   # returns once it answers
    background.running(root)   # -> pid or None
    background.stop(root)      # -> pid it stopped, or None

The server is `python -m server` in its own session, logging to `<root>/.server.log`; its
pid file is `<root>/.server.pid` (gunicorn's master), which is also what
`invoke serve --stop` reads. Tokens travel in the environment, never on the command line.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from ci.errors import UserError
from server.config import ENV_READ_TOKEN, ENV_TOKENS
from server.serve import running_pid, stop

__all__ = ["LOG_FILE", "health_url", "running", "start", "stop"]

LOG_FILE = ".server.log"
_PROJECT_ROOT = Path(__file__).resolve().parent.parent


def running(root: str | os.PathLike) -> int | None:
    return running_pid(Path(root).absolute())


def health_url(bind: str) -> str:
    host, _, port = bind.rpartition(":")
    host = host.strip("[]")
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}/-/healthz"


def start(
    root: str | os.PathLike,
    bind: str = "127.0.0.1:8080",
    tokens: Sequence[str] = (),
    *,
    workers: int = 2,
    connections: int | None = None,
    header_timeout: float | None = None,
    send_timeout: float | None = None,
    trusted_proxies: str | None = None,
    read_token: str | None = None,
    max_upload_size: str | int | None = None,
    overwrite: str | None = None,
    read_only: bool = False,
    access_log: str | None = None,
    front: str | None = None,
    front_cache: int | None = None,
    log_file: str | os.PathLike | None = None,
    timeout: float = 30.0,
) -> int:
    """Start a server on `bind` serving `root`; return the gunicorn master's pid once it answers.

    front="nginx" puts nginx on `bind` and the app behind it (server.front); stop(root) stops both.

    Raises UserError if one already runs from `root`, or if it exits or stays silent.
    """
    root = Path(root).absolute()
    root.mkdir(parents=True, exist_ok=True)
    existing = running_pid(root)
    if existing is not None:
        raise UserError(
            f"a server already runs from {root} (pid {existing}); stop it with `invoke serve --stop`"
        )
    argv = [
        sys.executable,
        "-m",
        "server",
        "--root",
        str(root),
        "--bind",
        bind,
        "--workers",
        str(workers),
    ]
    for flag, value in (
        ("--connections", connections),
        ("--header-timeout", header_timeout),
        ("--send-timeout", send_timeout),
        ("--trusted-proxies", trusted_proxies),
        ("--front", front),
    ):
        if value:
            argv += [flag, str(value)]
    if front_cache is not None:
        argv += ["--front-cache", str(front_cache)]
    if max_upload_size is not None:
        argv += ["--max-upload-size", str(max_upload_size)]
    if overwrite:
        argv += ["--overwrite", overwrite]
    if read_only:
        argv.append("--read-only")
    if access_log is not None:
        argv += ["--access-log", access_log]
    env = dict(os.environ)
    env[ENV_TOKENS] = ",".join(tokens)
    env[ENV_READ_TOKEN] = read_token or ""
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(_PROJECT_ROOT), env.get("PYTHONPATH", "")])
    )
    log_path = Path(log_file) if log_file else root / LOG_FILE
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=_PROJECT_ROOT,
            start_new_session=True,
        )
    url = health_url(bind)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace").splitlines()[-15:]
            raise UserError(
                f"the artifact server exited with code {proc.returncode} at start; see {log_path}",
                detail="\n".join(tail),
            )
        try:
            with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 - http on our own bind
                if response.status == 200 and running_pid(root) == proc.pid:
                    return proc.pid
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.05)
    stop(root)
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    raise UserError(
        f"the artifact server did not answer on {url} within {timeout:.0f}s; see {log_path}"
    )
