"""The server as one unit: every process of it holds one lock, and that is how they are found.

The gunicorn master takes `<root>/.server.lock` (flock) before anything starts and keeps it
open for life. Its workers inherit the descriptor by fork, nginx (`--front nginx`) is handed
it, and nginx's workers and cache processes inherit it from nginx. So:

- the lock stays taken as long as any process of the server lives, orphans included (an
  nginx worker whose master was killed, a gunicorn worker draining after its master died);
- a process is this server's exactly when it holds that open file (seen in /proc/PID/fd):
  the pid in `.server.pid` is signalled only when it holds it, so a recycled pid never is;
- `stop(root)` stops the master (gracefully), then whatever still holds the lock.

This is also what a service manager does with a control group (systemd's
KillMode=control-group); the lock makes `--stop` and a fresh start just as thorough.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

LOCK_FILE = ".server.lock"
PID_FILE = ".server.pid"


class Taken(Exception):
    """The lock is held: by a running server (master is its pid) or by what remains of one."""

    def __init__(self, master: int | None, members: list[int]) -> None:
        super().__init__(master, members)
        self.master = master
        self.members = members


def lock_file(root: Path) -> Path:
    return Path(root) / LOCK_FILE


def pid_file(root: Path) -> Path:
    return Path(root) / PID_FILE


def take(root: Path) -> int:
    """Take the server's lock; its descriptor (inherited by every child), or Taken."""
    fd = os.open(lock_file(root), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        found = members(root)
        raise Taken(_recorded_master(root, found), found) from None
    # Whatever pid the file names is not running this root any more (the lock was free):
    # gunicorn would refuse to start if that pid had been given to another process.
    pid_file(root).unlink(missing_ok=True)
    return fd


def held(root: Path) -> bool:
    """True while any process of a server from `root` lives."""
    try:
        fd = os.open(lock_file(root), os.O_RDONLY)
    except OSError:  # none (no server ever ran here), or not ours to read
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def members(root: Path) -> list[int]:
    """Pids of the processes that hold the server's lock file open (this one excepted)."""
    wanted = _identity(root)
    if wanted is None:
        return []
    try:
        pids = [int(name) for name in os.listdir("/proc") if name.isdigit()]
    except OSError:  # no /proc: only the recorded master can be named
        pid = recorded_pid(root)
        return [pid] if pid is not None and held(root) and alive(pid) else []
    me = os.getpid()
    return [pid for pid in pids if pid != me and _holds(pid, wanted)]


def _identity(root: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(lock_file(root))
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


def _holds(pid: int, wanted: tuple[int, int]) -> bool:
    fd_dir = f"/proc/{pid}/fd"
    try:
        fds = os.listdir(fd_dir)
    except OSError:
        return False
    for fd in fds:
        try:
            target = os.stat(f"{fd_dir}/{fd}")
        except OSError:
            continue
        if (target.st_dev, target.st_ino) == wanted:
            return True
    return False


def recorded_pid(root: Path) -> int | None:
    try:
        return int(pid_file(root).read_text().strip())
    except (OSError, ValueError):
        return None


def _recorded_master(root: Path, found: list[int]) -> int | None:
    pid = recorded_pid(root)
    return pid if pid in found else None


def master(root: Path) -> int | None:
    """The pid of the server's master (gunicorn's arbiter) if it runs, checked to be ours."""
    pid = recorded_pid(root)
    wanted = _identity(root)
    if pid is None or wanted is None or not alive(pid) or not held(root):
        return None
    if not os.path.isdir("/proc"):
        return pid
    return pid if _holds(pid, wanted) else None


def alive(pid: int) -> bool:
    """True while `pid` runs; an exited process its parent has not collected yet is not alive."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X")


def _reap(pid: int) -> None:
    # When we started the process ourselves it is our child: collect it so it is not a
    # zombie that still answers kill(pid, 0).
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def _signal(pids: list[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def wait_gone(pids: list[int], timeout: float) -> list[int]:
    """Wait until every pid has ended; the ones still alive after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        for pid in pids:
            _reap(pid)
        left = [pid for pid in pids if alive(pid)]
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.05)


def end(pids: list[int], grace: float) -> None:
    """SIGTERM, then SIGKILL what is still there after `grace` seconds."""
    _signal(pids, signal.SIGTERM)
    left = wait_gone(pids, grace)
    if left:
        _signal(left, signal.SIGKILL)
        wait_gone(left, 5.0)


@dataclass(frozen=True)
class Stopped:
    master: int | None  # the master it stopped (None: none ran)
    others: tuple[int, ...]  # processes that outlived the master and were stopped one by one


def stop(root: Path, timeout: float = 15.0) -> Stopped:
    """Stop every process of the server from `root`: the master first (graceful: it stops
    its workers and nginx), then anything that still holds the lock (orphans of a master
    that died, or processes that did not end with it)."""
    found = members(root) if held(root) else []
    head = _recorded_master(root, found)
    if head is not None:
        _signal([head], signal.SIGTERM)
        if wait_gone([head], timeout):
            _signal([head], signal.SIGKILL)
            wait_gone([head], 5.0)
        # Its workers and nginx end with it; give them a moment before calling them orphans.
        deadline = time.monotonic() + 5.0
        while held(root) and time.monotonic() < deadline:
            time.sleep(0.05)
    others = members(root) if held(root) else []
    if others:
        end(others, 5.0)
    if not held(root):
        # gunicorn removes its pid file on a clean exit; after SIGKILL it cannot.
        with contextlib.suppress(OSError):
            pid_file(root).unlink(missing_ok=True)
    return Stopped(head, tuple(others))
