"""`invoke image --mode full` against a stand-in for Istio's build (tests/fixtures/istio-standin:
NOT Istio; a small Makefile with Istio 1.10's variables, targets and WASM lines), the real
engine and a real registry. The tarballs and WASM placeholders are served over HTTP on
127.0.0.1, as `invoke publish` would serve them."""

from __future__ import annotations

import io
import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from ci import istio_env, names
from ci.engine import image_exists
from tests.helpers.image import (
    ISTIO_STANDIN,
    invoke,
    last_line,
    local_references,
    make_istio_standin,
    registry_digest,
    run_in_image,
    serve_directory,
    unique,
)

pytestmark = [pytest.mark.docker, pytest.mark.slow]

# The base the stand-in's Dockerfile.proxyv2 builds FROM, spelled as Istio 1.10.6's is.
ISTIO_BASE = "gcr.io/istio-release/base:1.10-dev.15"


@pytest.fixture
def served(built_dist, tmp_path):
    """The tarballs and the four WASM placeholders on an HTTP server; yields its base URL."""
    root = tmp_path / "www"
    root.mkdir()
    for f in built_dist.files:
        shutil.copy(built_dist.path(f.name), root / f.name)
    for name in names.wasm_placeholders(built_dist.mosn_version_safe):
        (root / name).write_bytes(b"\0asm placeholder")
    with serve_directory(root) as url:
        yield url


def write_istio_env(dist_dir, built_dist, url: str, base_url: bool = True, linux: str = "") -> None:
    values = {
        names.ISTIO_ENVOY_VERSION: built_dist.mosn_version_safe,
        names.ISTIO_ENVOY_RELEASE_URL: linux or f"{url}/{names.LINUX_TARBALL}",
        names.ISTIO_ENVOY_CENTOS_RELEASE_URL: f"{url}/{names.CENTOS_TARBALL}",
        names.ISTIO_ENVOY_MACOS_RELEASE_URL: f"{url}/{names.MACOS_TARBALL}",
        names.ISTIO_ENVOY_MACOS_RELEASE_NAME: names.macos_release_name(
            built_dist.mosn_version_safe
        ),
        names.SIDECAR_VAR: names.SIDECAR,
    }
    if base_url:
        values[names.ISTIO_ENVOY_BASE_URL] = url
    istio_env.write(dist_dir / names.ISTIO_ENV, values)


def default_tag(built_dist) -> str:
    return names.default_image_tag(built_dist.mosn_version_safe, "1.10.6")


def recorded_make_vars(checkout) -> dict[str, str]:
    lines = (checkout / "out" / "make-vars.txt").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines)


def istio_copy(tmp_path: Path) -> Path:
    """A copy of the Istio stand-in to build in (make writes into its checkout)."""
    source = tmp_path / "istio"
    shutil.copytree(ISTIO_STANDIN, source)
    return source


