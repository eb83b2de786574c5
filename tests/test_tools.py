"""tests/helpers/tools.py: a missing tool skips a test, except where the environment says the
tool must be there; then the test fails."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import tools

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def outside_ci(monkeypatch):
    monkeypatch.delenv(tools.CI, raising=False)
    monkeypatch.delenv(tools.CLUSTER, raising=False)
    return monkeypatch


def test_a_missing_tool_skips_with_how_to_get_it(outside_ci):
    with pytest.raises(pytest.skip.Exception) as skipped:
        tools.need("nginx", "nginx is not installed")
    assert str(skipped.value) == "nginx is not installed; install Debian's nginx (.ci/run does)"


def test_in_ci_a_missing_tool_fails(outside_ci):
    outside_ci.setenv(tools.CI, "1")
    with pytest.raises(pytest.fail.Exception) as failed:
        tools.need("nginx", "nginx is not installed")
    assert str(failed.value) == (
        "nginx is not installed; install Debian's nginx (.ci/run does) "
        f"({tools.CI}=1 requires nginx)"
    )


def test_each_requirement_has_its_own_variable(outside_ci):
    outside_ci.setenv(tools.CI, "1")
    # .ci/run cannot have a kind cluster, nor the upstream Istio tree.
    for tool in ("kind cluster", "istio upstream"):
        with pytest.raises(pytest.skip.Exception):
            tools.need(tool, "absent")
    outside_ci.setenv(tools.CLUSTER, "1")
    with pytest.raises(pytest.fail.Exception):
        tools.need("kind cluster", "absent")


def test_which_and_module_find_what_is_there_and_need_the_rest(outside_ci, tmp_path):
    outside_ci.setenv("PATH", str(tmp_path))
    (tmp_path / "act").write_text("#!/bin/sh\n")
    (tmp_path / "act").chmod(0o755)
    assert tools.which("act") == str(tmp_path / "act")
    with pytest.raises(pytest.skip.Exception, match="^nginx not found on PATH; install"):
        tools.which("nginx")
    assert tools.module("tomllib").loads("a = 1") == {"a": 1}
    with pytest.raises(pytest.skip.Exception, match="^cannot import scipy.no_such_module"):
        tools.module("scipy", "scipy.no_such_module")


def test_a_mark_fails_collection_where_required(outside_ci):
    assert tools.skip_unless("nginx", False, "nginx is not installed").kwargs["reason"] == (
        "nginx is not installed; install Debian's nginx (.ci/run does)"
    )
    outside_ci.setenv(tools.CI, "1")
    assert tools.skip_unless("nginx", True, "nginx is not installed").args == (False,)
    with pytest.raises(pytest.fail.Exception):
        tools.skip_unless("nginx", False, "nginx is not installed")


def test_a_misspelt_tool_is_an_error_not_a_skip():
    with pytest.raises(KeyError):
        tools.need("ngnix", "typo")


def test_ci_sets_the_variable_the_helper_reads():
    assert f"export {tools.CI}=1" in (REPO / ".ci" / "run").read_text().splitlines()
