"""The runner end to end against stand-in tools and a stand-in productpage (no cluster here).

What is real: the runner, ci.proc.run starting every program, bash running a cleanup.sh,
HTTP to a server on 127.0.0.1, the report files. What is a stand-in: kind, kubectl, istioctl,
docker and Bookinfo's productpage (tests/helpers/e2e*.py), because a kind cluster cannot run
on this machine.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from ci import log
from ci.e2e import stats
from ci.e2e.plan import Command, Plan
from ci.e2e.runner import Runner
from ci.errors import UserError
from tests.helpers.cli import clean_environ, run_invoke


@pytest.fixture(autouse=True)
def _quiet():
    log.set_quiet(True)
    yield
    log.set_quiet(False)


def run(settings, **_):
    """The real run, minus the pauses between polls (the stand-ins answer at once)."""
    return Runner(Plan(settings, "amd64"), sleep=lambda _seconds: None).run()


def _is_subsequence(expected: list[list[str]], calls: list[list[str]]) -> bool:
    it = iter(calls)
    return all(any(call == want for call in it) for want in expected)


def _planned(plan: Plan, steps) -> list[list[str]]:
    """Planned commands as the stand-ins log them: [tool name, args...]."""
    out = []
    for step in steps:
        for item in step.items:
            if isinstance(item, Command) and item.argv[0] != "bash":
                out.append([item.argv[0].rsplit("/", 1)[-1], *item.argv[1:]])
    return out


def test_standin_run_executes_the_plan_in_order_and_passes_every_check(standin_cluster):
    settings = standin_cluster.settings
    stale = settings.path("artifacts") / "diagnostics" / "events.txt"
    stale.parent.mkdir(parents=True)
    stale.write_text("from an earlier failed run\n")
    report = run(settings, arch="amd64")
    assert not stale.parent.exists()

    plan = Plan(settings, "amd64")
    calls = standin_cluster.calls()
    assert _is_subsequence(_planned(plan, plan.main() + plan.cleanup_steps()), calls)
    # cleanup.sh got NAMESPACE and found the pinned kubectl through PATH.
    cleanup_sh = plan.bookinfo / "platform" / "kube"
    assert ["kubectl", "delete", "-n", "default", "-f", f"{cleanup_sh}/bookinfo.yaml"] in calls
    # No diagnostics on success.
    assert not any(c[:2] == ["kubectl", "--kubeconfig"] and "describe" in c for c in calls)

    assert [c.status for c in report.checks] == ["passed"] * len(report.checks)
    counts = report.counts
    assert set(counts["no rules"]) == {"v1", "v2", "v3"}
    assert counts["all v1"] == {"v1": 30}
    assert sum(counts["50/50 v1/v3"].values()) == stats.choose_n().n
    assert set(counts["50/50 v1/v3"]) == {"v1", "v3"}
    assert counts["test-v2: jason"] == {"v2": 30}
    assert counts["test-v2: anonymous"] == {"v1": 30}
    # productpage received jason as end-user only through the session cookie.
    assert "jason" in standin_cluster.app.end_users

    artifacts = settings.path("artifacts")
    suite = ET.parse(artifacts / "junit.xml").getroot()  # noqa: S314 - our own file
    assert suite.get("failures") == "0" and int(suite.get("tests")) == len(report.checks)
    rewritten = (artifacts / "bookinfo-mosn.yaml").read_text()
    assert "/usr/local/bin/envoy" not in rewritten.split("- name: istio-proxy", 1)[1]
    bookinfo = next(c for c in report.checks if c.name == "bookinfo")
    assert "6 sidecars: 5 rewritten to mosn, 1 already named mosn" in bookinfo.detail


def test_standin_failed_rollout_collects_diagnostics_cleans_up_and_names_the_check(
    standin_cluster, monkeypatch
):
    monkeypatch.setenv("STANDIN_FAIL", "rollout status deployment/reviews-v2")
    with pytest.raises(UserError) as failure:
        run(standin_cluster.settings, arch="amd64")
    assert "e2e check 'bookinfo' failed" in str(failure.value)

    calls = standin_cluster.calls()
    flat = [" ".join(c) for c in calls]
    assert any("proxy-status" in c for c in flat)
    assert any("describe pods -A" in c for c in flat)
    assert any(c.startswith("kind export logs") for c in flat)
    assert flat[-1].startswith("kind delete cluster --name mosn-proxyv2")
    # Nothing after the failure in the main sequence ran.
    assert not any("bookinfo-gateway.yaml" in c for c in flat)
    diagnostics = standin_cluster.settings.path("artifacts") / "diagnostics"
    assert (diagnostics / "pods-describe.txt").is_file()
    assert (diagnostics / "sidecar-reviews-v2.log").is_file()


def test_standin_existing_cluster_is_neither_used_nor_deleted(standin_cluster, monkeypatch):
    monkeypatch.setenv("STANDIN_EXISTING_CLUSTER", "mosn-proxyv2")
    with pytest.raises(UserError, match="already exists and was not made by this run"):
        run(standin_cluster.settings, arch="amd64")
    flat = [" ".join(c) for c in standin_cluster.calls()]
    assert not any(c.startswith("kind create") or c.startswith("kind delete") for c in flat)
    assert not any(c.startswith("kubectl") for c in flat)


def test_standin_eighty_twenty_split_fails_the_weighted_check(standin_cluster):
    (standin_cluster.state / "mode").write_text("80-v3")
    runner = Runner(Plan(standin_cluster.settings, "amd64"), sleep=lambda _seconds: None)
    with pytest.raises(UserError, match="the split is not 50/50"):
        runner.fifty_v3()
    counts = runner.report.counts["50/50 v1/v3"]
    design = stats.choose_n()
    assert sum(counts.values()) == design.n and counts["v3"] > design.hi


def test_standin_sidecar_running_envoy_fails_the_mosn_check(standin_cluster, monkeypatch):
    monkeypatch.setenv("STANDIN_SHAPES", "envoy-sidecars")
    with pytest.raises(UserError, match="gateway runs MOSN") as failure:
        run(standin_cluster.settings, arch="amd64")
    assert "not 'mosn version" in str(failure.value)


def test_routing_that_never_settles_fails_within_the_wait_timeout(standin_cluster):
    # The mesh keeps v1/v2/v3 in turn although all-v1 was applied: the poll must give up.
    runner = Runner(
        Plan(standin_cluster.settings.replace(wait_timeout=1), "amd64"), sleep=lambda _s: None
    )
    standin_cluster.app.mode_file = None
    with pytest.raises(UserError, match="only v1 answers: still not true after 1s"):
        runner.all_v1()


def test_standin_istio_left_behind_fails_the_run_after_every_cleanup_step(
    standin_cluster, monkeypatch
):
    monkeypatch.setenv("STANDIN_SHAPES", "istio-left")
    with pytest.raises(UserError, match="e2e check 'nothing left' failed: still present: "):
        run(standin_cluster.settings.replace(wait_timeout=1))
    flat = [" ".join(c) for c in standin_cluster.calls()]
    assert flat[-1].startswith("kind delete cluster")


def test_invoke_e2e_puts_the_report_of_a_failed_run_in_the_job_summary(
    standin_cluster, monkeypatch, tmp_path
):
    monkeypatch.setenv("STANDIN_FAIL", "rollout status deployment/reviews-v2")
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    s = standin_cluster.settings
    flags = {
        "--image": s.image,
        "--istio-version": s.istio_version,
        "--cache-dir": s.cache_dir,
        "--artifacts": s.artifacts,
        "--ingress-port": s.ingress_port,
        "--wait-timeout": s.wait_timeout,
    }
    result = run_invoke(
        "e2e",
        *(str(part) for pair in flags.items() for part in pair),
        "--quiet",
        env={**clean_environ(), "GITHUB_STEP_SUMMARY": str(summary)},
        timeout=300,
    )
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: e2e check 'bookinfo' failed")
    text = summary.read_text()
    assert text.startswith("earlier step\n## MOSN proxyv2 on kind: FAILED")
    assert "| bookinfo | failed |" in text
