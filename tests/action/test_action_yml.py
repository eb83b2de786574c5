"""action.yml and the workflows: GitHub's schemas and the input wiring (the security rules,
pinning, injection, permissions, are zizmor's: test_workflow_lint.py)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml

from ci import config
from ci import github as action

ROOT = Path(__file__).resolve().parent.parent.parent
ACTION = ROOT / "action.yml"
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
# Inputs that configure the action itself rather than a pipeline setting.
ACTION_ONLY_INPUTS = {"working-directory", "system-site-packages", "keep-server"}


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def action_steps() -> dict[str, dict]:
    return {step["id"]: step for step in load(ACTION)["runs"]["steps"]}


def check_jsonschema(schema: str, *files: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["check-jsonschema", "--builtin-schema", schema, *map(str, files)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_action_yml_passes_githubs_action_schema():
    result = check_jsonschema("vendor.github-actions", ACTION)
    assert result.returncode == 0, result.stdout + result.stderr


def test_workflows_pass_githubs_workflow_schema():
    names = {w.name for w in WORKFLOWS}
    assert {"ci.yml", "action-selftest.yml", "release.yml"} <= names
    result = check_jsonschema("vendor.github-workflows", *WORKFLOWS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_schema_check_rejects_a_broken_action(tmp_path):
    # The check above is only worth something if it fails on a malformed action.
    broken = tmp_path / "action.yml"
    broken.write_text("name: x\nruns:\n  using: composite\n  steps:\n    - run: echo\n")
    assert check_jsonschema("vendor.github-actions", broken).returncode != 0


def test_action_inputs_and_the_registry_agree():
    inputs = set(load(ACTION)["inputs"])
    registry = {o.action: name for name, o in config.OPTIONS.items() if o.action}
    assert sorted(set(registry) - inputs) == [], "registry inputs missing from action.yml"
    assert sorted(inputs - set(registry) - set(ACTION_ONLY_INPUTS)) == [], (
        "action.yml inputs that are neither a registry setting nor listed as the action's own"
    )
    assert set(ACTION_ONLY_INPUTS) <= inputs and not set(ACTION_ONLY_INPUTS) & set(registry)
    # Each reaches its setting through the variable the settings read, and nothing else does.
    env = action_steps()["pipeline"]["env"]
    wired = {var: value for var, value in env.items() if var.startswith(config.ENV_PREFIX)}
    assert wired == {
        config.env_name(setting): "${{ inputs." + name + " }}" for name, setting in registry.items()
    }
    assert registry == action.INPUT_SETTINGS


def test_every_step_passes_an_input_as_its_settings_variable():
    expected = {config.env_name(setting): name for name, setting in action.INPUT_SETTINGS.items()}
    for step_id, step in action_steps().items():
        for var, value in step.get("env", {}).items():
            if var.startswith(config.ENV_PREFIX):
                assert value == "${{ inputs." + expected[var] + " }}", f"{step_id}: {var}"


def test_every_input_is_documented():
    for name, spec in load(ACTION)["inputs"].items():
        assert spec.get("description", "").strip(), f"input {name} has no description"
        assert name == name.lower() and "_" not in name, f"input {name} is not kebab-case"


def test_input_defaults_agree_with_invoke_yaml():
    inputs = load(ACTION)["inputs"]
    settings = config.load(load(ROOT / "invoke.yaml")[config.CONFIG_SECTION], environ={})
    for name, setting in action.INPUT_SETTINGS.items():
        default = str(inputs[name].get("default", ""))
        if default:
            value = getattr(settings, setting)
            value = str(value).lower() if isinstance(value, bool) else value
            assert default == value, f"input {name} defaults to {default}, invoke.yaml to {value}"


def test_every_output_comes_from_the_report_step():
    outputs = load(ACTION)["outputs"]
    assert set(outputs) == {"mosn-version", "tarballs", "env-file", "image", "digest"}
    assert "report" in action_steps()
    for name, spec in outputs.items():
        assert spec["value"] == "${{ steps.report.outputs." + name + " }}", name
        assert spec["description"].strip()


def test_action_is_composite_with_only_run_steps():
    runs = load(ACTION)["runs"]
    assert runs["using"] == "composite"
    assert all("run" in step and "uses" not in step for step in runs["steps"])


def test_secrets_are_masked_before_anything_prints():
    setup = load(ACTION)["runs"]["steps"][0]
    assert setup["id"] == "setup"
    assert {"${{ inputs.server-token }}", "${{ inputs.registry-password }}"} <= set(
        setup["env"].values()
    )
    printing = [
        line.strip()
        for line in setup["run"].splitlines()
        if re.search(r"\becho\b|python3 ", line) and "add-mask" not in line
    ]
    first_print = setup["run"].index(printing[0])
    assert setup["run"].index("::add-mask::") < first_print
