"""Fixtures for the `invoke image` tests."""

from __future__ import annotations

import pytest

from tests.helpers.image import copy_dist, remove_repository


@pytest.fixture
def dist_dir(built_dist, tmp_path):
    """A private copy of the session's dist: these tests write image.json and edit manifests."""
    return copy_dist(built_dist.root, tmp_path / "dist")


@pytest.fixture
def repositories(docker_client):
    """Repositories a test creates; every local reference into them is dropped afterwards."""
    made: list[str] = []
    yield made
    for repository in made:
        remove_repository(docker_client, repository)
