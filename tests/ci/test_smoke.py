"""The foundation: config layering and the built stand-in dist."""

import json
import subprocess
import tarfile
import time
import urllib.request
from pathlib import Path

import pytest

from ci import config, names
from ci.builder import smoke
from tests.helpers.build import invoke, invoke_build, isolated_env, snapshot
from tests.helpers.image import copy_dist, local_references, remove_repository, unique
from tests.helpers.mosn import git, make_checkout


def test_flags_override_environment_override_file():
    file_layer = {"istio_version": "1.9.0", "platforms": ["linux/amd64"], "dist": "a"}
    environ = {"MOSN_PROXYV2_ISTIO_VERSION": "1.10.5", "MOSN_SRC": "/src"}
    s = config.load(file_layer, {"istio_version": "1.10.6", "dist": None}, environ)
    assert (s.istio_version, s.mosn_src, s.dist, s.platforms) == (
        "1.10.6",
        "/src",
        "a",
        ("linux/amd64",),
    )


def test_secret_settings_do_not_show_in_repr():
    s = config.load({}, {}, {"ARTIFACT_TOKEN": "s3cr3t-value", "REGISTRY_PASSWORD": "pw-123456"})
    assert s.token == "s3cr3t-value"
    assert "s3cr3t" not in repr(s) and "pw-123456" not in repr(s)


def test_built_linux_tarball_runs_and_reports_both_stamps(built_dist, tmp_path):
    with tarfile.open(built_dist.path(names.LINUX_TARBALL)) as tar:
        assert tar.getnames() == [names.BINARY_PATH_IN_TARBALL]
    subprocess.run(["tar", "xzf", built_dist.path(names.LINUX_TARBALL), "-C", tmp_path], check=True)
    binary = tmp_path / names.BINARY_PATH_IN_TARBALL
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True)
    assert out.stdout == f"mosn version {built_dist.mosn_version}\n"
    istio = subprocess.run([binary, "--istio-version"], capture_output=True, text=True, check=True)
    assert istio.stdout.strip() == "1.10.6"


CRASHING_START = """package main

func start(path string) { panic("stand-in crash while converting " + path) }
"""


def crashing_checkout(dest: Path) -> Path:
    """mosn-mini whose `start` panics, as real MOSN does when its Go breaks reflect2."""
    src = make_checkout(dest)
    (src / "cmd" / "mosn" / "main" / "start.go").write_text(CRASHING_START)
    git(src, "commit", "-qam", "crash on start")
    return src


def test_smoke_failure_is_one_error_with_the_panic_and_leaves_out_alone(tmp_path):
    src = crashing_checkout(tmp_path / "src")
    out = tmp_path / "dist"
    out.mkdir()
    (out / "old.txt").write_text("before\n")
    before = snapshot(out)
    result = invoke_build(src, out, tmp_path, "--platforms", "linux/amd64")
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last == (
        "error: smoke run failed: MOSN exited with code 2 before it proxied a request; the"
        " built MOSN does not work (a Go release that breaks a dependency? see MOSN's log above)"
    )
    assert "panic: stand-in crash while converting" in result.stderr
    assert "Traceback" not in result.stderr
    assert snapshot(out) == before


def test_skip_smoke_builds_what_would_fail_it(tmp_path):
    src = crashing_checkout(tmp_path / "src")
    result = invoke_build(src, tmp_path / "dist", tmp_path, "--platforms", "linux/amd64",
                          "--skip-smoke")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "smoke run" not in result.stdout
    assert (tmp_path / "dist" / names.LINUX_TARBALL).is_file()


def test_cross_only_build_says_there_was_no_smoke_run(tmp_path):
    src = make_checkout(tmp_path / "src")
    result = invoke_build(src, tmp_path / "dist", tmp_path, "--platforms", "darwin/amd64")
    assert result.returncode == 0, result.stderr
    assert "no smoke run: no linux/amd64 binary was built for this host" in result.stderr


