"""Compiling MOSN: the `go build` line and its environment, the same on the host and in a
golang container (ci.builder.docker_go), and the host's own Go."""

from __future__ import annotations

from pathlib import Path

from ci import names, proc
from ci.builder import toolchain
from ci.builder.source import Checkout
from ci.config import Settings


def go_version(go: str = "go") -> tuple[str, tuple[int, int]]:
    out = proc.run(
        [go, "version"],
        stream=False,
        what="go version",
        hint="install Go (Debian: apt-get install golang-go) or use --in-docker",
    )
    return toolchain.parse_go_version(out)


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


class HostGo:
    def version(self) -> tuple[str, tuple[int, int]]:
        return go_version()

    compile = staticmethod(compile_host)
