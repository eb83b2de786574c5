"""The nginx front (`--front nginx`): what nginx serves itself, what it caches, and that it
never serves what the app would refuse. The whole API also runs through the front: the
`live_server` tests (every endpoint's smoke, large downloads, Range, chunked bodies, auth,
hostile clients) are parametrized over both modes (tests/server/conftest.py); the detailed
API cases run on the app in-process.

Each test runs a real nginx (Debian's) in front of a real gunicorn on loopback.
"""

from __future__ import annotations

import http.client
import os
import socket
import time
from pathlib import Path

import pytest
import requests

from server import background, front, unit
from server.config import front_options
from server.errors import ServerError
from server.fastpath import INLINE_LIMIT
from tests.helpers import tools
from tests.helpers.artifact_server import running_server
from tests.server.conftest import AUTH, TOKEN, sha256
from tests.server.test_faults import wait_until
from tests.server.test_hardening import closed_by_server, connect

pytestmark = tools.skip_unless("nginx", front.find_nginx() is not None, "nginx is not installed")

READ_TOKEN = "read-token-5e1d"  # noqa: S105 - a test token
LARGE = os.urandom(INLINE_LIMIT * 4 + 123)


class _UnixConnection(http.client.HTTPConnection):
    """A connection to the app's own socket, behind nginx."""

    def __init__(self, path: str) -> None:
        super().__init__("app")
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(self._path)


def ask_app(root: Path, path: str, headers: dict | None = None) -> http.client.HTTPResponse:
    connection = _UnixConnection(str(front.front_dir(root) / "app.sock"))
    connection.request("GET", path, headers={"Host": "app", **(headers or {})})
    response = connection.getresponse()
    response.read()
    connection.close()
    return response


@pytest.fixture(scope="module")
def fronted(tmp_path_factory):
    with running_server(
        tmp_path_factory.mktemp("front") / "root",
        tokens=[TOKEN],
        front="nginx",
        overwrite="allow",
        front_cache=1,
    ) as url:
        yield url


def test_a_large_download_is_sent_by_nginx_with_the_apps_headers(fronted, http):
    assert http.put(f"{fronted}/x/large.bin", data=LARGE, headers=AUTH).status_code == 201
    digest = sha256(LARGE)
    # The app answers with a redirect into nginx's internal location, no bytes.
    direct = ask_app(fronted.root, "/x/large.bin")
    # ... through the name's link to the content-addressed blob of these bytes (a link that
    # goes when the name changes: test_front_redirects).
    target = direct.getheader("X-Accel-Redirect")
    assert target.startswith("/-/front/current/") and target.endswith(f"-{digest}")
    link = fronted.root / ".blobs" / "current" / target.removeprefix("/-/front/current/")
    assert link.resolve() == fronted.root / ".blobs" / "sha256" / digest[:2] / digest
    assert direct.getheader("Content-Length") == "0"
    got = http.get(f"{fronted}/x/large.bin")
    assert got.status_code == 200
    assert got.content == LARGE
    assert got.headers["Server"] == "nginx"
    assert got.headers["ETag"] == f'"{digest}"'
    assert got.headers["X-Checksum-Sha256"] == digest
    assert got.headers["Content-Type"] == "application/octet-stream"
    assert "X-Accel-Redirect" not in got.headers


