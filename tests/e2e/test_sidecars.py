"""A sidecar that is not Ready, named with its state: above all MOSN's quiet exit 0."""

from __future__ import annotations

import json

import pytest

from ci import log
from ci.e2e.plan import Plan
from ci.e2e.runner import Runner
from ci.e2e.sidecars import not_ready
from ci.errors import UserError


def _pod(name: str, sidecar: dict, namespace: str = "default") -> dict:
    return {
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"containers": [{"name": "app"}, {"name": "istio-proxy"}]},
        "status": {
            "phase": "Running",
            "containerStatuses": [
                {"name": "app", "ready": True},
                {"name": "istio-proxy", **sidecar},
            ],
        },
    }


def test_quiet_exit_zero_is_named_with_restarts_and_the_hint():
    pods = {
        "items": [
            _pod("ratings-v1-a", {"ready": True, "state": {"running": {}}}),
            _pod(
                "reviews-v2-b",
                {
                    "ready": False,
                    "restartCount": 4,
                    "state": {"terminated": {"reason": "Completed", "exitCode": 0}},
                },
            ),
            _pod(
                "istio-ingressgateway-c",
                {
                    "ready": False,
                    "restartCount": 1,
                    "state": {"running": {}},
                    "lastState": {"terminated": {"reason": "Error", "exitCode": 2}},
                },
                namespace="istio-system",
            ),
        ]
    }
    found = not_ready(json.dumps(pods))
    assert found[0].startswith(
        "pod default/reviews-v2-b: istio-proxy not Ready: terminated (Completed, exit 0), "
        "4 restarts; MOSN exits 0 when it fails to start"
    )
    assert found[1] == (
        "pod istio-system/istio-ingressgateway-c: istio-proxy not Ready: running, 1 restarts, "
        "last terminated (Error, exit 2)"
    )
    assert len(found) == 2


def test_pods_without_a_sidecar_and_garbage_are_handled():
    plain = {"metadata": {"name": "coredns"}, "spec": {"containers": [{"name": "coredns"}]}}
    assert not_ready(json.dumps({"items": [plain]})) == []
    assert not_ready("error: the server is gone") == [
        "kubectl did not print a pod list, so the sidecars' state is unknown"
    ]


def test_standin_quiet_mosn_report_names_the_pod_and_why(standin_cluster, monkeypatch):
    log.set_quiet(True)
    monkeypatch.setenv("STANDIN_SHAPES", "quiet-mosn")
    monkeypatch.setenv("STANDIN_FAIL", "rollout status deployment/reviews-v2")
    runner = Runner(Plan(standin_cluster.settings, "amd64"), sleep=lambda _s: None)
    try:
        with pytest.raises(UserError) as failure:
            runner.run()
    finally:
        log.set_quiet(False)
    message = str(failure.value)
    assert "e2e check 'bookinfo' failed" in message
    assert (
        "pod default/reviews-v2-x: istio-proxy not Ready: waiting (CrashLoopBackOff, back-off "
        "40s), 3 restarts, last terminated (Completed, exit 0); MOSN exits 0" in message
    )
    artifacts = standin_cluster.settings.path("artifacts")
    d = artifacts / "diagnostics"
    assert "reviews-v2-x" in (d / "sidecars.txt").read_text()
    json.loads((d / "pods.json").read_text())  # stderr's warning kept out of the JSON
    for name in (
        "mosn-logs-reviews-v2.txt",
        "mosn-version-reviews-v2.txt",
        "sidecar-reviews-v2-previous.log",
        "mosn-version-image.txt",
    ):
        assert (d / name).is_file(), name
    assert (d / "mosn-version-image.txt").read_text().startswith("mosn version ")
    report = (artifacts / "report.md").read_text()
    assert "### Sidecars not Ready" in report and "- pod default/reviews-v2-x" in report
    result = json.loads((artifacts / "result.json").read_text())
    assert result["passed"] is False and result["failed_check"] == "bookinfo"
    assert result["sidecars_not_ready"][0].startswith("pod default/reviews-v2-x")
    flat = [" ".join(c) for c in standin_cluster.calls()]
    mosn_logs = next(c for c in flat if "exec deploy/reviews-v2" in c and "==>" in c)
    assert "/etc/istio/logs/*" in mosn_logs and "/home/admin/mosn/logs/*" in mosn_logs
