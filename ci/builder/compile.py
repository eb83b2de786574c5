"""Compiling MOSN: the `go build` line and its environment, the same on the host and in a
golang container (ci.builder.docker_go), and the host's own Go."""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ci import log, names, proc
from ci.builder import toolchain
from ci.builder.source import Checkout
from ci.config import Settings
from ci.errors import UserError

# Flags a user's GOFLAGS may hold (set for a newer Go, often with `go env -w`) that an older
# go command refuses outright, even for `go version` ("go: parsing $GOFLAGS: unknown flag"),
# with the release that added each. Measured with go1.15.15 and go1.19.8 (-pgo: Go 1.20's
# release notes).
FLAG_RELEASES = {"-overlay": (1, 16), "-asan": (1, 18), "-buildvcs": (1, 18), "-pgo": (1, 20)}
# Go reads GOFLAGS from the environment only when it is not empty, else from the go env file:
# a blank value is how the tool's own go commands run with no user flags at all.
NO_GOFLAGS = " "


def goflags_for(goflags: str, label: str, minor: tuple[int, int]) -> dict[str, str]:
    """The environment for the tool's go commands: the user's GOFLAGS without the flags this Go
    predates (said in one line), or {} when it knows them all."""
    kept, dropped = [], []
    for flag in goflags.split():
        since = FLAG_RELEASES.get("-" + flag.split("=", 1)[0].lstrip("-"))
        if since and minor < since:
            dropped.append(f"{flag} (Go {'.'.join(map(str, since))})")
        else:
            kept.append(flag)
    if not dropped:
        return {}
    log.info(
        f"    GOFLAGS: {label} predates {', '.join(dropped)}; the build's go commands run"
        " without it"
    )
    return {"GOFLAGS": " ".join(kept) or NO_GOFLAGS}


def go_version(go: str = "go") -> tuple[str, tuple[int, int]]:
    out = proc.run(
        [go, "version"],
        # The user's GOFLAGS may hold a flag this Go does not know; the version needs none.
        env={"GOFLAGS": NO_GOFLAGS},
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


@dataclass(frozen=True)
class GoCommand:
    """`go ARGS` in the folder `cwd`, run by the Go that builds (HostGo or DockerGo)."""

    args: list[str]
    cwd: Path
    what: str  # how an error names it
    hint: str = ""
    writes: bool = False  # it may change files in `cwd` (go get)
    echo: bool = True  # its output goes to the build log as it comes


class HostGo:
    """The host's go command, with the user's Go environment less what this release predates."""

    where = "the host's go"

    def __init__(self) -> None:
        self.label, self.minor = go_version()
        # The effective value, from the environment or the go env file (`go env -w`).
        user = proc.run(["go", "env", "GOFLAGS"], stream=False, what="go env GOFLAGS")
        self.env = goflags_for(user.strip(), self.label, self.minor)

    def version(self) -> tuple[str, tuple[int, int]]:
        return self.label, self.minor

    def go(self, command: GoCommand) -> str:
        """Run `command` with the host's go; its stdout."""
        return proc.run(
            ["go", *command.args],
            cwd=command.cwd,
            env={"GO111MODULE": "on", **self.env},
            stream=command.echo,
            separate_stderr=True,
            what=command.what,
            hint=command.hint,
        )

    def compile(
        self,
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
            env={**go_build_env(platform, settings), **self.env},
            what=f"go build for {platform.name}",
            hint="the compiler's last lines are above",
        )


def build_list(go, checkout: Checkout) -> dict[str, str]:
    """The module versions a build of `checkout` compiles: vendor/modules.txt, or `go list -m
    all` with the Go that compiles (`go`: HostGo or DockerGo), which reads the module graph as
    that go build will, downloading go.mod files where it must."""
    if checkout.vendored:
        return toolchain.parse_build_list((checkout.path / "vendor" / "modules.txt").read_text())
    out = go.go(
        GoCommand(
            ["list", "-m", "all"],
            checkout.path,
            what="`go list -m all` (the build list the toolchain check judges)",
            hint="check GOPROXY, or that go.mod and go.sum are complete",
            echo=False,
        )
    )
    return toolchain.parse_build_list(out)


def built_with(go, binary: Path) -> str:
    """The Go release that built `binary`, as `go version -m` reads it from the binary."""
    command = GoCommand(["version", "-m", binary.name], binary.parent, "go version -m", echo=False)
    out = go.go(command)
    match = re.match(r"[^\n]*?:\s+(go\S+)", out)
    return match.group(1) if match else ""


def supported_releases(host: Callable[[], HostGo]) -> tuple[tuple[tuple[int, int], ...], str]:
    """The Go releases that still get security fixes, and where that was read: the module
    proxy's golang.org/toolchain list through the host's go (its GOPROXY), else the table."""
    offline = (toolchain.SUPPORTED_WHEN_OFFLINE, "this tool's table (the module proxy's list"
               " of Go toolchains was out of reach)")  # fmt: skip
    try:
        with tempfile.TemporaryDirectory(prefix="mosn-go-") as empty:
            listing = ["list", "-m", "-versions", toolchain.TOOLCHAIN_MODULE]
            out = host().go(GoCommand(listing, Path(empty), "go list -m -versions", echo=False))
    except UserError:
        return offline
    found = toolchain.supported_releases(out.split()[1:])
    return (found, f"{toolchain.TOOLCHAIN_MODULE} on the module proxy") if found else offline
