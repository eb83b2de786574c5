"""Fixtures for `invoke mesh`'s tests: Istio 1.10.6's pilot-discovery and pilot-agent, built
from the source beside the project once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from ci.config import Settings
from ci.mesh.binaries import IstioBinaries, build_from_source
from tests.e2e.conftest import UPSTREAM_ISTIO
from tests.helpers import tools


@pytest.fixture(scope="session")
def istio_source() -> Path:
    """Istio 1.10.6's source of the two commands, read-only as CI has it."""
    source = UPSTREAM_ISTIO / "src" if UPSTREAM_ISTIO else None
    if source is None or not source.is_dir():
        tools.need("istio upstream", "../shared/upstream/istio-1.10.6/src not found")
    return source


@pytest.fixture(scope="session")
def istio_build(istio_source, tmp_path_factory) -> Settings:
    """The settings of the session's build: its cache_dir is in the session's tmp folder."""
    tools.which("go")
    cache = tmp_path_factory.mktemp("istio-cache")
    return Settings(istio_src=str(istio_source), cache_dir=str(cache), quiet=True)


@pytest.fixture(scope="session")
def istio_binaries(istio_build) -> IstioBinaries:
    """pilot-discovery, pilot-agent and the bootstrap template, built by `--istio-src` with the
    machine's Go environment as it is (its module and build caches): once per session, minutes
    from an empty module cache."""
    return build_from_source(istio_build)
