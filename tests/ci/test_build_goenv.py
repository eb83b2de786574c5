"""The user's Go environment (GOFLAGS in the environment or in `go env -w`) and the tool's own go
commands: a Go older than a flag there still builds, and a failing go command says why.

These tests are about the environment, so they set GOFLAGS and GOENV themselves; every other
build test runs in the machine's Go environment as it is.
"""

from __future__ import annotations

import subprocess

import pytest

from tests.ci.test_build_errors import edit
from tests.helpers.build import (
    GO_IMAGE_115,
    GOROOT_115,
    import_golang_image,
    invoke,
    isolated_env,
    with_go,
)
from tests.helpers.build import invoke_build as build
from tests.helpers.mosn import make_checkout

DROPPED = (
    "GOFLAGS: go1.15.15 predates -buildvcs=false (Go 1.18); the build's go commands run without it"
)


def goflags_env(tmp_path, where: str, goflags: str) -> dict[str, str]:
    """An environment whose GOFLAGS is `goflags`, set as a variable or in a go env file."""
    env = isolated_env(tmp_path)
    if where == "environment":
        env["GOFLAGS"] = goflags
    else:
        # `go env -w GOFLAGS=...` writes this file; GOENV names it (default ~/.config/go/env).
        env_file = tmp_path / "go-env"
        env_file.write_text(f"GOFLAGS={goflags}\n")
        env.pop("GOFLAGS", None)
        env["GOENV"] = str(env_file)
    return env


@pytest.mark.parametrize("where", ["environment", "go env -w"])
def test_go_1_15_builds_with_a_newer_flag_in_goflags_and_says_it_was_dropped(tmp_path, where):
    src = edit(make_checkout(tmp_path / "src"), "go.mod", "module mosn.io/mosn\n\ngo 1.14\n")
    env = with_go(goflags_env(tmp_path, where, "-buildvcs=false"), GOROOT_115)
    out = tmp_path / "dist"
    result = build(src, out, tmp_path, "--platforms", "linux/amd64", env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count(DROPPED) == 1
    assert "go1.15.15 (the host's go)" in result.stdout
    assert "proxied /api/v1/states" in result.stdout


def test_module_download_with_go_1_15_and_goflags_from_go_env_gets_past_the_download(tmp_path):
    # Stopped right after the download by a version no stamp may have, before any compiling.
    env = with_go(goflags_env(tmp_path, "go env -w", "-buildvcs=false"), GOROOT_115)
    result = invoke(
        "build", "--mosn-module", "v1.0.0", "--version", "not a stamp",
        "--out", str(tmp_path / "dist"), env=env,
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stdout.count(DROPPED) == 1
    assert "mosn.io/mosn@v1.0.0 is v1.0.0" in result.stdout
    assert result.stderr.strip().splitlines()[-1].startswith("error: version 'not a stamp' has")


def last_error(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    return result.stderr.strip().splitlines()[-1]


def test_a_failing_module_download_says_what_go_said(tmp_path):
    env = goflags_env(tmp_path, "environment", "-no-such-flag")
    result = invoke("build", "--mosn-module", "v1.0.0", "--out", str(tmp_path / "d"), env=env)
    line = last_error(result)
    assert line.startswith("error: `go mod download mosn.io/mosn@v1.0.0` failed with exit code 1:")
    assert "go: parsing $GOFLAGS: unknown flag -no-such-flag" in line


def test_a_failing_go_command_of_a_checkout_build_says_what_go_said(tmp_path):
    src = make_checkout(tmp_path / "src")
    env = goflags_env(tmp_path, "go env -w", "-no-such-flag")
    line = last_error(build(src, tmp_path / "dist", tmp_path, env=env))
    # The first go command that takes the user's GOFLAGS reads the build list.
    assert line.startswith("error: `go list -m all` (the build list the toolchain check judges)")
    assert "failed with exit code 1: go: parsing $GOFLAGS: unknown flag -no-such-flag" in line


@pytest.mark.docker
def test_in_docker_go_1_15_gets_goflags_without_the_flags_it_predates(docker_client, tmp_path):
    image = import_golang_image(docker_client, GOROOT_115, GO_IMAGE_115)
    src = edit(make_checkout(tmp_path / "src"), "go.mod", "module mosn.io/mosn\n\ngo 1.14\n")
    env = goflags_env(tmp_path, "environment", "-buildvcs=false -trimpath")
    args = ("--platforms", "linux/amd64,darwin/amd64", "--in-docker", "--go-image", image)
    result = build(src, tmp_path / "dist", tmp_path, *args, env=env)
    assert result.returncode == 0, result.stderr
    # Said once for the two compiles.
    assert result.stdout.count(DROPPED) == 1
