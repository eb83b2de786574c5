"""Real, unmodified MOSN from the Go module proxy (plus ../shared/goproxy for the two modules
this machine's proxy refuses), built in the machine's Go environment.

The builds come from the session fixture `real_mosn` (tests/helpers/mosn.py), which the mesh
tests share: each distinct build runs once per session. Where a test needs only what happens
before the compiler (a refusal, the dependency fix's decision), it stops there, so no MOSN is
compiled twice in a run.
"""

from __future__ import annotations

import functools
import http.server
import json
import subprocess
import tarfile
import uuid

import pytest

from ci import names
from ci.builder import smoke
from ci.errors import UserError
from tests.helpers.build import (
    GO_IMAGE_115,
    GOROOT_115,
    GOROOT_119,
    import_golang_image,
    invoke,
    isolated_env,
)
from tests.helpers.image import copy_dist, local_references, remove_repository, unique
from tests.helpers.mosn import SHARED_GOPROXY, module_source
from tests.helpers.net import serving

pytestmark = pytest.mark.slow

FIXED = {
    "github.com/json-iterator/go": ("v1.1.10", "v1.1.12"),
    "github.com/modern-go/reflect2": ("v1.0.1", "v1.0.2"),
}
# A version no stamp may have: the build stops right after the toolchain check and the
# dependency fixes, before anything is compiled.
STOP = ("--version", "stop here")


def extract(tarball, dest):
    with tarfile.open(tarball) as tar:
        tar.extractall(dest, filter="data")
    return dest / names.BINARY_PATH_IN_TARBALL


def build_info(binary) -> tuple[str, dict[str, str]]:
    """`go version -m`: the Go that built `binary` and the module versions compiled into it."""
    out = subprocess.run(
        ["go", "version", "-m", binary], capture_output=True, text=True, check=True
    ).stdout
    lines = out.splitlines()
    modules = {}
    for line in lines[1:]:
        parts = line.split("\t")
        if len(parts) >= 4 and parts[1] in ("dep", "=>"):
            modules[parts[2]] = parts[3]
    return lines[0].split(": ", 1)[1].strip(), modules


def machine_go() -> str:
    return subprocess.run(["go", "env", "GOVERSION"], capture_output=True, text=True).stdout.strip()


def stopped_by_the_stamp(result) -> None:
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("error: version 'stop here' has")
    assert "==> compile" not in result.stdout


def test_v1_0_0_with_go_1_15_passes_the_smoke_and_is_warned_about_security_fixes(
    real_mosn, tmp_path
):
    result, out = real_mosn.build("v1.0.0", GOROOT_115)
    assert result.returncode == 0, result.stderr
    assert "go1.15.15 (the host's go)" in result.stdout
    assert "proxied /api/v1/states through listener mosn-proxyv2-smoke" in result.stdout
    assert "warning: go1.15.15 gets no security fixes any more" in result.stderr
    assert "with --fix-deps where a pinned dependency breaks on it" in result.stderr
    binary = extract(out / names.LINUX_TARBALL, tmp_path)
    version = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True)
    # proxy.golang.org records no commit for v1.0.0: the stamp names the module version.
    assert version.stdout.strip() == "mosn version v1.0.0(v1.0.0)"
    built_with, modules = build_info(binary)
    assert built_with == "go1.15.15"
    assert modules["github.com/modern-go/reflect2"] == "v1.0.1"
    manifest = json.loads((out / names.MANIFEST).read_text())
    assert (manifest["go_version"], manifest["fixes"]) == ("go1.15.15", [])


def test_v1_0_0_with_the_newest_go_is_refused_before_compiling_naming_fix_deps(real_mosn):
    result, out = real_mosn.build("v1.0.0")
    assert result.returncode == 1
    assert "mosn.io/mosn@v1.0.0 is v1.0.0" in result.stdout
    last = result.stderr.strip().splitlines()[-1]
    assert f"{machine_go()} (the host's go) breaks github.com/modern-go/reflect2 v1.0.1" in last
    assert "--in-docker" in last and "--fix-deps (github.com/json-iterator/go v1.1.12" in last
    assert "Traceback" not in result.stderr
    assert "==> compile" not in result.stdout
    assert not out.exists()


def test_v1_0_0_with_fix_deps_and_the_newest_go_passes_the_smoke_and_says_what_moved(
    real_mosn, tmp_path
):
    result, out = real_mosn.build("v1.0.0", None, "--fix-deps")
    assert result.returncode == 0, result.stderr
    for module, (old, new) in FIXED.items():
        assert f"--fix-deps: {module} {old} -> {new}" in result.stdout
    assert "proxied /api/v1/states through listener mosn-proxyv2-smoke" in result.stdout
    assert "gets no security fixes" not in result.stderr
    manifest = json.loads((out / names.MANIFEST).read_text())
    assert manifest["fixes"] == [
        {"module": module, "from": old, "to": new} for module, (old, new) in FIXED.items()
    ]
    assert manifest["mosn_version"] == "v1.0.0(v1.0.0-fix-deps)"
    binary = extract(out / names.LINUX_TARBALL, tmp_path)
    built_with, modules = build_info(binary)
    assert built_with == machine_go() == manifest["go_version"]
    assert {module: modules[module] for module in FIXED} == {m: v[1] for m, v in FIXED.items()}
    # The module cache's copy of MOSN, which later builds start from, is as the proxy sent it.
    (cached,) = (real_mosn.root / "cache" / "mosn-module").glob("v1.0.0-*")
    assert "reflect2 v1.0.1 h1:" in (cached / "go.sum").read_text()
    assert "json-iterator/go v1.1.10" in (cached / "go.mod").read_text()


