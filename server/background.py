"""Start and stop an artifact server in the background (for `invoke publish` and tests).

    pid = background.start(root, "127.0.0.1:8080", tokens=["t0ken"])   # returns once it answers
    background.running(root)   # -> pid or None
    background.stop(root)      # -> pid it stopped, or None

The server is `python -m server` in its own session, logging to `<root>/.server.log`; its
processes are found and stopped as one unit (server.unit), as `invoke serve --stop` and
`python -m server --stop` do. Tokens travel in the environment, never on the command line.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from server import unit
from server.config import ENV_READ_TOKEN, ENV_TOKENS
from server.errors import ServerError

__all__ = ["LOG_FILE", "PID_FILE", "health_url", "running", "start", "stop"]

LOG_FILE = ".server.log"
PID_FILE = unit.PID_FILE
_PROJECT_ROOT = Path(__file__).resolve().parent.parent


def running(root: str | os.PathLike) -> int | None:
    """The pid of the server's master running from `root`, or None."""
    return unit.master(Path(root).absolute())


# The servers this process started, by root, kept until stop() collects them: a Popen dropped
# while its child runs is a ResourceWarning, and a child never collected stays a zombie.
_CHILDREN: dict[Path, subprocess.Popen] = {}


def _stop(root: Path, timeout: float = 15.0) -> unit.Stopped:
    root = Path(root).absolute()
    stopped = unit.stop(root, timeout)
    child = _CHILDREN.pop(root, None)
    if child is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout)
    return stopped


def collect(root: str | os.PathLike) -> None:
    """Wait for the master this process started for `root`, once something else ended it
    (kill -9): the Popen learns its end instead of warning that it still runs."""
    child = _CHILDREN.pop(Path(root).absolute(), None)
    if child is not None:
        child.wait()


def stop(root: Path, timeout: float = 15.0) -> int | None:
    """Stop every process of the server from `root` (server.unit.stop); the master's pid,
    or None if no master ran."""
    return _stop(root, timeout).master


def stop_and_report(root: Path) -> None:
    stopped = _stop(root)
    others = ", ".join(map(str, stopped.others))
    if stopped.master and stopped.others:
        print(
            f"stopped the server from {root} (pid {stopped.master}) and {len(stopped.others)}"
            f" process(es) that outlived it (pids {others})"
        )
    elif stopped.master:
        print(f"stopped the server from {root} (pid {stopped.master})")
    elif stopped.others:
        print(
            f"stopped what remained of the server from {root}: {len(stopped.others)} process(es)"
            f" whose master had died (pids {others})"
        )
    else:
        print(f"no server was running from {root}")


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

    Raises ServerError if one already runs from `root`, or if it exits or stays silent.
    """
    root = Path(root).absolute()
    root.mkdir(parents=True, exist_ok=True)
    existing = unit.master(root)
    if existing is not None:
        raise ServerError(
            f"a server already runs from {root} (pid {existing}); stop it with `invoke serve --stop`"
        )
    # None leaves a flag out (the server's own default applies); so do 0 and "" where those
    # mean "unset" rather than a value (--front-cache 0 and --access-log '' are values).
    flags = {
        "--root": root,
        "--bind": bind,
        "--workers": workers,
        "--connections": connections or None,
        "--header-timeout": header_timeout or None,
        "--send-timeout": send_timeout or None,
        "--trusted-proxies": trusted_proxies or None,
        "--front": front or None,
        "--front-cache": front_cache,
        "--max-upload-size": max_upload_size,
        "--overwrite": overwrite or None,
        "--access-log": access_log,
    }
    argv = [sys.executable, "-m", "server"]
    argv += [
        part for flag, value in flags.items() if value is not None for part in (flag, str(value))
    ]
    if read_only:
        argv.append("--read-only")
    env = {**os.environ, ENV_TOKENS: ",".join(tokens), ENV_READ_TOKEN: read_token or ""}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_PROJECT_ROOT), env.get("PYTHONPATH")]))
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
    _CHILDREN[root] = proc
    return _await_health(proc, root, health_url(bind), log_path, timeout)


def _await_health(
    proc: subprocess.Popen, root: Path, url: str, log_path: Path, timeout: float
) -> int:
    """Wait until the server just started answers `url` with its pid file written."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace").splitlines()[-15:]
            raise ServerError(
                f"the artifact server exited with code {proc.returncode} at start; see {log_path}",
                detail="\n".join(tail),
            )
        try:
            with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 - http on our own bind
                if response.status == 200 and unit.master(root) == proc.pid:
                    return proc.pid
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.05)
    stop(root)
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    raise ServerError(
        f"the artifact server did not answer on {url} within {timeout:.0f}s; see {log_path}"
    )
