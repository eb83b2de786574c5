"""`invoke build`: compile MOSN for each platform and package the tarballs Istio's build wants."""

from __future__ import annotations

import functools
import os
import re
import tempfile
import zlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ci import config, log, names
from ci.builder import compile, fixdeps, package, smoke, source, toolchain
from ci.builder.compile import HostGo
from ci.builder.docker_go import DockerGo
from ci.builder.source import Checkout
from ci.config import Settings
from ci.dist import Dist
from ci.errors import UserError


def stamped_version(checkout: Checkout, override: str, fixed: bool = False) -> str:
    """What `mosn --version` will print: MOSN's Makefile uses VERSION(<short hash>). A tree
    with uncommitted changes is not that commit, so it gets VERSION(<short hash>-dirty); nor
    is one whose dependencies --fix-deps moved: VERSION(<short hash>-fix-deps), so that a
    sidecar's `mosn --version`, the published folder and the image tag tell it from a build
    of the commit as MOSN made it."""
    if override:
        version = override
    elif checkout.short_commit:
        marks = "-dirty" * bool(checkout.changes) + "-fix-deps" * fixed
        version = f"{checkout.version_file}({checkout.short_commit}{marks})"
        if checkout.changes:
            changes = checkout.changes
            shown = ", ".join(changes[:3]) + (", ..." if len(changes) > 3 else "")
            log.warn(
                f"{checkout.path} has uncommitted changes ({len(changes)}: {shown}):"
                f" stamped {version}, not the commit {checkout.short_commit} (MOSN's Makefile"
                " would stamp the commit); commit them, or pass --version"
            )
    else:
        raise UserError(
            f"{checkout.path} is not a git checkout, so it has no commit to stamp; pass --version"
        )
    if re.search(r"[\s'\"\\]", version):
        raise UserError(
            f"version {version!r} has spaces, quotes or backslashes; pass a plain --version"
        )
    return version


def makefile_build_image(checkout: Checkout) -> str:
    """The golang image MOSN's own `make build` uses (its Makefile's BUILD_IMAGE)."""
    makefile = checkout.path / "Makefile"
    text = makefile.read_text(errors="replace") if makefile.is_file() else ""
    match = re.search(r"^BUILD_IMAGE\s*[?:]?=\s*(\S+)", text, re.M)
    if match:
        return match.group(1)
    return "golang:" + ".".join(map(str, checkout.go_directive))


def check_platforms(requested: tuple[str, ...]) -> list[names.Platform]:
    unknown = [p for p in requested if p not in names.PLATFORMS]
    if unknown or not requested:
        raise UserError(
            f"unknown platform {', '.join(unknown) or '(none given)'}; "
            f"choose from {', '.join(names.PLATFORMS)}"
        )
    return [names.PLATFORMS[p] for p in dict.fromkeys(requested)]


def check_writable(out: Path) -> None:
    """Fail before compiling if `out` cannot become a folder we write to; create nothing."""
    probe = out
    while not probe.exists() and not probe.is_symlink() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise UserError(
            f"cannot use {out} as the output folder: {probe} is not a folder; choose another --out"
        )
    if not os.access(probe, os.W_OK | os.X_OK):
        raise UserError(f"output folder {probe} is not writable; choose another --out")


def source_date_epoch(checkout: Checkout) -> int:
    """The tarballs' mtime: SOURCE_DATE_EPOCH (reproducible-builds.org), else the commit time."""
    raw = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if not raw:
        return checkout.commit_time
    if not raw.isdigit():
        raise UserError(
            f"SOURCE_DATE_EPOCH={raw!r} is not a number of seconds since 1970; fix or unset it"
        )
    return int(raw)


SOURCES = ("mosn_src", "mosn_ref", "mosn_module")


def source_flags(given: Mapping[str, Any]) -> dict[str, str]:
    """What one command line's source flags do to the settings: the one given beats a source
    set in invoke.yaml or the environment (the others are cleared); two are refused."""
    named = [name for name in SOURCES if given.get(name) is not None]
    if len(named) > 1:
        both = " and ".join(f"--{config.flag(name, 'build')} {given[name]}" for name in named)
        raise UserError(f"{both} both name the MOSN to build; pass one of them")
    return {name: "" for name in SOURCES if named and name not in named}


