"""Fixtures for the kind job's tests: a cluster-free stand-in of everything the runner calls."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from ci.config import Settings
from ci.e2e.istioctl import Tools
from ci.e2e.plan import BOOKINFO_DEPLOYMENTS
from ci.e2e.versions import for_istio
from tests.helpers import e2e as standin
from tests.helpers.net import free_port

TOOLS_SCRIPT = Path(__file__).resolve().parents[1] / "helpers" / "e2e_tools.py"
REPO = Path(__file__).resolve().parents[2]
# Unmodified Istio 1.10.6 Bookinfo YAML kept beside the project (never copied into it): beside
# the main checkout, or two levels up from a worktree under wt/.
UPSTREAM_CANDIDATES = [
    REPO.parent / "shared" / "upstream" / "istio-1.10.6",
    REPO.parents[1] / "shared" / "upstream" / "istio-1.10.6",
]
UPSTREAM_ISTIO = next((p for p in UPSTREAM_CANDIDATES if p.is_dir()), None)
IMAGE = "mosnio/proxyv2:v1.0.0-1.10.6"
FULL_IMAGE = "docker.io/mosnio/proxyv2:v1.0.0-1.10.6"

CLEANUP_SH = """#!/bin/bash
# Stand-in for Bookinfo's cleanup.sh: like the real one, it asks on a terminal unless
# NAMESPACE is set, and calls kubectl by name from PATH.
if [[ -z "${NAMESPACE}" ]]; then read -r -p "namespace ? [default] " NAMESPACE; fi
kubectl delete -n "${NAMESPACE}" -f "$(dirname "$0")/bookinfo.yaml"
"""


# Used only where Istio's own bookinfo.yaml is not beside the project.
STANDIN_BOOKINFO = """apiVersion: apps/v1
kind: Deployment
metadata:
  name: details-v1
spec:
  template:
    spec:
      containers:
      - name: details
        image: docker.io/istio/examples-bookinfo-details-v1:1.16.2
"""


def _wrapper(path: Path, tool: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'#!/bin/sh\nexec {sys.executable} -S {TOOLS_SCRIPT} {tool} "$@"\n')
    path.chmod(0o755)


@dataclass
class StandIn:
    settings: Settings
    state: Path
    app: standin.ProductpageStandIn

    def calls(self) -> list[list[str]]:
        import json

        log = self.state / "calls.jsonl"
        if not log.exists():
            return []
        return [json.loads(line) for line in log.read_text().splitlines()]


@pytest.fixture
def standin_cluster(tmp_path, monkeypatch):
    """Settings whose tools are the stand-ins, and a productpage stand-in on the ingress port."""
    cache = tmp_path / "cache"
    state = tmp_path / "state"
    state.mkdir()
    tools = Tools.in_cache(cache, for_istio("1.10.6"), "1.10.6")
    _wrapper(tools.kind, "kind")
    _wrapper(tools.kubectl, "kubectl")
    _wrapper(tools.istioctl, "istioctl")
    bin_dir = tmp_path / "bin"
    _wrapper(bin_dir / "docker", "docker")
    kube = tools.samples / "bookinfo" / "platform" / "kube"
    kube.mkdir(parents=True)
    real = (
        UPSTREAM_ISTIO / "samples/bookinfo/platform/kube/bookinfo.yaml" if UPSTREAM_ISTIO else None
    )
    (kube / "bookinfo.yaml").write_text(real.read_text() if real else STANDIN_BOOKINFO)
    (kube / "cleanup.sh").write_text(CLEANUP_SH)
    (tools.samples / "bookinfo" / "networking").mkdir()
    monkeypatch.setenv("PATH", f"{bin_dir}:{__import__('os').environ['PATH']}")
    monkeypatch.setenv("STANDIN_DIR", str(state))
    monkeypatch.setenv("STANDIN_IMAGE", FULL_IMAGE)
    monkeypatch.setenv("STANDIN_DEPLOYMENTS", ",".join(BOOKINFO_DEPLOYMENTS))
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    app = standin.ProductpageStandIn(mode_file=state / "mode")
    port = free_port()
    with standin.productpage_server(app, port):
        settings = Settings(
            image=IMAGE,
            istio_version="1.10.6",
            cache_dir=str(cache),
            artifacts=str(tmp_path / "artifacts"),
            ingress_port=port,
            wait_timeout=5,
            quiet=True,
        )
        yield StandIn(settings, state, app)
