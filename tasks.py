"""mosn-proxyv2 tasks: a thin front over the `ci` library. `invoke --list` to start.

Each task's flags, help and settings come from the option registry (ci/config.py): the
signatures stay explicit because invoke reads them, and `settings(ctx, "<task>", locals())`
maps them to settings by name.
"""

from __future__ import annotations

import functools
import os
import sys
import sysconfig
from pathlib import Path

from invoke import Exit
from invoke import task as invoke_task

from ci import config, extras, github, log
from ci.errors import UserError
from server.errors import ServerError

# No short flags anywhere: invoke's automatic ones took -h (help) from `serve --header-timeout`
# and `e2e --cache-dir`, and gave -p three meanings. Long flags only; -h is always help.
task = functools.partial(invoke_task, auto_shortflags=False)

# invoke reads invoke.yaml only after importing this file, and shows a YAML error as a
# traceback: check it here first.
try:
    config.check_file(Path(__file__).with_name("invoke.yaml"))
except UserError as exc:
    sys.exit(f"error: {exc}")

# Exceptions that carry a sentence for the user (and maybe `.detail`): one line, exit 1.
FRIENDLY_ERRORS: tuple[type[Exception], ...] = (UserError, ServerError)


def settings(ctx, name: str, given) -> config.Settings:
    """The one config object: defaults < invoke.yaml < environment < task `name`'s flags."""
    s = config.load(
        ctx.config.get(config.CONFIG_SECTION, {}), config.task_flags(name, given), task=name
    )
    log.set_quiet(s.quiet)
    return s


def friendly(fn):
    """Turn a user's error into one line on stderr and a non-zero exit, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except FRIENDLY_ERRORS as exc:
            if getattr(exc, "detail", ""):
                print(exc.detail, file=sys.stderr)
            raise Exit(f"error: {exc}", code=1) from None
        except KeyboardInterrupt:
            raise Exit("error: interrupted; nothing half-written was kept", code=130) from None

    return wrapper


def summarized(run, s: config.Settings) -> None:
    """Run a check job (e2e, mesh) and put its report in the GitHub job summary, failed or not."""
    from ci.e2e.report import ChecksFailed

    try:
        report = run(s)
    except ChecksFailed as failed:
        github.append_summary(failed.report.summary_markdown())
        raise
    github.append_summary(report.summary_markdown())


# Plain boolean flags (not optional-value ones, which make `invoke build --quiet publish`
# ambiguous to invoke). Absent means "not given", so invoke.yaml and the environment decide.
@task(help=config.help_for("build"))
@friendly
def build(
    ctx,
    mosn_src=None,
    mosn_ref=None,
    mosn_repo=None,
    mosn_module=None,
    version=None,
    istio_version=None,
    platforms=None,
    out=None,
    in_docker=False,
    go_image=None,
    cgo=False,
    skip_toolchain_check=False,
    fix_deps=False,
    skip_smoke=False,
    quiet=False,
):
    """Build MOSN tarballs (mosn.tar.gz, mosn-centos.tar.gz, mosn-macos.tar.gz, ...) with manifest."""
    from ci.builder import build as run_build
    from ci.builder import source_flags

    run_build(settings(ctx, "build", {**locals(), **source_flags(locals())}))


@task(
    help={
        "pytest-args": "extra arguments for pytest, e.g. '-k server -x'",
        "lint-only": "run ruff only",
        "fast": "leave out the tests marked slow (a laptop's run; CI runs everything)",
    }
)
def test(ctx, pytest_args="", lint_only=False, fast=False):
    """Lint (ruff) and run the test suite, the same command CI runs."""
    # The tools pip installed with this Python (ruff, act, ...) come first, as in an activated
    # virtual environment, so that `.venv/bin/invoke test` needs no `source .venv/bin/activate`.
    path = os.pathsep.join([sysconfig.get_path("scripts"), os.environ.get("PATH", "")])
    ctx.run("ruff check .", echo=True, env={"PATH": path})
    ctx.run("ruff format --check .", echo=True, env={"PATH": path})
    if not lint_only:
        marks = "-m 'not slow' " if fast else ""
        # pytest exits 5 when it collected nothing: that is a failure here, like any non-zero.
        ctx.run(
            f"{sys.executable} -m pytest {marks}{pytest_args}",
            echo=True,
            pty=False,
            env={"PATH": path},
        )


# Switches are plain booleans (see build): absent, they leave invoke.yaml and the environment
# in charge.
@task(help=config.help_for("image"))
@friendly
def image(
    ctx,
    mode=None,
    base=None,
    image=None,
    tags=None,
    dist=None,
    push=False,
    registry_username=None,
    istio_version=None,
    istio_src=None,
    istio_repo=None,
    wasm=None,
    cache_dir=None,
    host_build=False,
    istio_go=None,
    build_image=None,
    istio_base=None,
    skip_smoke=False,
    quiet=False,
):
    """Build the proxyv2 image with the dist's MOSN, verify it, tag it and optionally push it."""
    from ci.image import image as run_image

    run_image(settings(ctx, "image", locals()))


