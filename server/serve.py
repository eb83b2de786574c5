"""Run the app under gunicorn in the foreground (what `python -m server` and `invoke serve` do)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import resource
import signal
import traceback
from pathlib import Path

from gunicorn import glogging
from gunicorn.app.base import BaseApplication
from gunicorn.arbiter import Arbiter
from gunicorn.errors import HaltServer

from server.background import pid_file, running_pid, stop, stop_and_report
from server.config import ServeOptions, ServerConfig
from server.errors import ServerError
from server.store import TMP_DIR

# bind_from_url and run_task, below, move to tasks.py (issue 14); until then they raise the
# server's error under the name they were written with.
UserError = ServerError

# running_pid, stop and stop_and_report live with the background start (server.background);
# they stay importable from here.
__all__ = [
    "AccessLogger",
    "gunicorn_options",
    "running_pid",
    "serve",
    "stop",
    "stop_and_report",
]


class AccessLogger(glogging.Logger):
    """gunicorn's logger with a lean access line: client, time, request line, status, body
    bytes, milliseconds, user agent. No user field (gunicorn decodes it from Basic
    credentials) and no other header, so nothing secret is logged; and none of the per-request
    dictionary of every header and variable gunicorn builds for its configurable format, which
    cost as much as serving a small artifact."""

    def access(self, resp, req, environ, request_time):
        if not self.access_log_enabled:
            return
        try:
            # Client-chosen text is written JSON-escaped: a quote or a newline in it cannot
            # end its field or forge another line.
            self.access_log.info(
                "%s %s %s %s %s %dms %s",
                environ.get("REMOTE_ADDR", "-"),
                self.now(),
                json.dumps(
                    f"{environ.get('REQUEST_METHOD', '-')} {environ.get('RAW_URI', '-')}"
                    f" {environ.get('SERVER_PROTOCOL', '-')}"
                ),
                getattr(resp, "status_code", "-"),
                getattr(resp, "sent", 0),
                request_time.total_seconds() * 1000,
                json.dumps(environ.get("HTTP_USER_AGENT", "-")),
            )
        except Exception:  # a log line must never fail a request
            self.error(traceback.format_exc())


def default_workers() -> int:
    return 2 * (os.cpu_count() or 1)


def _default_signals(_arbiter, _worker) -> None:
    # A new worker inherits the master's handlers, which only queue a signal for the master
    # loop it does not run: a SIGTERM while it boots (gevent's patching takes a while) was
    # lost, and stop() waited out the 10 s graceful timeout. Until the worker installs its
    # own handlers, SIGTERM ends it at once; it serves nothing yet.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def gunicorn_options(
    config: ServerConfig, options: ServeOptions, app_bind: str | None = None
) -> dict:
    """gunicorn's settings; `app_bind` is its private address behind the nginx front."""
    uploads = config.root / TMP_DIR / "uploads"

    def child_exit(_arbiter, worker) -> None:
        # A worker killed mid-upload (kill -9, OOM) cannot clean up after itself; its
        # temporary files carry its pid, and the master, which lives on, removes them.
        for leftover in uploads.glob(f"{worker.pid}-*"):
            with contextlib.suppress(OSError):
                leftover.unlink()

    return {
        "post_fork": _default_signals,
        "bind": app_bind or options.bind,
        "workers": options.workers or default_workers(),
        # Event-driven workers with header and send timeouts (server/worker.py): slow
        # clients cost a greenlet each, and the stuck ones are dropped.
        "worker_class": "server.worker.HardenedWorker",
        "worker_connections": options.connections,
        # No X-Forwarded-* header is believed unless --trusted-proxies names the sender
        # (gunicorn's default trusts loopback, where any local user can send them).
        # Behind the front, only nginx (which sets them itself) can reach the app: on a unix
        # socket gunicorn trusts its peer, on the loopback fallback it is told to.
        "forwarded_allow_ips": "127.0.0.1" if app_bind else options.trusted_proxies,
        "child_exit": child_exit,
        # sendfile is on by default. Do not set it: gunicorn reads *any* value of its
        # "sendfile" setting, True included, as --no-sendfile.
        # The app is created once in the master: that is where leftover uploads are removed,
        # which must not happen again in a worker while another worker is mid-upload.
        "preload_app": True,
        "pidfile": str(pid_file(config.root)),
        "accesslog": options.access_log or None,
        "logger_class": AccessLogger,
        "errorlog": "-",
        "timeout": options.timeout,
        "graceful_timeout": 10,
        # Non-zero: keep-alive on (the worker bounds idle connections by header_timeout).
        "keepalive": max(1, int(options.header_timeout)),
        "proc_name": "artifact-server",
        # gunicorn's control socket lives at one fixed path per user: two servers would fight.
        "control_socket_disable": True,
    }


