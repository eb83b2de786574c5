"""The one table from Istio version to kind release and node image."""

from __future__ import annotations

import pytest

from ci.e2e import versions
from ci.errors import UserError


def test_istio_1_10_gets_kind_0_17_and_the_pinned_1_24_node():
    row = versions.for_istio("1.10.6")
    assert row.kind_release == "v0.17.0"
    assert row.node_image == (
        "kindest/node:v1.24.7"
        "@sha256:577c630ce8e509131eab1aea12c022190978dd2f745aac5eb1fe65c0807eb315"
    )
    assert row.kubernetes == "v1.24.7"
    assert versions.for_istio("1.10.0") is row


@pytest.mark.parametrize("row", list(versions.TABLE.values()))
def test_every_row_respects_its_kubernetes_ceiling_and_pins_by_digest(row):
    node = tuple(int(p) for p in row.kubernetes.lstrip("v").split(".")[:2])
    ceiling = tuple(int(p) for p in row.max_kubernetes.split("."))
    assert node <= ceiling
    assert "@sha256:" in row.node_image and len(row.node_image.split("@sha256:")[1]) == 64
    assert row.kubectl_version == row.kubernetes
    assert all(len(digest) == 64 for digest in row.kind_sha256.values())


def test_an_unsupported_istio_version_names_the_supported_ones():
    with pytest.raises(
        UserError, match=r"no kind node image is known for Istio 1.11.0 \(supported: 1.10.x\)"
    ):
        versions.for_istio("1.11.0")


def test_a_malformed_version_says_the_expected_form():
    with pytest.raises(UserError, match="is not of the form MAJOR.MINOR.PATCH"):
        versions.for_istio("latest")


def test_an_architecture_without_a_pinned_kind_checksum_is_refused():
    with pytest.raises(UserError, match="no pinned checksum for riscv64"):
        versions.kind_sha256(versions.for_istio("1.10.6"), "riscv64")