def test_smoke_passes_on_the_standin_and_goes_through_the_listener(built_dist, tmp_path):
    subprocess.run(["tar", "xzf", built_dist.path(names.LINUX_TARBALL), "-C", tmp_path], check=True)
    listener, admin = smoke.free_ports(2)
    config = tmp_path / "envoy-rev0.json"
    config.write_text(json.dumps(smoke.bootstrap(listener, admin, str(tmp_path / "XDS"))))
    binary = tmp_path / names.BINARY_PATH_IN_TARBALL
    mosn = subprocess.Popen([binary, "start", "-c", config], stdout=subprocess.DEVNULL)
    try:
        # The listener's answer is the admin API's, proxied: pid=<MOSN's pid>&state=...
        assert smoke.probe(listener, admin, time.monotonic() + 20) == ""
        with urllib.request.urlopen(f"http://127.0.0.1:{listener}/api/v1/states") as resp:
            assert resp.read().decode().startswith(f"pid={mosn.pid}&state=")
    finally:
        mosn.kill()
        mosn.wait()


def refused_image(docker_client, base: str, src: Path, tmp_path, *build_flags: str) -> str:
    """Build `src` for linux/amd64, make a quick image of it on `base`, which must fail leaving
    no tag behind; the error line (what follows is checked by the caller)."""
    dist = tmp_path / "dist"
    built = invoke_build(src, dist, tmp_path, "--platforms", "linux/amd64", *build_flags)
    assert built.returncode == 0, built.stderr
    repository = f"example.invalid/{unique('refused')}/proxyv2"
    try:
        result = invoke(
            "image", "--base", base, "--image", f"{repository}:x", "--dist", str(dist),
            env=isolated_env(tmp_path),
        )  # fmt: skip
        assert result.returncode == 1
        assert local_references(docker_client, repository) == []
    finally:
        remove_repository(docker_client, repository)
    return result.stderr


@pytest.mark.docker
def test_in_image_smoke_failure_removes_the_image_and_tags_nothing(
    docker_client, busybox_base, tmp_path
):
    src = crashing_checkout(tmp_path / "src")
    stderr = refused_image(docker_client, busybox_base, src, tmp_path, "--skip-smoke")
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("error: smoke run in example.invalid/mp-image-refused-"), last
    assert "(network none) failed: MOSN exited with code 2" in last
    assert "panic: stand-in crash" in stderr


@pytest.mark.docker
def test_in_image_smoke_without_root_uses_the_image_wget(
    docker_client, busybox_base, built_dist, tmp_path, monkeypatch
):
    repository = f"example.invalid/{unique('wget')}/proxyv2"
    try:
        made = invoke(
            "image", "--base", busybox_base, "--image", f"{repository}:x",
            "--dist", str(copy_dist(built_dist.root, tmp_path / "dist")),
            env=isolated_env(tmp_path),
        )  # fmt: skip
        assert made.returncode == 0, made.stderr
        assert "in the image (network none): proxied /api/v1/states" in made.stdout
        # A GitHub runner's user cannot nsenter: the busybox base's wget sends the requests.
        monkeypatch.setattr(smoke.os, "geteuid", lambda: 1001)
        smoke.run_in_image(docker_client, f"{repository}:x", names.BINARY_PATH_IN_IMAGE)
        docker_client.images.get(f"{repository}:x")  # a pass leaves the image alone
    finally:
        remove_repository(docker_client, repository)


@pytest.mark.docker
def test_in_image_check_of_a_cgo_build_on_a_busybox_base_names_the_missing_loader(
    docker_client, busybox_base, mosn_checkout, tmp_path
):
    stderr = refused_image(docker_client, busybox_base, mosn_checkout, tmp_path, "--cgo")
    last = stderr.strip().splitlines()[-1]
    assert "exec /usr/local/bin/mosn: no such file or directory" in last
    assert "/lib64/ld-linux-x86-64.so.2" in last
    assert "glibc" in last and "rebuild without --cgo" in last
