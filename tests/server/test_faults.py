"""Faults: crashes, disconnects, a full disk, races. Nothing partial may ever become visible."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import threading
import time
from pathlib import Path

import requests

from tests.helpers import artifact_server
from tests.server.conftest import AUTH, TOKEN, sha256


def running_server(root, **options):
    return artifact_server.running_server(root, tokens=[TOKEN], **options)


def visible_files(root: Path) -> list[str]:
    """Every file a client could ever be served: anything not under a dot name."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        found += [
            os.path.relpath(os.path.join(dirpath, f), root)
            for f in filenames
            if not f.startswith(".")
        ]
    return sorted(found)


def uploads_in_progress(root: Path) -> list[Path]:
    return list((root / ".tmp" / "uploads").iterdir())


def wait_until(condition, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting: {what}")
        time.sleep(0.02)


def start_partial_upload(base_url: str, path: str, declared: int, sent: bytes) -> socket.socket:
    """Open a PUT declaring `declared` bytes, send only `sent`, and leave the socket open."""
    host, port = base_url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)))
    head = f"PUT /{path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: {declared}\r\n\r\n"
    sock.sendall(head.encode() + sent)
    return sock


def leave_a_crash_behind(root: Path) -> dict[str, Path]:
    """What a server killed mid-work leaves: half an upload, and a blob no name links to."""
    upload = root / ".tmp" / "uploads" / "4242-crashed"
    upload.parent.mkdir(parents=True, exist_ok=True)
    upload.write_bytes(b"half an upload")
    sha = sha256(b"orphan")
    blob = root / ".blobs" / "sha256" / sha[:2] / sha
    blob.parent.mkdir(parents=True, exist_ok=True)
    blob.write_bytes(b"orphan")
    return {"upload": upload, "blob": blob}


def snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    return {
        str(path.relative_to(root)): (path.read_bytes(), path.stat().st_mtime_ns)
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def test_creating_the_app_changes_no_file_in_the_root(tmp_path):
    """The factory has no side effects (as in Flask's tutorial): building the app twice, as a
    test or a second process might, removes nothing a start would clear."""
    from server import create_app

    root = tmp_path / "root"
    with running_server(root) as url:
        assert requests.put(f"{url}/kept.bin", data=b"kept", headers=AUTH).status_code == 201
    leave_a_crash_behind(root)
    before = snapshot(root)
    assert any(name.startswith(".tmp/metrics/") for name in before)  # the counters' files
    for _ in range(2):
        create_app({"root": root, "tokens": [TOKEN]})
    assert snapshot(root) == before


def test_a_start_clears_what_an_earlier_run_left(tmp_path):
    root = tmp_path / "root"
    with running_server(root) as url:
        assert requests.put(f"{url}/kept.bin", data=b"kept", headers=AUTH).status_code == 201
    left = leave_a_crash_behind(root)
    with running_server(root) as url:
        assert uploads_in_progress(root) == []
        assert not left["blob"].exists()
        assert [a["path"] for a in requests.get(f"{url}/-/api/artifacts").json()] == ["kept.bin"]
        # The counters start afresh: the earlier run's 201 is not counted again.
        assert 'status="201"' not in requests.get(f"{url}/-/metrics").text
        assert "removed 1 unfinished upload(s) left by an earlier run" in url.log.read_text()


def test_metrics_keep_what_workers_that_died_counted(tmp_path):
    """The counters are the whole server's: a scrape sums every worker's, including those
    of workers killed since (gunicorn starts new ones)."""

    def not_found_count(url) -> float:
        for line in requests.get(f"{url}/-/metrics").text.splitlines():
            if line.startswith('artifact_http_requests_total{status="404"}'):
                return float(line.rpartition(" ")[2])
        return 0.0

    with running_server(tmp_path / "root", workers=2) as url:
        for _ in range(20):  # a new connection each: any worker may answer
            assert requests.get(f"{url}/missing.bin").status_code == 404
        assert not_found_count(url) == 20
        killed = url.workers()
        for pid in killed:
            os.kill(pid, signal.SIGKILL)
        wait_until(
            lambda: len(url.workers()) == 2 and not set(url.workers()) & set(killed),
            "new workers",
        )
        assert not_found_count(url) == 20


def test_client_disconnect_mid_body_leaves_nothing(live_server, prefix):
    path = f"{prefix}/cut.tar.gz"
    sock = start_partial_upload(live_server, path, 10_000_000, os.urandom(2_000_000))
    wait_until(
        lambda: any(p.stat().st_size > 0 for p in uploads_in_progress(live_server.root)),
        "upload started",
    )
    sock.close()
    wait_until(lambda: uploads_in_progress(live_server.root) == [], "temporary file removed")
    assert requests.get(f"{live_server}/{path}").status_code == 404
    assert not (live_server.root / prefix / "cut.tar.gz").exists()
    metrics = requests.get(f"{live_server}/-/metrics").text
    assert 'artifact_uploads_rejected_total{reason="client_disconnected"} 0' not in metrics


def test_client_disconnect_mid_chunked_body_leaves_nothing(live_server, prefix):
    host, port = live_server.removeprefix("http://").split(":")
    chunk = os.urandom(512 * 1024)
    with socket.create_connection((host, int(port))) as sock:
        head = f"PUT /{prefix}/cut-chunked.bin HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nTransfer-Encoding: chunked\r\n\r\n"
        sock.sendall(head.encode())
        for _ in range(4):
            sock.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
        wait_until(
            lambda: any(p.stat().st_size > 0 for p in uploads_in_progress(live_server.root)),
            "upload started",
        )
    # Closed without the final zero-length chunk.
    wait_until(lambda: uploads_in_progress(live_server.root) == [], "temporary file removed")
    assert requests.get(f"{live_server}/{prefix}/cut-chunked.bin").status_code == 404
    assert not (live_server.root / prefix / "cut-chunked.bin").exists()


def test_kill_9_mid_upload_leaves_nothing_after_restart(tmp_path):
    root = tmp_path / "root"
    with running_server(root) as url:
        requests.put(f"{url}/keep/old.bin", data=b"kept", headers=AUTH)
        sock = start_partial_upload(url, "keep/new.bin", 50_000_000, os.urandom(4_000_000))
        wait_until(
            lambda: any(p.stat().st_size > 0 for p in uploads_in_progress(root)), "upload started"
        )
        url.kill_hard()
        sock.close()
        # The half upload is on disk, but only under a hidden name.
        assert uploads_in_progress(root) != []
        assert visible_files(root) == ["keep/old.bin"]
    with running_server(root) as url:
        assert uploads_in_progress(root) == []
        assert visible_files(root) == ["keep/old.bin"]
        assert requests.get(f"{url}/keep/new.bin").status_code == 404
        assert requests.get(f"{url}/keep/old.bin").content == b"kept"
        assert [a["path"] for a in requests.get(f"{url}/-/api/artifacts").json()] == [
            "keep/old.bin"
        ]


def test_full_disk_gives_507_and_nothing_partial(small_disk):
    root = small_disk / "root"
    with running_server(root, max_upload_size="64M") as url:
        response = requests.put(
            f"{url}/big/too-big.bin", data=os.urandom(3 * 1024 * 1024), headers=AUTH
        )
        assert response.status_code == 507
        assert response.json()["reason"] == "disk_full"
        assert visible_files(root) == []
        assert uploads_in_progress(root) == []
        # The space was given back: a small upload fits.
        assert requests.put(f"{url}/small.bin", data=b"fits", headers=AUTH).status_code == 201
        assert visible_files(root) == ["small.bin"]


def _upload_all(url: str, bodies: list[bytes]) -> list[int]:
    statuses: list[int] = [0] * len(bodies)
    barrier = threading.Barrier(len(bodies))

    def one(index: int) -> None:
        barrier.wait()
        statuses[index] = requests.put(
            url, data=bodies[index], headers=AUTH, timeout=120
        ).status_code

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(bodies))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return statuses


def test_32_concurrent_uploads_to_one_path_end_with_one_whole_body(tmp_path):
    bodies = [bytes([i]) * 1_500_000 + os.urandom(16) for i in range(32)]
    with running_server(tmp_path / "root", overwrite="allow", workers=2, connections=16) as url:
        statuses = _upload_all(f"{url}/race/mosn.tar.gz", bodies)
        # Every body differs from whatever was stored before it: each one replaces, with 201.
        assert statuses == [201] * 32
        got = requests.get(f"{url}/race/mosn.tar.gz")
        assert got.content in bodies
        assert got.headers["ETag"] == f'"{sha256(got.content)}"'
        assert uploads_in_progress(url.root) == []


def test_32_concurrent_uploads_with_overwrite_denied_store_exactly_one(tmp_path):
    bodies = [os.urandom(500_000) for _ in range(32)]
    with running_server(tmp_path / "root", workers=2, connections=16) as url:
        statuses = _upload_all(f"{url}/race/mosn.tar.gz", bodies)
        assert sorted(statuses) == [201] + [409] * 31
        winner = bodies[statuses.index(201)]
        got = requests.get(f"{url}/race/mosn.tar.gz")
        assert got.content == winner
        assert got.headers["ETag"] == f'"{sha256(winner)}"'


