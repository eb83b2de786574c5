"""Golang images for `--in-docker` tests, made from Debian's Go packages (nothing can be pulled),
and the environment the build tests run `invoke build` in."""

from __future__ import annotations

import os
import re
import subprocess
import tarfile
from pathlib import Path

from tests.helpers import tools
from tests.helpers.cli import run_invoke
from tests.helpers.images import add_busybox, import_rootfs

# Debian's Go releases: bookworm's golang-go, bullseye's golang-1.15 (.ci/run installs both).
GOROOT_119 = Path("/usr/lib/go-1.19")
GOROOT_115 = Path("/usr/lib/go-1.15")
GO_IMAGE = "mp-build-golang:1.19"
GO_IMAGE_115 = "mp-build-golang:1.15"
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
GO_CACHE_VOLUME = "mp-build-gomod-test"
# Enough of GOROOT to compile: the go command, the compiler, linker and assembler, the
# standard library's source (the build caches what it compiles on the volume).
TOOLS = ("compile", "link", "asm", "buildid", "cgo", "pack")


def host_goroot() -> Path:
    go = tools.which("go")
    return Path(go).resolve().parent.parent


def goroot(path: Path) -> Path:
    if not (path / "bin" / "go").is_file():
        tools.need("go releases", f"no Go at {path}")
    return path


def _skip_in_src(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
    parts = info.name.split("/")
    if "testdata" in parts or info.name.endswith("_test.go") or parts[4:5] == ["cmd"]:
        return None
    return info


def shared_libraries(binary: Path) -> list[Path]:
    """What the dynamic loader needs for `binary` (Debian builds the go command with cgo)."""
    out = subprocess.run(["ldd", str(binary)], capture_output=True, text=True).stdout
    found = re.findall(r"(/\S+) \(0x", out)
    return [Path(p) for p in found]


def golang_rootfs(dest: Path, root: Path) -> None:
    """Write a root filesystem tar: busybox for a shell and the Go at `root`, at the same path.

    The same path, because Go before 1.19 or so hashes GOROOT into the build ID even with
    -trimpath: a container's binary equals the host's only with GOROOT equal too."""
    goroot = root
    inside = str(root).lstrip("/")
    with tarfile.open(dest, "w", dereference=True) as tar:
        add_busybox(tar, str(Path(inside).parent), inside)
        for library in shared_libraries(goroot / "bin" / "go"):
            tar.add(str(library), arcname=str(library).lstrip("/"))
        # The real module proxy is https: the container needs the host's CA bundle.
        tar.add(CA_BUNDLE, arcname=CA_BUNDLE.lstrip("/"))
        tar.add(goroot / "VERSION", arcname=f"{inside}/VERSION")
        tar.add(goroot / "bin" / "go", arcname=f"{inside}/bin/go")
        for tool in TOOLS:
            tar.add(
                goroot / "pkg" / "tool" / "linux_amd64" / tool,
                arcname=f"{inside}/pkg/tool/linux_amd64/{tool}",
            )
        tar.add(goroot / "pkg" / "include", arcname=f"{inside}/pkg/include")
        tar.add(goroot / "src", arcname=f"{inside}/src", filter=_skip_in_src)


def import_golang_image(client, root: Path = GOROOT_119, reference: str = GO_IMAGE) -> str:
    """The Go at `root` (at the same path) as the image `reference`."""
    root = goroot(root)
    changes = [f"ENV PATH={root}/bin:/bin", 'CMD ["go", "version"]']
    return import_rootfs(client, reference, lambda dest: golang_rootfs(dest, root), changes)


def with_go(env: dict[str, str], root: Path) -> dict[str, str]:
    """`env` with the Go at `root` first on PATH (the machine's newest Go is /usr/local/go)."""
    return {**env, "PATH": f"{goroot(root)}/bin:{env['PATH']}"}


REPO_ROOT = Path(__file__).resolve().parent.parent.parent


def isolated_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment for a `python3 -m invoke` run that no setting of the caller leaks into."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("MOSN_PROXYV2_") and k not in ("MOSN_SRC", "SOURCE_DATE_EPOCH")
    }
    env["MOSN_PROXYV2_CACHE_DIR"] = str(tmp_path / "cache")
    env["MOSN_PROXYV2_GO_CACHE_VOLUME"] = GO_CACHE_VOLUME
    env.update(extra)
    return env


def invoke(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """Run `python3 -m invoke ARGS` from the project root, as a user would."""
    return run_invoke(*args, env=env)


def invoke_build(src: Path, out: Path, tmp_path: Path, *extra: str, env=None):
    """`invoke build --mosn-src SRC --out OUT EXTRA...` in an isolated environment."""
    return invoke(
        "build",
        "--mosn-src",
        str(src),
        "--out",
        str(out),
        *extra,
        env=env or isolated_env(tmp_path),
    )


def snapshot(folder: Path) -> dict[str, tuple[int, bytes]]:
    """Every path under `folder` with its mode and content, to prove nothing changed."""
    if not folder.exists():
        return {}
    found = {}
    for path in sorted(folder.rglob("*")):
        data = path.read_bytes() if path.is_file() else b""
        found[str(path.relative_to(folder))] = (path.stat().st_mode, data)
    return found
