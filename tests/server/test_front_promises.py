"""The default mode's promises, kept behind the nginx front too (issue 23): a 413 before an
over-limit body is read, a Range read as the app reads it, body and sha256/ETag that always
belong together (content-addressed blobs), a cache that query strings cannot fill; and the
loads first tried there: slow uploads, a full disk, Unicode names, overwrite and DELETE of
large files. Real nginx in front of real gunicorn on loopback; where a promise is the
default mode's too, both modes run.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
import time
import unicodedata
from pathlib import Path

import pytest
import requests

from server import front, store
from server.fastpath import INLINE_LIMIT
from tests.helpers import tools
from tests.helpers.artifact_server import running_server
from tests.server.conftest import AUTH, TOKEN, sha256
from tests.server.test_faults import uploads_in_progress, visible_files
from tests.server.test_hardening import closed_by_server, connect

pytestmark = tools.skip_unless("nginx", front.find_nginx() is not None, "nginx is not installed")
MODES = ["app", "nginx"]
LARGE = os.urandom(200_000)


def serving(root: Path, mode: str, **options):
    options.setdefault("overwrite", "allow")
    return running_server(root, tokens=[TOKEN], front=None if mode == "app" else mode, **options)


@pytest.mark.parametrize("mode", MODES)
def test_an_over_limit_upload_gets_413_before_its_body_is_invited(tmp_path, mode):
    with serving(tmp_path / "root", mode, max_upload_size="1M") as url:
        with connect(url) as sock:
            sock.sendall(
                f"PUT /x/huge.bin HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
                f"Content-Length: {20 * 1024 * 1024}\r\nExpect: 100-continue\r\n\r\n".encode()
            )
            first = sock.recv(65536)
            assert first.startswith(b"HTTP/1.1 413"), first[:200]
            head, _, body = first.partition(b"\r\n\r\n")
            while len(body) < int(re.search(rb"Content-Length: (\d+)", head, re.I).group(1)):
                body += sock.recv(65536)
        assert b"100 Continue" not in first
        assert b"application/json" in head
        assert b'"reason": "too_large"' in body or b'"reason":"too_large"' in body
        assert requests.get(f"{url}/x/huge.bin").status_code == 404
        # At the limit exactly, the upload is taken.
        exact = os.urandom(1024 * 1024)
        assert requests.put(f"{url}/x/exact.bin", data=exact, headers=AUTH).status_code == 201
        assert requests.get(f"{url}/x/exact.bin").content == exact


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("header", ["bytes=0-18446744073709551615", "bytes=-99999999999999999999"])
def test_a_range_past_64_bits_is_the_whole_file_in_both_modes(tmp_path, mode, header):
    with serving(tmp_path / "root", mode) as url:
        assert requests.put(f"{url}/x/large.bin", data=LARGE, headers=AUTH).status_code == 201
        got = requests.get(f"{url}/x/large.bin", headers={"Range": header})
        assert got.status_code == 206, got.text[:200]
        assert got.content == LARGE
        assert got.headers["Content-Range"] == f"bytes 0-{len(LARGE) - 1}/{len(LARGE)}"
        assert got.headers["ETag"] == f'"{sha256(LARGE)}"'


@pytest.mark.parametrize("mode", MODES)
def test_body_and_sha256_always_belong_together_while_a_large_file_is_overwritten(tmp_path, mode):
    """4 readers of a file two writers keep replacing: every body's sha256 is the one in its
    own ETag and X-Checksum-Sha256 (the front used to send the new bytes under the old one)."""
    bodies = [os.urandom(300_000), os.urandom(300_000)]
    with serving(tmp_path / "root", mode) as url:
        target = f"{url}/x/moving.bin"
        assert requests.put(target, data=bodies[0], headers=AUTH).status_code == 201
        stop = threading.Event()
        reads, wrong = [0], []

        def write() -> None:
            with requests.Session() as session:
                n = 0
                while not stop.is_set():
                    n += 1
                    session.put(target, data=bodies[n % 2], headers=AUTH)

        def read() -> None:
            with requests.Session() as session:
                while not stop.is_set():
                    got = session.get(target)
                    reads[0] += 1
                    digest = hashlib.sha256(got.content).hexdigest()
                    claimed = (got.headers["ETag"].strip('"'), got.headers["X-Checksum-Sha256"])
                    if claimed != (digest, digest):
                        wrong.append(claimed)

        threads = [threading.Thread(target=write) for _ in range(2)]
        threads += [threading.Thread(target=read) for _ in range(4)]
        for thread in threads:
            thread.start()
        time.sleep(6)
        stop.set()
        for thread in threads:
            thread.join()
    assert reads[0] > 50
    assert wrong == [], f"{len(wrong)} of {reads[0]} reads"


def test_query_strings_do_not_multiply_cached_copies(tmp_path):
    with serving(tmp_path / "root", "nginx") as url:
        assert requests.put(f"{url}/x/hot.txt", data=b"hot", headers=AUTH).status_code == 201
        with requests.Session() as session:
            for n in range(100):
                assert session.get(f"{url}/x/hot.txt?n={n}").content == b"hot"
        cache = front.front_dir(url.root) / "cache"
        entries = [p for p in cache.rglob("*") if p.is_file()]
        assert len(entries) == 1, entries


def test_the_store_keeps_names_as_links_to_content_addressed_blobs(tmp_path, monkeypatch):
    """The on-disk layout docs/server.md describes: a name is a hard link to
    .blobs/sha256/<ab>/<sha256>; a blob outlives its last name by RETIRE_GRACE seconds."""
    from tests.helpers.artifact_server import InProcess

    app = InProcess(tmp_path / "root", [TOKEN], overwrite="allow")
    root = app.root
    one, two = b"one" * 1000, b"two" * 1000

    def blob(data: bytes) -> Path:
        digest = sha256(data)
        return root / ".blobs" / "sha256" / digest[:2] / digest

    assert app.put(f"{app}/a/one.bin", data=one, headers=AUTH).status_code == 201
    assert app.put(f"{app}/b/same.bin", data=one, headers=AUTH).status_code == 201
    assert blob(one).stat().st_ino == (root / "a/one.bin").stat().st_ino
    assert (root / "b/same.bin").stat().st_ino == blob(one).stat().st_ino
    assert blob(one).stat().st_nlink == 3
    monkeypatch.setattr(store, "RETIRE_GRACE", 0.0)
    assert app.put(f"{app}/a/one.bin", data=two, headers=AUTH).status_code == 201
    assert app.delete(f"{app}/b/same.bin", headers=AUTH).status_code == 204
    assert blob(two).stat().st_ino == (root / "a/one.bin").stat().st_ino
    assert not blob(one).exists()
    assert app.get(f"{app}/a/one.bin").content == two


@pytest.mark.parametrize("mode", MODES)
def test_a_large_file_is_never_stale_after_an_overwrite_or_a_delete(tmp_path, mode):
    """Not yet tried before issue 23 (held): large files go out through the redirect, never
    from nginx's cache, so the next read sees the overwrite or the DELETE at once."""
    new = os.urandom(len(LARGE))
    with serving(tmp_path / "root", mode) as url, requests.Session() as http:
        target = f"{url}/x/large.bin"
        assert http.put(target, data=LARGE, headers=AUTH).status_code == 201
        assert http.get(target).content == LARGE
        assert http.put(target, data=new, headers=AUTH).status_code == 201
        got = http.get(target)
        assert (got.content, got.headers["ETag"]) == (new, f'"{sha256(new)}"')
        assert http.delete(target, headers=AUTH).status_code == 204
        assert http.get(target).status_code == 404
        assert http.get(f"{url}/x/large.bin", headers={"Range": "bytes=0-9"}).status_code == 404


