"""Real MOSN from the Go module proxy, compiled with the Go releases Debian ships.

The module cache and Go's build cache live in one folder per test session: shared by the
tests of one run, never reused by the next. The stand-ins for the two modules this
machine's proxy refuses are described in tests/helpers/mosn.py; the tests that build
use them and say so in their names.
"""

from __future__ import annotations

import subprocess
import tarfile
import uuid

import pytest

from ci import names
from tests.helpers.build import (
    GO_IMAGE_115,
    GOROOT_115,
    GOROOT_119,
    import_golang_image,
    invoke,
    isolated_env,
    snapshot,
    with_go,
)
from tests.helpers.build import invoke_build as build
from tests.helpers.image import copy_dist, local_references, remove_repository, unique
from tests.helpers.mosn import MODULE_ENV, git, real_mosn_checkout

pytestmark = pytest.mark.slow

MACHO_64 = b"\xcf\xfa\xed\xfe"


@pytest.fixture(scope="module")
def go_env(tmp_path_factory):
    """The environment every build here runs in: one module and build cache per session."""
    root = tmp_path_factory.getbasetemp() / "real-mosn-go"
    env = isolated_env(root, **MODULE_ENV)
    env.update(GOMODCACHE=str(root / "mod"), GOCACHE=str(root / "build"))
    yield env
    # The module cache is read-only on disk; the go command knows how to remove it.
    subprocess.run(["go", "clean", "-modcache"], env=env, check=False, capture_output=True)


@pytest.fixture(scope="module")
def v100(go_env, tmp_path_factory):
    return real_mosn_checkout("v1.0.0", tmp_path_factory.mktemp("v100") / "mosn", go_env)


@pytest.fixture(scope="module")
def v100_dist(v100, go_env, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("v100-dist")
    out = tmp / "dist"
    result = build(v100, out, tmp, env=with_go(go_env, GOROOT_115))
    return result, out


def extract(tarball, dest):
    with tarfile.open(tarball) as tar:
        tar.extractall(dest, filter="data")
    return dest / names.BINARY_PATH_IN_TARBALL


def test_v1_0_0_standin_byteio_with_go_1_15_builds_both_platforms_and_passes_the_smoke(
    v100, v100_dist, tmp_path
):
    result, out = v100_dist
    assert result.returncode == 0, result.stderr
    assert "go1.15.15 (the host's go)" in result.stdout
    assert "proxied /api/v1/states through listener mosn-proxyv2-smoke" in result.stdout
    binary = extract(out / names.LINUX_TARBALL, tmp_path / "linux")
    version = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True)
    short = git(v100, "rev-parse", "--short=7", "HEAD")
    assert version.stdout.strip() == f"mosn version v1.0.0({short})"
    macos = extract(out / names.MACOS_TARBALL, tmp_path / "macos")
    assert macos.read_bytes()[:4] == MACHO_64


def test_module_source_with_go_1_19_is_refused_before_compiling(go_env, tmp_path):
    out = tmp_path / "dist"
    env = with_go(go_env, GOROOT_119)
    result = invoke("build", "--mosn-module", "mosn.io/mosn@v1.0.0", "--out", str(out), env=env)
    assert result.returncode == 1
    assert "mosn.io/mosn@v1.0.0 is v1.0.0" in result.stdout
    # proxy.golang.org's record of v1.0.0 has no Origin: the stamp says so.
    assert "records no commit for mosn.io/mosn@v1.0.0" in result.stderr + result.stdout
    last = result.stderr.strip().splitlines()[-1]
    assert "go1.19.8 (the host's go) breaks github.com/modern-go/reflect2 v1.0.1" in last
    assert "works with Go 1.14 to 1.17" in last and "--skip-toolchain-check" in last
    assert "Traceback" not in result.stderr
    assert "compile" not in result.stdout
    assert not out.exists()


def test_v1_0_0_standin_byteio_with_go_1_19_unchecked_is_caught_by_the_smoke_run(
    v100, go_env, tmp_path
):
    out = tmp_path / "dist"
    out.mkdir()
    (out / "keep.txt").write_text("from before\n")
    before = snapshot(out)
    env = with_go(go_env, GOROOT_119)
    args = ("--platforms", "linux/amd64", "--skip-toolchain-check")
    result = build(v100, out, tmp_path, *args, env=env)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: smoke run failed: MOSN exited with code 2")
    # MOSN's own log, from the panic on: reflect2 crashing inside the listener conversion.
    assert "panic: runtime error: invalid memory address" in result.stderr
    assert "github.com/modern-go/reflect2" in result.stderr
    assert snapshot(out) == before


def test_v1_6_1_standin_byteio_with_the_machine_go_passes_the_smoke(go_env, tmp_path):
    src = real_mosn_checkout("v1.6.1", tmp_path / "mosn", go_env)
    out = tmp_path / "dist"
    result = build(src, out, tmp_path, "--platforms", "linux/amd64", env=go_env)
    assert result.returncode == 0, result.stderr
    assert "proxied /api/v1/states through listener mosn-proxyv2-smoke" in result.stdout
    binary = extract(out / names.LINUX_TARBALL, tmp_path / "linux")
    version = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True)
    assert version.stdout.startswith("mosn version v1.6.1(")


@pytest.mark.docker
def test_v1_0_0_standin_byteio_in_docker_go_1_15_matches_the_host_build(
    v100, v100_dist, go_env, docker_client, tmp_path
):
    image = import_golang_image(docker_client, GOROOT_115, GO_IMAGE_115)
    volume = f"mp-build-gomod-real-{uuid.uuid4().hex[:8]}"  # this test's alone, removed after
    env = {**go_env, "MOSN_PROXYV2_GO_CACHE_VOLUME": volume}
    out = tmp_path / "dist"
    try:
        args = ("--platforms", "linux/amd64", "--in-docker", "--go-image", image)
        result = build(v100, out, tmp_path, *args, env=env)
    finally:
        docker_client.volumes.get(volume).remove(force=True)
    assert result.returncode == 0, result.stderr
    assert "go1.15.15 (in mp-build-golang:1.15)" in result.stdout
    host_result, host_out = v100_dist
    assert host_result.returncode == 0, host_result.stderr
    linux = names.LINUX_TARBALL
    assert (out / linux).read_bytes() == (host_out / linux).read_bytes()


@pytest.mark.docker
def test_quick_image_of_v1_0_0_standin_byteio_on_the_standin_base_passes_the_smoke_inside(
    v100_dist, docker_client, busybox_base, tmp_path
):
    result, out = v100_dist
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
