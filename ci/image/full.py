"""Full mode: Istio's own `make docker.proxyv2`, fed the tarball URLs `invoke publish` wrote."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

from ci import istio_env, log, names, proc
from ci.builder import source, toolchain
from ci.config import Settings
from ci.dist import Dist
from ci.engine import image_exists
from ci.errors import UserError
from ci.image import patch
from ci.image.engine import require_image

REQUIRED = (
    names.ISTIO_ENVOY_VERSION,
    names.ISTIO_ENVOY_RELEASE_URL,
    names.ISTIO_ENVOY_CENTOS_RELEASE_URL,
)
PASSED_ON = (
    *REQUIRED,
    names.ISTIO_ENVOY_MACOS_RELEASE_URL,
    names.ISTIO_ENVOY_MACOS_RELEASE_NAME,
    names.ISTIO_ENVOY_BASE_URL,
)


def read_istio_env(dist: Dist, wasm: str) -> dict[str, str]:
    """The Istio variables from DIST/istio.env, checked for what this build needs."""
    path = dist.root / names.ISTIO_ENV
    if not path.is_file():
        raise UserError(
            f"{path} not found: full mode needs the tarball URLs; run `invoke publish --dist"
            f" {dist.root}` first"
        )
    values = istio_env.read(path)
    needed = REQUIRED + ((names.ISTIO_ENVOY_BASE_URL,) if wasm == "placeholder" else ())
    missing = [key for key in needed if not values.get(key)]
    if missing:
        raise UserError(
            f"{path} has no {', '.join(missing)}; rerun `invoke publish`"
            + (
                " (placeholder WASM files need it) or use --wasm patch"
                if wasm == "placeholder"
                else ""
            )
        )
    return {key: values[key] for key in PASSED_ON if values.get(key)}


def refuse_blocked(values: dict[str, str], where: str, fix: str) -> None:
    """Istio's Makefile exports its variables, so even make arguments reach its build container
    through the filtered environment: refuse what it would drop silently."""
    for key, value in values.items():
        blocked = names.blocked_substrings(key, value)
        if blocked:
            raise UserError(
                f"{key} {where} contains {', '.join(blocked)}, which Istio's build container"
                f" drops silently; {fix}"
            )


def url_secrets(values: dict[str, str]) -> list[str]:
    """Query strings of the URLs (presigned signatures) to keep out of the streamed log."""
    return [urlsplit(v).query for v in values.values() if "://" in v and urlsplit(v).query]


def istio_source(settings: Settings) -> Path:
    if settings.istio_src:
        path = settings.path("istio_src")
        if not (path / "Makefile").is_file():
            raise UserError(f"{path} has no Makefile: not an Istio checkout; fix --istio-src")
        return path
    with log.stage(f"fetch Istio {settings.istio_version}"):
        checkout = source.clone(
            settings.istio_repo,
            settings.istio_version,
            settings.path("cache_dir"),
            project="istio",
            hint=f"check that {settings.istio_repo} is reachable and has the tag"
            f" {settings.istio_version} (--istio-repo, --istio-version)",
        )
        # Istio builds in place: put back any tracked file an earlier --wasm patch edited,
        # keep build outputs (make's own cache).
        proc.run(["git", "-C", checkout, "checkout", "-q", "-f", "HEAD"], what="git checkout")
        return checkout


def build_mode_arguments(settings: Settings) -> dict[str, str]:
    """How Istio's make runs: on the host (BUILD_WITH_CONTAINER=0) or in a chosen build image."""
    if settings.host_build:
        return {"BUILD_WITH_CONTAINER": "0"}
    return {"IMG": settings.build_image} if settings.build_image else {}


def make_arguments(
    values: dict[str, str], hub: str, tag: str, mode: dict[str, str] | None = None
) -> list[str]:
    fixed = {"HUB": hub, "TAG": tag, "BUILD_ALL": "false", names.SIDECAR_VAR: names.SIDECAR}
    return [f"{key}={value}" for key, value in {**values, **fixed, **(mode or {})}.items()]


# ---- --host-build: Istio's make with the host's Go and docker (BUILD_WITH_CONTAINER=0) ------


def _release(version: tuple[int, int]) -> str:
    return f"{version[0]}.{version[1]}"


def read_go_directive(source: Path) -> tuple[int, int]:
    gomod = source / "go.mod"
    match = re.search(r"^go\s+(\d+)\.(\d+)", gomod.read_text() if gomod.is_file() else "", re.M)
    if not match:
        raise UserError(f"{gomod} has no `go` line: not an Istio checkout; fix --istio-src")
    return int(match.group(1)), int(match.group(2))


