"""zizmor and actionlint on action.yml and every workflow: the security and correctness rules
(pinned actions, no expressions pasted into scripts, least permissions, shell and expression
errors) are theirs, not this project's own tests'."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.helpers import tools

ROOT = Path(__file__).resolve().parent.parent.parent
ACTION = ROOT / "action.yml"
WORKFLOWS = ROOT / ".github" / "workflows"
ZIZMOR_CONFIG = ROOT / ".github" / "zizmor.yml"


def zizmor(*paths: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [tools.which("zizmor"), "--offline", "--no-progress", "--config", str(ZIZMOR_CONFIG)]
        + [str(p) for p in paths],
        capture_output=True,
        text=True,
        timeout=120,
    )


def actionlint(cwd: Path) -> subprocess.CompletedProcess:
    # Run in the repository: actionlint finds .github/workflows and reads `uses: ./` there.
    return subprocess.run(
        [tools.which("actionlint"), "-no-color"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_zizmor_finds_nothing_in_the_action_and_the_workflows():
    result = zizmor(ACTION, WORKFLOWS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_zizmor_fails_an_unpinned_action_and_an_injected_expression(tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text(
        "name: bad\non: issues\npermissions: {}\njobs:\n  j:\n    runs-on: ubuntu-24.04\n"
        "    steps:\n      - uses: actions/checkout@v7\n        with: {persist-credentials: false}\n"
        '      - run: echo "${{ github.event.issue.title }}"\n'
    )
    result = zizmor(bad)
    assert result.returncode != 0
    assert "unpinned-uses" in result.stdout and "template-injection" in result.stdout


def test_actionlint_finds_nothing_in_the_workflows():
    result = actionlint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_fails_an_input_the_action_does_not_declare(tmp_path):
    # Through `uses: ./` actionlint reads action.yml: a misspelt input is an error.
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)  # actionlint's project
    (tmp_path / ".github" / "workflows").mkdir(parents=True)
    (tmp_path / "action.yml").write_text(ACTION.read_text())
    (tmp_path / ".github" / "workflows" / "w.yml").write_text(
        "on: push\njobs:\n  j:\n    runs-on: ubuntu-24.04\n    steps:\n"
        "      - uses: ./\n        with:\n          mosn-srcc: mosn\n"
    )
    result = actionlint(tmp_path)
    assert result.returncode != 0
    assert 'input "mosn-srcc" is not defined' in result.stdout