def test_fix_deps_on_v1_6_1_changes_nothing_and_says_so_in_one_line(real_mosn):
    env = real_mosn.env()
    result = invoke("build", "--mosn-module", "v1.6.1", "--fix-deps", *STOP, env=env)
    stopped_by_the_stamp(result)
    said = [line for line in result.stdout.splitlines() if "--fix-deps" in line]
    assert said == [
        "    --fix-deps: nothing to fix, the checkout is built as it is"
        " (github.com/modern-go/reflect2 is v1.0.2)"
    ]
    assert "go get" not in result.stdout + result.stderr


def test_a_hand_made_fix_with_a_stale_go_sum_line_is_not_refused(real_mosn, tmp_path):
    src = module_source("v1.0.0", tmp_path / "mosn")
    targets = [f"{module}@{new}" for module, (_, new) in FIXED.items()]
    subprocess.run(["go", "get", *targets], cwd=src, env=real_mosn.env(), check=True)
    # go get leaves the hash of the code no longer compiled; the build list has moved on.
    assert "github.com/modern-go/reflect2 v1.0.1 h1:" in (src / "go.sum").read_text()
    env = real_mosn.env()
    result = invoke("build", "--mosn-src", str(src), "--out", str(tmp_path / "d"), *STOP, env=env)
    stopped_by_the_stamp(result)
    assert f"{machine_go()} (the host's go)" not in result.stderr  # no toolchain refusal


def test_v1_0_0_with_go_1_19_unchecked_crashes_in_the_smoke_run(real_mosn, tmp_path):
    """The build the mesh tests use as their broken sidecar; the smoke run on it catches the
    reflect2 crash (the build skipped it, as the mesh tests want the binary)."""
    result, out = real_mosn.build("v1.0.0", GOROOT_119, "--skip-toolchain-check", "--skip-smoke")
    assert result.returncode == 0, result.stderr
    assert "--skip-toolchain-check: go1.19.8 breaks github.com/modern-go/reflect2" in result.stderr
    binary = extract(out / names.LINUX_TARBALL, tmp_path)
    with pytest.raises(UserError) as caught:
        smoke.run_host(binary)
    assert str(caught.value).startswith("smoke run failed: MOSN exited with code 2")
    # MOSN's own log, from the panic on: reflect2 crashing inside the listener conversion.
    assert "panic: runtime error: invalid memory address" in caught.value.detail
    assert "github.com/modern-go/reflect2" in caught.value.detail


@pytest.mark.docker
def test_v1_0_0_in_docker_go_1_15_matches_the_host_build(real_mosn, docker_client, tmp_path):
    host_result, host_out = real_mosn.build("v1.0.0", GOROOT_115)
    assert host_result.returncode == 0, host_result.stderr
    image = import_golang_image(docker_client, GOROOT_115, GO_IMAGE_115)
    volume = f"mp-build-gomod-real-{uuid.uuid4().hex[:8]}"  # this test's alone, removed after
    out = tmp_path / "dist"
    # The container cannot read ../shared: the same folder, served on loopback (host network).
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=SHARED_GOPROXY)
    with serving(handler) as url:
        env = real_mosn.env(MOSN_PROXYV2_GO_CACHE_VOLUME=volume)
        env["GOPROXY"] = env["GOPROXY"].replace(f"file://{SHARED_GOPROXY}", url)
        try:
            result = invoke(
                "build", "--mosn-module", "v1.0.0", "--platforms", "linux/amd64",
                "--in-docker", "--go-image", image, "--out", str(out), env=env,
            )  # fmt: skip
        finally:
            docker_client.volumes.get(volume).remove(force=True)
    assert result.returncode == 0, result.stderr
    assert "go1.15.15 (in mp-build-golang:1.15)" in result.stdout
    linux = names.LINUX_TARBALL
    assert (out / linux).read_bytes() == (host_out / linux).read_bytes()


@pytest.mark.docker
def test_quick_image_of_v1_0_0_on_the_standin_base_passes_the_smoke_inside(
    real_mosn, docker_client, busybox_base, tmp_path
):
    result, out = real_mosn.build("v1.0.0", GOROOT_115)
    assert result.returncode == 0, result.stderr
    dist = copy_dist(out, tmp_path / "dist")
    repository = f"example.invalid/{unique('real')}/proxyv2"
    try:
        run = invoke(
            "image", "--base", busybox_base, "--image", f"{repository}:smoke",
            "--dist", str(dist), env=isolated_env(tmp_path),
        )  # fmt: skip
        assert run.returncode == 0, run.stderr
        assert "in the image (network none): proxied /api/v1/states" in run.stdout
        assert local_references(docker_client, repository) == [f"{repository}:smoke"]
    finally:
        remove_repository(docker_client, repository)
