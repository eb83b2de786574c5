"""Packaging: the extras hold what ci/extras.py says, constraints.txt pins what pyproject.toml
names, and `pip install '.[s3]'` alone runs the S3-only path of the action, with one line
naming the extra for everything else."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest
import requests
from packaging.requirements import Requirement

from ci import extras, names
from tests.helpers import tools
from tests.helpers.action import project_files
from tests.helpers.net import free_port
from tests.helpers.publish import moto_server, parse_github_output, s3_client, s3_environ

ROOT = Path(__file__).resolve().parent.parent
SERVER_AND_DOCKER = ("flask", "gunicorn", "gevent", "docker")


def project() -> dict:
    return tools.module("tomllib").loads((ROOT / "pyproject.toml").read_text())["project"]


def distributions(requirements: list[str]) -> set[str]:
    return {Requirement(r).name.lower() for r in requirements} - {"mosn-proxyv2"}


def constraints() -> dict[str, str]:
    """{distribution: version} for the lines of constraints.txt without a marker."""
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#") and ";" not in line:
            name, version = line.split("==")
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    return pins


def test_the_extras_are_the_ones_ci_extras_checks():
    meta = project()
    assert distributions(meta["dependencies"]) == set(extras.CORE)
    optional = meta["optional-dependencies"]
    for extra, modules in extras.EXTRAS.items():
        assert distributions(optional[extra]) == set(modules), extra
    # [test] installs every extra, so that `invoke test` has everything.
    test = Requirement(next(r for r in optional["test"] if r.startswith("mosn-proxyv2")))
    assert set(extras.EXTRAS) | {"e2e"} <= test.extras


def test_constraints_pin_every_dependency_inside_its_range():
    meta = project()
    requirements = [
        Requirement(r)
        for r in [*meta["dependencies"], *sum(meta["optional-dependencies"].values(), [])]
        if not r.startswith("mosn-proxyv2")
    ]
    pins = constraints()
    for requirement in requirements:
        name = re.sub(r"[-_.]+", "-", requirement.name).lower()
        assert name in pins, f"{name} is not in constraints.txt"
        assert requirement.specifier.contains(pins[name]), (str(requirement), pins[name])


@pytest.mark.slow
def test_the_wheel_holds_the_templates_and_the_licence(tmp_path):
    pyproject = project()
    assert (
        (ROOT / pyproject["license-files"][0])
        .read_text()
        .startswith("\n                                 Apache License\n")
    )
    source = copy_project(tmp_path / "src")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q"]
        + ["-w", str(tmp_path / "wheel"), str(source)],
        check=True,
        timeout=300,
    )
    (wheel,) = (tmp_path / "wheel").glob("*.whl")
    inside = zipfile.ZipFile(wheel).namelist()
    assert "server/templates/browse.html" in inside
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in inside)


def copy_project(dest: Path) -> Path:
    """This checkout's files, so that pip's in-tree build/ folder is not made in the tree."""
    for rel in project_files():
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, dest / rel)
    return dest


@pytest.fixture(scope="module")
def s3_only(tmp_path_factory):
    """A fresh virtualenv with `pip install -c constraints.txt '.[s3]'` and nothing else."""
    base = tmp_path_factory.mktemp("s3-only")
    source = copy_project(base / "src")
    env_dir = base / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        + ["--constraint", str(source / "constraints.txt"), f"{source}[s3]"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert install.returncode == 0, install.stderr[-3000:]
    return python, source


def in_venv(
    python: Path, *argv: str, env: dict[str, str], cwd: Path
) -> subprocess.CompletedProcess:
    # The venv's programs first, as the action puts them; a clean cwd, so `ci` is the venv's.
    env = {**env, "PATH": f"{python.parent}:{os.environ['PATH']}"}
    return subprocess.run(
        [str(python), *argv], env=env, cwd=cwd, capture_output=True, text=True, timeout=600
    )


@pytest.mark.slow
def test_the_s3_extra_has_no_web_server_and_no_docker_sdk(s3_only):
    python, _ = s3_only
    listed = subprocess.run(
        [str(python), "-m", "pip", "list", "--format=json"], capture_output=True, text=True
    )
    installed = {p["name"].lower() for p in json.loads(listed.stdout)}
    assert {"boto3", "invoke", "pyyaml", "requests", "mosn-proxyv2"} <= installed
    assert not set(SERVER_AND_DOCKER) & installed


@pytest.mark.slow
def test_the_s3_only_action_path_runs_with_the_s3_extra(s3_only, mosn_checkout, tmp_path):
    """The action's steps (action.yml) for `store: s3` and no image, in the [s3]-only venv,
    against moto's S3 server: validate, server-state, `invoke build publish`, report,
    stop-server."""
    python, source = s3_only
    work = tmp_path / "work"
    work.mkdir()
    outputs = tmp_path / "github_output"
    with moto_server(tmp_path) as endpoint:
        s3_client(endpoint).create_bucket(Bucket="mp-s3-only")
        env = s3_environ(
            tmp_path,
            GITHUB_ACTION_PATH=str(source),
            GITHUB_OUTPUT=str(outputs),
            GITHUB_STEP_SUMMARY=str(tmp_path / "summary.md"),
            MOSN_PROXYV2_MOSN_SRC=str(mosn_checkout),
            MOSN_PROXYV2_TO="s3",
            MOSN_PROXYV2_BUCKET="mp-s3-only",
            MOSN_PROXYV2_ENDPOINT_URL=endpoint,
            MOSN_PROXYV2_REGION="us-east-1",
        )
        extras_step = in_venv(python, "-m", "ci.github", "extras", env=env, cwd=work)
        assert extras_step.stdout == "s3\n", extras_step.stderr
        for step in ("validate", "server-state"):
            result = in_venv(python, "-m", "ci.github", step, env=env, cwd=work)
            assert result.returncode == 0, (step, result.stdout, result.stderr)
        pipeline = in_venv(
            python, "-m", "invoke", "--search-root", str(source), "build", "publish",
            env=env, cwd=work,
        )  # fmt: skip
        assert pipeline.returncode == 0, pipeline.stdout[-2000:] + pipeline.stderr[-2000:]
        for step in ("report", "stop-server"):
            result = in_venv(python, "-m", "ci.github", step, env=env, cwd=work)
            assert result.returncode == 0, (step, result.stdout, result.stderr)

        # Every output, from the report step; every URL serves the bytes its sha256 names.
        got = parse_github_output(outputs)
        tarballs = json.loads(got["tarballs"])
        assert {t["file"] for t in tarballs} == {
            names.LINUX_TARBALL,
            names.CENTOS_TARBALL,
            names.MACOS_TARBALL,
        }
        for tarball in tarballs:
            assert tarball["url"].startswith(f"{endpoint}/mp-s3-only/mosn/")
            body = requests.get(tarball["url"], timeout=30).content
            assert hashlib.sha256(body).hexdigest() == tarball["sha256"]
    assert got["env-file"] == str(work / "dist" / names.ISTIO_ENV)
    assert got["image"] == "" and got["digest"] == ""
    assert got["mosn-version"].startswith("v")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("argv", "extra"),
    [
        (("serve", "--root", "srv"), "server"),
        (("image", "--dist", "{dist}", "--base", "b/b:1", "--image", "r.example/p"), "image"),
        (("build", "--in-docker", "--mosn-src", "{mosn}", "--out", "out"), "image"),
        (("publish", "--dist", "{dist}", "--server-url", "http://127.0.0.1:{port}"), "server"),
    ],
)
def test_a_task_whose_extra_is_missing_says_which_in_one_line(
    s3_only, built_dist, mosn_checkout, tmp_path, argv, extra
):
    python, source = s3_only
    # A copy of the dist: a publish that fails must not void the session's records.
    dist = shutil.copytree(built_dist.root, tmp_path / "dist")
    values = {"dist": dist, "mosn": mosn_checkout, "port": free_port()}
    argv = tuple(a.format(**values) for a in argv)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOSN_PROXYV2_")}
    result = in_venv(
        python, "-m", "invoke", "--search-root", str(source), *argv, env=env, cwd=tmp_path
    )
    assert result.returncode == 1, result.stdout + result.stderr
    line = result.stderr.strip()
    assert "\n" not in line and "Traceback" not in line, line
    assert line.startswith("error: ")
    assert f"needs the [{extra}] extra (" in line
    assert line.endswith(f"install it: pip install '{source}[{extra}]'")
