"""The single way the pipeline runs another program: streamed, redacted, with a tail kept."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import IO

from ci import log
from ci.errors import UserError

TAIL_LINES = 30
STOP_TIMEOUT = 10


def redact(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def run(
    cmd: Sequence[str | os.PathLike],
    *,
    cwd: str | os.PathLike | None = None,
    env: Mapping[str, str] | None = None,
    stream: bool = True,
    check: bool = True,
    secrets: Iterable[str] = (),
    what: str | None = None,
    hint: str = "",
    stdin: str | None = None,
    separate_stderr: bool = False,
) -> str:
    """Run `cmd`, echoing its merged output line by line unless quiet, and return that output.

    On a non-zero exit raise CommandFailed naming `what` (default: the program) and quoting
    the last line of output; the lines before it are its detail when they were not echoed,
    so a compiler's or make's error is on screen once.
    `env` is added to the current environment rather than replacing it.
    With `separate_stderr` the returned text is stdout alone (for output that is parsed, like
    `kubectl get -o json`, where a warning on stderr would corrupt it); stderr is still
    echoed and kept in the tail.
    """
    argv = [str(part) for part in cmd]
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    echo = stream and not log.is_quiet()
    secrets = [s for s in secrets if s]
    # `with`: the pipes are closed whatever happens (an open one is a ResourceWarning).
    with _spawn(argv, cwd, env, hint, stdin is not None, separate_stderr) as child:
        if stdin is not None:
            assert child.stdin is not None
            child.stdin.write(stdin)
            child.stdin.close()
        drain = None
        if separate_stderr:
            # Read in a thread: a full stderr pipe must not block the child while we read stdout.
            drain = threading.Thread(
                target=_pump, args=(child.stderr, secrets, tail, echo, sys.stderr), daemon=True
            )
            drain.start()
        try:
            output = _pump(child.stdout, secrets, tail, echo, sys.stdout)
        except BaseException:
            child.kill()
            child.wait()
            raise
        code = child.wait()
        if drain is not None:
            drain.join()
    if check and code != 0:
        raise CommandFailed(what or Path(argv[0]).name, code, output, list(tail), hint, echo)
    return output


class CommandFailed(UserError):
    """A program's non-zero exit. The message quotes the line of its output that says why (git's
    or Go's own reason); the other last lines are the detail, unless they were echoed
    already: each line of the program's output is on screen once."""

    def __init__(
        self, name: str, code: int, output: str, tail: list[str], hint: str, echoed: bool
    ) -> None:
        self.code = code
        self.output = output  # what `run` would have returned
        at = reason_index(tail)
        self.reason = " ".join(tail[at].split())[:300] if at is not None else ""
        said = f": {self.reason}" if self.reason else ""
        rest = tail[:at] + tail[at + 1 :] if at is not None else tail
        super().__init__(
            f"{name} failed with exit code {code}{said}{'; ' + hint if hint else ''}",
            detail="" if echoed else "\n".join(rest),
        )


# Lines that state an error, as git, Go, the compiler and curl (Istio's bin/init.sh downloads
# MOSN with it) write them; what follows them is often advice ("For more information, see 'go
# help module-auth'.") or fallout ("gzip: stdin: unexpected end of file").
_REASON = re.compile(
    r"(go: |go [a-z]+: |fatal: |error: |verifying |\S+\.go:\d+|curl: \(\d+\) )", re.I
)

_MAKE_TRAILER = re.compile(r"g?make(\[\d+\])?: \*\*\* ")


def reason_index(lines: list[str]) -> int | None:
    """The index of the line that says why: the last that states an error, else the last line
    that says anything."""
    said = [i for i, line in enumerate(lines) if line.strip()]
    # make's own "make: *** [Makefile:42: init] Error 2" repeats the exit code; the line that
    # says why is the failing recipe's, above it.
    said = [i for i in said if not _MAKE_TRAILER.match(lines[i].strip())] or said
    stated = [i for i in said if _REASON.match(lines[i].strip())]
    return (stated or said or [None])[-1]


def _spawn(
    argv: list[str],
    cwd: str | os.PathLike | None,
    env: Mapping[str, str] | None,
    hint: str,
    with_stdin: bool,
    separate_stderr: bool,
) -> subprocess.Popen:
    try:
        return subprocess.Popen(
            argv,
            cwd=cwd,
            env={**os.environ, **env} if env else None,
            stdin=subprocess.PIPE if with_stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE if separate_stderr else subprocess.STDOUT,
            text=True,
            errors="replace",
            bufsize=1,
        )
    except FileNotFoundError as exc:
        raise UserError(
            f"{argv[0]} was not found on PATH; install it{hint and ': ' + hint}"
        ) from exc
    except OSError as exc:
        raise UserError(f"could not start {argv[0]}: {exc.strerror}") from exc


def _pump(
    pipe: IO[str] | None, secrets: list[str], tail: deque[str], echo: bool, to: IO[str]
) -> str:
    """Read `pipe` to its end, redacted: kept in `tail`, echoed to `to`; return all of it."""
    assert pipe is not None
    chunks: list[str] = []
    for line in pipe:
        line = redact(line, secrets)
        chunks.append(line)
        tail.append(line.rstrip("\n"))
        if echo:
            to.write("    " + line)
            to.flush()
    return "".join(chunks)


def start(
    cmd: Sequence[str | os.PathLike],
    *,
    log_path: Path,
    cwd: str | os.PathLike | None = None,
    env: Mapping[str, str] | None = None,
) -> subprocess.Popen:
    """Start `cmd` in the background, in a session of its own, its output going to `log_path`.

    For a program that runs until stopped (a MOSN under test); end it with `stop`. `env` is
    added to the current environment, as for `run`.
    """
    argv = [str(part) for part in cmd]
    with open(log_path, "wb") as out:
        try:
            return subprocess.Popen(
                argv,
                cwd=cwd,
                env={**os.environ, **env} if env else None,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        except OSError as exc:
            raise UserError(f"could not start {argv[0]}: {exc.strerror}") from exc


def stop(process: subprocess.Popen, timeout: float = STOP_TIMEOUT) -> None:
    """End what `start` started, with everything in its session: SIGTERM, then SIGKILL; return
    once none of it runs. The leader's exit is not enough: pilot-agent exits while the MOSN it
    started still shuts down, and that MOSN would outlive the run that owns it."""
    group = process.pid
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, sig)
        deadline = time.monotonic() + timeout
        while process.poll() is None or _running_in_group(group):
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
        else:
            return
    process.wait()


def _running_in_group(group: int) -> list[int]:
    """The processes of process group `group` that still run (a zombie has ended)."""
    running = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        # After the command: state, ppid, pgrp.
        if fields[0] != "Z" and int(fields[2]) == group:
            running.append(int(stat.parent.name))
    return running
