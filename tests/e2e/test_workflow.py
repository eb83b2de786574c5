"""The kind workflow as GitHub will read it (it runs there, not here)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.helpers import tools

REPO = Path(__file__).resolve().parents[2]
WORKFLOW = REPO / ".github" / "workflows" / "e2e.yml"


@pytest.fixture(scope="module")
def workflow() -> dict:
    return yaml.safe_load(WORKFLOW.read_text())


def _steps(workflow: dict) -> list[dict]:
    return workflow["jobs"]["kind"]["steps"]


def test_workflow_validates_against_the_github_schema():
    tools.which("check-jsonschema")
    result = subprocess.run(
        ["check-jsonschema", "--builtin-schema", "vendor.github-workflows", str(WORKFLOW)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_image_comes_from_this_repositorys_action_and_feeds_the_kind_job(workflow):
    steps = _steps(workflow)
    build = next(s for s in steps if s.get("uses") == "./")
    assert build["id"] == "image" and build["with"]["mode"] == "quick"
    run = next(s for s in steps if "invoke e2e --istio-version" in s.get("run", ""))
    assert run["env"]["MOSN_PROXYV2_IMAGE"] == "${{ steps.image.outputs.image }}"
    assert steps.index(build) < steps.index(run)
    live = next(s for s in steps if "test_live_kind.py" in s.get("run", ""))
    assert live["env"]["MOSN_PROXYV2_REQUIRE_CLUSTER"] == "1"


def test_a_matrix_of_istio_and_mosn_on_ubuntu_24_04(workflow):
    job = workflow["jobs"]["kind"]
    assert job["runs-on"] == "ubuntu-24.04"
    assert workflow["jobs"]["summary"]["runs-on"] == "ubuntu-24.04"
    matrix = job["strategy"]["matrix"]
    assert job["strategy"]["fail-fast"] is False
    assert matrix["istio"] == ["1.10.6"]
    assert matrix["mosn"][0] == "v1.0.0" and len(matrix["mosn"]) == 2
    assert re.fullmatch(r"v1\.6\.\d+", matrix["mosn"][1])
    # The two lines to change when a newer MOSN is proven: the mesh check's and the kind job's.
    assert workflow["jobs"]["mesh"]["strategy"]["matrix"] == matrix
    assert WORKFLOW.read_text().count(f"mosn: [v1.0.0, {matrix['mosn'][1]}]") == 2


def test_the_mesh_check_runs_first_on_what_the_action_built_before_any_publish(workflow):
    mesh = workflow["jobs"]["mesh"]
    assert workflow["jobs"]["kind"]["needs"] == "mesh"
    assert mesh["runs-on"] == "ubuntu-24.04" and mesh["timeout-minutes"] <= 30
    steps = mesh["steps"]
    build = next(s for s in steps if s.get("uses") == "./")
    assert build["with"]["mesh-check"] == "true"
    # Each cell's MOSN built as the kind job builds it.
    kind_build = next(s for s in _steps(workflow) if s.get("uses") == "./")
    for built_as in ("mosn-module", "in-docker", "fix-deps", "istio-version", "platforms"):
        assert build["with"][built_as] == kind_build["with"][built_as]
    assert "image" not in build["with"] and "push" not in build["with"]
    pull = next(s for s in steps if "docker pull" in s.get("run", ""))
    assert steps.index(pull) < steps.index(build)
    assert "istio/pilot:$ISTIO_VERSION" in pull["run"]
    upload = steps[-1]
    assert upload["if"] == "always()" and upload["with"]["path"] == "mesh-artifacts/"
    assert mesh["env"]["MOSN_PROXYV2_ARTIFACTS"].endswith("/mesh-artifacts")


def test_mosn_is_built_from_the_module_proxy_in_mosns_own_golang_image(workflow):
    build = next(s for s in _steps(workflow) if s.get("uses") == "./")
    assert build["with"]["mosn-module"] == "${{ matrix.mosn }}"
    assert build["with"]["in-docker"] == "${{ matrix.build == 'faithful' }}"
    # No go-image: the build takes the one the checkout's Makefile names (golang:1.14.13 for
    # v1.0.0), not a Go picked here. No remote setup-go either: the fix-deps cell uses the
    # runner's own Go, whatever is current there.
    assert "go-image" not in build["with"]
    assert not any("setup-go" in s.get("uses", "") for s in _steps(workflow))


def test_v1_0_0_with_fix_deps_is_a_cell_of_its_own_beside_the_faithful_one(workflow):
    job = workflow["jobs"]["kind"]
    matrix = job["strategy"]["matrix"]
    assert matrix["build"] == ["faithful"]
    # An include whose `build` differs from every combination's is a cell of its own
    # (GitHub's matrix rules), so the faithful v1.0.0 cell stays as it is.
    assert matrix["include"] == [{"istio": "1.10.6", "mosn": "v1.0.0", "build": "fix-deps"}]
    build = next(s for s in _steps(workflow) if s.get("uses") == "./")
    assert build["with"]["fix-deps"] == "${{ matrix.build == 'fix-deps' }}"
    # Each cell's artifacts, image and summary row are its own.
    assert "${{ matrix.build }}" in job["env"]["CELL"]
    assert "${{ matrix.build }}" in build["with"]["image"]


def _login_step(workflow) -> dict:
    return next(s for s in _steps(workflow) if "docker login" in s.get("run", ""))


def _run_login(tmp_path, workflow, **env) -> tuple[subprocess.CompletedProcess, Path]:
    """The login step's script, with a stand-in docker that records argv and stdin."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    calls = tmp_path / "docker-calls.txt"
    docker = bin_dir / "docker"
    docker.write_text(f'#!/bin/sh\necho "argv: $*" >>{calls}\necho "stdin: $(cat)" >>{calls}\n')
    docker.chmod(0o755)
    result = subprocess.run(
        ["bash", "-e", "-c", _login_step(workflow)["run"]],
        env={"PATH": f"{bin_dir}:/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=30,
    )
    return result, calls


def test_docker_login_runs_only_with_both_secrets_and_never_puts_the_token_in_argv(
    workflow, tmp_path
):
    step = _login_step(workflow)
    assert step["env"] == {
        "DOCKERHUB_USERNAME": "${{ secrets.DOCKERHUB_USERNAME }}",
        "DOCKERHUB_TOKEN": "${{ secrets.DOCKERHUB_TOKEN }}",
    }
    steps = _steps(workflow)
    build = next(s for s in steps if s.get("uses") == "./")
    assert steps.index(step) < steps.index(build)  # the base image pull is logged in too

    for env in ({}, {"DOCKERHUB_USERNAME": "mp"}, {"DOCKERHUB_TOKEN": "t"}):
        result, calls = _run_login(tmp_path, workflow, **env)
        assert result.returncode == 0, result.stderr
        assert "pulling from Docker Hub anonymously" in result.stdout
        assert not calls.exists()

    result, calls = _run_login(
        tmp_path, workflow, DOCKERHUB_USERNAME="mp", DOCKERHUB_TOKEN="s3cr3t-token"
    )
    assert result.returncode == 0, result.stderr
    recorded = calls.read_text().splitlines()
    assert recorded[0] == "argv: login --username mp --password-stdin docker.io"
    assert recorded[1] == "stdin: s3cr3t-token"
    assert "s3cr3t-token" not in result.stdout + result.stderr


def test_every_cell_uploads_a_named_artifact_and_the_summary_reads_them_all(workflow):
    steps = _steps(workflow)
    cell = next(s for s in steps if "cell.json" in s.get("run", ""))
    build = next(s for s in steps if s.get("uses") == "./")
    assert steps.index(cell) < steps.index(build)
    upload = next(s for s in steps if s.get("uses", "").startswith("actions/upload-artifact@"))
    assert upload["with"]["name"] == "kind-e2e-${{ env.CELL }}-${{ github.run_attempt }}"
    summary = workflow["jobs"]["summary"]
    assert summary["needs"] == "kind" and summary["if"] == "always()"
    download = next(
        s for s in summary["steps"] if s.get("uses", "").startswith("actions/download-artifact@")
    )
    assert download["with"]["pattern"] == "kind-e2e-*-${{ github.run_attempt }}"
    table = next(s for s in summary["steps"] if "--summarize" in s.get("run", ""))
    assert f"--summarize {download['with']['path']}" in table["run"]
    for job in workflow["jobs"].values():
        for step in job["steps"]:
            uses = step.get("uses")
            if uses and not uses.startswith("./"):
                assert re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", uses), uses


def test_report_upload_and_cleanup_run_even_after_a_failure(workflow):
    steps = _steps(workflow)
    upload = next(s for s in steps if s.get("uses", "").startswith("actions/upload-artifact@"))
    cleanup = steps[-1]
    assert upload["if"] == "always()" and cleanup["if"] == "always()"
    assert "delete cluster" in cleanup["run"]
    assert upload["with"]["path"].rstrip("/") == "e2e-artifacts"


def test_the_action_step_uses_only_inputs_the_action_declares(workflow):
    declared = yaml.safe_load((REPO / "action.yml").read_text())
    build = next(s for s in _steps(workflow) if s.get("uses") == "./")
    assert set(build["with"]) <= set(declared["inputs"])
    assert "image" in declared["outputs"]
