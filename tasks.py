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
    " (with neither this nor --mosn-src, MOSN v1.0.0 is cloned)",
    "mosn-repo": "repository to clone --mosn-ref from (default: MOSN's GitHub repository)",
    "mosn-module": "[mosn.io/mosn@]VERSION (tag, branch or commit) to download through the Go"
    " module proxy (GOPROXY, GONOSUMDB, GOPRIVATE, GOFLAGS apply) instead of cloning",
    "version": "version to stamp instead of VERSION(<git short hash>)",
    "istio-version": "Istio version stamped into MOSN and used downstream (default 1.10.6)",
    "platforms": "comma-separated from linux/amd64, darwin/amd64, linux/arm64"
    " (default: the first two)",
    "out": "output folder for tarballs, SHA256SUMS and manifest.json (default dist/)",
    "in-docker": "compile inside a golang container (Docker SDK) instead of with the host's go",
    "go-image": "golang image for --in-docker (default: the BUILD_IMAGE of the checkout's"
    " Makefile, golang:1.14.13 for MOSN v1.0.0)",
    "cgo": "enable CGO for Linux builds (default off: a static binary)",
    "skip-toolchain-check": "compile even with a Go release known to break a pinned dependency",
    "skip-smoke": "do not start the built binary on an Envoy-format listener (cross-only builds)",
    "quiet": "print only warnings and errors",
}


# Plain boolean flags (not optional-value ones, which make `invoke build --quiet publish`
# ambiguous to invoke). Absent means "not given", so invoke.yaml and the environment decide.
@task(help=BUILD_HELP, auto_shortflags=False)
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
    skip_smoke=False,
    quiet=False,
):
    """Build MOSN tarballs (mosn.tar.gz, mosn-centos.tar.gz, mosn-macos.tar.gz, ...) with manifest."""
    from ci.build import build as run_build

    if (mosn_ref is not None or mosn_module is not None) and mosn_src is None:
        # --mosn-ref/--mosn-module on the command line beat a mosn_src from invoke.yaml or MOSN_SRC.
        mosn_src = ""
    if mosn_ref is not None and mosn_module is None:
        mosn_module = ""
    run_build(
        settings(
            ctx,
            mosn_src=mosn_src,
            mosn_ref=mosn_ref,
            mosn_repo=mosn_repo,
            mosn_module=mosn_module,
            version=version,
            istio_version=istio_version,
            platforms=_csv(platforms),
            dist=out,
            in_docker=in_docker or None,
            go_image=go_image,
            cgo=cgo or None,
            skip_toolchain_check=skip_toolchain_check or None,
            skip_smoke=skip_smoke or None,
            quiet=quiet or None,
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
    "host-build": "full mode: Istio's make with the host's Go and docker (BUILD_WITH_CONTAINER=0)",
    "istio-go": "full mode, --host-build: the go binary to build Istio with (default: go on PATH)",
    "build-image": "full mode: Istio's build-tools image (its IMG) instead of Istio's default",
    "istio-base": "full mode: an image to build on, tagged as the base Istio's Dockerfile names",
    "quiet": "print only warnings and errors",
}


# No short flags: too many options start with the same letter. Switches are plain booleans
# (see build): absent, they leave invoke.yaml and the environment in charge.
@task(help=IMAGE_HELP, auto_shortflags=False)
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
    quiet=False,
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
            push=push or None,
            registry_username=registry_username,
            istio_version=istio_version,
            istio_src=istio_src,
            istio_repo=istio_repo,
            wasm=wasm,
            cache_dir=cache_dir,
            host_build=host_build or None,
            istio_go=istio_go,
            build_image=build_image,
            istio_base=istio_base,
            quiet=quiet or None,
        )
    )


E2E_HELP = {
    "image": "the proxyv2 image to prove, REGISTRY/REPO:TAG (loaded into kind from Docker)",
    "istio-version": "Istio release to install; picks kind and the node image (default 1.10.6)",
    "plan": "print every command the run would execute, in order, and exit (no cluster)",
    "keep-cluster": "leave the kind cluster running afterwards (Istio and Bookinfo still removed)",
    "artifacts": "folder for the report, manifests and diagnostics (default e2e-artifacts/)",
    "cluster-name": "kind cluster name; must not exist yet (default mosn-proxyv2)",
    "samples": "requests for the 50/50 check (default 0: the N chosen in ci/e2e/stats.py)",
    "ingress-port": "host port on 127.0.0.1 mapped to the ingress gateway (default 30080)",
    "wait-timeout": "seconds to wait for rollouts and for routing to settle (default 300)",
    "pull-image": "let the cluster pull --image from its registry instead of kind load",
    "cache-dir": "where kind, kubectl and the Istio release are cached",
    "summarize": "print one table of the matrix cells' results under this folder (one subfolder"
    " per cell; also to the job summary) and exit; exit 1 if a cell failed or left no result",
    "quiet": "print only warnings and errors",
}


