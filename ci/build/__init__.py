"""`invoke build`: compile MOSN for each platform and package the tarballs Istio's build wants."""

from __future__ import annotations

import os
import re
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from ci import log, names, proc
from ci.build import package, smoke, toolchain
from ci.config import Settings
from ci.dist import Dist
from ci.errors import UserError


@dataclass(frozen=True)
class Checkout:
    path: Path
    version_file: str
    go_directive: tuple[int, int]
    commit: str
    short_commit: str
    commit_time: int
    vendored: bool
    # Needs a network in the build container: requirements and no vendor folder.
    downloads_modules: bool


def inspect_checkout(path: Path, origin: tuple[str, str, int] | None = None) -> Checkout:
    """Check `path` is a MOSN checkout and read what the build stamps from it.

    `origin` (commit, short commit, commit time) stands in for git's HEAD when the source
    is a module from the Go module proxy rather than a git checkout.
    """
    if not path.is_dir():
        raise UserError(
            f"MOSN source {path} is not a directory; pass --mosn-src DIR or --mosn-ref REF"
        )
    gomod = path / "go.mod"
    if not gomod.is_file():
        raise UserError(f"{path} has no go.mod: not a MOSN checkout; pass the root of a MOSN clone")
    text = gomod.read_text(errors="replace")
    module = re.search(r"^module\s+(\S+)", text, re.M)
    if not module or module.group(1) != names.MOSN_MODULE:
        found = module.group(1) if module else "none"
        raise UserError(
            f"{gomod} declares module {found}, not {names.MOSN_MODULE}: not a MOSN checkout"
        )
    if not (path / names.MOSN_MAIN_DIR).is_dir():
        raise UserError(f"{path} has no {names.MOSN_MAIN_DIR}: not a MOSN checkout")
    version_path = path / "VERSION"
    if not version_path.is_file():
        raise UserError(f"{path} has no VERSION file; add one or pass --version")
    version_file = version_path.read_text().strip()
    directive = re.search(r"^go\s+(\d+)\.(\d+)", text, re.M)
    go_directive = (int(directive.group(1)), int(directive.group(2))) if directive else (1, 0)
    commit, short, when = origin or _git_head(path)
    vendored = (path / "vendor" / "modules.txt").is_file()
    return Checkout(
        path=path,
        version_file=version_file,
        go_directive=go_directive,
        commit=commit,
        short_commit=short,
        commit_time=when,
        vendored=vendored,
        downloads_modules=not vendored and re.search(r"^require\b", text, re.M) is not None,
    )


def _git_head(path: Path) -> tuple[str, str, int]:
    out = proc.run(
        ["git", "-C", path, "log", "-1", "--format=%H %h %ct"],
        stream=False,
        check=False,
    ).strip()
    parts = out.split()
    if len(parts) != 3 or not re.fullmatch(r"[0-9a-f]{40,64}", parts[0]):
        return "", "", 0
    return parts[0], parts[1], int(parts[2])


def stamped_version(checkout: Checkout, override: str) -> str:
    """What `mosn --version` will print: MOSN's Makefile uses VERSION(<short hash>)."""
    if override:
        version = override
    elif checkout.short_commit:
        version = f"{checkout.version_file}({checkout.short_commit})"
    else:
        raise UserError(
            f"{checkout.path} is not a git checkout, so it has no commit to stamp; pass --version"
        )
    if re.search(r"[\s'\"\\]", version):
        raise UserError(
            f"version {version!r} has spaces, quotes or backslashes; pass a plain --version"
        )
    return version


def go_version(go: str = "go") -> tuple[str, tuple[int, int]]:
    out = proc.run(
        [go, "version"],
        stream=False,
        what="go version",
        hint="install Go (Debian: apt-get install golang-go) or use --in-docker",
    )
    return toolchain.parse_go_version(out)


def makefile_build_image(checkout: Checkout) -> str:
    """The golang image MOSN's own `make build` uses (its Makefile's BUILD_IMAGE)."""
    makefile = checkout.path / "Makefile"
    text = makefile.read_text(errors="replace") if makefile.is_file() else ""
    match = re.search(r"^BUILD_IMAGE\s*[?:]?=\s*(\S+)", text, re.M)
    if match:
        return match.group(1)
    return "golang:" + ".".join(map(str, checkout.go_directive))