@task(
    help=config.help_for(
        "e2e",
        plan="print every command the run would execute, in order, and exit (no cluster)",
        summarize="print one table of the matrix cells' results under this folder (one"
        " subfolder per cell; also to the job summary) and exit; exit 1 if a cell failed or"
        " left no result",
    )
)
@friendly
def e2e(
    ctx,
    image=None,
    istio_version=None,
    plan=False,
    keep_cluster=False,
    artifacts=None,
    cluster_name=None,
    samples=None,
    ingress_port=None,
    wait_timeout=None,
    pull_image=False,
    cache_dir=None,
    summarize=None,
    quiet=False,
):
    """Prove a proxyv2 image on kind: Istio, Bookinfo, version/weight/header routing."""
    import ci.e2e

    if summarize:
        table, passed = ci.e2e.matrix_markdown(Path(summarize))
        print(table, end="")
        github.append_summary(table + "\n")
        if not passed:
            raise Exit(code=1)
        return

    s = settings(ctx, "e2e", locals())
    if plan:
        print("\n".join(ci.e2e.plan_lines(s)))
        return
    summarized(ci.e2e.run, s)


@task(help=config.help_for("mesh"), auto_shortflags=False)
@friendly
def mesh(
    ctx,
    dist=None,
    image=None,
    istio_version=None,
    istio_bin_dir=None,
    istio_src=None,
    istio_pilot_image=None,
    istio_proxy_image=None,
    istio_samples=None,
    direct=False,
    network=None,
    samples=None,
    wait_timeout=None,
    restart_istiod=False,
    xds_refresh_delay=None,
    artifacts=None,
    cache_dir=None,
    quiet=False,
):
    """Prove the built MOSN under Istio's real istiod, as sidecar and gateway, in seconds."""
    import ci.mesh

    summarized(ci.mesh.run, settings(ctx, "mesh", locals()))


@task(
    help=config.help_for(
        "serve", stop="stop the server running from --root (reads <root>/.server.pid) and exit"
    )
)
@friendly
def serve(
    ctx,
    root=None,
    bind=None,
    workers=None,
    connections=None,
    header_timeout=None,
    send_timeout=None,
    trusted_proxies=None,
    token_file=None,
    read_token=None,
    read_token_file=None,
    max_upload_size=None,
    overwrite=None,
    read_only=False,
    access_log=None,
    front=None,
    front_cache=None,
    stop=False,
):
    """Run the artifact server (gunicorn, or nginx + gunicorn) in the foreground; --stop stops it."""
    extras.require("server", "invoke serve")
    import ci.serve

    ci.serve.run(settings(ctx, "serve", locals()), stop=stop)


@task(help=config.help_for("publish"))
@friendly
def publish(
    ctx,
    dist=None,
    to=None,
    server_url=None,
    token=None,
    server_root=None,
    bucket=None,
    prefix=None,
    endpoint_url=None,
    region=None,
    url_expiry=None,
    public=False,
    wasm=None,
    force=False,
    quiet=False,
):
    """Upload the dist's tarballs (server or S3), verify them, write DIST/istio.env."""
    from ci.publish import publish as run_publish

    published = run_publish(settings(ctx, "publish", locals()))
    # As a workflow step of its own, publish hands its results on as step outputs.
    github.write_outputs(github.publish_outputs(published))


@task(help={"check": "write nothing; exit 1 naming each generated page that is stale"})
def docs(ctx, check=False):
    """Write the docs' reference pages from the code (docs/reference/); mkdocs builds the site."""
    import ci.docs

    if check:
        stale = ci.docs.stale()
        if stale:
            raise Exit(f"error: stale: {', '.join(map(str, stale))}; run `invoke docs`", code=1)
        return
    for path in ci.docs.write():
        print(f"wrote {path}")
