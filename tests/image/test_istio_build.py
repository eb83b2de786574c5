"""Full mode's pieces that need no engine: the cached shallow clone and the make arguments."""

from __future__ import annotations

import subprocess

import pytest

from ci import names
from ci.config import Settings
from ci.errors import UserError
from ci.image import full
from tests.helpers.image import make_istio_standin


def test_clone_is_shallow_cached_and_reset_to_the_tag_on_reuse(tmp_path):
    repo = make_istio_standin(tmp_path / "upstream")
    cache = tmp_path / "cache"
    settings = Settings(istio_repo=f"file://{repo}", istio_version="1.10.6", cache_dir=str(cache))
    first = full.istio_source(settings)
    shallow = subprocess.run(
        ["git", "-C", first, "rev-parse", "--is-shallow-repository"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert shallow.stdout.strip() == "true"
    makefile = first / "Makefile"
    original = makefile.read_bytes()
    makefile.write_text("edited\n")
    (first / "out").mkdir()
    (first / "out" / "kept").write_text("build output")

    second = full.istio_source(settings)
    assert second == first
    assert makefile.read_bytes() == original
    assert (first / "out" / "kept").read_text() == "build output"
    (only,) = (cache / "istio").glob("*/[0-9a-f]*")
    assert only == first


def test_a_missing_tag_fails_in_one_line_and_leaves_no_partial_clone(tmp_path):
    repo = make_istio_standin(tmp_path / "upstream")
    cache = tmp_path / "cache"
    settings = Settings(istio_repo=f"file://{repo}", istio_version="9.9.9", cache_dir=str(cache))
    with pytest.raises(UserError, match="git clone of 9.9.9 .*failed .* has the tag 9.9.9"):
        full.istio_source(settings)
    assert not list(cache.rglob(".git")), "a partial clone was left in the cache"


def test_make_arguments_fix_hub_tag_build_all_and_sidecar():
    values = {names.ISTIO_ENVOY_VERSION: "v1", names.SIDECAR_VAR: "envoy"}
    assert full.make_arguments(values, "r.example/mesh", "t1") == [
        "ISTIO_ENVOY_VERSION=v1",
        "SIDECAR=mosn",
        "HUB=r.example/mesh",
        "TAG=t1",
        "BUILD_ALL=false",
    ]


def test_presigned_query_strings_are_kept_out_of_the_log():
    values = {
        names.ISTIO_ENVOY_RELEASE_URL: "https://b.example/mosn.tar.gz?X-Amz-Signature=s3cr3t",
        names.ISTIO_ENVOY_VERSION: "v1",
    }
    assert full.url_secrets(values) == ["X-Amz-Signature=s3cr3t"]