@task(help=E2E_HELP)
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
        if not ci.e2e.summarize(summarize):
            raise Exit(code=1)
        return

    # Boolean flags default to False in invoke; only a given flag may override the layers below.
    s = settings(
        ctx,
        image=image,
        istio_version=istio_version,
        keep_cluster=keep_cluster or None,
        artifacts=artifacts,
        cluster_name=cluster_name,
        samples=samples,
        ingress_port=ingress_port,
        wait_timeout=wait_timeout,
        pull_image=pull_image or None,
        cache_dir=cache_dir,
        quiet=quiet or None,
    )
    if plan:
        print("\n".join(ci.e2e.plan_lines(s)))
        return
    ci.e2e.run(s)


SERVE_HELP = {
    "root": "directory to serve and store into (default: server_root, .artifacts)",
    "bind": "HOST:PORT to listen on (default: host and port of server_url, 127.0.0.1:8080)",
    "workers": "gunicorn worker processes (default: 2 per CPU core)",
    "connections": "connections held at once per worker (default 1000)",
    "header-timeout": "seconds a request head or an idle keep-alive may take (default 10)",
    "send-timeout": "seconds a send or body read may stall before the client is dropped (default 60)",
    "trusted-proxies": "comma-separated proxy addresses whose X-Forwarded-* headers are believed (default none)",
    "token-file": "file of write tokens, one a line (also env ARTIFACT_TOKENS, comma-separated)",
    "read-token": "require this bearer token for reads (prefer env ARTIFACT_READ_TOKEN: argv shows in ps)",
    "read-token-file": "file whose first line is the read token",
    "max-upload-size": "largest accepted upload, e.g. 2G (default 4G; env ARTIFACT_MAX_UPLOAD_SIZE)",
    "overwrite": "deny (default) or allow replacing an artifact with different bytes",
    "read-only": "refuse every PUT and DELETE",
    "access-log": "access log file, '-' for stdout (default), '' for none",
    "front": "nginx: nginx in front of the app (production mode: the speed targets; env ARTIFACT_FRONT); default none",
    "front-cache": "seconds nginx may reuse a small download before asking the app again (default 1; 0: off)",
    "stop": "stop the server running from --root (reads <root>/.server.pid) and exit",
}


@task(help=SERVE_HELP)
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
    from server.serve import run_task

    s = settings(ctx, server_root=root)
    run_task(
        str(s.path("server_root")),
        s.server_url,
        bind=bind,
        stop_requested=stop,
        workers=int(workers) if workers else None,
        connections=int(connections) if connections else None,
        header_timeout=float(header_timeout) if header_timeout else None,
        send_timeout=float(send_timeout) if send_timeout else None,
        trusted_proxies=trusted_proxies,
        access_log=access_log,
        front=front,
        front_cache=int(front_cache) if front_cache not in (None, "") else None,
        token_file=token_file,
        read_token=read_token,
        read_token_file=read_token_file,
        max_upload_size=max_upload_size,
        overwrite=overwrite,
        read_only=read_only or None,
    )


PUBLISH_HELP = {
    "dist": "dist folder to publish (default dist/, as written by `invoke build`)",
    "to": "where to publish: server (the bundled artifact server, default) or s3",
    "server-url": "artifact server base URL (default http://127.0.0.1:8080; started if local and down)",
    "token": "artifact server write token (better: the ARTIFACT_TOKEN environment variable)",
    "server-root": "storage folder of a server publish starts itself (default .artifacts)",
    "bucket": "S3 bucket (--to s3)",
    "prefix": "folder in the store: files go to <prefix>/<version>/<file> (default mosn)",
    "endpoint-url": "S3-compatible endpoint, e.g. http://127.0.0.1:9000 (default: AWS)",
    "region": "S3 region (default: AWS_REGION / the AWS config)",
    "url-expiry": "lifetime of presigned S3 URLs in seconds (default and maximum 604800)",
    "public": "write plain S3 object URLs instead of presigned ones (the bucket must allow reads)",
    "wasm": "placeholder (publish empty WASM files for Istio's init.sh, default) or patch",
    "force": "replace files already published with different bytes at this version",
    "quiet": "print only warnings and errors",
}


@task(help=PUBLISH_HELP)
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

    run_publish(
        settings(
            ctx,
            dist=dist,
            to=to,
            server_url=server_url,
            token=token,
            server_root=server_root,
            bucket=bucket,
            prefix=prefix,
            endpoint_url=endpoint_url,
            region=region,
            url_expiry=url_expiry,
            public=public or None,
            wasm=wasm,
            force=force or None,
            quiet=quiet or None,
        )
    )
