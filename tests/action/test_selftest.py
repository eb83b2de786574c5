"""action-selftest.yml's jobs run by act: one per input variant, each with its own assertions.

The jobs' YAML is GitHub's, step for step (tests/helpers/action.py selftest_job): only the
services change. GitHub gets a registry:2 service with htpasswd auth and MinIO; here the
same job talks to a real registry with htpasswd auth on 127.0.0.1 and to moto's S3 server,
because no image can be pulled on this machine. The steps that set those services up on
GitHub (writing the registry's user, starting MinIO) are what act cannot run; they are
replaced by steps giving the job the local services' credentials, and checked only by
reading the YAML (test_the_service_setup_steps_act_cannot_run).
"""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
import yaml

from tests.action.test_act import remove_images, stop_server
from tests.helpers.action import SELFTEST, make_repo, run_act, selftest_job
from tests.helpers.net import free_port

pytestmark = pytest.mark.slow


@pytest.fixture
def server(tmp_path):
    """A free loopback port for the bundled server, its storage outside act's workspace."""
    root = tmp_path / "artifacts"
    env = {"SERVER_URL": f"http://127.0.0.1:{free_port()}", "MOSN_PROXYV2_SERVER_ROOT": str(root)}
    yield env
    stop_server(root)


def _act(tmp_path, workflow, variables=None):
    run = run_act(make_repo(tmp_path / "repo", workflow), tmp_path / "act", variables or {})
    (tmp_path / "act.log").write_text(run.log)
    return run


def _passed(run, job_step: str) -> None:
    assert run.returncode == 0, run.log[-4000:]
    assert f"Success - Main {job_step}" in run.log, run.log[-4000:]


def test_selftest_store_server(tmp_path, server):
    run = _act(tmp_path, selftest_job("store-server", server))
    _passed(run, "Every published URL serves the bytes its sha256 names")


def test_selftest_store_s3(tmp_path):
    from tests.helpers.publish import FAKE_ACCESS_KEY, FAKE_SECRET_KEY, moto_server

    with moto_server(tmp_path) as endpoint:
        env = {
            "S3_ENDPOINT": endpoint,
            "AWS_ACCESS_KEY_ID": FAKE_ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": FAKE_SECRET_KEY,
            "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-credentials"),
        }
        run = _act(tmp_path, selftest_job("store-s3", env, replace={"minio": None}))
    _passed(run, "Every presigned URL serves the bytes its sha256 names")


def test_selftest_push_true_to_a_registry_with_auth(
    tmp_path, server, auth_registry, busybox_base, docker_client
):
    # The base only in the registry, as on a fresh runner: the action must pull it (logged in).
    base = f"{auth_registry.address}/mp-selftest/base:busybox"
    docker_client.images.get(busybox_base).tag(base)
    auth = {"username": auth_registry.username, "password": auth_registry.password}
    docker_client.images.push(base, auth_config=auth)
    docker_client.images.remove(base)
    env = {
        **server,
        "REGISTRY": auth_registry.address,
        "REGISTRY_USER": auth_registry.username,
        "BASE_IMAGE": base,
        "DOCKER_CONFIG": str(tmp_path / "docker-config"),
    }
    # GitHub's step writes a fresh user into the service; here the registry has one already.
    credentials = {
        "id": "registry",
        "env": {"PASSWORD": "${{ vars.REGISTRY_PASSWORD }}"},
        "run": 'echo "::add-mask::$PASSWORD"\necho "password=$PASSWORD" >>"$GITHUB_OUTPUT"\n',
    }
    login = {
        "name": "Log in for the base image pull",
        "env": {"PASSWORD": "${{ vars.REGISTRY_PASSWORD }}"},
        "run": 'echo "$PASSWORD" | docker login -u "$REGISTRY_USER" --password-stdin "$REGISTRY"',
    }
    workflow = selftest_job("push-true", env, replace={"registry": credentials})
    steps = workflow["jobs"]["push-true"]["steps"]
    steps.insert(steps.index(credentials) + 1, login)
    try:
        run = _act(tmp_path, workflow, {"REGISTRY_PASSWORD": auth_registry.password})
        _passed(run, "The pushed digest is the registry's and runs the MOSN that was built")
        assert auth_registry.password not in run.log
    finally:
        remove_images(docker_client, auth_registry.address)


def test_selftest_push_false_and_the_server_is_stopped(
    tmp_path, server, busybox_base, docker_client
):
    try:
        run = _act(tmp_path, selftest_job("push-false", {**server, "BASE_IMAGE": busybox_base}))
        _passed(run, "Built and tagged, not pushed; the bundled server it started is stopped")
        assert "stopped the artifact server this step started" in run.log
    finally:
        remove_images(docker_client, "localhost/mosn-proxyv2")