def test_full_placeholder_clones_the_tag_builds_with_make_arguments_and_pushes(
    docker_client, busybox_base, registry, built_dist, dist_dir, served, tmp_path, repositories
):
    istio_repo = make_istio_standin(tmp_path / "istio-standin.git")
    write_istio_env(dist_dir, built_dist, served)
    hub = f"{registry}/{unique('full')}"
    repository = f"{hub}/proxyv2"
    repositories.append(repository)
    result = invoke(
        "image", "--mode", "full", "--istio-version", "1.10.6",
        "--istio-repo", f"file://{istio_repo}", "--cache-dir", str(tmp_path / "cache"),
        "--image", repository, "--dist", str(dist_dir), "--push", "--istio-base", busybox_base,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    assert f"tagged {busybox_base} as {ISTIO_BASE} for Istio's Dockerfile.proxyv2" in result.stdout
    assert f"removed the tag {ISTIO_BASE}" in result.stdout
    assert not image_exists(docker_client, ISTIO_BASE)

    (checkout,) = (tmp_path / "cache" / "istio").glob("*/[0-9a-f]*")
    made = recorded_make_vars(checkout)
    tag = made["TAG"].split(" ")[0]
    assert tag.startswith("unverified-")
    assert made["HUB"] == f"{hub} [command line]"
    assert made["BUILD_ALL"] == "false [command line]"
    assert made["SIDECAR"] == "mosn [command line]"
    assert made["ISTIO_ENVOY_VERSION"] == f"{built_dist.mosn_version_safe} [command line]"
    assert made["ISTIO_ENVOY_RELEASE_URL"] == f"{served}/mosn.tar.gz [command line]"
    assert made["ISTIO_ENVOY_BASE_URL"] == f"{served} [command line]"
    # Istio's own build container by default, with Istio's own build-tools image.
    assert made["BUILD_WITH_CONTAINER"] == "1 [file]"
    assert made["IMG"] == " [undefined]"
    # Placeholder mode: the four WASM files were fetched and went into the image.
    default_tag = names.default_image_tag(built_dist.mosn_version_safe, "1.10.6")
    assert local_references(docker_client, repository) == [f"{repository}:{default_tag}"]
    reference = f"{repository}:{default_tag}"
    listing = run_in_image(
        docker_client, reference, "/etc/istio/extensions", entrypoint="/bin/ls"
    ).split()
    assert sorted(listing) == sorted(
        f"{n}-filter{s}"
        for n in ("stats", "metadata-exchange")
        for s in (".wasm", ".compiled.wasm")
    )
    record = json.loads((dist_dir / names.IMAGE_JSON).read_text())
    assert registry_digest(registry, repository.split("/", 1)[1], default_tag) == record["digest"]
    assert record["labels"]["io.istio.version"] == "1.10.6"
    assert docker_client.images.get(reference).labels["io.mosn.version"] == built_dist.mosn_version


def test_full_patch_builds_in_place_without_wasm_and_twice_the_same(
    docker_client, busybox_base, built_dist, dist_dir, served, tmp_path, repositories
):
    source = istio_copy(tmp_path)
    write_istio_env(dist_dir, built_dist, served, base_url=False)
    repository = f"example.invalid/{unique('patch')}/proxyv2"
    repositories.append(repository)
    args = (
        "image", "--mode", "full", "--wasm", "patch", "--istio-src", str(source),
        "--image", f"{repository}:p", "--dist", str(dist_dir), "--istio-base", busybox_base,
    )  # fmt: skip
    first = invoke(*args)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr
    assert f"{source / 'bin/init.sh'}: patched" in first.stdout
    # Patch mode passes no ISTIO_ENVOY_BASE_URL: make kept its own default.
    assert recorded_make_vars(source)["ISTIO_ENVOY_BASE_URL"].endswith("[file]")
    ls = run_in_image(
        docker_client, f"{repository}:p", "-c", "ls /etc/istio/extensions || echo none",
        entrypoint="/bin/sh",
    )  # fmt: skip
    assert ls.strip().endswith("none")
    assert run_in_image(
        docker_client, f"{repository}:p", "--version", entrypoint=names.BINARY_PATH_IN_IMAGE
    ) == (f"mosn version {built_dist.mosn_version}\n")

    second = invoke(*args)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr
    assert f"{source / 'bin/init.sh'}: already patched" in second.stdout
    # make's output was tagged in the same repository under a throwaway tag: gone now.
    assert local_references(docker_client, repository) == [f"{repository}:p"]


def test_make_failing_shows_its_last_lines_and_leaves_no_image(
    docker_client, busybox_base, built_dist, dist_dir, served, tmp_path, repositories
):
    source = istio_copy(tmp_path)
    write_istio_env(dist_dir, built_dist, served, linux=f"{served}/missing/mosn.tar.gz")
    repository = f"example.invalid/{unique('makefail')}/proxyv2"
    repositories.append(repository)
    result = invoke(
        "image", "--mode", "full", "--istio-src", str(source), "--image", repository,
        "--dist", str(dist_dir), "--istio-base", busybox_base,
    )  # fmt: skip
    assert result.returncode == 1
    assert last_line(result.stderr) == (
        "error: make docker.proxyv2 failed with exit code 2: curl: (22) The requested URL"
        " returned error: 404; its last lines are above"
    )
    assert "404" in result.stderr and "Traceback" not in result.stderr
    assert local_references(docker_client, repository) == []
    assert not (dist_dir / names.IMAGE_JSON).exists()
    # The base name was lent for the build only, failed or not.
    assert f"tagged {busybox_base} as {ISTIO_BASE}" in result.stdout
    assert not image_exists(docker_client, ISTIO_BASE)


def test_full_mode_without_istio_env_says_to_publish(dist_dir, tmp_path):
    result = invoke(
        "image", "--mode", "full", "--istio-src", str(ISTIO_STANDIN),
        "--image", "example.invalid/m/proxyv2", "--dist", str(dist_dir),
    )  # fmt: skip
    assert result.returncode == 1
    assert last_line(result.stderr).startswith(f"error: {dist_dir / names.ISTIO_ENV} not found")
    assert "run `invoke publish" in last_line(result.stderr)


def test_placeholder_mode_needs_base_url_and_urls_istio_would_drop_are_refused(
    built_dist, dist_dir
):
    write_istio_env(dist_dir, built_dist, "http://127.0.0.1:1", base_url=False)
    args = (
        "image", "--mode", "full", "--istio-src", str(ISTIO_STANDIN),
        "--image", "example.invalid/m/proxyv2", "--dist", str(dist_dir),
    )  # fmt: skip
    result = invoke(*args)
    assert result.returncode == 1
    assert "has no ISTIO_ENVOY_BASE_URL" in last_line(result.stderr)

    signed = "http://127.0.0.1:1/mosn.tar.gz?X-Amz-Signature=abcGOdef"
    write_istio_env(dist_dir, built_dist, "http://127.0.0.1:1", linux=signed)
    result = invoke(*args)
    assert result.returncode == 1
    assert "ISTIO_ENVOY_RELEASE_URL" in last_line(result.stderr)
    assert "contains GO" in last_line(result.stderr)


def test_a_hub_istio_would_drop_is_refused_before_make(docker_client, built_dist, dist_dir):
    write_istio_env(dist_dir, built_dist, "http://127.0.0.1:1")
    result = invoke(
        "image", "--mode", "full", "--istio-src", str(ISTIO_STANDIN),
        "--image", "example.invalid/rvm-mesh/proxyv2", "--dist", str(dist_dir),
    )  # fmt: skip
    assert result.returncode == 1
    assert last_line(result.stderr).startswith("error: HUB (from --image) contains rvm")
    assert "make clean" not in result.stdout
    assert not (ISTIO_STANDIN / "out").exists()


def test_an_image_already_named_as_istios_base_gets_the_name_back(
    docker_client, busybox_base, built_dist, dist_dir, served, tmp_path, repositories
):
    """--istio-base lends the name; whatever held it before (a pulled real base, say) keeps it."""
    source = istio_copy(tmp_path)
    write_istio_env(dist_dir, built_dist, served)
    lent = f"example.invalid/{unique('lent')}/base"
    repository = f"example.invalid/{unique('lend')}/proxyv2"
    repositories.extend([lent, repository, ISTIO_BASE.split(":")[0]])
    image, _ = docker_client.images.build(
        fileobj=io.BytesIO(f"FROM {busybox_base}\nLABEL lent=yes\n".encode()), tag=lent, rm=True
    )
    docker_client.images.get(busybox_base).tag(*ISTIO_BASE.split(":"))
    result = invoke(
        "image", "--mode", "full", "--istio-src", str(source), "--dist", str(dist_dir),
        "--image", repository, "--istio-base", lent,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    assert f"{ISTIO_BASE} names its earlier image again" in result.stdout
    # Built on the lent image, and the name went back to the image that held it.
    assert (
        docker_client.images.get(f"{repository}:{default_tag(built_dist)}").labels["lent"] == "yes"
    )
    assert docker_client.images.get(ISTIO_BASE).id == docker_client.images.get(busybox_base).id
    assert docker_client.images.get(ISTIO_BASE).id != image.id


def test_a_base_that_is_neither_local_nor_pullable_is_refused_before_make(
    docker_client, built_dist, dist_dir, tmp_path
):
    source = istio_copy(tmp_path)
    # A registry address on loopback that answers nothing: the pull fails at once, offline.
    dockerfile = source / "pilot/docker/Dockerfile.proxyv2"
    dockerfile.write_text(
        dockerfile.read_text().replace("gcr.io/istio-release/base", "127.0.0.1:1/istio/base")
    )
    write_istio_env(dist_dir, built_dist, "http://127.0.0.1:1")
    result = invoke(
        "image", "--mode", "full", "--istio-src", str(source), "--dist", str(dist_dir),
        "--image", "example.invalid/m/proxyv2",
    )  # fmt: skip
    assert result.returncode == 1
    line = last_line(result.stderr)
    assert line.startswith(
        "error: Istio's base image 127.0.0.1:1/istio/base:1.10-dev.15 is not in the engine and"
        " cannot be pulled ("
    ), line
    assert line.endswith("pass --istio-base IMAGE to build on another image")
    assert "make clean" not in result.stdout and not (source / "out").exists()


def standin_go(folder, version: str):
    """A stand-in for `go` (NOT Go): it answers only `go env GOVERSION GOPATH`, as a Go of
    `version` prints it (Go before 1.16 prints an empty line for GOVERSION)."""
    folder.mkdir(parents=True, exist_ok=True)
    go = folder / "go"
    go.write_text(
        "#!/bin/sh\n"
        '[ "$*" = "env GOVERSION GOPATH" ] || { echo "stand-in go: $*" >&2; exit 2; }\n'
        f"echo '{version}'\necho {folder / 'gopath'}\n"
    )
    go.chmod(go.stat().st_mode | stat.S_IXUSR)
    return go


def test_host_build_passes_build_with_container_0_and_a_gopath_to_make(
    docker_client, busybox_base, built_dist, dist_dir, served, tmp_path, repositories
):
    source = istio_copy(tmp_path)
    write_istio_env(dist_dir, built_dist, served)
    go = standin_go(tmp_path / "go116", "go1.16.15")
    repository = f"example.invalid/{unique('host')}/proxyv2"
    repositories.append(repository)
    env = {k: v for k, v in os.environ.items() if k != "GOPATH"}
    result = invoke(
        "image", "--mode", "full", "--istio-src", str(source), "--dist", str(dist_dir),
        "--image", repository, "--istio-base", busybox_base, "--host-build", "--istio-go", str(go),
        env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    assert "host build with go1.16.15 (BUILD_WITH_CONTAINER=0)" in result.stdout
    made = recorded_make_vars(source)
    assert made["BUILD_WITH_CONTAINER"] == "0 [command line]"
    # Without it Istio's Makefile would put GOPATH three folders above the checkout.
    assert made["GOPATH"] == f"{go.parent / 'gopath'} [environment]"
    assert made["IMG"] == " [undefined]"


def real_go_version() -> str:
    """The Go on the test's PATH (Go 1.26 here, Debian's 1.19 in CI): too new for Istio 1.10."""
    return subprocess.run(
        ["go", "env", "GOVERSION"], capture_output=True, text=True, check=True
    ).stdout.strip()


@pytest.mark.parametrize(
    "go, expected",
    [
        (None, "--host-build needs Go 1.16 to 1.17 and there is no go on PATH"),
        ("", "the host Go is go1.15 or older, but this Istio checkout needs Go 1.16 to 1.17"),
        ("real", "the host Go is {real}, but this Istio checkout needs Go 1.16 to 1.17"),
    ],
    ids=["missing", "too-old-standin", "too-new-real"],
)
def test_host_build_refuses_a_missing_or_unsupported_go_before_make(
    built_dist, dist_dir, tmp_path, go, expected
):
    source = istio_copy(tmp_path)
    write_istio_env(dist_dir, built_dist, "http://127.0.0.1:1")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    os.symlink(shutil.which("docker"), bin_dir / "docker")
    if go == "real":
        os.symlink(os.path.realpath(shutil.which("go")), bin_dir / "go")
        expected = expected.format(real=real_go_version())
    elif go is not None:
        standin_go(bin_dir, go)
    result = invoke(
        "image", "--mode", "full", "--istio-src", str(source), "--dist", str(dist_dir),
        "--image", "example.invalid/m/proxyv2", "--host-build",
        env={**os.environ, "PATH": str(bin_dir)},
    )  # fmt: skip
    assert result.returncode == 1, result.stdout
    assert last_line(result.stderr).startswith(f"error: {expected}; put Go 1.16 to 1.17 first")
    assert "Traceback" not in result.stderr
    assert "make clean" not in result.stdout and not (source / "out").exists()


def test_build_image_reaches_make_as_img(
    docker_client, busybox_base, built_dist, dist_dir, served, tmp_path, repositories
):
    source = istio_copy(tmp_path)
    write_istio_env(dist_dir, built_dist, served)
    repository = f"example.invalid/{unique('img')}/proxyv2"
    repositories.append(repository)
    result = invoke(
        "image", "--mode", "full", "--istio-src", str(source), "--dist", str(dist_dir),
        "--image", repository, "--istio-base", busybox_base,
        "--build-image", "registry.example/istio-testing/build-tools:mirror",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    made = recorded_make_vars(source)
    assert made["IMG"] == "registry.example/istio-testing/build-tools:mirror [command line]"
    assert made["BUILD_WITH_CONTAINER"] == "1 [file]"


@pytest.mark.parametrize(
    "flags, expected",
    [
        (("--host-build", "--build-image", "r.example/tools:1"), "--build-image is Istio's build"),
        (("--istio-go", "/usr/bin/go"), "--istio-go is for --host-build"),
    ],
)
def test_flags_that_contradict_each_other_are_refused_before_make(
    built_dist, dist_dir, tmp_path, flags, expected
):
    source = istio_copy(tmp_path)
    write_istio_env(dist_dir, built_dist, "http://127.0.0.1:1")
    result = invoke(
        "image", "--mode", "full", "--istio-src", str(source), "--dist", str(dist_dir),
        "--image", "example.invalid/m/proxyv2", *flags,
    )  # fmt: skip
    assert result.returncode == 1
    assert last_line(result.stderr).startswith(f"error: {expected}")
    assert not (source / "out").exists()


def test_without_buildkit_an_unpullable_distroless_stage_is_refused_before_make(
    docker_client, busybox_base, built_dist, dist_dir, tmp_path
):
    """Istio's Dockerfile.proxyv2 has an unused stage FROM an image pinned by digest, which the
    legacy builder pulls anyway. A stand-in `docker` (NOT Docker) plays a CLI without BuildKit:
    it answers `docker version` as 28.2.2 and has no buildx."""
    source = istio_copy(tmp_path)
    dockerfile = source / "pilot/docker/Dockerfile.proxyv2"
    pinned = "127.0.0.1:1/istio-release/iptables@sha256:" + "e8f940d0" * 8
    dockerfile.write_text(dockerfile.read_text() + f"FROM {pinned} as distroless\n")
    write_istio_env(dist_dir, built_dist, "http://127.0.0.1:1")
    bin_dir = tmp_path / "bin"
    standin_go(bin_dir, "go1.16.15")
    docker = bin_dir / "docker"
    docker.write_text('#!/bin/sh\n[ "$1" = version ] && { echo 28.2.2; exit 0; }\nexit 1\n')
    docker.chmod(0o755)
    result = invoke(
        "image", "--mode", "full", "--istio-src", str(source), "--dist", str(dist_dir),
        "--image", "example.invalid/m/proxyv2", "--host-build", "--istio-base", busybox_base,
        env={**os.environ, "PATH": str(bin_dir)},
    )  # fmt: skip
    assert result.returncode == 1, result.stdout
    line = last_line(result.stderr)
    assert line.startswith(
        f"error: the docker CLI on PATH (28.2.2) has no BuildKit, and its legacy builder pulls"
        f" Dockerfile.proxyv2's unused stage {pinned} ("
    ), line
    assert "make clean" not in result.stdout and not (source / "out").exists()
    assert not image_exists(docker_client, ISTIO_BASE)
