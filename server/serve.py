"""Run the app under gunicorn in the foreground (what `python -m server` and `invoke serve` do)."""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import os
import resource
import signal
import socket
import traceback
from pathlib import Path

from gunicorn import glogging
from gunicorn.app.base import BaseApplication
from gunicorn.arbiter import Arbiter
from gunicorn.errors import HaltServer

from server import unit
from server.background import stop, stop_and_report
from server.config import ServeOptions, ServerConfig
from server.errors import ServerError
from server.metrics import metrics_dir, share_between_workers
from server.store import TMP_DIR, Store

# stop and stop_and_report live with the background start (server.background); they stay
# importable from here.
__all__ = [
    "AccessLogger",
    "gunicorn_options",
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
        # The app is created once, in the master: an app that cannot be built stops the start
        # with its error (rather than each worker in turn), and the workers share its pages.
        "preload_app": True,
        "pidfile": str(unit.pid_file(config.root)),
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
    app listens and stops first on shutdown. A dead nginx master is replaced, as gunicorn
    replaces a dead worker: its orphaned workers (which still hold the port) are stopped and
    nginx starts again with the same config; one that keeps dying stops the server."""

    front = None  # server.front.Front, set by _Gunicorn.run
    RESTARTS_PER_MINUTE = 3

    def start(self):
        super().start()
        try:
            pid = self.front.start()
        except ServerError as exc:
            self.log.error("error: %s", exc)
            self.halt(reason="the nginx front did not start", exit_status=1)
        self.log.info("nginx front started (pid %s), config %s", pid, self.front.conf)

    def reap_workers(self):
        # nginx first, by its own pid (as gunicorn reaps its dirty arbiter): the waitpid(-1)
        # below would collect it as an unknown child and its exit status would be lost.
        self.front.reap()
        super().reap_workers()

    def manage_workers(self):
        super().manage_workers()
        if self.front.reap() is not None:
            self._restart_front()

    def _restart_front(self):
        front = self.front
        self.log.error(
            "the nginx front (pid %s) %s; see %s", front.pid, front.ended(), front.dir / "error.log"
        )
        left = front.leftovers(unit.members(front.root))
        if left:
            self.log.warning(
                "stopping the %d nginx process(es) it left holding the port (pids %s)",
                len(left),
                " ".join(map(str, left)),
            )
            unit.end(left, 2.0)
        if front.restarts_within(60) >= self.RESTARTS_PER_MINUTE:
            raise HaltServer(
                f"the nginx front died {self.RESTARTS_PER_MINUTE + 1} times within a minute; stopping the server",
                1,
            )
        try:
            pid = front.start()
        except ServerError as exc:
            raise HaltServer(f"the nginx front could not be restarted: {exc}", 1) from None
        self.log.info("nginx front restarted (pid %s) with the same config %s", pid, front.conf)

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
    front_mode = options.front == "nginx"
    host, port = parse_bind(options.bind, unix_ok=not front_mode)
    pid = unit.master(config.root)
    if pid is not None:
        raise ServerError(
            f"a server is already running from {config.root} (pid {pid}); stop it with `invoke serve --stop --root {config.root}`"
        )
    if port is not None:
        check_free(options.bind, host, port)
    try:
        config.root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ServerError(
            f"cannot create server root {config.root}: {exc.strerror}; pick a writable directory"
        ) from None
    lock = _take_root(config.root)
    try:
        _serve_locked(config, options, lock)
    finally:
        # gunicorn leaves its pid file behind when it cannot start (or is not let stop); the
        # workers, which leave through here too, never own it.
        if unit.recorded_pid(config.root) == os.getpid():
            unit.pid_file(config.root).unlink(missing_ok=True)
        os.close(lock)


def prepare_root(config: ServerConfig) -> None:
    """What a start does once, under the root's lock and before the app is created and
    gunicorn forks: clear what an earlier run left (a worker doing it would delete another's
    upload in progress), and count afresh in the root's metrics directory."""
    store = Store(
        config.root, max_upload_size=config.max_upload_size, allow_overwrite=config.allow_overwrite
    )
    removed = store.prepare()
    if removed:
        print(f"warning: removed {removed} unfinished upload(s) left by an earlier run", flush=True)
    share_between_workers(metrics_dir(config.root))


def _serve_locked(config: ServerConfig, options: ServeOptions, lock: int) -> None:
    prepare_root(config)
    front, app_bind = (
        _prepare_front(config, options, lock) if options.front == "nginx" else (None, None)
    )
    print(
        f"serving {config.root} at {public_url(options.bind)}"
        + (f" (nginx front; the app behind it on {app_bind})" if front else ""),
        flush=True,
    )
    if not config.tokens and not config.read_only:
        print(
            "warning: no write tokens configured (--token-file or ARTIFACT_TOKENS): every upload will get 401",
            flush=True,
        )
    _raise_file_limit()
    from server import worker

    worker.configure(options.header_timeout, options.send_timeout)
    if front is not None:
        config = dataclasses.replace(config, front=True, front_cache=options.front_cache)
    _Gunicorn(config, gunicorn_options(config, options, app_bind), front).run()


def _take_root(root: Path) -> int:
    """The root's lock (server.unit), after stopping what a dead master left holding it."""
    try:
        return unit.take(root)
    except PermissionError as exc:
        raise ServerError(
            f"cannot open {unit.lock_file(root)}: {exc.strerror}; run the server as the user who owns {root}"
        ) from None
    except unit.Taken as taken:
        if taken.master is not None:
            raise ServerError(
                f"a server is already running from {root} (pid {taken.master}); stop it with `invoke serve --stop --root {root}`"
            ) from None
        print(
            f"warning: stopping {len(taken.members)} process(es) of an earlier server from {root}"
            f" whose master had died (pids {' '.join(map(str, taken.members))})",
            flush=True,
        )
        unit.end(taken.members, 5.0)
    try:
        return unit.take(root)
    except unit.Taken as taken:
        raise ServerError(
            f"processes of an earlier server from {root} would not stop (pids {' '.join(map(str, taken.members))}); stop them and try again"
        ) from None


def parse_bind(bind: str, *, unix_ok: bool) -> tuple[str, int | None]:
    """`HOST:PORT` or `[V6]:PORT` (and `unix:PATH` without the front) -> (host, port)."""
    if unix_ok and bind.startswith("unix:") and len(bind) > len("unix:"):
        return bind, None
    host, colon, port = bind.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not colon or not host or not port.isdigit():
        raise ServerError(
            f"--bind {bind!r} is not HOST:PORT; give e.g. 127.0.0.1:8080 or 0.0.0.0:8080"
        )
    if not 1 <= int(port) <= 65535:
        raise ServerError(f"--bind {bind}: port {port} is not 1-65535; give e.g. 127.0.0.1:8080")
    return host, int(port)


def check_free(bind: str, host: str, port: int) -> None:
    """Refuse, before anything starts, an address nothing could listen on."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except (socket.gaierror, UnicodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise ServerError(
            f"--bind {bind}: host {host!r} cannot be resolved ({reason}); give an address of this host, e.g. 127.0.0.1:{port}"
        ) from None
    with socket.socket(family, kind, proto) as probe:
        # As gunicorn and nginx bind: a port left in TIME_WAIT is free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            hint = {
                errno.EADDRINUSE: "the address is already in use; stop what listens there or pick another --bind",
                errno.EACCES: "permission denied (ports below 1024 need root); pick a port from 1024 up",
                errno.EADDRNOTAVAIL: f"{host} is not an address of this host; give one of its addresses or 0.0.0.0",
            }.get(exc.errno, f"{exc.strerror}; pick another --bind")
            raise ServerError(f"cannot listen on {bind}: {hint}") from None


def public_url(bind: str) -> str:
    """The URL clients use for a server listening on `bind`."""
    if bind.startswith("unix:"):
        return bind
    host, _, port = bind.rpartition(":")
    host = host.strip("[]")
    if host in ("0.0.0.0", "::"):
        return f"http://{socket.gethostname()}:{port}/ (every address of this host)"
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def _prepare_front(config: ServerConfig, options: ServeOptions, lock: int):
    """The nginx front's config, written and checked (`nginx -t`) before anything starts."""
    from server import front

    binary = front.find_nginx()
    if binary is None:
        raise ServerError(
            "--front nginx needs nginx on PATH (Debian: apt-get install nginx); or run without --front"
        )
    app_bind = front.app_bind(config.root)
    nginx = front.Front(config.root, binary, lock)
    nginx.dir.mkdir(parents=True, exist_ok=True)
    if app_bind.startswith("unix:"):
        Path(app_bind.removeprefix("unix:")).unlink(missing_ok=True)
    nginx.prepare(
        front.render(
            config.root,
            options,
            read_token=not config.anonymous_reads,
            upstream=app_bind,
            max_upload=config.max_upload_size,
        )
    )
    return nginx, app_bind


def _raise_file_limit() -> None:
    # Each held download is two descriptors (socket and file): the usual soft limit of 1024
    # would cap the server at a few hundred slow clients.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
