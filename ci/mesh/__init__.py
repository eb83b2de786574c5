"""`invoke mesh`: prove a MOSN build against Istio's real control plane on one machine.

istiod (pilot-discovery, file config, CA off) serves xDS built from ServiceEntries and
Bookinfo's own rule files; MOSN runs as productpage's sidecar (through pilot-agent when one is
available) and as the ingress gateway; Bookinfo stand-ins answer on loopback addresses. The
scenarios and their verdicts are the kind job's (ci/e2e).

ci/mesh/binaries.py finds or builds pilot-discovery and pilot-agent; ci/mesh/check.py runs the
check, in a network namespace of its own when it can (ci/mesh/network.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ci.config import Settings
    from ci.mesh.check import MeshReport


def run(settings: Settings) -> MeshReport:
    """Run the check; raise UserError naming the first failed step (the report is written)."""
    from ci.mesh.check import run as run_check

    return run_check(settings)
