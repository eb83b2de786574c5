"""Bad input to `invoke build`: one line saying what to do, non-zero exit, --out untouched."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ci import names
from tests.helpers.build import REPO_ROOT, invoke, isolated_env, snapshot
from tests.helpers.build import invoke_build as build
from tests.helpers.mosn import git, make_checkout
from tests.helpers.net import free_port


def edit(checkout: Path, relative: str, text: str | None) -> Path:
    """Change one file of a checkout (None deletes it) and commit, as a user's tree would be."""
    target = checkout / relative
    if text is None:
        if target.is_dir():
            shutil.rmtree(target)
        else:
            target.unlink()
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    git(checkout, "add", "-A")
    git(checkout, "commit", "-qm", f"edit {relative}")
    return checkout


def assert_fails(result, message: str, out: Path, before: dict) -> str:
    """The contract for every bad input; returns stderr for further checks."""
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert lines, "no error printed"
    assert lines[-1].startswith("error: "), lines[-1]
    assert message in lines[-1], lines[-1]
    assert "Traceback" not in result.stderr + result.stdout
    assert snapshot(out) == before, f"{out} changed"
    return result.stderr


@pytest.fixture
def out(tmp_path) -> Path:
    """An --out holding a user's file, which a failed build must leave alone."""
    folder = tmp_path / "dist"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine\n")
    return folder


BAD_CHECKOUTS = {
    "wrong module": ("go.mod", "module example.com/notmosn\n\ngo 1.19\n", "not mosn.io/mosn"),
    "no go.mod": ("go.mod", None, "has no go.mod"),
    "no main package": ("cmd", None, "has no cmd/mosn/main"),
    "no VERSION": ("VERSION", None, "has no VERSION file"),
    "Go too old": ("go.mod", "module mosn.io/mosn\n\ngo 1.99\n", "older than go 1.99"),
}


@pytest.mark.parametrize("case", BAD_CHECKOUTS, ids=list(BAD_CHECKOUTS))
def test_rejects_a_checkout_that_is_not_mosn(case, tmp_path, out):
    relative, text, message = BAD_CHECKOUTS[case]
    src = edit(make_checkout(tmp_path / "src"), relative, text)
    before = snapshot(out)
    assert_fails(build(src, out, tmp_path), message, out, before)


def test_rejects_a_missing_folder(tmp_path, out):
    before = snapshot(out)
    result = build(tmp_path / "nowhere", out, tmp_path)
    assert_fails(result, "is not a directory; pass --mosn-src DIR or --mosn-ref REF", out, before)


def test_says_how_to_get_go_when_none_is_on_path(tmp_path, out):
    # A PATH with git but no go.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    os.symlink(shutil.which("git"), bin_dir / "git")
    env = isolated_env(tmp_path, PATH=str(bin_dir))
    src = make_checkout(tmp_path / "src")
    before = snapshot(out)
    result = build(src, out, tmp_path, env=env)
    assert_fails(result, "go was not found on PATH", out, before)
    assert "--in-docker" in result.stderr.splitlines()[-1]


def test_compile_error_shows_the_compiler_and_keeps_the_previous_dist(tmp_path, out):
    src = make_checkout(tmp_path / "src")
    first = build(src, out, tmp_path, "--platforms", "linux/amd64")
    assert first.returncode == 0, first.stderr
    before = snapshot(out)
    assert names.MANIFEST in before
    broken = "package main\n\nfunc broken() int { return undefinedThing }\n"
    edit(src, "cmd/mosn/main/broken.go", broken)
    result = build(src, out, tmp_path)
    stderr = assert_fails(result, "go build for linux/amd64 failed", out, before)
    # The compiler's lines as they came, once; the error line quotes the last one.
    assert result.stdout.count("undefined: undefinedThing") == 1
    compiler = next(line for line in result.stdout.splitlines() if "undefinedThing" in line)
    assert stderr.strip().splitlines() == [
        f"error: go build for linux/amd64 failed with exit code 1: {compiler.strip()};"
        " the compiler's last lines are above"
    ]
    assert "broken.go:3" in stderr


