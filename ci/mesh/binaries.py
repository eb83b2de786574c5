"""Where `invoke mesh` gets Istio's pilot-discovery and pilot-agent.

The interface the rest of ci/mesh uses is `resolve`; how it finds or builds the binaries
(a folder the user gives, Istio's own images through the Docker SDK, an Istio source tree)
is this module's business alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ci.config import Settings


@dataclass(frozen=True)
class IstioBinaries:
    pilot_discovery: Path
    # None: no pilot-agent was found, and MOSN is started directly on a bootstrap of our own.
    pilot_agent: Path | None
    # Istio's envoy_bootstrap.json template, which pilot-agent renders; None without an agent.
    bootstrap_template: Path | None
    # One line for the report: where these came from (a folder, an image, a build).
    origin: str


def resolve(settings: Settings) -> IstioBinaries:
    """pilot-discovery (and pilot-agent with its bootstrap template, when available) for
    settings.istio_version; raises UserError saying how to provide them."""
    raise NotImplementedError