@pytest.mark.parametrize("mode", MODES)
def test_unicode_names_are_stored_and_served_as_sent(tmp_path, mode):
    """Not yet tried before issue 23: no normalisation anywhere, so NFC and NFD spellings
    are two names, alike in both modes, for small (cached) and large (redirected) files."""
    nfc = unicodedata.normalize("NFC", "x/café-ü.bin")
    nfd = unicodedata.normalize("NFD", nfc)
    small = b"small"
    with serving(tmp_path / "root", mode) as url, requests.Session() as http:
        assert http.put(f"{url}/{nfc}", data=LARGE, headers=AUTH).status_code == 201
        assert http.put(f"{url}/s{nfc}", data=small, headers=AUTH).status_code == 201
        for _ in range(2):  # the second read of the small file may come from nginx's cache
            assert http.get(f"{url}/{nfc}").content == LARGE
            assert http.get(f"{url}/s{nfc}").content == small
            assert http.get(f"{url}/{nfd}").status_code == 404
            assert http.get(f"{url}/s{nfd}").status_code == 404
        assert http.put(f"{url}/{nfd}", data=small, headers=AUTH).status_code == 201
        assert http.get(f"{url}/{nfd}").content == small
        assert http.get(f"{url}/{nfc}").content == LARGE
        listed = sorted(a["path"] for a in http.get(f"{url}/-/api/artifacts").json())
        assert listed == sorted([nfc, nfd, f"s{nfc}"])