def test_with_no_out_folder_yet_a_failed_build_creates_none(tmp_path):
    src = edit(make_checkout(tmp_path / "src"), "cmd/mosn/main/broken.go", "package main\nx")
    out = tmp_path / "new" / "dist"
    result = build(src, out, tmp_path)
    assert_fails(result, "go build for linux/amd64 failed", out, {})
    assert not (tmp_path / "new").exists()


def test_rejects_an_out_under_a_regular_file(tmp_path):
    # chmod does not stop root; a path through a regular file stops everyone.
    blocker = tmp_path / "file"
    blocker.write_text("x")
    out = blocker / "dist"
    src = make_checkout(tmp_path / "src")
    result = build(src, out, tmp_path)
    assert_fails(result, f"{blocker} is not a folder; choose another --out", out, {})
    assert blocker.read_text() == "x"


@pytest.mark.skipif(not Path("/proc/self").exists(), reason="needs Linux /proc")
def test_out_where_not_even_root_can_create_a_folder(tmp_path):
    # /proc refuses new entries to everyone: the failure comes only when packaging starts.
    out = Path("/proc/mosn-proxyv2-build-test")
    src = make_checkout(tmp_path / "src")
    result = build(src, out, tmp_path, "--platforms", "linux/amd64")
    assert_fails(result, "choose another --out", out, {})
    assert not out.exists()


def test_rejects_an_unknown_platform(tmp_path, out):
    src = make_checkout(tmp_path / "src")
    before = snapshot(out)
    result = build(src, out, tmp_path, "--platforms", "linux/amd64,windows/amd64")
    assert_fails(result, "has unknown windows/amd64; choose from linux/amd64", out, before)


def test_rejects_a_source_date_epoch_that_is_not_a_number(tmp_path, out):
    src = make_checkout(tmp_path / "src")
    before = snapshot(out)
    env = isolated_env(tmp_path, SOURCE_DATE_EPOCH="yesterday")
    result = build(src, out, tmp_path, env=env)
    assert_fails(result, "SOURCE_DATE_EPOCH='yesterday' is not a number", out, before)


def test_asks_for_a_version_when_the_source_is_not_a_git_checkout(tmp_path, out):
    src = make_checkout(tmp_path / "src")
    shutil.rmtree(src / ".git")
    before = snapshot(out)
    result = build(src, out, tmp_path)
    assert_fails(
        result, "is not a git checkout, so it has no commit to stamp; pass --version", out, before
    )


def test_unknown_ref_names_the_ref_and_shows_git(tmp_path, out):
    repo = make_checkout(tmp_path / "upstream")
    before = snapshot(out)
    result = invoke(
        "build",
        "--mosn-ref",
        "v0.0.0-nope",
        "--mosn-repo",
        repo.as_uri(),
        "--out",
        str(out),
        env=isolated_env(tmp_path),
    )
    stderr = assert_fails(result, "git clone of v0.0.0-nope", out, before)
    assert "v0.0.0-nope not found" in stderr
    assert (
        stderr.strip()
        .splitlines()[-1]
        .endswith("or build from the Go module proxy with --mosn-module VERSION")
    )
    # Nothing half-cloned stays in the cache, not even an empty folder.
    assert [p for p in (tmp_path / "cache").rglob("*")] == []
    # git's lines were shown once, as they came (stdout); stderr is the error line alone.
    assert result.stdout.count("v0.0.0-nope not found") == 1
    assert stderr.strip().count("\n") == 0


