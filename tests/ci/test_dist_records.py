"""A dist describes only what is in it: a rebuild removes the records the later stages wrote
about the tarballs it replaced, and the manifest names the source's own remote."""

from __future__ import annotations

import json
import secrets

import pytest

from ci import names
from ci.builder.source import remote_url
from ci.image.result import ImageResult
from tests.helpers.artifact_server import running_server
from tests.helpers.mosn import git, make_checkout
from tests.helpers.publish import invoke, read_env, s3_environ

pytestmark = pytest.mark.slow
RECORDS = (names.ISTIO_ENV, names.PUBLISHED_JSON, names.IMAGE_JSON)


def build(checkout, dist, version, env):
    return invoke(
        "build", "--mosn-src", str(checkout), "--out", str(dist), "--version", version,
        "--platforms", "linux/amd64", env=env,
    )  # fmt: skip


def test_a_rebuild_removes_every_record_of_the_tarballs_it_replaced(mosn_checkout, tmp_path):
    token = f"records-{secrets.token_hex(8)}"
    env = s3_environ(tmp_path, ARTIFACT_TOKEN=token)
    dist = tmp_path / "dist"
    assert build(mosn_checkout, dist, "v-a", env).code == 0
    with running_server(tmp_path / "root", tokens=[token]) as url:
        published = invoke("publish", "--dist", str(dist), "--server-url", url, env=env)
    assert published.code == 0, published.output
    # What `invoke image` writes at its end, for an image of these tarballs.
    ImageResult("127.0.0.1:5000/mesh/proxyv2", ["v-a-1.10.6"], "sha256:" + "0" * 64, {}).write(dist)
    assert read_env(dist / names.ISTIO_ENV)[names.ISTIO_ENVOY_VERSION] == "v-a"

    # A rebuild refused before packaging leaves the old dist whole, its records included.
    refused = build(mosn_checkout, dist, "v b", env)
    assert refused.code == 1
    assert all((dist / record).is_file() for record in RECORDS)

    rebuilt = build(mosn_checkout, dist, "v-b", env)
    assert rebuilt.code == 0, rebuilt.output
    assert json.loads((dist / names.MANIFEST).read_text())["mosn_version"] == "v-b"
    assert [record for record in RECORDS if (dist / record).exists()] == []


@pytest.mark.parametrize(
    ("origin", "recorded"),
    [
        (None, ""),
        (
            "https://bot:pa55@Git.Example.com:8443/me/mosn.git",
            "https://git.example.com:8443/me/mosn.git",
        ),
        ("git@git.example.com:me/mosn.git", "git@git.example.com:me/mosn.git"),
        ("/srv/git/mosn.git", ""),
        ("file:///srv/git/mosn.git", ""),
    ],
)
def test_the_source_url_is_the_checkouts_origin_without_credentials(tmp_path, origin, recorded):
    checkout = make_checkout(tmp_path / "mosn")
    if origin:
        git(checkout, "remote", "add", "origin", origin)
    assert remote_url(checkout) == recorded
    # A folder inside some repository is not that repository's checkout.
    assert remote_url(checkout / "cmd") == ""


def test_the_manifest_records_the_source_url_and_no_password(tmp_path):
    checkout = make_checkout(tmp_path / "mosn")
    git(checkout, "remote", "add", "origin", "https://bot:s3cr3t-pa55@git.example.com/me/mosn.git")
    run = build(checkout, tmp_path / "dist", "v-c", s3_environ(tmp_path))
    assert run.code == 0, run.output
    text = (tmp_path / "dist" / names.MANIFEST).read_text()
    assert json.loads(text)["source_url"] == "https://git.example.com/me/mosn.git"
    assert "s3cr3t-pa55" not in text + run.output
