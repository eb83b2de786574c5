"""Run the composite action for real with act in host mode, offline.

act copies the repository it runs in into its own workspace (it stands in for
actions/checkout of the same repository), so each run gets a throwaway git repository holding
this checkout's files plus one test workflow, and `uses: ./` is the action under test.
"""

from __future__ import annotations

import copy
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import yaml

from tests.helpers import tools
from tests.helpers.mosn import git

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
WORKFLOW = ".github/workflows/act-test.yml"
SELFTEST = REPO_ROOT / ".github" / "workflows" / "action-selftest.yml"
# The SHA action-selftest.yml pins; act recognises a checkout of the running repository and
# copies the local files instead of fetching anything.
CHECKOUT = "actions/checkout@3d3c42e5aac5ba805825da76410c181273ba90b1"  # v7.0.1

# Host mode (no job container), nothing fetched or pulled, no cache server on the network.
ACT_FLAGS = (
    "-P",
    "ubuntu-latest=-self-hosted",
    "-P",
    "ubuntu-24.04=-self-hosted",
    "--action-offline-mode",
    "--pull=false",
    "--no-cache-server",
)

# The stand-in MOSN as a git repository under the workspace, the way a workflow would check
# MOSN out next to its own files (the same step action-selftest.yml runs).
MAKE_MOSN_CHECKOUT = "bash tests/fixtures/mosn-checkout.sh work/mosn\n"


@dataclass
class ActRun:
    returncode: int
    log: str

    def summaries(self) -> list[str]:
        """The job summaries the steps wrote: act reads each step's GITHUB_STEP_SUMMARY file
        after the step and prints it as `Summary - <text>`, continued on unprefixed lines."""
        found: list[list[str]] = []
        current: list[str] | None = None
        for line in self.log.splitlines():
            if line.startswith("["):
                current = None
                head, sep, text = line.partition("\u2699  Summary - ")
                if sep:
                    current = [text]
                    found.append(current)
            elif current is not None:
                current.append(line)
        return ["\n".join(lines).strip() + "\n" for lines in found]


def project_files() -> list[Path]:
    """This checkout's files as git sees them, including changes not yet committed."""
    out = subprocess.run(
        [
            "git",
            "-C",
            str(REPO_ROOT),
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
        ],
        check=True,
        capture_output=True,
    ).stdout
    return [Path(p) for p in out.decode().split("\0") if p and (REPO_ROOT / p).is_file()]


def make_repo(dest: Path, workflow: dict, edits: dict[str, tuple[str, str]] | None = None) -> Path:
    """A git repository with this project's files and `workflow` as the only one act runs.

    `edits` maps a file to (old, new) text to replace in its copy, e.g. a default in invoke.yaml.
    """
    for rel in project_files():
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / rel, target)
    for rel, (old, new) in (edits or {}).items():
        text = (dest / rel).read_text()
        assert old in text, f"{rel} has no {old!r} to replace"
        (dest / rel).write_text(text.replace(old, new))
    path = dest / WORKFLOW
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(workflow, sort_keys=False))
    git(dest, "init", "-q", "-b", "main")
    git(dest, "add", "-A")
    git(dest, "commit", "-q", "-m", "act test")
    return dest


def action_workflow(with_: dict, after: list[dict] | None = None) -> dict:
    """A one-job workflow: check out, make the MOSN checkout, run the action as step `mp`."""
    return {
        "name": "act-test",
        "on": "push",
        "permissions": {},
        "jobs": {
            "action": {
                "runs-on": "ubuntu-latest",
                "steps": [
                    {"uses": CHECKOUT},
                    {"name": "Stand-in MOSN checkout", "run": MAKE_MOSN_CHECKOUT},
                    {"id": "mp", "uses": "./", "with": with_},
                    *(after or []),
                ],
            }
        },
    }


def selftest_job(
    job: str, env: dict[str, str], replace: dict[str, dict | None] | None = None
) -> dict:
    """One job of action-selftest.yml as a one-job workflow act can run on this machine.

    Its `services:` are dropped (the test starts local ones and points the job's env at
    them), remote actions other than the checkout are dropped (setup-python: this machine's
    python3 serves), and the steps whose id is in `replace` are swapped for the step given
    (None drops it). Everything else, the action step and the assertion steps above all,
    runs as GitHub runs it.
    """
    doc = yaml.safe_load(SELFTEST.read_text())
    spec = copy.deepcopy(doc["jobs"][job])
    spec.pop("services", None)
    spec["env"] = {**doc.get("env", {}), **spec.get("env", {}), **env}
    replace = replace or {}
    steps = []
    for step in spec["steps"]:
        uses = step.get("uses", "")
        if step.get("id") in replace:
            if replace[step["id"]] is not None:
                steps.append(replace[step["id"]])
        elif uses and not uses.startswith("./") and uses != CHECKOUT:
            continue
        else:
            steps.append(step)
    spec["steps"] = steps
    return {"name": "act-selftest", "on": "push", "permissions": {}, "jobs": {job: spec}}


def run_act(
    repo: Path,
    cache: Path,
    variables: dict[str, str],
    timeout: float = 600,
    workflow: str = WORKFLOW,
    event: Path | None = None,
) -> ActRun:
    """Run the push event of `workflow`; `variables` become the `vars` context, `event` is the
    event's JSON payload (e.g. the ref of a pushed tag).

    Values go in as `vars`, not `secrets`: act hides secrets itself, so only values the action
    masks (::add-mask::) are hidden, which is what a test of the action's masking needs.
    """
    cmd = [
        tools.which("act"),
        "push",
        "-W",
        workflow,
        *ACT_FLAGS,
        *(["--eventpath", str(event)] if event else []),
        "--action-cache-path",
        str(cache),
        *(f"--var={key}={value}" for key, value in variables.items()),
    ]
    proc = subprocess.run(
        cmd,
        cwd=repo,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        timeout=timeout,
    )
    return ActRun(proc.returncode, proc.stdout)
