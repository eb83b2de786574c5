"""mosn-proxyv2 tasks: a thin front over the `ci` library. `invoke --list` to start."""

from __future__ import annotations

import functools
import sys

from invoke import Exit, task

from ci import config, log
from ci.errors import UserError


def settings(ctx, **flags) -> config.Settings:
    """The one config object: defaults < invoke.yaml < environment < these flags."""
    s = config.load(ctx.config.get(config.CONFIG_SECTION, {}), flags)
    log.set_quiet(s.quiet)
    return s


def friendly(fn):
    """Turn UserError into one line on stderr and a non-zero exit, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UserError as exc:
            if exc.detail:
                print(exc.detail, file=sys.stderr)
            raise Exit(f"error: {exc}", code=1) from None
        except KeyboardInterrupt:
            raise Exit("error: interrupted; nothing half-written was kept", code=130) from None

    return wrapper


def _csv(value):
    return None if value is None else tuple(p for p in value.split(",") if p)


BUILD_HELP = {
    "mosn-src": "MOSN checkout to build (default: invoke.yaml / MOSN_SRC)",
    "mosn-ref": "git ref to shallow-clone from --mosn-repo and build instead",
    "mosn-repo": "repository to clone --mosn-ref from (default: MOSN's GitHub repository)",
    "version": "version to stamp instead of VERSION(<git short hash>)",
    "istio-version": "Istio version stamped into MOSN and used downstream (default 1.10.6)",
    "platforms": "comma-separated: linux/amd64, darwin/amd64, linux/arm64",
    "out": "output folder for tarballs, SHA256SUMS and manifest.json (default dist/)",
    "in-docker": "compile inside a golang container instead of with the host's go",
    "go-image": "golang image for --in-docker (default golang:1.19)",
    "cgo": "enable CGO for Linux builds (default off: a static binary)",
    "quiet": "print only warnings and errors",
}


@task(help=BUILD_HELP)
@friendly
def build(
    ctx,
    mosn_src=None,
    mosn_ref=None,
    mosn_repo=None,
    version=None,
    istio_version=None,
    platforms=None,
    out=None,
    in_docker=None,
    go_image=None,
    cgo=None,
    quiet=None,
):
    """Build MOSN tarballs (mosn.tar.gz, mosn-centos.tar.gz, mosn-macos.tar.gz) from a checkout."""
    from ci.build import build as run_build

    run_build(
        settings(
            ctx,
            mosn_src=mosn_src,
            mosn_ref=mosn_ref,
            mosn_repo=mosn_repo,
            version=version,
            istio_version=istio_version,
            platforms=_csv(platforms),
            dist=out,
            in_docker=in_docker,
            go_image=go_image,
            cgo=cgo,
            quiet=quiet,
        )
    )


@task(
    help={
        "pytest-args": "extra arguments for pytest, e.g. '-k server -x'",
        "lint-only": "run ruff only",
    }
)
def test(ctx, pytest_args="", lint_only=False):
    """Lint (ruff) and run the test suite, the same command CI runs."""
    ctx.run("ruff check .", echo=True)
    ctx.run("ruff format --check .", echo=True)
    if not lint_only:
        # pytest exits 5 when it collected nothing: that is a failure here, like any non-zero.
        ctx.run(f"{sys.executable} -m pytest {pytest_args}", echo=True, pty=False)


SERVE_HELP = {
    "root": "directory to serve and store into (default: server_root, .artifacts)",
    "bind": "HOST:PORT to listen on (default: host and port of server_url, 127.0.0.1:8080)",
    "workers": "gunicorn worker processes (default: 2 per CPU core)",
    "threads": "threads per worker (default 32)",
    "token-file": "file of write tokens, one a line (also env ARTIFACT_TOKENS, comma-separated)",
    "read-token": "require this bearer token for reads (prefer env ARTIFACT_READ_TOKEN: argv shows in ps)",
    "read-token-file": "file whose first line is the read token",
    "max-upload-size": "largest accepted upload, e.g. 2G (default 4G; env ARTIFACT_MAX_UPLOAD_SIZE)",
    "overwrite": "deny (default) or allow replacing an artifact with different bytes",
    "read-only": "refuse every PUT and DELETE",
    "access-log": "access log file, '-' for stdout (default), '' for none",
    "stop": "stop the server running from --root (reads <root>/.server.pid) and exit",
}


@task(help=SERVE_HELP)
@friendly
def serve(
    ctx,
    root=None,
    bind=None,
    workers=None,
    threads=None,
    token_file=None,
    read_token=None,
    read_token_file=None,
    max_upload_size=None,
    overwrite=None,
    read_only=False,
    access_log=None,
    stop=False,
):
    """Run the artifact server (gunicorn) in the foreground; --stop stops a running one."""
    from server.serve import run_task

    s = settings(ctx, server_root=root)
    run_task(
        str(s.path("server_root")),
        s.server_url,
        bind=bind,
        stop_requested=stop,
        workers=int(workers) if workers else None,
        threads=int(threads) if threads else None,
        access_log=access_log,
        token_file=token_file,
        read_token=read_token,
        read_token_file=read_token_file,
        max_upload_size=max_upload_size,
        overwrite=overwrite,
        read_only=read_only or None,
    )
