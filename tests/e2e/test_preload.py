"""The images a cluster would pull: derived from the manifests, pulled once, loaded into kind.

Real: Istio 1.10.6's bookinfo.yaml (read in place beside the project), the runner, the
subprocesses. Stand-ins (no kind cluster here): kind, docker and istioctl's generated
manifest (tests/helpers/e2e_tools.py), including kind v0.17.0's failure on Docker's
containerd image store, quoted from kind#3795.
"""

from __future__ import annotations

import json

import pytest

from ci import log
from ci.e2e import images, plan_lines
from ci.e2e.plan import BOOKINFO_DEPLOYMENTS, Plan
from ci.e2e.runner import Runner
from ci.errors import UserError
from tests.e2e.conftest import FULL_IMAGE, UPSTREAM_ISTIO
from tests.helpers import tools
from tests.helpers.e2e_tools import istio_manifest

BOOKINFO_IMAGES = [
    f"docker.io/istio/examples-bookinfo-{name}:1.16.2" for name in BOOKINFO_DEPLOYMENTS
]
needs_upstream = tools.skip_unless(
    "istio upstream", UPSTREAM_ISTIO is not None, "Istio 1.10.6's Bookinfo YAML is not found"
)


@pytest.fixture(autouse=True)
def _quiet():
    log.set_quiet(True)
    yield
    log.set_quiet(False)


@needs_upstream
def test_the_list_comes_from_the_istio_manifest_and_the_real_bookinfo_yaml():
    bookinfo = (UPSTREAM_ISTIO / "samples/bookinfo/platform/kube/bookinfo.yaml").read_text()
    found = images.derive([istio_manifest("localhost/mp/proxyv2:e2e"), bookinfo])
    assert found == [
        "docker.io/istio/pilot:1.10.6",
        "localhost/mp/proxyv2:e2e",
        # istio-init: proxy_init.image has no `/`, so the template makes hub/name:tag of it.
        "docker.io/istio/proxyv2:1.10.6",
        *BOOKINFO_IMAGES,
    ]


def test_a_templated_image_is_left_to_the_cluster():
    manifest = "kind: Pod\nspec:\n  containers:\n  - {name: a, image: '{{ .Image }}'}\n"
    assert images.derive([manifest, "kind: Pod\nspec: {containers: [{image: busybox:1}]}\n"]) == [
        "busybox:1"
    ]


def test_a_non_json_injector_values_entry_is_one_line_error():
    manifest = "kind: ConfigMap\nmetadata: {name: istio-sidecar-injector}\ndata: {values: '{'}\n"
    with pytest.raises(UserError, match="istio-sidecar-injector has a `values` entry that is not"):
        images.derive([manifest])


@needs_upstream
def test_plan_lists_the_images_once_istio_is_cached(standin_cluster):
    lines = plan_lines(standin_cluster.settings, arch="amd64")
    at = lines.index("#   the list:")
    listed = [line.removeprefix("#   ") for line in lines[at + 1 : at + 9]]
    # The image under test is loaded from this host, not pulled: it is not in the list.
    assert listed == ["docker.io/istio/pilot:1.10.6", "docker.io/istio/proxyv2:1.10.6"] + (
        BOOKINFO_IMAGES
    )
    assert not lines[at + 9].startswith("#   ")


def _run(settings) -> Runner:
    runner = Runner(Plan(settings, "amd64"), sleep=lambda _s: None)
    runner.run()
    return runner


def test_images_are_pulled_once_and_each_is_kind_loaded(standin_cluster):
    runner = _run(standin_cluster.settings)
    calls = standin_cluster.calls()
    pulls = [c[2] for c in calls if c[:2] == ["docker", "pull"]]
    assert pulls == runner.preload and FULL_IMAGE not in pulls
    loads = [c[-1] for c in calls if c[:3] == ["kind", "load", "docker-image"]]
    assert loads == [FULL_IMAGE, *runner.preload]
    listed = (standin_cluster.settings.path("artifacts") / "images.txt").read_text().split()
    assert listed == runner.preload
    # Again on the same engine: nothing left to pull.
    assert runner.pull_images() == f"pulled 0, {len(pulls)} already present"
    assert len([c for c in standin_cluster.calls() if c[:2] == ["docker", "pull"]]) == len(pulls)


def test_containerd_store_failure_falls_back_to_one_platform_archives(standin_cluster, monkeypatch):
    monkeypatch.setenv("STANDIN_SHAPES", "containerd-store")
    runner = _run(standin_cluster.settings)
    calls = standin_cluster.calls()
    saves = [c for c in calls if c[:3] == ["docker", "image", "save"]]
    wanted = [FULL_IMAGE, *runner.preload]
    assert [c[-1] for c in saves] == wanted
    assert all(c[3:5] == ["--platform", "linux/amd64"] for c in saves)
    archives = [
        json.loads(line)
        for line in (standin_cluster.state / "archives.jsonl").read_text().splitlines()
    ]
    assert len(archives) == len(wanted) and all(a[1] == "stand-in image archive" for a in archives)
    # The archives are scratch: gone after the load, never in the uploaded artifacts.
    assert not any(__import__("os").path.exists(a[0]) for a in archives)
    assert not list(standin_cluster.settings.path("artifacts").rglob("*.tar"))
    note = next(n for n in runner.report.notes if "kind#3795" in n)
    assert FULL_IMAGE in note
    cluster = next(c for c in runner.report.checks if c.name == "cluster")
    assert f"{len(wanted)} through docker image save + kind load image-archive" in cluster.detail


def test_an_image_that_cannot_be_pulled_fails_the_images_step_with_the_login_hint(
    standin_cluster, monkeypatch
):
    monkeypatch.setenv("STANDIN_FAIL", "pull docker.io/istio/pilot")
    with pytest.raises(
        UserError,
        match="e2e check 'images' failed: .*docker pull docker.io/istio/pilot:1.10.6 failed",
    ) as failure:
        _run(standin_cluster.settings)
    assert "DOCKERHUB_USERNAME" in str(failure.value)
    # Nothing was created, so nothing is deleted.
    assert not any(c[:2] == ["kind", "create"] for c in standin_cluster.calls())


def test_the_cluster_waits_for_a_ready_node_and_the_default_service_account(standin_cluster):
    _run(standin_cluster.settings)
    flat = [" ".join(c) for c in standin_cluster.calls()]
    node = next(i for i, c in enumerate(flat) if "wait --for=condition=Ready node --all" in c)
    account = next(i for i, c in enumerate(flat) if "get serviceaccount default -o name" in c)
    create = next(i for i, c in enumerate(flat) if c.startswith("kind create cluster"))
    first_load = next(i for i, c in enumerate(flat) if c.startswith("kind load"))
    assert create < node < account < first_load
