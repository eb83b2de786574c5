"""Path rules: nothing outside the root, nothing hidden, nothing ambiguous can be read or written."""

from __future__ import annotations

import os

import pytest

from server import paths
from tests.server.conftest import AUTH, TOKEN, raw_request

REFUSED = {
    "dot-dot": "{p}/../escape.txt",
    "dot-dot-encoded": "{p}/%2e%2e/escape.txt",
    "dot-dot-at-start": "../escape.txt",
    "absolute": "/etc/passwd",
    "backslash": "{p}\\escape.txt",
    "backslash-encoded": "{p}%5cescape.txt",
    "nul-encoded": "{p}/a%00b",
    "control-encoded": "{p}/a%01b",
    "delete-char-encoded": "{p}/a%7fb",
    "empty-segment": "{p}//a.txt",
    "trailing-slash": "{p}/a/",
    "dot-segment": "{p}/./a.txt",
    "hidden-name": "{p}/.hidden",
    "hidden-directory": ".tmp/uploads/x",
    "sidecar-name": "{p}/.x.meta",
    "segment-too-long": "{p}/" + "a" * 256,
    "path-too-long": "{p}/" + "/".join(["b" * 200] * 6),
    "reserved-prefix": "-/healthz2",
}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_bad_paths_are_refused_for_put_and_nothing_is_written(name, live_server, prefix):
    target = "/" + REFUSED[name].format(p=prefix)
    before = stored_files(live_server.root.parent)
    status = raw_request(
        live_server, "PUT", target, b"payload", {"Authorization": f"Bearer {TOKEN}"}
    )
    assert status in (400, 404, 405), (name, status)
    assert stored_files(live_server.root.parent) == before


def stored_files(top) -> set[str]:
    """Every file under `top` (the root and its parent), except the server's own counters and log."""
    found = set()
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames[:] = [d for d in dirnames if d != "metrics"]
        found |= {os.path.join(dirpath, f) for f in filenames if not f.endswith(".log")}
    return found


@pytest.mark.parametrize(
    "name",
    ["dot-dot", "dot-dot-encoded", "hidden-directory", "sidecar-name", "backslash", "nul-encoded"],
)
def test_bad_paths_are_refused_for_get(name, live_server, prefix):
    target = "/" + REFUSED[name].format(p=prefix)
    assert raw_request(live_server, "GET", target) in (400, 404)


def test_raw_control_characters_in_the_request_line_are_refused(live_server, prefix):
    status = raw_request(
        live_server, "PUT", f"/{prefix}/a\x01b", b"x", {"Authorization": f"Bearer {TOKEN}"}
    )
    assert status == 400


def test_sidecars_and_temporary_files_cannot_be_read(live_server, prefix, http):
    http.put(f"{live_server}/{prefix}/seen.bin", data=b"x", headers=AUTH)
    assert (live_server.root / prefix / ".seen.bin.meta").exists()
    assert raw_request(live_server, "GET", f"/{prefix}/.seen.bin.meta") == 400
    assert raw_request(live_server, "GET", "/.tmp/") == 400
    assert raw_request(live_server, "GET", "/.server.pid") == 400
    listing = http.get(f"{live_server}/{prefix}/", headers={"Accept": "application/json"}).json()
    assert [a["name"] for a in listing["artifacts"]] == ["seen.bin"]


def test_a_symlink_cannot_lead_outside_the_root(live_server, prefix, http, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("outside the root")
    (live_server.root / prefix).mkdir()
    os.symlink(outside, live_server.root / prefix / "link")
    os.symlink(outside / "secret.txt", live_server.root / prefix / "file-link")
    assert http.get(f"{live_server}/{prefix}/link/secret.txt").status_code == 400
    assert http.get(f"{live_server}/{prefix}/file-link").status_code == 400
    assert (
        http.put(f"{live_server}/{prefix}/link/new.txt", data=b"x", headers=AUTH).status_code == 400
    )
    assert not (outside / "new.txt").exists()
    listing = http.get(f"{live_server}/-/api/artifacts", params={"prefix": prefix}).json()
    assert listing == []


def test_a_symlink_inside_the_root_is_followed(live_server, prefix, http):
    http.put(f"{live_server}/{prefix}/real/a.bin", data=b"inside", headers=AUTH)
    os.symlink(live_server.root / prefix / "real", live_server.root / prefix / "alias")
    assert http.get(f"{live_server}/{prefix}/alias/a.bin").content == b"inside"


@pytest.mark.parametrize(
    "path",
    [
        "a/../b",
        "/abs",
        "a\\b",
        "a\x00b",
        "a\nb",
        "a//b",
        ".a",
        "a/.b",
        "-/x",
        "a/" + "x" * 256,
        ("a/" * 600)[:-1],
    ],
)
def test_check_refuses(path):
    with pytest.raises(paths.BadPath):
        paths.check(path)


@pytest.mark.parametrize(
    "path", ["mosn.tar.gz", "mosn/v1.0.0-1.10.6/mosn-macos.tar.gz", "a-b_c+d@e/ü/x y", "x/-/y"]
)
def test_check_accepts(path):
    assert paths.check(path) == path
