"""An authenticating registry for the action's push: the password then has to reach the push."""

from __future__ import annotations

import secrets
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
    workdir = tmp_path_factory.mktemp("auth-registry")
    username, password = "mp-action", secrets.token_hex(16)
    with running_registry(workdir, credentials=(username, password)) as address:
        yield AuthRegistry(address, username, password)
