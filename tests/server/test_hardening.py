"""Hostile and slow clients, and the edge cases of the HTTP contract they poke at (issue 11).

Every test talks to a real server over loopback; raw sockets where a client library would
tidy up what an attacker sends as it is.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from urllib.parse import urlsplit

import pytest
import requests

from server import paths
from tests.helpers.artifact_server import running_server
from tests.server.conftest import AUTH, TOKEN, sha256
from tests.server.test_faults import (
    start_partial_upload,
    uploads_in_progress,
    visible_files,
    wait_until,
)


def connect(base_url: str, timeout: float = 10.0) -> socket.socket:
    parts = urlsplit(base_url)
    return socket.create_connection((parts.hostname, parts.port), timeout=timeout)


def exchange(base_url: str, request: bytes) -> tuple[int, bytes]:
    """Send `request` exactly as given; return the status and the whole answer."""
    with connect(base_url) as sock:
        sock.sendall(request)
        reply = b""
        with contextlib.suppress(TimeoutError):
            while chunk := sock.recv(65536):
                reply += chunk
    return int(reply.split(b" ", 2)[1]), reply


def closed_by_server(sock: socket.socket, within: float) -> bool:
    """Read (and drop) whatever arrives until the server closes, or `within` seconds pass."""
    deadline = time.monotonic() + within
    sock.settimeout(0.5)
    while time.monotonic() < deadline:
        try:
            if not sock.recv(65536):
                return True
        except TimeoutError:
            continue
        except ConnectionError:
            return True
    return False


# -- 1: names whose sidecar would not fit ----------------------------------------------------


@pytest.mark.parametrize("name", ["n" * 250, "n" * 255, "é" * 125])
def test_a_name_too_long_for_its_sidecar_is_refused_before_anything_is_stored(app, prefix, name):
    response = app.put(f"{app}/{prefix}/{name}", data=b"payload", headers=AUTH)
    assert response.status_code == 400
    assert response.json()["reason"] == "bad_path"
    assert not (app.root / prefix).exists()


def test_the_longest_allowed_name_is_stored_with_its_sidecar(app, prefix):
    name = "n" * paths.MAX_NAME_BYTES
    directory = "d" * paths.MAX_SEGMENT_BYTES  # a directory name may use all 255 bytes
    url = f"{app}/{prefix}/{directory}/{name}"
    assert app.put(url, data=b"payload", headers=AUTH).status_code == 201
    assert app.get(url).headers["ETag"] == f'"{sha256(b"payload")}"'
    assert (app.root / prefix / directory / f".{name}.meta").is_file()


# -- 2: a Host header werkzeug cannot parse --------------------------------------------------


def test_a_host_with_a_port_out_of_range_is_400_and_stores_nothing(live_server, prefix):
    status, reply = exchange(
        live_server,
        f"PUT /{prefix}/h.bin HTTP/1.1\r\nHost: 127.0.0.1:99999\r\nAuthorization: Bearer {TOKEN}\r\n"
        "Content-Length: 3\r\nConnection: close\r\n\r\nabc".encode(),
    )
    assert status == 400, reply
    assert b'"reason": "bad_request"' in reply
    assert not (live_server.root / prefix).exists()
    for target in ("/-/api/artifacts", "/-/healthz", f"/{prefix}/"):
        status, _ = exchange(
            live_server,
            f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1:99999\r\nConnection: close\r\n\r\n".encode(),
        )
        assert status == 400, target
    assert "Traceback" not in live_server.log.read_text()


# -- 3: a worker killed mid-upload -----------------------------------------------------------


def test_a_killed_worker_s_partial_upload_is_removed_while_the_master_lives(tmp_path):
    with running_server(tmp_path / "root", tokens=[TOKEN], workers=1) as url:
        sock = start_partial_upload(url, "cut/new.bin", 50_000_000, os.urandom(2_000_000))
        wait_until(lambda: uploads_in_progress(url.root) != [], "upload started")
        worker = int(uploads_in_progress(url.root)[0].name.split("-", 1)[0])
        assert worker in url.workers()
        os.kill(worker, signal.SIGKILL)
        sock.close()
        wait_until(lambda: uploads_in_progress(url.root) == [], "the dead worker's upload removed")
        assert os.kill(url.pid, 0) is None  # the master never restarted
        assert visible_files(url.root) == []
        assert requests.get(f"{url}/-/healthz", timeout=10).status_code == 200


# -- 4: the listing in pages -----------------------------------------------------------------


def test_the_listing_comes_in_pages_that_add_up_to_the_whole(app, prefix):
    # '-' sorts before '/' as a string; the listing orders by path segment.
    names = ["a-c.bin", "a/b.bin", "a/z/q.bin", "b.bin", "c/d/e.bin"]
    for name in names:
        app.put(f"{app}/{prefix}/{name}", data=name.encode(), headers=AUTH)
    whole = app.get(f"{app}/-/api/artifacts", params={"prefix": prefix}).json()
    expected = [f"{prefix}/{n}" for n in ["a/b.bin", "a/z/q.bin", "a-c.bin", "b.bin", "c/d/e.bin"]]
    assert [a["path"] for a in whole] == expected
    pages, url, params = [], f"{app}/-/api/artifacts", {"prefix": prefix, "limit": 2}
    while url:
        page = app.get(url, params=params)
        assert page.status_code == 200
        pages.append([a["path"] for a in page.json()])
        url, params = page.links.get("next", {}).get("url"), None
        if url:
            assert page.headers["X-Next-Cursor"] == pages[-1][-1]
    assert pages == [expected[0:2], expected[2:4], expected[4:]]
    assert app.get(app + "/-/api/artifacts", params={"limit": 0}).status_code == 400
    after = app.get(
        app + "/-/api/artifacts", params={"prefix": prefix, "cursor": f"{prefix}/a"}
    ).json()
    assert [a["path"] for a in after] == expected


# -- 5: Range as RFC 9110 reads it -----------------------------------------------------------


@pytest.fixture
def ten_bytes(app, prefix) -> str:
    url = f"{app}/{prefix}/ten.bin"
    app.put(url, data=b"0123456789", headers=AUTH)
    return url


@pytest.mark.parametrize(
    "header",
    ["items=0-1", "bytes=garbage", "bytes=0-1,3-4", "bytes=5-2", "bytes=-", "bytes 0-1"],
)
def test_a_range_the_server_does_not_serve_is_ignored(ten_bytes, app, header):
    got = app.get(ten_bytes, headers={"Range": header})
    assert got.status_code == 200
    assert got.content == b"0123456789"


def test_a_suffix_longer_than_the_file_is_the_whole_file(ten_bytes, app):
    got = app.get(ten_bytes, headers={"Range": "bytes=-100"})
    assert got.status_code == 206
    assert got.content == b"0123456789"
    assert got.headers["Content-Range"] == "bytes 0-9/10"


def test_ranges_that_cannot_be_satisfied_are_416(ten_bytes, app):
    for header in ("bytes=-0", "bytes=10-", "bytes=20-30"):
        got = app.get(ten_bytes, headers={"Range": header})
        assert got.status_code == 416, header
        assert got.headers["Content-Range"] == "bytes */10"


def test_if_range_needs_a_strong_match(ten_bytes, app):
    etag = f'"{sha256(b"0123456789")}"'
    strong = app.get(ten_bytes, headers={"Range": "bytes=2-3", "If-Range": etag})
    assert (strong.status_code, strong.content) == (206, b"23")
    for validator in (f"W/{etag}", f'"{sha256(b"other")}"'):
        got = app.get(ten_bytes, headers={"Range": "bytes=2-3", "If-Range": validator})
        assert (got.status_code, got.content) == (200, b"0123456789"), validator
    cached = app.get(ten_bytes, headers={"Range": "bytes=2-3", "If-None-Match": etag})
    assert cached.status_code == 304


# -- 6: Expect: 100-continue -----------------------------------------------------------------


def _put_expecting_continue(base_url: str, path: str, authorization: str) -> socket.socket:
    sock = connect(base_url)
    sock.sendall(
        f"PUT /{path} HTTP/1.1\r\nHost: x\r\n{authorization}Content-Length: 5\r\n"
        "Expect: 100-continue\r\n\r\n".encode()
    )
    return sock


def test_no_100_continue_before_the_token_is_checked(live_server, prefix):
    with _put_expecting_continue(live_server, f"{prefix}/e.bin", "") as sock:
        first = sock.recv(4096)
    assert first.startswith(b"HTTP/1.1 401"), first
    assert b"100 Continue" not in first
    wrong = "Authorization: Bearer not-the-token\r\n"
    with _put_expecting_continue(live_server, f"{prefix}/e.bin", wrong) as sock:
        assert sock.recv(4096).startswith(b"HTTP/1.1 403")


def test_a_valid_token_gets_100_continue_then_its_upload(live_server, prefix, http):
    auth = f"Authorization: Bearer {TOKEN}\r\n"
    with _put_expecting_continue(live_server, f"{prefix}/e.bin", auth) as sock:
        assert sock.recv(4096) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"hello")
        assert sock.recv(4096).startswith(b"HTTP/1.1 201")
    assert http.get(f"{live_server}/{prefix}/e.bin").content == b"hello"


# -- 7: X-Forwarded-Proto --------------------------------------------------------------------


def test_x_forwarded_proto_is_ignored_unless_the_proxy_is_trusted(
    live_server, prefix, http, tmp_path
):
    headers = {**AUTH, "X-Forwarded-Proto": "https"}
    stored = http.put(f"{live_server}/{prefix}/f.bin", data=b"f", headers=headers).json()
    assert stored["url"] == f"{live_server}/{prefix}/f.bin"
    with running_server(tmp_path / "root", tokens=[TOKEN], trusted_proxies="127.0.0.1") as url:
        stored = requests.put(f"{url}/f.bin", data=b"f", headers=headers).json()
        assert stored["url"] == f"https://127.0.0.1:{url.port}/f.bin"


# -- 8: control characters in the path -------------------------------------------------------


@pytest.mark.parametrize("target", ["/%0d%0a", "/%0a", "/a/%0d%0ab.bin", "/x%0d%0aSet-Cookie:a"])
def test_an_encoded_newline_in_the_path_is_the_documented_400(live_server, target):
    status, reply = exchange(
        live_server, f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
    )
    assert status == 400, reply
    assert b'"reason": "bad_path"' in reply.replace(b'":"', b'": "')


# -- 9: OPTIONS on read-only routes ----------------------------------------------------------


def _allowed(http, url: str) -> set[str]:
    response = http.options(url)
    assert response.status_code == 200
    return {m.strip() for m in response.headers["Allow"].split(",")}


def test_options_advertises_writes_only_where_writes_are_possible(live_server, http, tmp_path):
    for target in ("/", "/-/healthz", "/-/api/artifacts", "/-/openapi.json"):
        assert not _allowed(http, live_server + target) & {"PUT", "DELETE"}, target
    assert {"PUT", "DELETE"} <= _allowed(http, f"{live_server}/some/artifact.bin")
    with running_server(tmp_path / "ro", tokens=[TOKEN], read_only=True) as url:
        assert _allowed(http, f"{url}/some/artifact.bin") == {"GET", "HEAD", "OPTIONS"}


# -- 10: the access log ----------------------------------------------------------------------


def test_a_quote_in_the_user_agent_cannot_forge_log_fields(live_server, prefix, http):
    agent = 'curl" 200 999 "forged'
    http.get(f"{live_server}/{prefix}/nothing", headers={"User-Agent": agent})

    def logged() -> list[str]:
        return [line for line in live_server.log.read_text().splitlines() if prefix in line]

    # The access line is written after the answer was sent (by nginx too, behind the front).
    wait_until(lambda: any(line.endswith('forged"') for line in logged()), "the access line")
    for line in logged():  # the app's line, and nginx's behind the front
        assert line.endswith(' "curl\\" 200 999 \\"forged"'), line


# -- slow and hostile clients ----------------------------------------------------------------


def test_a_slowloris_connection_is_closed_after_the_header_timeout(tmp_path):
    with running_server(tmp_path / "root", tokens=[TOKEN], header_timeout=1) as url:
        sock = connect(url)
        with sock:
            sock.sendall(b"GET /-/healthz HTTP/1.1\r\nHost: x\r\n")
            closed = False
            for _ in range(40):  # one header byte every 0.25 s: far past the 1 s limit
                try:
                    sock.sendall(b"X")
                except ConnectionError:
                    closed = True
                    break
                time.sleep(0.25)
            assert closed or closed_by_server(sock, within=5)


def test_a_graceful_stop_closes_idle_keep_alive_connections_at_once(tmp_path):
    # An idle keep-alive connection used to hold its worker for the whole 10 s graceful
    # timeout; with a 60 s header timeout it could only end early if the stop closed it.
    with running_server(tmp_path / "root", tokens=[TOKEN], workers=1, header_timeout=60) as url:
        sock = connect(url)
        with sock:
            sock.sendall(b"GET /-/healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            sock.settimeout(10)
            assert sock.recv(65536).startswith(b"HTTP/1.1 200")
            os.kill(url.pid, signal.SIGTERM)
            assert closed_by_server(sock, within=5)


def test_a_client_that_stops_reading_is_dropped_after_the_send_timeout(tmp_path):
    size = 64 * 1024 * 1024
    with running_server(tmp_path / "root", tokens=[TOKEN], send_timeout=1) as url:
        assert requests.put(f"{url}/big.bin", data=b"\0" * size, headers=AUTH).status_code == 201
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", url.port))
        with sock:
            sock.sendall(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
            time.sleep(4)  # reads nothing for four times the send timeout
            received = 0
            sock.settimeout(10)
            with contextlib.suppress(ConnectionError):
                while chunk := sock.recv(1024 * 1024):
                    received += len(chunk)
        # The server gave up on the stalled client: it closed before sending everything.
        assert received < size
        assert requests.get(f"{url}/-/healthz", timeout=10).status_code == 200


def test_a_fast_client_that_stalls_mid_download_is_dropped_after_the_send_timeout(tmp_path):
    # A client that takes its first megabytes fast gets the rest from a thread of the worker
    # (one blocking sendfile): the send timeout still ends it once it stops reading, and the
    # worker's other connections are answered meanwhile.
    size = 64 * 1024 * 1024
    with running_server(tmp_path / "root", tokens=[TOKEN], workers=1, send_timeout=1) as url:
        assert requests.put(f"{url}/big.bin", data=b"\0" * size, headers=AUTH).status_code == 201
        sock = socket.socket()
        # Small buffers: what the kernels hold for a stalled reader stays far below the file.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 256 * 1024)
        sock.connect(("127.0.0.1", url.port))
        with sock:
            sock.sendall(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
            sock.settimeout(10)
            received = 0
            while received < 16 * 1024 * 1024:
                received += len(sock.recv(1024 * 1024))
            for _ in range(4):  # reads nothing for four times the send timeout
                assert requests.get(f"{url}/-/healthz", timeout=2).status_code == 200
                time.sleep(1)
            with contextlib.suppress(ConnectionError):
                while chunk := sock.recv(1024 * 1024):
                    received += len(chunk)
        # Had the server waited for the stalled client, the client would have it all now.
        assert received < size


def test_a_fast_download_leaves_its_keep_alive_connection_to_the_event_loop(tmp_path):
    # The thread's blocking sendfile switches the socket to blocking mode: left so, the
    # worker would block on this connection's next request head, and answer nobody.
    data = os.urandom(24 * 1024 * 1024)
    with running_server(tmp_path / "root", tokens=[TOKEN], workers=1) as url:
        assert requests.put(f"{url}/big.bin", data=data, headers=AUTH).status_code == 201
        with requests.Session() as session:
            assert sha256(session.get(f"{url}/big.bin", timeout=30).content) == sha256(data)
            for _ in range(3):  # the session's connection now idles in the worker
                assert requests.get(f"{url}/-/healthz", timeout=2).status_code == 200
            start = 5 * 1024 * 1024 + 7  # the thread starts past the first few MiB
            got = session.get(f"{url}/big.bin", headers={"Range": f"bytes={start}-"}, timeout=30)
        assert got.status_code == 206
        assert sha256(got.content) == sha256(data[start:])


def test_healthz_and_downloads_answer_while_hundreds_of_slow_clients_are_held(tmp_path):
    with running_server(tmp_path / "root", tokens=[TOKEN], workers=2) as url:
        requests.put(f"{url}/big.bin", data=b"\0" * (16 * 1024 * 1024), headers=AUTH)
        requests.put(f"{url}/small.bin", data=b"small", headers=AUTH)
        held = []
        try:
            for _ in range(200):  # slowloris: a request head that never ends
                sock = connect(url)
                sock.sendall(b"GET /small.bin HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                held.append(sock)
            for _ in range(100):  # slow readers: a large download nobody reads
                sock = socket.socket()
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                sock.connect(("127.0.0.1", url.port))
                sock.sendall(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
                held.append(sock)
            for _ in range(20):
                assert requests.get(f"{url}/-/healthz", timeout=5).status_code == 200
                assert requests.get(f"{url}/small.bin", timeout=5).content == b"small"
        finally:
            for sock in held:
                sock.close()
