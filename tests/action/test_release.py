"""release.yml run by act: a vX.Y.Z tag moves vX in the repository it was pushed to."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from tests.helpers.action import REPO_ROOT, run_act
from tests.helpers.mosn import git

pytestmark = pytest.mark.slow
WORKFLOW = ".github/workflows/release.yml"


def release(repo, origin, tmp_path, tag: str) -> str:
    """Commit, push `tag` to origin and run release.yml for that push; return the commit."""
    (repo / "CHANGES").write_text(f"{tag}\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", tag)
    git(repo, "tag", tag)
    git(repo, "push", "-q", "origin", "main", tag)
    event = tmp_path / f"{tag}.json"
    event.write_text(json.dumps({"ref": f"refs/tags/{tag}"}))
    run = run_act(repo, tmp_path / "act", {}, workflow=WORKFLOW, event=event)
    assert run.returncode == 0, run.log[-3000:]
    return git(repo, "rev-parse", "HEAD")


def tag_target(origin, tag: str) -> str:
    return subprocess.run(
        ["git", "-C", str(origin), "rev-parse", f"refs/tags/{tag}^{{commit}}"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def test_a_release_tag_moves_the_major_tag(tmp_path):
    origin, repo = tmp_path / "origin.git", tmp_path / "repo"
    subprocess.run(["git", "init", "-q", "--bare", str(origin)], check=True)
    (repo / ".github" / "workflows").mkdir(parents=True)
    shutil.copy2(REPO_ROOT / WORKFLOW, repo / WORKFLOW)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "remote", "add", "origin", str(origin))

    first = release(repo, origin, tmp_path, "v1.2.3")
    assert tag_target(origin, "v1") == first
    second = release(repo, origin, tmp_path, "v1.3.0")
    assert second != first
    assert tag_target(origin, "v1") == second  # moved, not left behind
    assert tag_target(origin, "v1.2.3") == first  # the release tags themselves untouched
