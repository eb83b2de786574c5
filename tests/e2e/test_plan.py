"""`invoke e2e --plan`: every command of the run, in order, with no cluster."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from ci.config import Settings
from ci.e2e import plan as plan_module
from ci.e2e import plan_lines
from ci.e2e.plan import Plan, full_image
from ci.errors import UserError
from tests.helpers.cli import clean_environ, run_invoke

GOLDEN = Path(__file__).parent / "golden" / "plan-1.10.6.txt"
REPO = Path(__file__).resolve().parents[2]
GOLDEN_SETTINGS = Settings(
    image="mosnio/proxyv2:v1.0.0-1.10.6",
    istio_version="1.10.6",
    cache_dir="/cache",
    artifacts="/art",
)


def _invoke(*args: str, env: dict | None = None, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return run_invoke("e2e", *args, env={**clean_environ(), **(env or {})}, cwd=cwd, timeout=60)


def test_plan_matches_the_golden_file():
    assert "\n".join(plan_lines(GOLDEN_SETTINGS, arch="amd64")) + "\n" == GOLDEN.read_text()


def test_invoke_e2e_plan_prints_the_golden_plan(tmp_path):
    result = _invoke(
        "--plan",
        "--image",
        "mosnio/proxyv2:v1.0.0-1.10.6",
        "--istio-version",
        "1.10.6",
        "--cache-dir",
        "/cache",
        "--artifacts",
        "/art",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == GOLDEN.read_text()
    # Planning touches nothing: no folders made for the paths it names.
    assert not Path("/art").exists() and not Path("/cache").exists()


def test_plan_installs_with_the_recipe_flags_and_uninstalls_with_the_same():
    lines = GOLDEN.read_text().splitlines()
    apply = next(line for line in lines if " manifest apply " in line)
    generate = next(line for line in lines if " manifest generate " in line)
    sets = apply.split(" -y --kubeconfig /cache/clusters/mosn-proxyv2/kubeconfig ")[1]
    assert "--set values.global.proxy.image=docker.io/mosnio/proxyv2:v1.0.0-1.10.6" in sets
    assert "--set meshConfig.defaultConfig.binaryPath=/usr/local/bin/mosn" in sets
    assert generate.split(" manifest generate ")[1] == f"{sets} > /art/istio-manifest.yaml"


def test_keep_cluster_drops_only_the_cluster_deletion():
    normal = plan_lines(GOLDEN_SETTINGS, arch="amd64")
    kept = plan_lines(GOLDEN_SETTINGS.replace(keep_cluster=True), arch="amd64")
    assert [line for line in normal if line not in kept] == [
        "/cache/tools/kind-v0.17.0/kind delete cluster --name mosn-proxyv2 "
        "--kubeconfig /cache/clusters/mosn-proxyv2/kubeconfig"
    ]


def test_pull_image_leaves_the_image_to_the_cluster_and_keeps_the_pull_policy():
    lines = plan_lines(GOLDEN_SETTINGS.replace(pull_image=True), arch="amd64")
    image = "docker.io/mosnio/proxyv2:v1.0.0-1.10.6"
    # Neither inspected nor loaded from this host: only the preloaded images are.
    assert not any("docker image inspect" in line for line in lines)
    load = next(line for line in lines if line.startswith("# kind load docker-image"))
    assert image not in load and "the images in /art/images.txt" in load
    assert not any(line.startswith("docker run") for line in lines)
    assert not any("imagePullPolicy" in line for line in lines)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("proxyv2:dev", "docker.io/library/proxyv2:dev"),
        ("mosnio/proxyv2:v1.0.0-1.10.6", "docker.io/mosnio/proxyv2:v1.0.0-1.10.6"),
        ("ghcr.io/org/proxyv2:1", "ghcr.io/org/proxyv2:1"),
        ("127.0.0.1:5000/proxyv2:1", "127.0.0.1:5000/proxyv2:1"),
        ("localhost/proxyv2:1", "localhost/proxyv2:1"),
    ],
)
def test_images_become_full_references(given, expected):
    assert full_image(given, pull=False) == expected


def test_a_digest_image_needs_pull_mode():
    ref = "ghcr.io/org/proxyv2@sha256:" + "a" * 64
    assert full_image(ref, pull=True) == ref
    with pytest.raises(UserError, match="pass a tag, or --pull-image"):
        full_image(ref, pull=False)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "error: no image given; pass --image REGISTRY/REPO:TAG (the proxyv2 to prove)"),
        (
            ("--image", "mosnio/proxyv2"),
            "error: image 'mosnio/proxyv2' has no tag; pass --image REPO:TAG",
        ),
        (
            ("--image", "a/b:c", "--istio-version", "1.12.0"),
            "error: no kind node image is known for Istio 1.12.0 (supported: 1.10.x); add a row "
            "to ci/e2e/versions.py or pass a supported --istio-version",
        ),
        (
            ("--image", "a/b:c", "--cluster-name", "../Prod"),
            "error: --cluster-name '../Prod' is not a kind cluster name; use lowercase letters, "
            "digits, '-' and '.' (e.g. mosn-proxyv2)",
        ),
        (
            ("--image", "a/b:c", "--ingress-port", "70000"),
            "error: --ingress-port '70000' is out of range: give 1 to 65535 (a TCP port)",
        ),
        (
            ("--image", "a/b:c", "--samples", "ten"),
            "error: --samples 'ten' is not a whole number; fix the value and run again",
        ),
    ],
)
def test_bad_input_is_one_line_and_exit_1(tmp_path, args, message):
    result = _invoke("--plan", "--artifacts", str(tmp_path / "art"), *args)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == message
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "art").exists()


def test_a_missing_image_stops_the_real_run_before_any_download(tmp_path):
    # The real run's first command asks Docker for the image; with no such image (or no
    # Docker) it stops with one line, downloads nothing and leaves no cluster behind.
    result = _invoke(
        "--image",
        "mp-e2e-absent/proxyv2:none",
        "--cache-dir",
        str(tmp_path / "cache"),
        "--artifacts",
        str(tmp_path / "art"),
        "--quiet",
    )
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: e2e check 'tools' failed: ")
    assert "build the image first (invoke image, or the action) or pass --pull-image" in last
    assert not (tmp_path / "cache" / "tools").exists()
    report = json.dumps((tmp_path / "art" / "report.md").read_text())
    assert "tools | failed" in report


def test_expectations_read_real_shaped_outputs():
    image = "docker.io/mosnio/proxyv2:v1.0.0-1.10.6"
    ready = plan_module.pods_ready(1, 2, image)
    pod = {
        "metadata": {"name": "p"},
        "spec": {
            "containers": [{"name": "app", "image": "x"}, {"name": "istio-proxy", "image": image}]
        },
        "status": {"containerStatuses": [{"ready": True}, {"ready": False}]},
    }
    assert ready(json.dumps({"items": [pod]})) == "pod p is 1/2 ready, expected 2/2"
    pod["status"]["containerStatuses"][1]["ready"] = True
    assert ready(json.dumps({"items": [pod]})) is None
    pod["spec"]["containers"][1]["image"] = "docker.io/istio/proxyv2:1.10.6"
    assert "runs istio-proxy from docker.io/istio/proxyv2:1.10.6" in ready(
        json.dumps({"items": [pod]})
    )
    assert (
        ready("error: the server doesn't have a resource type")
        == "kubectl did not print a pod list"
    )

    assert plan_module.mosn_version("mosn version v1.0.0(abc1234)\n") is None
    assert plan_module.mosn_version("OCI runtime exec failed: not found") is not None
    # Real MOSN logs its package init before the version line; this log line is made up.
    init_log = "2026-12-01 21:02:11,385 [INFO] [network] [ebpf] ebpf disabled\n"
    assert plan_module.mosn_version(init_log + "mosn version v1.0.0(v1.0.0)\n") is None
    assert plan_module.mosn_version(init_log) is not None
    assert (
        plan_module.mosn_running("/usr/local/bin/pilot-agent proxy\n/usr/local/bin/mosn start\n")
        is None
    )
    assert plan_module.mosn_running(
        "/usr/local/bin/pilot-agent proxy\n/usr/local/bin/envoy -c x\n"
    ) == ("an envoy process runs in the sidecar")
    assert plan_module.cluster_absent("mosn-proxyv2")("No kind clusters found.\n") is None
    assert plan_module.cluster_absent("mosn-proxyv2")("kind\nmosn-proxyv2\n") is not None
    assert plan_module.absent(["istio"])(
        "customresourcedefinition.apiextensions.k8s.io/x.istio.io\n"
    )
    assert (
        plan_module.only_kubernetes_service(
            json.dumps({"items": [{"kind": "Service", "metadata": {"name": "kubernetes"}}]})
        )
        is None
    )


def test_plan_names_no_credentials_in_the_artifacts_folder():
    plan = Plan(GOLDEN_SETTINGS, "amd64")
    assert not plan.kubeconfig.is_relative_to(plan.artifacts)


def test_an_action_named_by_a_string_is_refused_when_the_plan_is_built():
    with pytest.raises(TypeError, match="do='fetch_kind' is not a plan.Do"):
        plan_module.Action("fetch kind", "fetch_kind")


def test_every_action_and_record_of_the_plan_has_its_runner_entry():
    from ci.e2e.runner import ACTIONS, RECORDS

    plan = Plan(GOLDEN_SETTINGS, "amd64")
    items = [
        i for s in plan.main() + plan.diagnostics_steps() + plan.cleanup_steps() for i in s.items
    ]
    assert {i.do for i in items if isinstance(i, plan_module.Action)} == set(ACTIONS)
    assert {i.record for i in items if isinstance(i, plan_module.Command) and i.record} == set(
        RECORDS
    )