def test_etag_never_trusts_a_sidecar_written_for_other_bytes(app, prefix):
    """A crash between renaming the data and its sidecar leaves the old sidecar: it must not be believed."""
    app.put(f"{app}/{prefix}/a.bin", data=b"first", headers=AUTH)
    target = app.root / prefix / "a.bin"
    sidecar = app.root / prefix / ".a.bin.meta"
    stale = sidecar.read_text()
    replacement = target.with_name("tmp-replacement")
    replacement.write_bytes(b"other")  # same size, different bytes, new inode
    os.replace(replacement, target)
    assert sidecar.read_text() == stale
    got = app.get(f"{app}/{prefix}/a.bin")
    assert got.content == b"other"
    assert got.headers["ETag"] == f'"{sha256(b"other")}"'
    listed = app.get(f"{app}/-/api/artifacts", params={"prefix": prefix}).json()
    assert listed[0]["sha256"] == sha256(b"other")
    # ...and the sidecar was repaired, so the next read need not hash again.
    assert json.loads(sidecar.read_text())["sha256"] == sha256(b"other")


def test_missing_sidecar_is_rebuilt(app, prefix):
    app.put(f"{app}/{prefix}/b.bin", data=b"bytes", headers=AUTH)
    (app.root / prefix / ".b.bin.meta").unlink()
    assert app.head(f"{app}/{prefix}/b.bin").headers["ETag"] == f'"{sha256(b"bytes")}"'


def test_too_large_by_content_length_is_refused_before_the_body(tmp_path):
    with running_server(tmp_path / "root", max_upload_size="1M") as url:
        host, port = url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            head = f"PUT /big.bin HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: {2 * 1024 * 1024}\r\n\r\n"
            sock.sendall(head.encode())  # and no body at all
            reply = sock.recv(4096)
        assert reply.startswith(b"HTTP/1.1 413")
        assert visible_files(url.root) == []


def test_too_large_stream_is_cut_off_and_nothing_stored(tmp_path):
    with running_server(tmp_path / "root", max_upload_size="1M") as url:
        # Chunked, so no Content-Length to judge by: twice the limit (two of the store's
        # reads), and no end. The client then waits for the answer; it has sent nothing the
        # server leaves unread, so the 413 cannot be lost to a reset, as it could while a
        # client still sends a longer body.
        host, port = url.removeprefix("http://").split(":")
        body = os.urandom(2 * 1024 * 1024)
        with socket.create_connection((host, int(port)), timeout=20) as sock:
            head = f"PUT /big.bin HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nTransfer-Encoding: chunked\r\n\r\n"
            sock.sendall(head.encode() + b"%x\r\n" % len(body) + body)
            reply = b""
            while b"}" not in reply and (chunk := sock.recv(4096)):  # the JSON body's end
                reply += chunk
        assert reply.startswith(b"HTTP/1.1 413"), reply
        assert b'"reason":"too_large"' in reply.replace(b" ", b""), reply
        assert visible_files(url.root) == []
        wait_until(lambda: uploads_in_progress(url.root) == [], "temporary file removed")
        metrics = requests.get(f"{url}/-/metrics").text
        assert 'artifact_uploads_rejected_total{reason="too_large"} 1' in metrics
        exactly = os.urandom(1024 * 1024)
        assert requests.put(f"{url}/fits.bin", data=exactly, headers=AUTH).status_code == 201


def test_round_trip_of_200_mb_keeps_server_memory_flat(tmp_path):
    source = tmp_path / "big.bin"
    digest = hashlib.sha256()
    block = os.urandom(1024 * 1024)
    with open(source, "wb") as handle:
        for i in range(200):
            chunk = block[i:] + block[:i]
            digest.update(chunk)
            handle.write(chunk)
    with running_server(tmp_path / "root", workers=2) as url:
        with open(source, "rb") as body:
            response = requests.put(f"{url}/big/big.bin", data=body, headers=AUTH)
        assert response.status_code == 201
        assert response.json()["sha256"] == digest.hexdigest()
        received = hashlib.sha256()
        with requests.get(f"{url}/big/big.bin", stream=True) as got:
            for chunk in got.iter_content(1024 * 1024):
                received.update(chunk)
        assert received.hexdigest() == digest.hexdigest()
        peaks = {pid: peak_rss_kib(pid) for pid in [url.pid, *url.workers()]}
        assert len(peaks) == 3
        for pid, kib in peaks.items():
            assert kib < 150 * 1024, f"process {pid} peaked at {kib // 1024} MiB"


def peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmHWM for {pid}")
