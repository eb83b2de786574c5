"""The kind workflow as GitHub will read it (it runs there, not here)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
WORKFLOW = REPO / ".github" / "workflows" / "e2e.yml"


@pytest.fixture(scope="module")
def workflow() -> dict:
    return yaml.safe_load(WORKFLOW.read_text())


def _steps(workflow: dict) -> list[dict]:
    return workflow["jobs"]["kind"]["steps"]


def test_workflow_validates_against_the_github_schema():
    if not shutil.which("check-jsonschema"):
        pytest.skip("check-jsonschema not installed (pip install check-jsonschema)")
    result = subprocess.run(
        ["check-jsonschema", "--builtin-schema", "vendor.github-workflows", str(WORKFLOW)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_remote_actions_are_pinned_to_commits_and_permissions_are_read_only(workflow):
    assert workflow["permissions"] == {"contents": "read"}
    for step in _steps(workflow):
        uses = step.get("uses")
        if uses and not uses.startswith("./"):
            assert re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", uses), uses


def test_the_image_comes_from_this_repositorys_action_and_feeds_the_kind_job(workflow):
    steps = _steps(workflow)
    build = next(s for s in steps if s.get("uses") == "./")
    assert build["id"] == "image" and build["with"]["mode"] == "quick"
    run = next(s for s in steps if "invoke e2e --istio-version" in s.get("run", ""))
    assert run["env"]["MOSN_PROXYV2_IMAGE"] == "${{ steps.image.outputs.image }}"
    assert steps.index(build) < steps.index(run)
    live = next(s for s in steps if "test_live_kind.py" in s.get("run", ""))
    assert live["env"]["MOSN_PROXYV2_REQUIRE_CLUSTER"] == "1"


def test_report_upload_and_cleanup_run_even_after_a_failure(workflow):
    steps = _steps(workflow)
    upload = next(s for s in steps if s.get("uses", "").startswith("actions/upload-artifact@"))
    cleanup = steps[-1]
    assert upload["if"] == "always()" and cleanup["if"] == "always()"
    assert "delete cluster" in cleanup["run"]
    assert upload["with"]["path"].rstrip("/") == "e2e-artifacts"


def test_the_action_step_uses_only_inputs_the_action_declares(workflow):
    action = REPO / "action.yml"
    if not action.exists():
        pytest.skip("action.yml is not on this branch yet (written in parallel)")
    declared = yaml.safe_load(action.read_text())
    build = next(s for s in _steps(workflow) if s.get("uses") == "./")
    assert set(build["with"]) <= set(declared["inputs"])
    assert "image" in declared["outputs"]
