"""`invoke build --in-docker`: the real Docker engine, a golang image made from the host's Go."""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import uuid
import zipfile
from pathlib import Path

import pytest

from ci import names
from ci.builder.docker_go import LABEL
from tests.helpers.build import (
    GO_CACHE_VOLUME,
    GOROOT_119,
    import_golang_image,
    isolated_env,
    snapshot,
    with_go,
)
from tests.helpers.build import invoke_build as build
from tests.helpers.mosn import git, make_checkout
from tests.helpers.net import serving

pytestmark = [pytest.mark.docker, pytest.mark.slow]


@pytest.fixture(scope="module")
def go_image(docker_client) -> str:
    return import_golang_image(docker_client)


def test_in_docker_build_matches_the_host_build_byte_for_byte(go_image, docker_client, tmp_path):
    src = make_checkout(tmp_path / "src")
    platforms = ("--platforms", "linux/amd64,darwin/amd64")
    in_docker = build(
        src, tmp_path / "docker", tmp_path, *platforms, "--in-docker", "--go-image", go_image
    )
    assert in_docker.returncode == 0, in_docker.stderr
    assert f"in {go_image}, network none, Go caches on volume {GO_CACHE_VOLUME}" in in_docker.stdout
    env = with_go(isolated_env(tmp_path), GOROOT_119)
    host = build(src, tmp_path / "host", tmp_path, *platforms, "--quiet", env=env)
    assert host.returncode == 0, host.stderr
    # Same Go release, same flags, -trimpath: where it ran leaves no trace in the bytes.
    for name in ("mosn.tar.gz", "mosn-centos.tar.gz", "mosn-macos.tar.gz", names.SHA256SUMS):
        assert (tmp_path / "docker" / name).read_bytes() == (tmp_path / "host" / name).read_bytes()
    manifest = json.loads((tmp_path / "docker" / names.MANIFEST).read_text())
    assert manifest["go_version"].startswith("go1.19")
    docker_client.volumes.get(GO_CACHE_VOLUME)  # the module and build caches persist
    assert docker_client.containers.list(all=True, filters={"label": LABEL}) == []


def test_in_docker_defaults_to_the_build_image_the_makefile_names(go_image, tmp_path):
    src = make_checkout(tmp_path / "src")
    (src / "Makefile").write_text(f"BUILD_IMAGE     ?= {go_image}\n\nbuild:\n\tdocker run\n")
    git(src, "add", "-A")
    git(src, "commit", "-q", "-m", "Makefile")
    result = build(src, tmp_path / "dist", tmp_path, "--in-docker", "--platforms", "linux/amd64")
    assert result.returncode == 0, result.stderr
    assert f"in {go_image}, network none" in result.stdout


def test_go_directive_is_checked_against_the_image_go(go_image, tmp_path):
    src = make_checkout(tmp_path / "src")
    (src / "go.mod").write_text("module mosn.io/mosn\n\ngo 1.99\n")
    out = tmp_path / "dist"
    result = build(src, out, tmp_path, "--in-docker", "--go-image", go_image)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: go1.19") and f"(in {go_image}) is older than go 1.99" in last
    assert not out.exists()


def test_compile_error_in_the_container_shows_the_compiler(go_image, tmp_path):
    src = make_checkout(tmp_path / "src")
    (src / "cmd" / "mosn" / "main" / "broken.go").write_text('package main\n\nvar x int = "s"\n')
    out = tmp_path / "dist"
    out.mkdir()
    (out / "keep").write_text("k")
    before = snapshot(out)
    result = build(src, out, tmp_path, "--in-docker", "--go-image", go_image)
    assert result.returncode == 1
    assert "broken.go:3" in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: go build for linux/amd64 in {go_image} failed with exit code")
    assert "Traceback" not in result.stderr
    assert snapshot(out) == before


def test_image_without_go_is_a_clear_error(busybox_base, tmp_path):
    src = make_checkout(tmp_path / "src")
    result = build(src, tmp_path / "dist", tmp_path, "--in-docker", "--go-image", busybox_base)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: go version in {busybox_base}"), last
    assert "pass another --go-image" in last
    assert "Traceback" not in result.stderr


