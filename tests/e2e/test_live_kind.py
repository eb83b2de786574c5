"""Live: the proxyv2 image on a real kind cluster made with pytest-kind (GitHub runners only).

Skipped with the reason when kind, Docker, the kind node image or the proxyv2 image is not
available, which is always the case on the development machine (no internet, no kind).
.github/workflows/e2e.yml runs it after `invoke e2e`, which has cached the pinned kind and
kubectl and pulled the node image.

pytest-kind 22.11.1's defects, worked around here: KindCluster makes `.pytest-kind/` in the
working directory (we chdir to a temporary folder); it would download kind and kubectl (we
give it the pinned, checksum-verified ones); its fixture deletes a cluster it merely reused
(we use the class, refuse a name that already exists and delete only what we created); its
port_forward keeps retrying after success and runs kubectl without PATH/HOME (not used); its
create() returns before the node is Ready and before the default service account exists, so
a `kubectl run` straight after can fail with "serviceaccount default not found" (we wait for
both); its load_docker_image is `kind load docker-image`, which fails on Docker's containerd
image store (we use the run's loader, with its one-platform archive fallback).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest

from ci import config
from ci.e2e import images
from ci.e2e.istioctl import Tools, host_arch
from ci.e2e.plan import full_image
from ci.e2e.versions import for_istio
from tests.helpers import tools

pytestmark = [pytest.mark.cluster, pytest.mark.slow]
CLUSTER_NAME = "mp-e2e-live"


def _unavailable(reason: str) -> None:
    # The workflow sets MOSN_PROXYV2_REQUIRE_CLUSTER=1: a missing piece fails the job there.
    tools.need("kind cluster", reason)


def _docker(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=120)


@pytest.fixture
def live(tmp_path, monkeypatch):
    settings = config.load({}, {})
    row = for_istio(settings.istio_version)
    tools = Tools.in_cache(settings.path("cache_dir"), row, settings.istio_version)
    kind = tools.kind if tools.kind.is_file() else shutil.which("kind")
    kubectl = tools.kubectl if tools.kubectl.is_file() else shutil.which("kubectl")
    if not kind:
        _unavailable(f"kind not found (neither {tools.kind} nor on PATH); run `invoke e2e` first")
    if not kubectl:
        _unavailable("kubectl not found; run `invoke e2e` first")
    if not shutil.which("docker") or _docker("info").returncode != 0:
        _unavailable("no reachable Docker engine")
    if not settings.image:
        _unavailable("no proxyv2 image given: set MOSN_PROXYV2_IMAGE")
    image = full_image(settings.image, pull=False)
    if _docker("image", "inspect", image).returncode != 0:
        _unavailable(f"image {image} is not in the local Docker engine")
    if _docker("image", "inspect", row.node_image).returncode != 0:
        _unavailable(f"kind node image {row.node_image} is not available (no pull on this machine)")
    clusters = subprocess.run([str(kind), "get", "clusters"], capture_output=True, text=True)
    if CLUSTER_NAME in clusters.stdout.split():
        pytest.fail(f"a kind cluster named {CLUSTER_NAME} exists already; delete it first")

    from pytest_kind import KindCluster

    monkeypatch.chdir(tmp_path)
    cluster = KindCluster(
        CLUSTER_NAME,
        kubeconfig=tmp_path / "kubeconfig",
        image=row.node_image,
        # KindCluster calls .exists() on these: Paths, not the strings shutil.which returns.
        kind_path=Path(kind),
        kubectl_path=Path(kubectl),
    )
    try:
        cluster.create()
        cluster.kubectl("wait", "--for=condition=Ready", "node", "--all", "--timeout=300s")
        wait_for_default_account(cluster)
        images.load(Path(kind), CLUSTER_NAME, image, tmp_path / "images", f"linux/{host_arch()}")
        yield cluster, image, row
    finally:
        if (
            CLUSTER_NAME
            in subprocess.run(
                [str(kind), "get", "clusters"], capture_output=True, text=True
            ).stdout.split()
        ):
            cluster.delete()


def wait_for_default_account(cluster, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            cluster.kubectl("get", "serviceaccount", "default", "-o", "name")
            return
        except subprocess.CalledProcessError:
            if time.monotonic() > deadline:
                raise
            time.sleep(2)


def test_live_mosn_from_the_image_runs_on_the_pinned_kind_node(live):
    cluster, image, row = live
    kubelet = cluster.kubectl(
        "get", "nodes", "-o", "jsonpath={.items[0].status.nodeInfo.kubeletVersion}"
    )
    assert kubelet == row.kubernetes
    cluster.kubectl(
        "run",
        "mp-e2e-mosn",
        f"--image={image}",
        "--restart=Never",
        "--image-pull-policy=Never",
        "--command",
        "--",
        "/usr/local/bin/mosn",
        "--version",
    )
    cluster.kubectl(
        "wait",
        "--for=jsonpath={.status.phase}=Succeeded",
        "pod/mp-e2e-mosn",
        "--timeout=180s",
    )
    assert cluster.kubectl("logs", "pod/mp-e2e-mosn").startswith("mosn version ")