class _FrontArbiter(Arbiter):
    """gunicorn's master, which also runs the nginx front as its child: nginx starts once the
    app listens, stops first on shutdown, and its death stops the server (with the reason
    in the log) rather than leaving an app nobody can reach."""

    front = None  # server.front.Front, set by _Gunicorn.run

    def start(self):
        super().start()
        try:
            pid = self.front.start()
        except ServerError as exc:
            self.log.error("error: %s", exc)
            self.halt(reason="the nginx front did not start", exit_status=1)
        self.log.info("nginx front started (pid %s), config %s", pid, self.front.conf)

    def murder_workers(self):
        super().murder_workers()
        code = self.front.exited()
        if code is not None:
            raise HaltServer(
                f"the nginx front exited (code {code}); see {self.front.dir / 'error.log'}", 1
            )

    def stop(self, graceful=True):
        self.front.stop()
        super().stop(graceful)


class _Gunicorn(BaseApplication):
    def __init__(self, config: ServerConfig, settings: dict, front=None) -> None:
        self._config = config
        self._settings = settings
        self._front = front
        super().__init__()

    def run(self):
        if self._front is None:
            return super().run()
        arbiter = _FrontArbiter(self)
        arbiter.front = self._front
        arbiter.run()

    def load_config(self) -> None:
        for key, value in self._settings.items():
            if value is not None:
                self.cfg.set(key, value)

    def load(self):
        from server import create_app

        return create_app(self._config)


def serve(config: ServerConfig, options: ServeOptions) -> None:
    """Serve in the foreground until SIGTERM/SIGINT."""
    pid = running_pid(config.root)
    if pid is not None:
        raise ServerError(
            f"a server is already running from {config.root} (pid {pid}); stop it with `invoke serve --stop --root {config.root}`"
        )
    try:
        config.root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ServerError(
            f"cannot create server root {config.root}: {exc.strerror}; pick a writable directory"
        ) from None
    if not config.tokens and not config.read_only:
        print(
            "warning: no write tokens configured (--token-file or ARTIFACT_TOKENS): every upload will get 401",
            flush=True,
        )
    _raise_file_limit()
    from server import worker

    worker.configure(options.header_timeout, options.send_timeout)
    if options.front == "nginx":
        front, app_bind = _prepare_front(config, options)
        config = dataclasses.replace(config, front=True, front_cache=options.front_cache)
        _Gunicorn(config, gunicorn_options(config, options, app_bind), front).run()
    else:
        _Gunicorn(config, gunicorn_options(config, options)).run()


def _prepare_front(config: ServerConfig, options: ServeOptions):
    """The nginx front's config, written and checked (`nginx -t`) before anything starts."""
    from server import front

    binary = front.find_nginx()
    if binary is None:
        raise ServerError(
            "--front nginx needs nginx on PATH (Debian: apt-get install nginx); or run without --front"
        )
    front.stop_leftover(config.root)
    app_bind = front.app_bind(config.root)
    nginx = front.Front(config.root, binary)
    nginx.dir.mkdir(parents=True, exist_ok=True)
    if app_bind.startswith("unix:"):
        Path(app_bind.removeprefix("unix:")).unlink(missing_ok=True)
    nginx.prepare(
        front.render(config.root, options, read_token=not config.anonymous_reads, upstream=app_bind)
    )
    return nginx, app_bind


def _raise_file_limit() -> None:
    # Each held download is two descriptors (socket and file): the usual soft limit of 1024
    # would cap the server at a few hundred slow clients.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
