"""The nginx front keeps the app's redirects (issue 24): a large download's X-Accel-Redirect
is stored by nginx for --front-cache seconds, like a small file, and followed on every hit,
so the app is asked once per window instead of once per download. What that must not cost:
body, ETag and checksum always belong together, no read after an overwrite or a DELETE was
answered gets the old bytes (a kept redirect leads through the name's link to its blob,
which the write removes), a read token's redirect is never reused for anyone else, nor for
a token of an earlier run, and Range, HEAD and conditional requests still work.

Real nginx in front of real gunicorn on loopback.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import io
import os
import socket
import threading
import time

import pytest
import requests

from server import front, store
from server.fastpath import INLINE_LIMIT, redirect_headers
from tests.helpers import tools
from tests.helpers.artifact_server import running_server
from tests.server.conftest import AUTH, TOKEN, sha256
from tests.server.test_front import ask_app

pytestmark = tools.skip_unless("nginx", front.find_nginx() is not None, "nginx is not installed")

LARGE = os.urandom(INLINE_LIMIT * 4 + 77)
NEW = os.urandom(INLINE_LIMIT * 4 + 77)
READ_TOKEN = "read-token-83c1"  # noqa: S105 - a test token


def serving(root, **options):
    options.setdefault("overwrite", "allow")
    return running_server(root, tokens=[TOKEN], front="nginx", **options)


def app_answers(url, headers: dict | None = None) -> int:
    """Requests the app has answered so far (nginx's cache hits never reach it); the scrape
    itself is counted from the next one on."""
    text = requests.get(f"{url}/-/metrics", headers=headers).text
    return sum(
        int(float(line.rsplit(" ", 1)[1]))
        for line in text.splitlines()
        if line.startswith("artifact_http_requests_total{")
    )


def consistent(got: requests.Response) -> bool:
    digest = hashlib.sha256(got.content).hexdigest()
    return (got.headers["ETag"], got.headers["X-Checksum-Sha256"]) == (f'"{digest}"', digest)


@pytest.fixture(scope="module")
def long_cache(tmp_path_factory):
    """A front whose window (30 s) outlasts each test: every hit below is a kept redirect."""
    with serving(tmp_path_factory.mktemp("redirects") / "root", front_cache=30) as url:
        yield url


def test_a_large_download_asks_the_app_once_per_window(long_cache):
    url = f"{long_cache}/x/hot.bin"
    assert requests.put(url, data=LARGE, headers=AUTH).status_code == 201
    direct = ask_app(long_cache.root, "/x/hot.bin")
    assert direct.getheader("X-Accel-Redirect").startswith(front.ACCEL_CURRENT)
    assert direct.getheader("X-Accel-Expires") == "30"
    before = app_answers(long_cache)
    with requests.Session() as http:
        for n in range(20):
            got = http.get(url, params={"n": n})  # the app ignores queries, and so does the key
            assert got.content == LARGE
            assert consistent(got)
    assert app_answers(long_cache) - before - 1 == 1
    kept = [p for p in (front.front_dir(long_cache.root) / "redirects").rglob("*") if p.is_file()]
    assert len(kept) == 1, kept


def test_a_name_changed_while_the_app_answers_gets_no_kept_redirect(tmp_path):
    """The app opens the file, then answers: if the name holds other bytes by then (an
    overwrite or a DELETE in between), nginx sends the opened blob once and keeps nothing,
    and no link is left that a later read could follow to the old bytes. The real store on
    disk, without a server: the race is too short to provoke."""
    artifacts = store.Store(tmp_path, max_upload_size=1 << 20, allow_overwrite=True)
    artifacts.prepare()

    def put(data: bytes) -> None:
        artifacts.put("x/a.bin", io.BytesIO(data), content_length=len(data))

    put(LARGE)
    for change in (lambda: put(NEW), lambda: artifacts.delete("x/a.bin")):
        handle, opened = artifacts.open("x/a.bin")
        with handle:
            kept = dict(redirect_headers(artifacts, handle, opened, None, 30))
            assert kept["X-Accel-Redirect"].startswith(front.ACCEL_CURRENT)
            assert kept["X-Accel-Expires"] == "30"
            link = artifacts.current / kept["X-Accel-Redirect"].removeprefix(front.ACCEL_CURRENT)
            assert link.read_bytes() == LARGE
            change()
            assert not link.exists(), "the write left the old link"
            once = dict(redirect_headers(artifacts, handle, opened, None, 30))
        assert once["X-Accel-Redirect"].startswith(front.ACCEL_FULL)
        assert once["ETag"] == kept["ETag"]
        assert "X-Accel-Expires" not in once
        assert not link.exists(), "a link for bytes the name no longer holds"
        put(LARGE)


def test_range_head_and_conditionals_work_on_a_kept_redirect(long_cache):
    url = f"{long_cache}/x/ranged.bin"
    etag = f'"{sha256(LARGE)}"'
    assert requests.put(url, data=LARGE, headers=AUTH).status_code == 201
    # A HEAD first: nginx asks the app with a GET and keeps that redirect.
    head = requests.head(url)
    assert (head.status_code, head.content) == (200, b"")
    assert head.headers["Content-Length"] == str(len(LARGE))
    assert (head.headers["ETag"], head.headers["X-Checksum-Sha256"]) == (etag, sha256(LARGE))
    before = app_answers(long_cache)
    assert requests.get(url).content == LARGE
    again = requests.head(url)
    assert (again.status_code, again.headers["ETag"], again.content) == (200, etag, b"")
    assert app_answers(long_cache) - before - 1 == 0, "the GET and HEAD were not kept"
    # Conditional and partial requests are the app's to judge, kept redirect or not.
    part = requests.get(url, headers={"Range": "bytes=10-19"})
    assert (part.status_code, part.content) == (206, LARGE[10:20])
    assert part.headers["Content-Range"] == f"bytes 10-19/{len(LARGE)}"
    assert part.headers["ETag"] == etag
    assert requests.get(url, headers={"Range": "bytes=0-1,5-6"}).content == LARGE
    assert requests.get(url, headers={"If-None-Match": etag}).status_code == 304
    assert requests.get(url, headers={"If-None-Match": '"other"'}).content == LARGE
    matched = requests.get(url, headers={"Range": "bytes=0-9", "If-Range": etag})
    assert (matched.status_code, matched.content) == (206, LARGE[:10])
    stale = requests.get(url, headers={"Range": "bytes=0-9", "If-Range": '"other"'})
    assert (stale.status_code, stale.content) == (200, LARGE)
    assert requests.get(url, headers={"If-Match": '"other"'}).status_code == 412
    assert requests.get(url, headers={"Range": f"bytes={len(LARGE)}-"}).status_code == 416


def test_an_overwrite_or_a_delete_is_seen_by_the_next_read_despite_a_kept_redirect(
    long_cache,
):
    url = f"{long_cache}/x/moved.bin"
    with requests.Session() as http:
        assert http.put(url, data=LARGE, headers=AUTH).status_code == 201
        assert http.get(url).content == LARGE
        assert http.get(url).content == LARGE  # kept for 30 s from now
        for data in (NEW, LARGE, NEW):  # back to bytes whose blob is still there, too
            assert http.put(url, data=data, headers=AUTH).status_code == 201
            before = app_answers(long_cache)
            for _ in range(3):
                got = http.get(url)
                assert got.status_code == 200
                assert (got.content, got.headers["ETag"]) == (data, f'"{sha256(data)}"')
                assert consistent(got)
                head = http.head(url)
                assert (head.headers["ETag"], head.content) == (f'"{sha256(data)}"', b"")
            # The stale redirect cost one question, and the new one is kept.
            assert app_answers(long_cache) - before - 1 == 1
        assert http.delete(url, headers=AUTH).status_code == 204
        for _ in range(2):
            assert http.get(url).status_code == 404
            assert http.head(url).status_code == 404


def test_a_kept_redirect_whose_blob_went_asks_the_app_again(long_cache):
    """A blob removed under a kept redirect (by hand here; the store keeps a blob while a
    name links it): nginx finds nothing behind the link and asks the app, which links the
    file it opened again."""
    url = f"{long_cache}/x/unlinked.bin"
    assert requests.put(url, data=LARGE, headers=AUTH).status_code == 201
    assert requests.get(url).content == LARGE
    blob = long_cache.root / ".blobs" / "sha256" / sha256(LARGE)[:2] / sha256(LARGE)
    blob.unlink()
    got = requests.get(url)
    assert (got.status_code, got.content, consistent(got)) == (200, LARGE, True)
    assert blob.exists()


def test_a_read_tokens_redirect_is_never_reused_for_another_reader(tmp_path):
    with serving(tmp_path / "root", read_token=READ_TOKEN, front_cache=30) as base:
        url = f"{base}/x/secret.bin"
        read = {"Authorization": f"Bearer {READ_TOKEN}"}
        assert requests.put(url, data=LARGE, headers=AUTH).status_code == 201
        # Refusals first: had they been kept, the token holder would get them below.
        assert requests.get(url).status_code == 401
        assert requests.get(url, headers={"Authorization": "Bearer wrong"}).status_code == 403
        assert requests.get(url, headers=read).content == LARGE
        before = app_answers(base, read)
        assert requests.get(url, headers=read).content == LARGE
        assert app_answers(base, read) - before - 1 == 0, "the reader's redirect was not kept"
        # Kept for the read token only: everyone else still reaches the app, and is refused.
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Bearer "}):
            refused = requests.get(url, headers=headers)
            assert refused.status_code in (401, 403), headers
            assert LARGE[:64] not in refused.content
            assert "X-Checksum-Sha256" not in refused.headers
        assert app_answers(base, read) - before - 2 == 3
        assert requests.get(url, headers=AUTH).content == LARGE  # a write token reads too


def test_redirects_kept_before_a_restart_are_not_followed_after_it(tmp_path):
    """A restart may change the read token (a kept redirect was judged with the old one) and
    removes every blob no name links to (a kept redirect may name one)."""
    root = tmp_path / "root"
    old = {"Authorization": f"Bearer {READ_TOKEN}"}
    with serving(root, read_token=READ_TOKEN, front_cache=3600) as base:
        url = f"{base}/x/large.bin"
        assert requests.put(url, data=LARGE, headers=AUTH).status_code == 201
        assert requests.get(url, headers=old).content == LARGE
        assert requests.get(url, headers=old).content == LARGE  # a kept redirect
    with serving(root, read_token="another-read-token", front_cache=3600) as base:
        # The new token's reader first: the name's link to its blob is there again.
        new = {"Authorization": "Bearer another-read-token"}
        assert requests.get(f"{base}/x/large.bin", headers=new).content == LARGE
        refused = requests.get(f"{base}/x/large.bin", headers=old)
        assert (refused.status_code, LARGE[:64] in refused.content) == (403, False)


def test_a_request_without_host_skips_the_redirect_cache(long_cache):
    """HTTP/1.0 allows no Host; the hop to nginx's redirect cache is HTTP/1.1, which needs one."""
    assert requests.put(f"{long_cache}/x/hostless.bin", data=LARGE, headers=AUTH).ok
    assert requests.put(f"{long_cache}/x/hostless.txt", data=b"small", headers=AUTH).ok
    for path, body in (("/x/hostless.bin", LARGE), ("/x/hostless.txt", b"small")):
        with socket.create_connection(("127.0.0.1", long_cache.port)) as sock:
            sock.sendall(f"GET {path} HTTP/1.0\r\n\r\n".encode())
            answer = b""
            while chunk := sock.recv(1 << 16):
                answer += chunk
        head, _, got = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), head
        assert got == body, path


def test_downloads_of_one_hot_file_at_once_do_not_wait_for_each_other(long_cache):
    """CI fleets fetch one tarball at once. nginx's cache lock made every download but the
    first wait for the first one's answer, which the public server never stores (a
    redirect it follows): in steps of 0.5 s, up to the lock's timeout. Without the lock,
    each download is sent in milliseconds; 0.4 s is far above that, and below one step."""
    url = f"{long_cache}/x/fleet.bin"
    assert requests.put(url, data=LARGE, headers=AUTH).status_code == 201
    assert requests.get(url).content == LARGE  # the redirect is kept from here on
    clients = 8
    start = threading.Barrier(clients)

    def download() -> float:
        with requests.Session() as http:
            start.wait()
            began = time.monotonic()
            got = http.get(url)
            took = time.monotonic() - began
        assert (got.status_code, got.content) == (200, LARGE)
        return took

    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        slowest = max(max(pool.map(lambda _: download(), range(clients))) for _burst in range(5))
    assert slowest < 0.4, f"a download waited {slowest:.2f} s for another one"