def test_a_large_download_with_range_and_conditionals_through_nginx(fronted, http):
    assert http.put(f"{fronted}/x/ranged.bin", data=LARGE, headers=AUTH).status_code == 201
    url = f"{fronted}/x/ranged.bin"
    etag = f'"{sha256(LARGE)}"'
    digest = sha256(LARGE)
    assert ask_app(fronted.root, "/x/ranged.bin", {"Range": "bytes=10-19"}).getheader(
        "X-Accel-Redirect"
    ) == (f"/-/front/range/{digest[:2]}/{digest}")
    part = http.get(url, headers={"Range": "bytes=10-19"})
    assert part.status_code == 206
    assert part.content == LARGE[10:20]
    assert part.headers["Content-Range"] == f"bytes 10-19/{len(LARGE)}"
    assert part.headers["ETag"] == etag
    suffix = http.get(url, headers={"Range": f"bytes=-{len(LARGE) * 2}"})
    assert (suffix.status_code, suffix.content) == (206, LARGE)
    assert http.get(url, headers={"If-None-Match": etag}).status_code == 304
    assert http.get(url, headers={"If-None-Match": '"other"'}).content == LARGE
    # RFC 9110 as the app reads it: what it ignores, nginx must not serve as a range.
    for ignored in ("bytes=abc", "items=0-5", "bytes=0-1,5-6", "bytes=9-3"):
        whole = http.get(url, headers={"Range": ignored})
        assert (whole.status_code, len(whole.content)) == (200, len(LARGE)), ignored
    assert http.get(url, headers={"Range": "bytes=-0"}).status_code == 416
    weak = http.get(url, headers={"Range": "bytes=0-9", "If-Range": f"W/{etag}"})
    assert (weak.status_code, weak.content) == (200, LARGE)
    strong = http.get(url, headers={"Range": "bytes=0-9", "If-Range": etag})
    assert (strong.status_code, strong.content) == (206, LARGE[:10])
    stale = http.get(url, headers={"Range": "bytes=0-9", "If-Range": '"other"'})
    assert stale.status_code == 200
    assert http.get(url, headers={"If-Match": '"other"'}).status_code == 412
    assert http.get(url, headers={"If-Match": etag}).content == LARGE


def test_nginx_never_serves_dot_files_or_its_internal_locations(fronted, http):
    assert http.put(f"{fronted}/x/seen.bin", data=LARGE, headers=AUTH).status_code == 201
    blob = f"{sha256(LARGE)[:2]}/{sha256(LARGE)}"
    for target, status in (
        (f"/.blobs/sha256/{blob}", 400),
        (f"/-/front/full/{blob}", 404),
        (f"/-/front/range/{blob}", 404),
        ("/.server.pid", 400),
        ("/.front/nginx.conf", 400),
        ("/x/.seen.bin.meta", 400),
        ("/.tmp/", 400),
        ("/-/front/full/x/seen.bin", 404),
        ("/-/front/range/x/seen.bin", 404),
        ("/-/front/full/.server.pid", 404),
        ("/-/front/authorize", 404),
        ("/x/../-/front/full/x/seen.bin", 404),
    ):
        answer = http.get(f"{fronted}{target}")
        assert answer.status_code == status, target
        assert answer.content != LARGE, target


def test_an_overwrite_is_served_once_the_cache_time_is_over(fronted, http):
    url = f"{fronted}/x/small.txt"
    assert http.put(url, data=b"old", headers=AUTH).status_code == 201
    assert http.get(url).content == b"old"  # now in nginx's cache
    assert http.put(url, data=b"new", headers=AUTH).status_code == 201
    # A client that asks for a fresh copy gets it at once; the others within the TTL.
    assert http.get(url, headers={"Cache-Control": "no-cache"}).content == b"new"
    time.sleep(2.2)  # the TTL, plus up to a second: nginx counts whole seconds
    got = http.get(url)
    assert got.content == b"new"
    assert got.headers["ETag"] == f'"{sha256(b"new")}"'
    assert http.delete(url, headers=AUTH).status_code == 204
    time.sleep(2.2)  # the TTL, plus up to a second: nginx counts whole seconds
    assert http.get(url).status_code == 404


def test_a_small_download_is_cached_by_nginx(fronted, http):
    url = f"{fronted}/x/hot.txt"
    assert http.put(url, data=b"hot", headers=AUTH).status_code == 201
    assert ask_app(fronted.root, "/x/hot.txt").getheader("X-Accel-Expires") == "1"
    served_before = _app_log_lines(fronted, "/x/hot.txt")
    for _ in range(20):
        assert http.get(url).content == b"hot"
    # One request reached the app (the first miss); the others came from nginx's cache.
    assert _app_log_lines(fronted, "/x/hot.txt") - served_before <= 2


def _app_log_lines(url, path: str) -> int:
    # The app's access lines end with "Nms"; nginx's with "N.NNNs".
    return sum(
        1
        for line in url.log.read_text(errors="replace").splitlines()
        if f"GET {path} " in line and "ms " in line
    )