def host_environment(settings: Settings) -> dict[str, str]:
    """What make gets on top of our environment: --istio-go's directory first on PATH."""
    if not settings.istio_go:
        return {}
    go = settings.path("istio_go")
    if not (go.is_file() and os.access(go, os.X_OK)):
        raise UserError(f"--istio-go {go} is not an executable file; point it at a go binary")
    return {"PATH": f"{go.parent}{os.pathsep}{os.environ.get('PATH', '')}"}


def check_host_go(source: Path, env: dict[str, str]) -> dict[str, str]:
    """Refuse, before make, a host without Go or with a Go Istio's checkout does not build with;
    return GOPATH for make when the environment has none.

    Istio's Makefile otherwise sets GOPATH to three directories above the checkout (`/` for
    most checkouts), so a host build would fill a module cache there.
    """
    path = env.get("PATH", os.environ.get("PATH", ""))
    # From go.mod's `go` line (1.16 at Istio 1.10, what its build-tools image ships) to the
    # newest Go the toolchain table allows: Istio 1.10.6's pilot-agent links reflect2 v1.0.1,
    # the version that crashes at run time from Go 1.18 on (the same rule as MOSN v1.0.0).
    oldest = read_go_directive(source)
    newest = toolchain.newest_working(source)
    wanted = f"Go {_release(oldest)}"
    if newest is None:
        wanted += " or newer"
    elif oldest != newest:
        wanted += f" to {_release(newest)}"
    fix = (
        f"put {wanted} first on PATH or pass --istio-go PATH/TO/go, or drop --host-build"
        " to use Istio's build container"
    )
    if shutil.which("go", path=path) is None:
        raise UserError(f"--host-build needs {wanted} and there is no go on PATH; {fix}")
    if shutil.which("docker", path=path) is None:
        raise UserError("--host-build runs the docker CLI and there is none on PATH; install it")
    out = proc.run(
        ["go", "env", "GOVERSION", "GOPATH"],
        env=env,
        stream=False,
        what="go env",
        hint="the host Go does not run; fix it (e.g. GOFLAGS or the go env file) or pass --istio-go",
    )
    lines = out.strip().splitlines()
    # GOVERSION is new in Go 1.16: older releases print an empty line for it.
    label, minor = toolchain.parse_go_version(lines[0] if len(lines) == 2 else "go1.15 or older")
    if minor < oldest or (newest is not None and minor > newest):
        raise UserError(f"the host Go is {label}, but this Istio checkout needs {wanted}; {fix}")
    log.info(f"    host build with {label} (BUILD_WITH_CONTAINER=0)")
    return {} if os.environ.get("GOPATH") else {"GOPATH": lines[1]}


def _from_line(source: Path, pattern: str, what: str) -> str:
    dockerfile = source / patch.DOCKERFILE
    text = dockerfile.read_text() if dockerfile.is_file() else ""
    found = re.search(pattern, text, re.M)
    if not found:
        raise UserError(f"{dockerfile} has no {what}: not Istio 1.10's layout; fix --istio-src")
    return found.group(1)


def docker_builder(client, source: Path, env: dict[str, str]) -> dict[str, str]:
    """DOCKER_BUILDKIT=1 for make when the host's docker CLI has BuildKit.

    Dockerfile.proxyv2 has a distroless stage the default build never uses, FROM an image
    pinned by digest. BuildKit skips unused stages; the legacy builder pulls every one, so
    without BuildKit that image must be local or pullable, which is checked here, before make.
    """
    version = proc.run(
        ["docker", "version", "--format", "{{.Client.Version}}"], env=env, stream=False, check=False
    ).strip()
    major = re.match(r"(\d+)\.", version)
    if major and int(major.group(1)) < 23:
        return {"DOCKER_BUILDKIT": "1"}  # BuildKit is built into these CLIs
    try:
        proc.run(["docker", "buildx", "version"], env=env, stream=False, what="docker buildx")
        return {"DOCKER_BUILDKIT": "1"}
    except UserError:
        pass
    dockerfile = (source / patch.DOCKERFILE).read_text()
    stage = re.search(r"^FROM\s+(\S+)\s+as\s+distroless\s*$", dockerfile, re.M)
    reason = _local_or_pulled(client, stage.group(1)) if stage else ""
    if reason:
        raise UserError(
            f"the docker CLI on PATH ({version or 'unknown version'}) has no BuildKit, and its"
            f" legacy builder pulls Dockerfile.proxyv2's unused stage {stage.group(1)} ({reason});"
            " put a docker CLI with BuildKit (older than 23, or with the buildx plugin) first"
            " on PATH, or make that image pullable"
        )
    return {}


def _local_or_pulled(client, reference: str) -> str:
    """'' when the engine has `reference` or could pull it, else the first line of why not."""
    import docker

    if image_exists(client, reference):
        return ""
    try:
        client.images.pull(reference)
    except docker.errors.DockerException as exc:
        return str(getattr(exc, "explanation", None) or exc).splitlines()[0]
    return ""


# ---- the base image Istio's Dockerfile.proxyv2 names ---------------------------------------


