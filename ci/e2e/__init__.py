"""`invoke e2e`: prove a MOSN proxyv2 image on kind with Istio and Bookinfo (steps 7-11).

ci/e2e/plan.py lists the steps and the commands in them; ci/e2e/runner.py runs that list;
--plan prints it. Every command goes through ci.proc.run.

Why not pytest-kind's KindCluster for the cluster's life: its methods call subprocess directly
(so they would bypass ci.proc.run and could not be shown by --plan), its kubectl gets only
KUBECONFIG (no PATH, no HOME), its port_forward keeps retrying for ~10 s after it succeeded, and
its fixture deletes a cluster it merely reused. Driving kind and kubectl here avoids all four:
we pass --kubeconfig explicitly, reach the gateway through a kind port mapping instead of a
port-forward, and delete only a cluster whose name was free when this run began. pytest-kind
is used where it fits, in tests/e2e/test_live_kind.py, with those defects worked around.
"""

from __future__ import annotations

from ci.config import Settings
from ci.e2e.istioctl import host_arch
from ci.e2e.plan import Plan
from ci.e2e.report import ChecksFailed, Report, matrix_markdown
from ci.e2e.runner import Runner, preview_images

__all__ = ["ChecksFailed", "Report", "matrix_markdown", "plan_lines", "run"]


def plan_lines(settings: Settings, arch: str | None = None) -> list[str]:
    plan = Plan(settings, arch or host_arch())
    lines = plan.lines()
    # The list goes right under the action that derives it.
    at = next(i for i, line in enumerate(lines) if line.startswith("# images to preload:")) + 1
    return [*lines[:at], *preview_images(plan), *lines[at:]]


def run(settings: Settings, arch: str | None = None) -> Report:
    """Run the job and return its report; when a check fails, raise ChecksFailed naming the
    first (the report files are written either way)."""
    return Runner(Plan(settings, arch or host_arch())).run()