def ldflags(version: str, istio_version: str) -> str:
    return (
        f"-s -w -X {names.VERSION_SYMBOL}={version} -X {names.ISTIO_VERSION_SYMBOL}={istio_version}"
    )


def go_build_command(
    checkout: Checkout, output: str, version: str, settings: Settings, go_minor: tuple[int, int]
) -> list[str]:
    """The `go build` line, the same on the host and in a container."""
    cmd = ["go", "build", "-trimpath"]
    if go_minor >= (1, 18):
        # No VCS stamp: the same commit must give the same bytes, dirty tree or not.
        cmd.append("-buildvcs=false")
    if checkout.vendored:
        cmd.append("-mod=vendor")
    return [
        *cmd,
        "-ldflags",
        ldflags(version, settings.istio_version),
        "-o",
        output,
        names.MOSN_MAIN_PACKAGE,
    ]


def go_build_env(platform: names.Platform, settings: Settings) -> dict[str, str]:
    # CGO for darwin would need a macOS toolchain; MOSN's own macOS build turns it off too.
    cgo = settings.cgo and platform.goos == "linux"
    return {
        "GOOS": platform.goos,
        "GOARCH": platform.goarch,
        "CGO_ENABLED": "1" if cgo else "0",
    }


def compile_host(
    checkout: Checkout,
    platform: names.Platform,
    output: Path,
    version: str,
    settings: Settings,
    go_minor: tuple[int, int],
) -> None:
    proc.run(
        go_build_command(checkout, str(output), version, settings, go_minor),
        cwd=checkout.path,
        env=go_build_env(platform, settings),
        what=f"go build for {platform.name}",
        hint="the compiler's last lines are above",
    )


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


def resolve_source(settings: Settings) -> Checkout:
    if settings.mosn_src:
        return inspect_checkout(settings.path("mosn_src"))
    from ci.build import source  # only needed when cloning or downloading

    if settings.mosn_module:
        with log.stage(f"download MOSN {settings.mosn_module} from the Go module proxy"):
            module = source.download_module(settings.mosn_module, settings.path("cache_dir"))
        return inspect_checkout(module.path, module.origin)
    ref = settings.mosn_ref or settings.default_mosn_ref
    with log.stage(f"clone MOSN {ref}"):
        path = source.clone(
            settings.mosn_repo,
            ref,
            settings.path("cache_dir"),
            hint="check --mosn-repo and the ref, or build from the Go module proxy"
            " with --mosn-module VERSION",
        )
    return inspect_checkout(path)


def compiler(settings: Settings, checkout: Checkout):
    """The Go that compiles: the host's, or a golang container's (--in-docker)."""
    if settings.in_docker:
        from ci.build.docker_go import DockerGo

        return DockerGo(settings.go_image or makefile_build_image(checkout), settings)
    return HostGo()


class HostGo:
    def version(self) -> tuple[str, tuple[int, int]]:
        return go_version()

    compile = staticmethod(compile_host)


def build(settings: Settings) -> Dist:
    platforms = check_platforms(settings.platforms)
    out = settings.path("dist")
    check_writable(out)
    checkout = resolve_source(settings)
    with log.stage("inspect source"):
        version = stamped_version(checkout, settings.version)
        epoch = source_date_epoch(checkout)
        go = compiler(settings, checkout)
        go_label, go_minor = go.version()
        where = f"in {go.image}" if settings.in_docker else "the host's go"
        skip = settings.skip_toolchain_check
        toolchain.check(checkout.path, checkout.go_directive, go_label, go_minor, where, skip)
        log.info(f"    MOSN {version}, Istio {settings.istio_version}, {go_label} ({where})")
    template = Dist(
        root=out,
        mosn_version=version,
        mosn_version_safe=names.url_safe(version),
        istio_version=settings.istio_version,
        git_commit=checkout.commit,
        go_version=go_label,
        source_date_epoch=epoch,
        cgo=settings.cgo,
    )
    with tempfile.TemporaryDirectory(prefix="mosn-build-") as work:
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
            # The bytes depend on the zlib release: say which, for whoever compares digests.
            log.info(
                f"    gzip level {package.GZIP_LEVEL}, zlib {zlib.ZLIB_RUNTIME_VERSION},"
                f" {package.compress_workers()} threads"
            )
            dist = package.write_dist(out, binaries, template)
    for f in dist.files:
        log.info(f"    {out / f.name}  {f.size} bytes  sha256 {f.sha256}")
    return dist