def test_image_that_is_neither_local_nor_pullable(docker_client, tmp_path):
    src = make_checkout(tmp_path / "src")
    result = build(
        src, tmp_path / "dist", tmp_path, "--in-docker", "--go-image", "mp-build-absent:0"
    )
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert "mp-build-absent:0 is not on this Docker engine and could not be pulled" in last
    assert not (tmp_path / "dist").exists()


def h1(files: dict[str, bytes]) -> str:
    """Go's dirhash "h1:" of named files, the form go.sum holds."""
    summary = "".join(
        f"{hashlib.sha256(files[name]).hexdigest()}  {name}\n" for name in sorted(files)
    )
    return "h1:" + base64.b64encode(hashlib.sha256(summary.encode()).digest()).decode()


def module_proxy(root: Path, module: str, version: str, files: dict[str, bytes]) -> str:
    """Lay out a GOPROXY tree for one module version; return the go.sum lines for it."""
    folder = root / module / "@v"
    folder.mkdir(parents=True)
    (folder / "list").write_text(version + "\n")
    (folder / f"{version}.info").write_text(json.dumps({"Version": version}))
    (folder / f"{version}.mod").write_bytes(files["go.mod"])
    prefixed = {f"{module}@{version}/{name}": data for name, data in files.items()}
    with zipfile.ZipFile(folder / f"{version}.zip", "w") as archive:
        for name, data in prefixed.items():
            archive.writestr(name, data)
    return (
        f"{module} {version} {h1(prefixed)}\n"
        f"{module} {version}/go.mod {h1({'go.mod': files['go.mod']})}\n"
    )


def serving_folder(folder: Path, requested: list[str]):
    """A module proxy: `folder` over HTTP on loopback, each requested path recorded."""

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(folder), **kwargs)

        def log_message(self, *args):
            requested.append(self.path)

    return serving(Handler)


def test_module_downloads_use_host_network_and_stay_on_the_volume(go_image, tmp_path):
    """A go.mod with requirements and no vendor/: the container gets the host network, the
    module comes from GOPROXY (a proxy on loopback here), and a second build needs no proxy."""
    # A module path no earlier run can have cached on the volume.
    module = f"example.com/mpgreet{uuid.uuid4().hex[:8]}"
    go_mod = f"module {module}\n\ngo 1.19\n".encode()
    greet = b'package mpgreet\n\nconst Hello = "hello"\n'
    sums = module_proxy(tmp_path / "proxy", module, "v1.0.0", {"go.mod": go_mod, "greet.go": greet})
    src = make_checkout(tmp_path / "src")
    (src / "go.mod").write_text(f"module mosn.io/mosn\n\ngo 1.19\n\nrequire {module} v1.0.0\n")
    (src / "go.sum").write_text(sums)
    (src / "cmd" / "mosn" / "main" / "greet.go").write_text(
        f'package main\n\nimport mpgreet "{module}"\n\nvar _ = mpgreet.Hello\n'
    )
    args = ("--in-docker", "--go-image", go_image, "--platforms", "linux/amd64")
    requested: list[str] = []
    with serving_folder(tmp_path / "proxy", requested) as proxy:
        env = isolated_env(tmp_path, GOPROXY=proxy, GOSUMDB="off")
        first = build(src, tmp_path / "one", tmp_path, *args, env=env)
    assert first.returncode == 0, first.stderr
    assert f"network host, Go caches on volume {GO_CACHE_VOLUME}" in first.stdout
    assert f"/{module}/@v/v1.0.0.zip" in requested
    env["GOPROXY"] = "off"  # nothing may be downloaded now
    second = build(src, tmp_path / "two", tmp_path, *args, env=env)
    assert second.returncode == 0, second.stderr
    assert (tmp_path / "one" / "mosn.tar.gz").read_bytes() == (
        tmp_path / "two" / "mosn.tar.gz"
    ).read_bytes()
