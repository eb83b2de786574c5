"""Session-wide fixtures: a MOSN-like checkout, a built dist, the Docker engine."""

from __future__ import annotations

from pathlib import Path

import pytest

from ci.config import Settings
from tests.helpers import tools
from tests.helpers.mosn import RealMosnBuilds, make_checkout

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def mosn_checkout(tmp_path_factory) -> Path:
    return make_checkout(tmp_path_factory.mktemp("src") / "mosn")


@pytest.fixture(scope="session")
def built_dist(mosn_checkout, tmp_path_factory):
    """A dist built once per session from the stand-in checkout (linux and darwin, amd64)."""
    from ci.builder import build

    out = tmp_path_factory.mktemp("dist")
    return build(Settings(mosn_src=str(mosn_checkout), dist=str(out), quiet=True))


@pytest.fixture(scope="session")
def real_mosn(tmp_path_factory) -> RealMosnBuilds:
    """Real MOSN dists built through the module proxy, shared by every test of the session."""
    return RealMosnBuilds(tmp_path_factory.mktemp("real-mosn"))


@pytest.fixture(scope="session")
def docker_client():
    docker = tools.module("docker engine", "docker")
    try:
        client = docker.from_env(timeout=120)
        client.ping()
    except Exception as exc:
        tools.need("docker engine", f"Docker engine not reachable ({exc})")
    return client


@pytest.fixture(scope="session")
def busybox_base(docker_client) -> str:
    """A small base image (static busybox) imported into the engine: no pulls needed."""
    from tests.helpers.images import BUSYBOX, import_busybox_base

    if not BUSYBOX.exists():
        tools.need("busybox", f"busybox not found on PATH or at {BUSYBOX}")
    return import_busybox_base(docker_client)


@pytest.fixture(scope="session")
def registry(tmp_path_factory) -> str:
    """A real registry on 127.0.0.1 (no auth); yields `127.0.0.1:PORT`."""
    from tests.helpers.registry import running_registry

    tools.which("docker-registry")
    with running_registry(tmp_path_factory.mktemp("registry")) as address:
        yield address