def check_one_source(settings: Settings) -> None:
    """Two sources from invoke.yaml or the environment: refused, not silently ranked."""
    named = [name for name in SOURCES if getattr(settings, name)]
    if len(named) > 1:
        both = " and ".join(f"{name} ({getattr(settings, name)})" for name in named)
        where = ", ".join(var for name in named for var in config.env_names(name))
        raise UserError(
            f"{both} are both set (invoke.yaml or {where}); unset one, or pass the source to"
            " build as a flag"
        )


def resolve_source(settings: Settings, host: Callable[[], HostGo]) -> Checkout:
    check_one_source(settings)
    if settings.mosn_src:
        return source.inspect_checkout(settings.path("mosn_src"), out=settings.path("dist"))
    if settings.mosn_module:
        with log.stage(f"download MOSN {settings.mosn_module} from the Go module proxy"):
            module = source.download_module(
                settings.mosn_module, settings.path("cache_dir"), host().env
            )
        return source.inspect_checkout(module.path, module.origin)
    ref = settings.mosn_ref or settings.default_mosn_ref
    with log.stage(f"clone MOSN {ref}"):
        path = source.clone(
            settings.mosn_repo,
            ref,
            settings.path("cache_dir"),
            hint="check --mosn-repo and the ref, or build from the Go module proxy"
            " with --mosn-module VERSION",
        )
    return source.inspect_checkout(path)


def compiler(settings: Settings, checkout: Checkout, host: Callable[[], HostGo]):
    """The Go that compiles: the host's, or a golang container's (--in-docker)."""
    if settings.in_docker:
        return DockerGo(settings.go_image or makefile_build_image(checkout), settings)
    return host()


def build(settings: Settings) -> Dist:
    platforms = check_platforms(settings.platforms)
    out = settings.path("dist")
    check_writable(out)
    # Probed once, when first needed: a module download and the compile share it.
    host = functools.cache(HostGo)
    checkout = resolve_source(settings, host)
    with tempfile.TemporaryDirectory(prefix="mosn-build-") as work:
        with log.stage("inspect source"):
            go = compiler(settings, checkout, host)
            go_label, go_minor = go.version()
            where = f"{go_label} ({go.where})"
            toolchain.check_go_mod(checkout.go_directive, go_label, go_minor, where)
            build_list = compile.build_list(go, checkout)
            fixes: tuple[dict[str, str], ...] = ()
            if settings.fix_deps:
                checkout, build_list, fixes = fixdeps.apply(
                    go, checkout, build_list, Path(work), go_minor
                )
            skip = settings.skip_toolchain_check
            toolchain.check(build_list, checkout.go_directive, go_label, go_minor, where, skip)
            toolchain.warn_unsupported(go_label, go_minor, *compile.supported_releases(host))
            version = stamped_version(checkout, settings.version, fixed=bool(fixes))
            epoch = source_date_epoch(checkout)
            log.info(f"    MOSN {version}, Istio {settings.istio_version}, {where}")
        binaries: dict[str, Path] = {}
        for platform in platforms:
            with log.stage(f"compile {platform.name}"):
                binary = Path(work) / platform.goos / platform.goarch / "mosn"
                binary.parent.mkdir(parents=True)
                go.compile(checkout, platform, binary, version, settings, go_minor)
                binaries[platform.name] = binary
        runnable = smoke.host_platform() if not settings.skip_smoke else None
        if runnable in binaries:
            with log.stage(f"smoke run {runnable}"):
                smoke.run_host(binaries[runnable])
        elif not settings.skip_smoke:
            log.warn(f"no smoke run: no {smoke.host_platform()} binary was built for this host")
        with log.stage("package"):
            # What the binary says it was built with, which GOTOOLCHAIN may have switched.
            built_with = compile.built_with(go, next(iter(binaries.values())))
            log.info(f"    built with {built_with} (go version -m)")
            # The bytes depend on the zlib release: say which, for whoever compares digests.
            log.info(
                f"    gzip level {package.GZIP_LEVEL}, zlib {zlib.ZLIB_RUNTIME_VERSION},"
                f" {package.compress_workers()} threads"
            )
            template = Dist(
                root=out,
                mosn_version=version,
                mosn_version_safe=names.url_safe(version),
                istio_version=settings.istio_version,
                git_commit=checkout.commit,
                dirty=bool(checkout.changes),
                fixes=fixes,
                go_version=built_with or go_label,
                source_date_epoch=epoch,
                cgo=settings.cgo,
            )
            dist = package.write_dist(out, binaries, template)
    for f in dist.files:
        log.info(f"    {out / f.name}  {f.size} bytes  sha256 {f.sha256}")
    return dist
