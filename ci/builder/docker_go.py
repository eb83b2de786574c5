"""`invoke build --in-docker`: the Go toolchain of a golang image, through the Docker SDK.

As MOSN's `make build` does, the compiler runs in a container. The checkout is mounted
read-only, Go's module and build caches live on a named volume (so the second build is
fast), the container has no network unless modules must be downloaded, and the binary is
copied out of the container rather than written through a mount (so it belongs to the
user running the build, not to the container's root).
"""

from __future__ import annotations

import functools
import os
import sys
import uuid
from pathlib import Path

from ci import engine, log, proc
from ci.builder import toolchain
from ci.builder.compile import GoCommand, go_build_command, go_build_env, goflags_for
from ci.builder.source import Checkout
from ci.config import Settings
from ci.errors import UserError
from ci.names import Platform

SRC = "/src"
CACHE = "/mosn-proxyv2-cache"
OUTPUT = "/tmp/mosn"  # noqa: S108 - inside the throwaway container
CONTAINER_PREFIX = "mosn-proxyv2-build-"
LABEL = "mosn-proxyv2.build"
BUILD_TIMEOUT = 3 * 3600
# Passed through from the host when set, so private module proxies keep working.
GO_NETWORK_ENV = (
    "GOPROXY", "GOPRIVATE", "GONOPROXY", "GONOSUMDB", "GOSUMDB", "GOINSECURE", "GOFLAGS",
    "GOTOOLCHAIN",
)  # fmt: skip


class DockerGo:
    """The Go toolchain inside a golang image (--go-image, else the Makefile's BUILD_IMAGE)."""

    def __init__(self, image: str, settings: Settings) -> None:
        self.image = image
        self.where = f"in {image}"
        self.volume = settings.go_cache_volume
        self.client = engine.client(
            # `go build` can be silent for minutes while the log stream waits for a line.
            BUILD_TIMEOUT,
            hint="start Docker, set DOCKER_HOST, or build with the host's Go (drop --in-docker)",
        )
        self._ensure_image()

    def _ensure_image(self) -> None:
        import docker.errors

        try:
            self.client.images.get(self.image)
            return
        except docker.errors.ImageNotFound:
            pass
        except docker.errors.APIError as exc:
            raise UserError(
                f"Docker could not look up {self.image}: {engine.reason(exc)}"
            ) from None
        log.info(f"    pulling {self.image}")
        try:
            self.client.images.pull(self.image)
        except docker.errors.APIError as exc:
            raise UserError(
                f"Go image {self.image} is not on this Docker engine and could not be pulled"
                f" ({engine.reason(exc)}); pull or build it first, or pass --go-image IMAGE"
            ) from None

    @functools.cached_property
    def _version(self) -> tuple[str, tuple[int, int]]:
        out = self._run(
            ["go", "version"],
            {},
            f"go version in {self.image}",
            hint="is it a golang image? pass another --go-image",
            network=False,
        )
        return toolchain.parse_go_version(out)

    def version(self) -> tuple[str, tuple[int, int]]:
        return self._version

    @functools.cached_property
    def _go_env(self) -> dict[str, str]:
        """The Go settings passed in from the host, less the GOFLAGS this image's Go predates."""
        env = {k: os.environ[k] for k in GO_NETWORK_ENV if os.environ.get(k)}
        return {**env, **goflags_for(env.get("GOFLAGS", ""), *self.version())}

    def go(self, command: GoCommand) -> str:
        """Run `command` in a container, its folder mounted (read-write only when it writes),
        with the network for the modules it may fetch; stdout and stderr together."""
        return self._run(
            ["go", *command.args],
            self._go_env,
            f"{command.what} in {self.image}",
            hint=command.hint,
            network=True,
            source=command.cwd,
            writable=command.writes,
            echo=command.echo,
        )

    def compile(
        self,
        checkout: Checkout,
        platform: Platform,
        output: Path,
        version: str,
        settings: Settings,
        go_minor: tuple[int, int],
    ) -> None:
        network = checkout.downloads_modules
        log.info(
            f"    in {self.image}, network {'host' if network else 'none'},"
            f" Go caches on volume {self.volume}"
        )
        self._run(
            go_build_command(checkout, OUTPUT, version, settings, go_minor),
            {**self._go_env, **go_build_env(platform, settings)},
            f"go build for {platform.name} in {self.image}",
            hint="the compiler's last lines are above",
            network=network,
            source=checkout.path,
            copy_out=output,
        )

    def _run(
        self,
        command: list[str],
        env: dict[str, str],
        what: str,
        *,
        hint: str,
        network: bool,
        source: Path | None = None,
        copy_out: Path | None = None,
        writable: bool = False,
        echo: bool = True,
    ) -> str:
        import docker.errors
        import requests.exceptions
        from docker.types import Mount

        # Mount objects rather than "src:dst:mode" strings: a path may contain a colon.
        mounts = [Mount(CACHE, self.volume, type="volume")] if self.volume else []
        if source is not None:
            # Read-only unless asked: the user's checkout is never written to.
            mounts.append(Mount(SRC, str(source.resolve()), type="bind", read_only=not writable))
        environment = {
            "GOMODCACHE": f"{CACHE}/mod",
            "GOCACHE": f"{CACHE}/build",
            "GOPATH": f"{CACHE}/gopath",
            **env,
        }
        try:
            container = self.client.containers.create(
                self.image,
                command=command,
                working_dir=SRC if source is not None else "/",
                environment=environment,
                mounts=mounts,
                # Module downloads need a network; host networking works even where dockerd
                # runs without a default bridge.
                network_mode="host" if network else "none",
                name=CONTAINER_PREFIX + uuid.uuid4().hex[:12],
                labels={LABEL: "1"},
            )
        except docker.errors.APIError as exc:
            raise UserError(
                f"could not create a container from {self.image}: {engine.reason(exc)}"
            ) from None
        try:
            try:
                container.start()
            except docker.errors.APIError as exc:
                raise UserError(
                    f"{what}: the container did not start ({engine.reason(exc)});"
                    f" is {self.image} a golang image with go on its PATH? pass another --go-image"
                ) from None
            echo = echo and not log.is_quiet()
            output = _follow(container, echo)
            code = container.wait().get("StatusCode", 1)
            if code != 0:
                raise proc.CommandFailed(
                    what, code, output, output.splitlines()[-proc.TAIL_LINES :], hint, echo
                )
            if copy_out is not None:
                _copy_out(container, copy_out)
            return output
        except (docker.errors.APIError, requests.exceptions.RequestException) as exc:
            raise UserError(f"{what}: Docker failed: {engine.reason(exc)}") from None
        finally:
            try:
                container.remove(force=True, v=False)
            except docker.errors.APIError:
                log.warn(f"could not remove container {container.name}; remove it by hand")


def _follow(container, echo: bool) -> str:
    """Echo the container's output as it comes (when `echo`) and return all of it."""
    chunks: list[str] = []
    pending = ""
    for raw in container.logs(stream=True, follow=True):
        pending += raw.decode(errors="replace")
        *lines, pending = pending.split("\n")
        for line in lines:
            chunks.append(line + "\n")
            if echo:
                sys.stdout.write("    " + line + "\n")
                sys.stdout.flush()
    if pending:
        chunks.append(pending)
        if echo:
            print("    " + pending, flush=True)
    return "".join(chunks)


def _copy_out(container, dest: Path) -> None:
    """Copy the built binary out of the container (docker cp) to `dest`."""
    import docker.errors

    try:
        engine.copy_out(container, OUTPUT, dest)
    except docker.errors.NotFound:
        raise UserError(f"the container produced no binary at {OUTPUT}") from None
