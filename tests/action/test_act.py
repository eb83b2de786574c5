"""The action run for real by act in host mode: the same YAML GitHub runs, on this machine.

Each test builds a throwaway repository (this checkout plus one workflow) and runs its push
event with act, offline. Secrets go in as `vars`, which act does not hide by itself, so a
value missing from the log was hidden by the action's own ::add-mask::.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import secrets
import signal
import tarfile
import time
from pathlib import Path

import pytest
import requests

from tests.helpers.action import REPO_ROOT, action_workflow, make_repo, run_act
from tests.helpers.net import free_port

pytestmark = pytest.mark.slow


def test_missing_required_input_fails_with_its_annotation(tmp_path):
    dist = tmp_path / "dist"
    with_ = {
        "working-directory": "work",
        "mosn-src": "mosn",
        "store": "s3",
        "push": "true",
        # The runner's packages: nothing installed, so the inputs are checked within seconds.
        "system-site-packages": "true",
    }
    workflow = action_workflow(
        with_, after=[{"name": "After the action", "run": "echo after the action"}]
    )
    workflow["jobs"]["action"]["env"] = {"MOSN_PROXYV2_DIST": str(dist)}
    run = run_act(make_repo(tmp_path / "repo", workflow), tmp_path / "act", {})

    assert run.returncode != 0, run.log[-3000:]
    assert (
        "::error title=mosn-proxyv2 input::store: s3 needs s3-bucket; set `s3-bucket: <bucket>`"
        in run.log
    ), run.log[-3000:]
    assert "::error title=mosn-proxyv2 input::push: true needs image" in run.log
    assert "Failure - Main Build, publish and make the image" in run.log
    # Stopped before building: nothing written, and the job's later steps never ran.
    assert not dist.exists()
    assert "after the action" not in run.log.replace("echo after the action", "")


def stop_server(root: Path) -> None:
    """Stop the artifact server publish started in the background (its pid file is in root)."""
    pid_file = root / ".server.pid"
    if not pid_file.is_file():
        return
    pid = int(pid_file.read_text().strip())
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    for _ in range(100):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)


@pytest.fixture
def remote_base(docker_client, busybox_base, registry):
    """The base image only in a registry, as on a fresh runner: the action has to pull it."""
    reference = f"{registry}/mp-action/base:busybox"
    docker_client.images.get(busybox_base).tag(reference)
    docker_client.images.push(reference)
    docker_client.images.remove(reference)
    return reference


def remove_images(client, *registries: str) -> None:
    """Remove the names under these registries (each test's has a new port: ours alone).

    By name, never by image ID: an image pulled back from a test registry shares its ID with
    the shared busybox base, and removing the ID would take the base's own tag with it.
    """
    import docker.errors

    prefixes = tuple(f"{registry}/" for registry in registries)
    for image in client.images.list():
        for ref in image.tags + image.attrs.get("RepoDigests", []):
            if ref.startswith(prefixes):
                with contextlib.suppress(docker.errors.NotFound):
                    client.images.remove(ref)


@pytest.fixture
def act_images(docker_client, auth_registry, registry):
    yield
    remove_images(docker_client, auth_registry.address, registry)


def test_action_builds_publishes_and_pushes(
    tmp_path, act_images, remote_base, auth_registry, docker_client
):
    out, server_root = tmp_path / "out", tmp_path / "artifacts"
    out.mkdir()
    server_url = f"http://127.0.0.1:{free_port()}"
    repository = f"{auth_registry.address}/mp-action/proxyv2"
    token = secrets.token_hex(16)
    with_ = {
        "working-directory": "work",
        "mosn-src": "mosn",
        "store": "server",
        "server-url": server_url,
        "server-token": "${{ vars.SERVER_TOKEN }}",
        "mode": "quick",
        "base-image": remote_base,
        "image": repository,
        "tags": "act-test",
        "push": "true",
        "registry-username": auth_registry.username,
        "registry-password": "${{ vars.REGISTRY_PASSWORD }}",
        # The check below downloads the tarballs from the bundled server after the action.
        "keep-server": "true",
        # system-site-packages left at its default: a venv with the action pip-installed into it
        # from PyPI, as on GitHub's runners.
    }
    record = {
        "name": "Record outputs",
        "env": {
            "OUTPUTS": "${{ toJSON(steps.mp.outputs) }}",
            "ENV_FILE": "${{ steps.mp.outputs.env-file }}",
            "OUT": str(out),
            "TOKEN": "${{ vars.SERVER_TOKEN }}",
            "PASSWORD": "${{ vars.REGISTRY_PASSWORD }}",
        },
        "run": (
            'printf "%s" "$OUTPUTS" >"$OUT/outputs.json"\n'
            'cp "$ENV_FILE" "$OUT/istio.env"\n'
            # The masks the action registered hold for the rest of the job.
            'echo "after the action: token $TOKEN password $PASSWORD"\n'
        ),
    }
    workflow = action_workflow(with_, after=[record])
    # The bundled server's storage outside act's workspace, which act deletes at the end.
    workflow["jobs"]["action"]["env"] = {
        "MOSN_PROXYV2_SERVER_ROOT": str(server_root),
        "DOCKER_CONFIG": str(tmp_path / "docker-config"),
    }
    variables = {"SERVER_TOKEN": token, "REGISTRY_PASSWORD": auth_registry.password}
    try:
        # A default changed in the action's own invoke.yaml must reach the tasks.
        edits = {"invoke.yaml": ("\n  prefix: mosn\n", "\n  prefix: mp-act\n")}
        repo = make_repo(tmp_path / "repo", workflow, edits)
        run = run_act(repo, tmp_path / "act", variables)
        (tmp_path / "act.log").write_text(run.log)
        assert run.returncode == 0, run.log[-4000:]

        # No secret in the log, and the masks were really in force.
        # (Messages without the values: a failure here must not print them either.)
        assert token not in run.log, "server-token shows in the log"
        assert auth_registry.password not in run.log, "registry-password shows in the log"
        assert "after the action: token *** password ***" in run.log, "masks not in force"

        outputs = json.loads((out / "outputs.json").read_text())
        version = outputs["mosn-version"]
        assert re.fullmatch(r"v1\.0\.0\([0-9a-f]{7,}\)", version), version

        # Every tarball URL serves the bytes its sha256 names, with mosn inside.
        tarballs = json.loads(outputs["tarballs"])
        assert {t["file"] for t in tarballs} == {
            "mosn.tar.gz",
            "mosn-centos.tar.gz",
            "mosn-macos.tar.gz",
        }
        for tarball in tarballs:
            assert tarball["url"].startswith(f"{server_url}/mp-act/")
            response = requests.get(tarball["url"], timeout=30)
            assert response.status_code == 200
            assert hashlib.sha256(response.content).hexdigest() == tarball["sha256"]
            with tarfile.open(fileobj=io.BytesIO(response.content), mode="r:gz") as tar:
                assert "usr/local/bin/mosn" in tar.getnames()
        linux = next(t for t in tarballs if t["file"] == "mosn.tar.gz")
        assert f"ISTIO_ENVOY_RELEASE_URL={linux['url']}" in (out / "istio.env").read_text()

        # The digest is what the registry holds for the extra tag, and it pulls and runs.
        digest = outputs["digest"]
        assert re.fullmatch(r"sha256:[0-9a-f]{64}", digest), digest
        assert outputs["image"].startswith(repository + ":")
        manifest = requests.head(
            f"http://{auth_registry.address}/v2/mp-action/proxyv2/manifests/act-test",
            auth=(auth_registry.username, auth_registry.password),
            headers={
                "Accept": "application/vnd.docker.distribution.manifest.v2+json, "
                "application/vnd.oci.image.manifest.v1+json"
            },
            timeout=30,
        )
        assert manifest.status_code == 200
        assert manifest.headers["Docker-Content-Digest"] == digest
        pinned = f"{repository}@{digest}"
        remove_images(docker_client, auth_registry.address)  # so that the pull is a real one
        docker_client.images.pull(
            pinned,
            auth_config={"username": auth_registry.username, "password": auth_registry.password},
        )
        printed = docker_client.containers.run(
            pinned, ["/usr/local/bin/mosn", "--version"], network_mode="none", remove=True
        )
        assert printed.decode().strip() == f"mosn version {version}"
        assert f"::group::docker pull {remote_base}" in run.log

        # The job summary: each tarball with its sha256 and URL, the image with its digest.
        summaries = run.summaries()
        assert summaries, "no job summary was written"
        summary = summaries[0]
        for tarball in tarballs:
            row = next(line for line in summary.splitlines() if f"`{tarball['file']}`" in line)
            assert tarball["sha256"] in row and tarball["url"] in row
        assert f"| `{outputs['image']}` | `{digest}` |" in summary
    finally:
        stop_server(server_root)


def test_action_stops_the_server_it_started_even_after_a_failure(
    tmp_path, busybox_base, docker_client
):
    """A gunicorn holding a write token must not outlive the job (self-hosted runners)."""
    from server import background

    server_root = tmp_path / "artifacts"
    port = free_port()
    closed_registry = f"127.0.0.1:{free_port()}"
    with_ = {
        "working-directory": "work",
        "mosn-src": "mosn",
        "store": "server",
        "server-url": f"http://127.0.0.1:{port}",
        "mode": "quick",
        "base-image": busybox_base,
        # Built and published, then the push fails: nothing listens at this registry.
        "image": f"{closed_registry}/mp-act/stopped",
        "push": "true",
        "system-site-packages": "true",
    }
    workflow = action_workflow(with_)
    workflow["jobs"]["action"]["env"] = {"MOSN_PROXYV2_SERVER_ROOT": str(server_root)}
    try:
        run = run_act(make_repo(tmp_path / "repo", workflow), tmp_path / "act", {})
        assert run.returncode != 0, run.log[-3000:]
        assert "Failure - Main Build, publish and make the image" in run.log, run.log[-3000:]
        assert "stopped the artifact server this step started (pid " in run.log, run.log[-3000:]
        assert "Success - Main Stop the artifact server this step started" in run.log
        assert background.running(server_root) is None
        with pytest.raises(requests.ConnectionError):
            requests.get(f"http://127.0.0.1:{port}/-/healthz", timeout=5)
        # It did run: its storage holds the published tarballs.
        assert list(server_root.rglob("mosn.tar.gz"))
    finally:
        stop_server(server_root)
        remove_images(docker_client, closed_registry)


def test_action_publishes_to_s3(tmp_path):
    """The S3 variant of the README: tarballs only (no image), credentials from the step's env,
    and the action's own install: its virtualenv gets the core and the [s3] extra from PyPI
    (with constraints.txt), no web server and no Docker SDK."""
    from tests.helpers.publish import FAKE_ACCESS_KEY, FAKE_SECRET_KEY, moto_server, s3_client

    out = tmp_path / "out"
    out.mkdir()
    with moto_server(tmp_path) as endpoint:
        s3_client(endpoint).create_bucket(Bucket="mp-action")
        workflow = action_workflow(
            {
                "working-directory": "work",
                "mosn-src": "mosn",
                "store": "s3",
                "s3-bucket": "mp-action",
                "s3-prefix": "ci/mosn",
                "s3-endpoint-url": endpoint,
                "aws-region": "us-east-1",
                "system-site-packages": "false",
            },
            after=[
                {
                    "name": "Record outputs",
                    "env": {"OUTPUTS": "${{ toJSON(steps.mp.outputs) }}", "OUT": str(out)},
                    "run": 'printf "%s" "$OUTPUTS" >"$OUT/outputs.json"',
                },
                {
                    "name": "Record the action's packages",
                    "env": {"OUT": str(out)},
                    "run": '"$RUNNER_TEMP/mosn-proxyv2-venv/bin/python" -m pip list --format=json'
                    ' >"$OUT/packages.json"',
                },
            ],
        )
        step = workflow["jobs"]["action"]["steps"][2]
        step["env"] = {
            "AWS_ACCESS_KEY_ID": FAKE_ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": "${{ vars.AWS_SECRET_ACCESS_KEY }}",
            # Only these credentials: no profile or config file of this machine's.
            "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-credentials"),
            "AWS_EC2_METADATA_DISABLED": "true",
        }
        run = run_act(
            make_repo(tmp_path / "repo", workflow),
            tmp_path / "act",
            {"AWS_SECRET_ACCESS_KEY": FAKE_SECRET_KEY},
        )
        assert run.returncode == 0, run.log[-4000:]
        assert FAKE_SECRET_KEY not in run.log, "the AWS secret key shows in the log"

        outputs = json.loads((out / "outputs.json").read_text())
        tarballs = json.loads(outputs["tarballs"])
        assert len(tarballs) == 3
        for tarball in tarballs:
            assert tarball["url"].startswith(f"{endpoint}/mp-action/ci/mosn/v1.0.0-")
            response = requests.get(tarball["url"], timeout=30)
            assert response.status_code == 200
            assert hashlib.sha256(response.content).hexdigest() == tarball["sha256"]
        assert outputs["image"] == "" and outputs["digest"] == ""
        assert "| image | digest |" not in run.summaries()[0]
        assert "extras for these inputs: s3" in run.log
        installed = {
            p["name"].lower(): p["version"] for p in json.loads((out / "packages.json").read_text())
        }
        assert {"boto3", "invoke", "requests", "mosn-proxyv2"} <= set(installed)
        assert not {"flask", "gunicorn", "gevent", "docker"} & set(installed)
        pinned = dict(
            line.split("==", 1)
            for line in (REPO_ROOT / "constraints.txt").read_text().splitlines()
            if "==" in line and ";" not in line
        )
        assert installed["boto3"] == pinned["boto3"]