def istio_base_name(source: Path) -> str:
    """`gcr.io/istio-release/base:<BASE_VERSION>` as this checkout spells it: the repository
    from Dockerfile.proxyv2's `FROM ...:${BASE_VERSION}`, the version from its Makefiles."""
    repository = _from_line(
        source, r"^FROM\s+(\S+):\$\{BASE_VERSION\}", "FROM <image>:${BASE_VERSION}"
    )
    for makefile in ("Makefile.core.mk", "Makefile"):
        path = source / makefile
        text = path.read_text() if path.is_file() else ""
        version = re.search(r"^BASE_VERSION\s*\??=\s*(\S+)\s*$", text, re.M)
        if version:
            return f"{repository}:{version.group(1)}"
    raise UserError(f"no `BASE_VERSION ?=` in {source}'s Makefiles; fix --istio-src")


@contextlib.contextmanager
def base_tagged(client, settings: Settings, source: Path) -> Iterator[None]:
    """With --istio-base, the chosen image under the name Istio's Dockerfile builds FROM, for
    the length of the build; whatever held that name before gets it back, even after a
    failure. Without it, refuse up front when the named base is neither local nor pullable."""
    import docker

    name = istio_base_name(source)
    if not settings.istio_base:
        reason = _local_or_pulled(client, name)
        if reason:
            raise UserError(
                f"Istio's base image {name} is not in the engine and cannot be pulled ({reason});"
                " pull or load it, or pass --istio-base IMAGE to build on another image"
            )
        yield
        return
    require_image(client, settings.istio_base, "--istio-base image")
    previous = client.images.get(name).id if image_exists(client, name) else None
    repository, _, tag = name.rpartition(":")
    client.images.get(settings.istio_base).tag(repository, tag)
    log.info(f"    tagged {settings.istio_base} as {name} for Istio's Dockerfile.proxyv2")
    try:
        yield
    finally:
        with contextlib.suppress(docker.errors.DockerException):
            if previous:
                client.api.tag(previous, repository, tag, force=True)
                log.info(f"    {name} names its earlier image again")
            else:
                client.images.remove(name, noprune=True)
                log.info(f"    removed the tag {name}")


def prepare(settings: Settings, dist: Dist) -> Callable[[object, str, str], str]:
    """Check istio.env, get the source, check the host Go, patch if asked; return the step
    that runs make.

    Everything that can be refused without the engine is refused here, before it is touched.
    """
    if settings.base:
        log.warn(
            "--base is for quick mode; full mode builds FROM Istio's own base image"
            " (--istio-base IMAGE stands in for it)"
        )
    if settings.istio_version != dist.istio_version:
        raise UserError(
            f"the dist's MOSN was stamped for Istio {dist.istio_version}, not"
            f" {settings.istio_version}; rebuild with"
            f" `invoke build --istio-version {settings.istio_version}` or pass the matching"
            " --istio-version"
        )
    values = read_istio_env(dist, settings.wasm)
    if settings.host_build and settings.build_image:
        raise UserError("--build-image is Istio's build container; drop it or --host-build")
    if settings.istio_go and not settings.host_build:
        raise UserError("--istio-go is for --host-build; add --host-build or drop --istio-go")
    if not settings.host_build:
        refuse_blocked(
            values,
            f"in {dist.root / names.ISTIO_ENV}",
            "republish to URLs without them (e.g. --public) or use --host-build",
        )
    source = istio_source(settings)
    env = host_environment(settings) if settings.host_build else {}
    if settings.host_build:
        env.update(check_host_go(source, env))
    if settings.wasm == "patch":
        with log.stage("patch Istio's build (--wasm patch)"):
            patch.apply(source)

    def run_make(client, hub: str, tag: str) -> str:
        if not settings.host_build:
            refuse_blocked({"HUB": hub}, "(from --image)", "choose another image name")
        hidden = url_secrets(values)
        mode = build_mode_arguments(settings)
        make_env = {**env, **(docker_builder(client, source, env) if settings.host_build else {})}
        steps = (
            ("make clean", ["make", "clean", *(f"{k}={v}" for k, v in mode.items())]),
            (
                "make docker.proxyv2",
                ["make", "docker.proxyv2", *make_arguments(values, hub, tag, mode)],
            ),
        )
        with base_tagged(client, settings, source):
            for what, command in steps:
                with log.stage(what):
                    proc.run(
                        command,
                        cwd=source,
                        env=make_env,
                        what=what,
                        hint="its last lines are above",
                        secrets=hidden,
                    )
        built = f"{hub}/proxyv2:{tag}"
        if not image_exists(client, built):
            raise UserError(
                f"make docker.proxyv2 succeeded but left no image {built}; check that the"
                " Istio checkout tags $(HUB)/proxyv2:$(TAG)"
            )
        return built

    return run_make