def test_the_cache_keeps_read_tokens_apart_and_never_stores_refusals(tmp_path, http):
    with running_server(
        tmp_path / "root", tokens=[TOKEN], front="nginx", read_token=READ_TOKEN, front_cache=30
    ) as url:
        target = f"{url}/x/secret.txt"
        assert http.put(target, data=b"secret", headers=AUTH).status_code == 201
        # Refusals first: had they been cached, the token holder would get them below.
        assert http.get(target).status_code == 401
        assert http.get(target, headers={"Authorization": "Bearer wrong"}).status_code == 403
        read = {"Authorization": f"Bearer {READ_TOKEN}"}
        assert http.get(target, headers=read).content == b"secret"
        # Now cached for the read token: nobody else gets the body from the cache.
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Bearer "}):
            refused = http.get(target, headers=headers)
            assert refused.status_code in (401, 403), headers
            assert b"secret" not in refused.content
        assert http.get(target, headers=read).content == b"secret"
        assert http.get(target, headers=AUTH).content == b"secret"  # a write token reads too


def test_a_bad_token_gets_no_100_continue_through_nginx(fronted):
    request = (
        b"PUT /x/never.bin HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer wrong\r\n"
        b"Content-Length: 1000000\r\nExpect: 100-continue\r\n\r\n"
    )
    with connect(fronted) as sock:
        sock.sendall(request)
        first = sock.recv(4096)
    assert first.startswith(b"HTTP/1.1 403"), first
    assert b"100 Continue" not in first
    assert requests.get(f"{fronted}/x/never.bin").status_code == 404


def test_an_upload_over_the_limit_gets_the_apps_413_through_nginx(tmp_path):
    with running_server(
        tmp_path / "root", tokens=[TOKEN], front="nginx", max_upload_size="1K"
    ) as url:
        answer = requests.put(f"{url}/big.bin", data=b"x" * 4096, headers=AUTH)
        assert answer.status_code == 413
        assert answer.json()["reason"] == "too_large"
        chunked = requests.put(f"{url}/big.bin", data=iter([b"x" * 4096]), headers=AUTH)
        assert chunked.status_code == 413
        assert requests.get(f"{url}/big.bin").status_code == 404


def test_a_slowloris_connection_is_closed_by_nginx(tmp_path):
    with running_server(tmp_path / "root", front="nginx", header_timeout=1) as url:
        with connect(url) as sock:
            sock.sendall(b"GET /-/healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            assert closed_by_server(sock, within=10)
        assert requests.get(f"{url}/-/healthz").status_code == 200


def _nginx_pid(root: Path) -> int:
    return int((front.front_dir(root) / "nginx.pid").read_text())


def test_stop_stops_both_processes(tmp_path):
    with running_server(tmp_path / "root", front="nginx") as url:
        nginx = _nginx_pid(url.root)
        workers = url.workers()
        assert requests.get(f"{url}/-/healthz").status_code == 200
        assert background.stop(url.root) == url.pid
    for pid in (url.pid, nginx, *workers):
        wait_until(lambda pid=pid: not unit.alive(pid), f"process {pid} gone", 10)
    assert not (front.front_dir(url.root) / "app.sock").exists()
    assert not (front.front_dir(url.root) / "nginx.pid").exists()


def test_front_options_are_checked():
    assert front_options(None, None, {}) == {"front": "none", "front_cache": 1}
    env = {"ARTIFACT_FRONT": "NGINX", "ARTIFACT_FRONT_CACHE": "5"}
    assert front_options(None, None, env) == {"front": "nginx", "front_cache": 5}
    assert front_options("none", 0, env) == {"front": "none", "front_cache": 0}
    with pytest.raises(ServerError, match="unknown; use none or nginx"):
        front_options("apache", None, {})
    with pytest.raises(ServerError, match="not a number of seconds"):
        front_options(None, None, {"ARTIFACT_FRONT_CACHE": "soon"})


def test_the_generated_config_passes_nginx_t_and_keeps_to_the_root(tmp_path):
    with running_server(tmp_path / "root", front="nginx", access_log="") as url:
        conf = (front.front_dir(url.root) / "nginx.conf").read_text()
    paths = [line.split()[1].rstrip(";") for line in conf.splitlines() if "_path " in line]
    assert paths and all(p.startswith(str(front.front_dir(url.root))) for p in paths)
    assert "/var/log" not in conf
    assert "access_log off;" in conf