def test_a_slow_upload_through_the_front_arrives_whole(tmp_path):
    """Not yet tried before issue 23 (held): a body sent 4 KiB every 0.1 s streams through
    nginx to the app, and probes are answered meanwhile; one that stalls is dropped after
    --send-timeout and leaves nothing."""
    body = os.urandom(96 * 1024)
    with serving(tmp_path / "root", "nginx", send_timeout=2) as url:
        answers = []

        def upload() -> None:
            with connect(url) as sock:
                sock.sendall(
                    f"PUT /x/slow.bin HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
                    f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                )
                for start in range(0, len(body), 4096):
                    time.sleep(0.1)
                    sock.sendall(body[start : start + 4096])
                answers.append(sock.recv(65536))

        uploading = threading.Thread(target=upload)
        uploading.start()
        time.sleep(0.5)
        assert requests.get(f"{url}/-/healthz", timeout=2).status_code == 200
        uploading.join()
        assert answers[0].startswith(b"HTTP/1.1 201"), answers[0]
        assert requests.get(f"{url}/x/slow.bin").content == body
        with connect(url) as sock:
            sock.sendall(
                f"PUT /x/stalled.bin HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
                f"Content-Length: 100000\r\n\r\n".encode()
                + os.urandom(10_000)
            )
            assert closed_by_server(sock, within=15)
        time.sleep(0.5)
        assert requests.get(f"{url}/x/stalled.bin").status_code == 404
        assert uploads_in_progress(url.root) == []


def test_a_full_disk_through_the_front_gives_507_and_nothing_partial(small_disk):
    """Not yet tried before issue 23: a 2 MiB tmpfs root, nginx's cache and logs on it too."""
    root = small_disk / "root"
    with serving(root, "nginx", max_upload_size="64M") as url:
        kept = os.urandom(INLINE_LIMIT * 2)
        assert requests.put(f"{url}/kept.bin", data=kept, headers=AUTH).status_code == 201
        response = requests.put(f"{url}/big/too-big.bin", data=os.urandom(6 << 20), headers=AUTH)
        assert response.status_code == 507
        assert response.json()["reason"] == "disk_full"
        assert visible_files(root) == ["kept.bin"]
        assert uploads_in_progress(root) == []
        assert requests.get(f"{url}/kept.bin").content == kept
        assert requests.put(f"{url}/small.bin", data=b"fits", headers=AUTH).status_code == 201
        assert requests.get(f"{url}/small.bin").content == b"fits"


def test_a_large_file_placed_by_hand_gets_its_blob_on_first_read(tmp_path):
    """A root from before blobs, or a file copied in by hand: the first read hashes it and
    links it as its blob, then nginx sends it like any other."""
    root = tmp_path / "root"
    (root / "x").mkdir(parents=True)
    (root / "x" / "by-hand.bin").write_bytes(LARGE)
    digest = sha256(LARGE)
    with serving(root, "nginx") as url:
        for _ in range(2):
            got = requests.get(f"{url}/x/by-hand.bin")
            assert (got.status_code, got.content) == (200, LARGE)
            assert got.headers["ETag"] == f'"{digest}"'
        blob = root / ".blobs" / "sha256" / digest[:2] / digest
        assert blob.stat().st_ino == (root / "x" / "by-hand.bin").stat().st_ino
        assert requests.head(f"{url}/x/by-hand.bin").status_code == 200