def test_ctrl_c_while_compiling_leaves_out_and_temp_clean(tmp_path, out):
    # A `go` that takes its time to build, so the interrupt lands mid-compile every time.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    slow_go = bin_dir / "go"
    slow_go.write_text(f'#!/bin/sh\n[ "$1" = build ] && sleep 60\nexec {shutil.which("go")} "$@"\n')
    slow_go.chmod(0o755)
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = isolated_env(
        tmp_path, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}", TMPDIR=str(temp)
    )
    src = make_checkout(tmp_path / "src")
    before = snapshot(out)
    command = [sys.executable, "-m", "invoke", "build", "--mosn-src", str(src), "--out", str(out)]
    # A shell without job control starts background jobs with SIGINT ignored, and Python
    # then never turns it into KeyboardInterrupt: give the build the terminal's default.
    with subprocess.Popen(
        command,
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    ) as running:
        assert running.stdout is not None
        for line in running.stdout:
            if line.startswith("==> compile"):
                break
        running.send_signal(signal.SIGINT)
        stdout, stderr = running.communicate(timeout=60)
    assert running.returncode == 130
    assert stderr.strip().splitlines()[-1].startswith("error: interrupted")
    assert "Traceback" not in stdout + stderr
    assert snapshot(out) == before
    assert list(temp.iterdir()) == [], "temporary build folders left behind"


def test_in_docker_without_a_reachable_engine(tmp_path, out):
    src = make_checkout(tmp_path / "src")
    before = snapshot(out)
    env = isolated_env(tmp_path, DOCKER_HOST=f"tcp://127.0.0.1:{free_port()}")
    result = build(src, out, tmp_path, "--in-docker", env=env)
    stderr = assert_fails(result, "Docker engine not reachable at tcp://127.0.0.1:", out, before)
    assert "drop --in-docker" in stderr.splitlines()[-1]


def test_password_in_the_repository_url_never_shows(tmp_path, out):
    secret = "s3cr3t-t0ken-value"
    repo = f"http://builder:{secret}@127.0.0.1:{free_port()}/mosn.git"
    before = snapshot(out)
    result = invoke(
        "build", "--mosn-ref", "v1.0.0", "--mosn-repo", repo, "--out", str(out),
        env=isolated_env(tmp_path),
    )  # fmt: skip
    assert_fails(result, "git clone of v1.0.0 from http://builder:***@127.0.0.1", out, before)
    assert secret not in result.stdout + result.stderr
    assert not [p for p in (tmp_path / "cache").rglob("*") if secret in str(p)]


@pytest.mark.parametrize(
    "spec, says",
    [
        ("github.com/other/mosn@v1.0.0", "names github.com/other/mosn, not mosn.io/mosn"),
        ("mosn.io/mosn@", "is not a version; pass e.g. v1.0.0, a branch or a commit"),
        ("v1 .0", "is not a version"),
    ],
)
def test_bad_module_spec_is_refused_before_any_download(tmp_path, out, spec, says):
    before = snapshot(out)
    result = invoke("build", "--mosn-module", spec, "--out", str(out), env=isolated_env(tmp_path))
    assert_fails(result, says, out, before)


def test_module_version_the_proxy_does_not_have_is_one_line(tmp_path, out):
    before = snapshot(out)
    env = isolated_env(tmp_path, GONOSUMDB="mosn.io")
    result = invoke("build", "--mosn-module", "v0.0.99", "--out", str(out), env=env)
    stderr = assert_fails(result, "the Go module proxy has no mosn.io/mosn@v0.0.99", out, before)
    assert "check the version and GOPROXY" in stderr


@pytest.mark.parametrize(
    "other, value", [("--mosn-module", "v1.0.0"), ("--mosn-ref", "v1.0.0")], ids=["module", "ref"]
)
def test_two_sources_on_the_command_line_are_refused_naming_both(tmp_path, out, other, value):
    src = make_checkout(tmp_path / "src")
    before = snapshot(out)
    result = build(src, out, tmp_path, other, value)
    assert_fails(
        result, f"--mosn-src {src} and {other} {value} both name the MOSN to build", out, before
    )
    assert "==>" not in result.stdout


def test_two_sources_from_the_environment_are_refused_naming_both(tmp_path, out):
    src = make_checkout(tmp_path / "src")
    env = isolated_env(tmp_path, MOSN_SRC=str(src), MOSN_PROXYV2_MOSN_MODULE="v1.0.0")
    before = snapshot(out)
    result = invoke("build", "--out", str(out), env=env)
    stderr = assert_fails(
        result, f"mosn_src ({src}) and mosn_module (v1.0.0) are both set", out, before
    )
    assert "MOSN_SRC" in stderr and "MOSN_PROXYV2_MOSN_MODULE" in stderr