def test_selftest_platforms_with_linux_arm64(tmp_path, server):
    run = _act(tmp_path, selftest_job("platforms", server))
    _passed(run, "An arm64 tarball holding an arm64 Linux binary")
    assert "mosn-linux-arm64.tar.gz: " in run.log and ", aarch64 ELF" in run.log


def test_selftest_missing_required_input_fails_with_its_annotation(tmp_path):
    run = _act(tmp_path, selftest_job("missing-input", {}))
    _passed(run, "The action failed before building anything")
    assert "::error title=mosn-proxyv2 input::store: s3 needs s3-bucket" in run.log


def test_selftest_working_directory(tmp_path, server):
    run = _act(tmp_path, selftest_job("working-directory", server))
    _passed(run, "Relative paths and dist/ are read from working-directory")


def test_the_assertions_can_fail(tmp_path, server):
    """A wrong expectation in an assertion step fails the job: the checks are real."""
    workflow = selftest_job("working-directory", server)
    step = workflow["jobs"]["working-directory"]["steps"][-1]
    step["run"] = step["run"].replace("nested/project/dist/mosn.tar.gz", "dist/mosn.tar.gz")
    run = _act(tmp_path, workflow)
    assert run.returncode != 0
    assert "Failure - Main Relative paths and dist/ are read from working-directory" in run.log


def test_every_job_runs_the_action_then_an_assertion_and_services_are_pinned():
    doc = yaml.safe_load(SELFTEST.read_text())
    assert set(doc["jobs"]) == {
        "store-server",
        "store-s3",
        "push-true",
        "push-false",
        "platforms",
        "missing-input",
        "working-directory",
    }
    for name, job in doc["jobs"].items():
        steps = job["steps"]
        action = next(i for i, s in enumerate(steps) if s.get("uses") == "./")
        assert steps[action]["id"] == "mp", name
        assert "run" in steps[action + 1] and steps[action + 1].get("name"), name
        for service in (job.get("services") or {}).values():
            assert re.search(r"@sha256:[0-9a-f]{64}$", service["image"]), service["image"]
    text = SELFTEST.read_text()
    for image in re.findall(r"docker run [^\n]*\n(?:[^\n]*\\\n)*\s*([\w./:-]+@sha256:\S+)", text):
        assert re.search(r"@sha256:[0-9a-f]{64}$", image), image
    assert "quay.io/minio/minio:RELEASE.2025-09-07T16-13-09Z@sha256:14cea493" in text
    missing = doc["jobs"]["missing-input"]["steps"]
    mp = next(s for s in missing if s.get("id") == "mp")
    assert mp["continue-on-error"] is True and "s3-bucket" not in mp["with"]


def test_the_service_setup_steps_act_cannot_run():
    """Read, not run: writing the registry's user into its service and starting MinIO."""
    doc = yaml.safe_load(SELFTEST.read_text())
    push = doc["jobs"]["push-true"]
    registry = push["services"]["registry"]
    assert registry["env"]["REGISTRY_AUTH"] == "htpasswd"
    path = registry["env"]["REGISTRY_AUTH_HTPASSWD_PATH"]
    setup = next(s for s in push["steps"] if s.get("id") == "registry")
    assert setup["env"]["CONTAINER"] == "${{ job.services.registry.id }}"
    assert f'docker cp htpasswd "$CONTAINER:{path}"' in setup["run"]
    assert 'docker restart "$CONTAINER"' in setup["run"]
    assert "::add-mask::$password" in setup["run"].split("password=$password")[0]
    mp = next(s for s in push["steps"] if s.get("id") == "mp")
    assert mp["with"]["registry-password"] == "${{ steps.registry.outputs.password }}"
    minio = next(s for s in doc["jobs"]["store-s3"]["steps"] if s.get("id") == "minio")
    assert "server /data" in minio["run"] and "-p 127.0.0.1:9000:9000" in minio["run"]
    assert doc["jobs"]["store-s3"]["env"]["S3_ENDPOINT"] == "http://127.0.0.1:9000"
    # bash syntax of every step script, the ones act skips included.
    if shutil.which("bash"):
        for job in doc["jobs"].values():
            for step in job["steps"]:
                if "run" in step:
                    check = subprocess.run(["bash", "-n", "-c", step["run"]], capture_output=True)
                    assert check.returncode == 0, (step.get("name"), check.stderr)
