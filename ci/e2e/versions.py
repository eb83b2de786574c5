"""The one table from an Istio version to the cluster it can be proven on.

A kind node image only works with the kind release that built it, and each kind release lists
its node images with digests; Istio 1.10's charts use APIs removed in Kubernetes 1.25. So a row
pins all three together: kind release (with its binary's sha256), node image (with digest) and
the kubectl minor that matches the node. Add a row here to support another Istio minor.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ci.errors import UserError


@dataclass(frozen=True)
class ClusterVersions:
    istio_minor: str
    max_kubernetes: str
    kind_release: str
    # sha256 of kind-linux-<arch>, as published for that kind release.
    kind_sha256: dict[str, str]
    node_image: str
    kubectl_version: str

    @property
    def kubernetes(self) -> str:
        return self.node_image.split(":", 1)[1].split("@", 1)[0]


TABLE: dict[str, ClusterVersions] = {
    row.istio_minor: row
    for row in (
        ClusterVersions(
            istio_minor="1.10",
            max_kubernetes="1.24",
            kind_release="v0.17.0",
            kind_sha256={
                "amd64": "a8c045856db33f839908b6acb90dc8ec397253ffdaef7baf058f5a542e009b9c",
            },
            node_image=(
                "kindest/node:v1.24.7"
                "@sha256:577c630ce8e509131eab1aea12c022190978dd2f745aac5eb1fe65c0807eb315"
            ),
            kubectl_version="v1.24.7",
        ),
    )
}

_VERSION = re.compile(r"^(\d+)\.(\d+)\.(\d+)$")


def for_istio(istio_version: str) -> ClusterVersions:
    """The row for an Istio release such as 1.10.6, or a UserError naming the supported ones."""
    match = _VERSION.match(istio_version.strip())
    if not match:
        raise UserError(
            f"Istio version {istio_version!r} is not of the form MAJOR.MINOR.PATCH; "
            "pass e.g. --istio-version 1.10.6"
        )
    minor = f"{match.group(1)}.{match.group(2)}"
    row = TABLE.get(minor)
    if row is None:
        known = ", ".join(f"{m}.x" for m in sorted(TABLE))
        raise UserError(
            f"no kind node image is known for Istio {istio_version} (supported: {known}); "
            "add a row to ci/e2e/versions.py or pass a supported --istio-version"
        )
    return row


def kind_sha256(row: ClusterVersions, arch: str) -> str:
    try:
        return row.kind_sha256[arch]
    except KeyError:
        raise UserError(
            f"kind {row.kind_release} has no pinned checksum for {arch} in ci/e2e/versions.py; "
            f"run on {'/'.join(sorted(row.kind_sha256))} or add the checksum"
        ) from None
