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
    "mosn-ref": "tag, branch or full commit to shallow-clone from --mosn-repo and build"
    " (wins over --mosn-src; with neither, MOSN v1.0.0 is cloned)",
    "mosn-repo": "repository to clone --mosn-ref from (default: MOSN's GitHub repository)",
    "version": "version to stamp instead of VERSION(<git short hash>)",
    "istio-version": "Istio version stamped into MOSN and used downstream (default 1.10.6)",
    "platforms": "comma-separated from linux/amd64, darwin/amd64, linux/arm64"
    " (default: the first two)",
    "out": "output folder for tarballs, SHA256SUMS and manifest.json (default dist/)",
    "in-docker": "compile inside a golang container (Docker SDK) instead of with the host's go",
    "go-image": "golang image for --in-docker (default golang:1.19)",
    "cgo": "enable CGO for Linux builds (default off: a static binary)",
    "quiet": "print only warnings and errors",
}


# Booleans default to None (not given: the configured value stands), so invoke must be told
# that `--quiet` alone means True.
@task(help=BUILD_HELP, optional=["in_docker", "cgo", "quiet"], auto_shortflags=False)
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
    """Build MOSN tarballs (mosn.tar.gz, mosn-centos.tar.gz, mosn-macos.tar.gz, ...) with manifest."""
    from ci.build import build as run_build

    if mosn_src is not None and mosn_ref is None:
        # --mosn-src on the command line beats a mosn_ref from invoke.yaml or the environment.
        mosn_ref = ""
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


IMAGE_HELP = {
    "mode": "quick (swap the dist's mosn into --base) or full (Istio's make docker.proxyv2)",
    "base": "quick mode: the image to build FROM, e.g. mosnio/proxyv2:v1.0.0-1.10.6",
    "image": "REGISTRY/REPO[:TAG] to tag (a name without a / is refused); default tag <mosn>-<istio>",
    "tags": "comma-separated extra tags, e.g. latest,dev",
    "dist": "dist folder from `invoke build` (default dist/); image.json is written there",
    "push": "push every tag and record the digest in DIST/image.json",
    "registry-username": "log in as this user with REGISTRY_PASSWORD (default: Docker config)",
    "istio-version": "full mode: the Istio tag to build (default 1.10.6)",
    "istio-src": "full mode: an Istio checkout to build in place instead of cloning",
    "istio-repo": "full mode: repository to shallow-clone --istio-version from",
    "wasm": "full mode: placeholder (ISTIO_ENVOY_BASE_URL from DIST/istio.env) or patch",
    "cache-dir": "where full mode keeps its Istio clone (default ~/.cache/mosn-proxyv2)",
    "quiet": "print only warnings and errors",
}


# No short flags: too many options start with the same letter. `--push` and `--quiet` alone
# mean true (optional values), and absent they leave invoke.yaml and the environment in charge.
@task(help=IMAGE_HELP, auto_shortflags=False, optional=["push", "quiet"])
@friendly
def image(
    ctx,
    mode=None,
    base=None,
    image=None,
    tags=None,
    dist=None,
    push=None,
    registry_username=None,
    istio_version=None,
    istio_src=None,
    istio_repo=None,
    wasm=None,
    cache_dir=None,
    quiet=None,
):
    """Build the proxyv2 image with the dist's MOSN, verify it, tag it and optionally push it."""
    from ci.image import image as run_image

    run_image(
        settings(
            ctx,
            mode=mode,
            base=base,
            image=image,
            tags=_csv(tags),
            dist=dist,
            push=push,
            registry_username=registry_username,
            istio_version=istio_version,
            istio_src=istio_src,
            istio_repo=istio_repo,
            wasm=wasm,
            cache_dir=cache_dir,
            quiet=quiet,
        )
    )
