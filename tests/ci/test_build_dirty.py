"""A MOSN checkout with uncommitted changes is not its commit: stamped VERSION(<hash>-dirty),
said in the build log and in publish's refusal to replace what it published before."""

from __future__ import annotations

import json
import subprocess

import pytest

from ci import names
from tests.helpers.artifact_server import running_server
from tests.helpers.build import invoke_build as build
from tests.helpers.build import isolated_env
from tests.helpers.mosn import git, make_checkout
from tests.helpers.publish import invoke as invoke_run

EXTRA = "cmd/mosn/main/extra.go"
TOKEN = "dirty-test-token"


def extra_source(word: str) -> str:
    # A string the linker keeps, so another word gives other bytes.
    return f'package main\n\nimport "os"\n\nfunc init() {{\n\tif len(os.Args) > 9 {{\n\t\tprintln("{word}")\n\t}}\n}}\n'


def built(out) -> tuple[dict, str]:
    manifest = json.loads((out / names.MANIFEST).read_text())
    subprocess.run(["tar", "xzf", out / names.LINUX_TARBALL, "-C", out], check=True)
    printed = subprocess.run(
        [out / names.BINARY_PATH_IN_TARBALL, "--version"], capture_output=True, text=True
    ).stdout
    return manifest, printed


def test_uncommitted_changes_are_stamped_dirty_and_said_in_the_log(tmp_path):
    src = make_checkout(tmp_path / "src")
    short = git(src, "log", "-1", "--format=%h")
    (src / EXTRA).write_text(extra_source("one"))  # untracked: compiled all the same
    out = tmp_path / "dist"
    result = build(src, out, tmp_path, "--platforms", "linux/amd64")
    assert result.returncode == 0, result.stderr
    stamp = f"v1.0.0({short}-dirty)"
    assert (
        f"warning: {src} has uncommitted changes (1: {EXTRA}): stamped {stamp}, not the commit"
        f" {short}"
    ) in result.stderr
    manifest, printed = built(out)
    assert (manifest["mosn_version"], manifest["dirty"]) == (stamp, True)
    assert printed == f"mosn version {stamp}\n"


def test_a_committed_tree_with_the_dist_inside_it_is_clean(tmp_path):
    src = make_checkout(tmp_path / "src")
    short = git(src, "log", "-1", "--format=%h")
    out = src / "dist"
    for _ in range(2):  # the second build sees the first one's dist in the tree
        result = build(src, out, tmp_path, "--platforms", "linux/amd64")
        assert result.returncode == 0, result.stderr
        assert "uncommitted" not in result.stderr
    manifest, printed = built(out)
    assert (manifest["mosn_version"], manifest["dirty"]) == (f"v1.0.0({short})", False)
    assert printed == f"mosn version v1.0.0({short})\n"


@pytest.mark.slow
def test_publishing_a_changed_dirty_tree_again_names_the_uncommitted_changes(tmp_path):
    src = make_checkout(tmp_path / "src")
    (src / "VERSION").write_text("v1.0.0\n\n")  # a tracked file edited
    out = tmp_path / "dist"
    with running_server(tmp_path / "root", tokens=[TOKEN]) as url:
        env = isolated_env(tmp_path, ARTIFACT_TOKEN=TOKEN)
        for word in ("one", "two"):
            (src / EXTRA).write_text(extra_source(word))
            result = build(src, out, tmp_path, "--platforms", "linux/amd64", env=env)
            assert result.returncode == 0, result.stderr
            run = invoke_run("publish", "--dist", str(out), "--server-url", url, env=env)
    assert run.code == 1
    last = run.stderr.strip().splitlines()[-1]
    assert "is already published with different bytes (mosn.tar.gz" in last
    assert "built from a checkout with uncommitted changes: commit them and rebuild" in last
