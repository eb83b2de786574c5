"""Full mode: Istio's own `make docker.proxyv2`, fed the tarball URLs `invoke publish` wrote."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from ci import istio_env, istio_patch, log, names, proc, source
from ci.config import Settings
from ci.dist import Dist
from ci.errors import UserError

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
    chosen = {key: values[key] for key in PASSED_ON if values.get(key)}
    refuse_blocked(chosen, f"in {path}", "republish to URLs without them (e.g. --public)")
    return chosen


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


def make_arguments(values: dict[str, str], hub: str, tag: str) -> list[str]:
    fixed = {"HUB": hub, "TAG": tag, "BUILD_ALL": "false", names.SIDECAR_VAR: names.SIDECAR}
    return [f"{key}={value}" for key, value in {**values, **fixed}.items()]


def prepare(settings: Settings, dist: Dist) -> Callable[[str, str], str]:
    """Check istio.env, get the source, patch it if asked; return the step that runs make.

    Everything that can be refused is refused here, before the engine is touched.
    """
    values = read_istio_env(dist, settings.wasm)
    source = istio_source(settings)
    if settings.wasm == "patch":
        with log.stage("patch Istio's build (--wasm patch)"):
            istio_patch.apply(source)

    def run_make(hub: str, tag: str) -> str:
        refuse_blocked({"HUB": hub}, "(from --image)", "choose another image name")
        hidden = url_secrets(values)
        with log.stage("make clean"):
            proc.run(["make", "clean"], cwd=source, what="make clean", secrets=hidden)
        with log.stage("make docker.proxyv2"):
            proc.run(
                ["make", "docker.proxyv2", *make_arguments(values, hub, tag)],
                cwd=source,
                what="make docker.proxyv2",
                hint="its last lines are above",
                secrets=hidden,
            )
        return f"{hub}/proxyv2:{tag}"

    return run_make
