"""An authenticating registry for the action's push: the password then has to reach the push."""

from __future__ import annotations

import secrets
import shutil
import subprocess
from dataclasses import dataclass

import pytest

from tests.helpers.registry import running_registry


@dataclass(frozen=True)
class AuthRegistry:
    address: str
    username: str
    password: str


@pytest.fixture
def auth_registry(tmp_path_factory):
    if not shutil.which("htpasswd"):
        pytest.fail("htpasswd not found: install Debian's apache2-utils (.ci/run does)")
    workdir = tmp_path_factory.mktemp("auth-registry")
    username, password = "mp-action", secrets.token_hex(16)
    entry = subprocess.run(
        ["htpasswd", "-Bbn", username, password], check=True, capture_output=True, text=True
    ).stdout
    htpasswd = workdir / "htpasswd"
    htpasswd.write_text(entry)
    with running_registry(workdir, htpasswd=htpasswd) as address:
        yield AuthRegistry(address, username, password)
