"""The HTTP API: uploads, downloads, conditional and range reads, listings, errors.

The detailed cases run on the app in-process (the `app` fixture, Flask's test client through
the same WSGI stack gunicorn runs). What needs the wire runs on `live_server`, in both modes
(gunicorn alone, and behind the nginx front): a smoke of every endpoint, large downloads
(sendfile, nginx's X-Accel), Range, chunked bodies, auth (nginx asks the app first), curl.
"""

from __future__ import annotations

import os
import socket
from urllib.parse import urlsplit

from tests.server.conftest import AUTH, OTHER_TOKEN, TOKEN, raw_request, sha256


def put(http, url, data, **headers):
    return http.put(url, data=data, headers={**AUTH, **headers})


def test_every_endpoint_answers_over_the_wire(live_server, prefix, http):
    """One pass over each route and method, through gunicorn and through nginx."""
    url = f"{live_server}/{prefix}/smoke/a.txt"
    created = put(http, url, b"smoke", **{"X-Checksum-Sha256": sha256(b"smoke")})
    assert (created.status_code, created.json()["url"]) == (201, url)
    assert put(http, url, b"other").status_code == 409
    got = http.get(url)
    assert (got.status_code, got.content, got.headers["ETag"]) == (
        200,
        b"smoke",
        f'"{sha256(b"smoke")}"',
    )
    assert http.head(url).headers["Content-Length"] == "5"
    assert http.get(url, headers={"If-None-Match": got.headers["ETag"]}).status_code == 304
    assert http.get(url, headers={"Range": "bytes=1-2"}).content == b"mo"
    listing = http.get(f"{live_server}/{prefix}/smoke/", headers={"Accept": "application/json"})
    assert [a["name"] for a in listing.json()["artifacts"]] == ["a.txt"]
    assert (
        "a.txt" in http.get(f"{live_server}/{prefix}/smoke/", headers={"Accept": "text/html"}).text
    )
    listed = http.get(f"{live_server}/-/api/artifacts", params={"prefix": prefix}).json()
    assert [a["path"] for a in listed] == [f"{prefix}/smoke/a.txt"]
    assert http.get(f"{live_server}/-/healthz").json()["status"] == "ok"
    assert "artifact_http_requests_total" in http.get(f"{live_server}/-/metrics").text
    assert "/{path}" in http.get(f"{live_server}/-/openapi.json").json()["paths"]
    assert {"PUT", "DELETE"} <= set(http.options(url).headers["Allow"].replace(" ", "").split(","))
    assert http.post(url, data=b"x", headers=AUTH).status_code == 405
    assert http.get(f"{live_server}/-/nope").status_code == 404
    assert http.delete(url).status_code == 401
    assert http.delete(url, headers=AUTH).status_code == 204
    # Behind the front a small 200 may be reused for a second; a fresh copy is asked for.
    assert http.get(url, headers={"Cache-Control": "no-cache"}).status_code == 404


def test_put_then_get_returns_the_same_bytes(live_server, prefix, http):
    data = os.urandom(300_000)
    url = f"{live_server}/{prefix}/mosn.tar.gz"
    created = put(http, url, data)
    assert created.status_code == 201
    assert created.json() == {
        "path": f"{prefix}/mosn.tar.gz",
        "size": len(data),
        "sha256": sha256(data),
        "url": url,
        "created": True,
    }
    got = http.get(url)
    assert got.status_code == 200
    assert got.content == data
    assert got.headers["Content-Length"] == str(len(data))
    assert got.headers["ETag"] == f'"{sha256(data)}"'
    assert got.headers["Content-Type"] == "application/gzip"
    assert "Content-Encoding" not in got.headers


def test_head_has_the_headers_of_get_and_no_body(app, prefix):
    data = b"hello artifact\n"
    url = f"{app}/{prefix}/notes.txt"
    put(app, url, data)
    head = app.head(url)
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["Content-Length"] == str(len(data))
    assert head.headers["ETag"] == f'"{sha256(data)}"'
    assert head.headers["Content-Type"].startswith("text/plain")


def test_content_type_follows_the_name(app, prefix):
    for name, expected in [
        ("a.json", "application/json"),
        ("b.bin", "application/octet-stream"),
        ("c.wasm", "application/wasm"),
        ("d.tgz", "application/gzip"),
    ]:
        put(app, f"{app}/{prefix}/{name}", b"{}")
        assert app.head(f"{app}/{prefix}/{name}").headers["Content-Type"] == expected, name


def test_identical_bytes_again_is_200_and_different_bytes_is_409(app, prefix):
    url = f"{app}/{prefix}/x.bin"
    assert put(app, url, b"one").status_code == 201
    again = put(app, url, b"one")
    assert again.status_code == 200
    assert again.json()["created"] is False
    different = put(app, url, b"two")
    assert different.status_code == 409
    assert different.json()["reason"] == "conflict"
    assert app.get(url).content == b"one"


def test_checksum_header_must_match_the_body(app, prefix):
    url = f"{app}/{prefix}/checked.bin"
    wrong = put(app, url, b"payload", **{"X-Checksum-Sha256": sha256(b"other")})
    assert wrong.status_code == 400
    assert wrong.json()["reason"] == "checksum_mismatch"
    assert app.get(url).status_code == 404
    right = put(app, url, b"payload", **{"X-Checksum-Sha256": sha256(b"payload").upper()})
    assert right.status_code == 201


def test_malformed_checksum_header_is_400(app, prefix):
    response = put(app, f"{app}/{prefix}/c.bin", b"x", **{"X-Checksum-Sha256": "abc"})
    assert response.status_code == 400
    # Refused as malformed before the body is read, not as a mismatch after it.
    assert response.json()["reason"] == "bad_request"
    assert app.get(f"{app}/{prefix}/c.bin").status_code == 404


def test_conditional_get_gives_304_on_matching_etag(app, prefix):
    url = f"{app}/{prefix}/cond.bin"
    put(app, url, b"cached bytes")
    etag = app.get(url).headers["ETag"]
    again = app.get(url, headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""
    changed = app.get(url, headers={"If-None-Match": '"' + "0" * 64 + '"'})
    assert changed.status_code == 200
    assert changed.content == b"cached bytes"


def test_range_gives_206_and_out_of_range_416(live_server, prefix, http):
    data = bytes(range(256)) * 40
    url = f"{live_server}/{prefix}/ranged.bin"
    put(http, url, data)
    part = http.get(url, headers={"Range": "bytes=100-199"})
    assert part.status_code == 206
    assert part.content == data[100:200]
    assert part.headers["Content-Range"] == f"bytes 100-199/{len(data)}"
    tail = http.get(url, headers={"Range": "bytes=-10"})
    assert tail.status_code == 206
    assert tail.content == data[-10:]
    outside = http.get(url, headers={"Range": f"bytes={len(data) + 5}-"})
    assert outside.status_code == 416
    assert outside.headers["Content-Range"] == f"bytes */{len(data)}"


def test_missing_artifact_is_404(app, prefix):
    assert app.get(f"{app}/{prefix}/nothing.tar.gz").status_code == 404
    assert app.head(f"{app}/{prefix}/nothing.tar.gz").status_code == 404


def test_delete_removes_the_artifact(app, prefix):
    url = f"{app}/{prefix}/gone.bin"
    put(app, url, b"bye")
    assert app.delete(url).status_code == 401
    assert app.delete(url, headers=AUTH).status_code == 204
    assert app.get(url).status_code == 404
    assert app.delete(url, headers=AUTH).status_code == 404
    # With the artifact gone, different bytes are a new artifact, not a conflict.
    assert put(app, url, b"new").status_code == 201


def test_upload_without_token_is_401_with_bearer_challenge(live_server, prefix, http):
    response = http.put(f"{live_server}/{prefix}/a.bin", data=b"x")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert http.get(f"{live_server}/{prefix}/a.bin").status_code == 404


def test_upload_with_wrong_token_is_403(live_server, prefix, http):
    for header, status in (
        ("Bearer not-the-token", 403),
        ("Bearer wrong", 403),
        (f"Bearer {TOKEN[:-1]}", 403),  # a prefix of the real token
        ("Basic dGVzdC10b2tlbi03ZjNh", 401),  # the token as Basic credentials: not a bearer
    ):
        response = http.put(
            f"{live_server}/{prefix}/a.bin", data=b"x", headers={"Authorization": header}
        )
        assert response.status_code == status, header
    assert http.get(f"{live_server}/{prefix}/a.bin").status_code == 404


def test_every_configured_token_can_write(app, prefix):
    response = app.put(
        f"{app}/{prefix}/b.bin",
        data=b"x",
        headers={"Authorization": f"Bearer {OTHER_TOKEN}"},
    )
    assert response.status_code == 201


def test_healthz(app):
    response = app.get(f"{app}/-/healthz")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


def test_unknown_reserved_endpoint_is_404_and_reserved_prefix_cannot_be_written(app):
    assert app.get(f"{app}/-/nope").status_code == 404
    response = app.put(f"{app}/-/healthz", data=b"x", headers=AUTH)
    assert response.status_code in (404, 405)
    assert app.get(f"{app}/-/healthz").json()["status"] == "ok"


def test_chunked_upload_is_stored_whole(live_server, prefix, http):
    chunks = [os.urandom(70_000) for _ in range(5)]
    url = f"{live_server}/{prefix}/chunked.bin"
    response = http.put(url, data=iter(chunks), headers=AUTH)
    assert response.status_code == 201
    assert http.get(url).content == b"".join(chunks)


def test_upload_into_a_path_under_a_file_is_409(app, prefix):
    put(app, f"{app}/{prefix}/file", b"x")
    response = put(app, f"{app}/{prefix}/file/child", b"y")
    assert response.status_code == 409
    put(app, f"{app}/{prefix}/dir/child", b"y")
    assert put(app, f"{app}/{prefix}/dir", b"z").status_code == 409


def test_listing_api_gives_path_size_sha256_modified(app, prefix):
    put(app, f"{app}/{prefix}/v1/mosn.tar.gz", b"linux")
    put(app, f"{app}/{prefix}/v1/mosn-macos.tar.gz", b"macos")
    put(app, f"{app}/{prefix}/v2/mosn.tar.gz", b"v2")
    listed = app.get(f"{app}/-/api/artifacts", params={"prefix": f"{prefix}/v1/"}).json()
    assert [(a["path"], a["size"], a["sha256"]) for a in listed] == [
        (f"{prefix}/v1/mosn-macos.tar.gz", 5, sha256(b"macos")),
        (f"{prefix}/v1/mosn.tar.gz", 5, sha256(b"linux")),
    ]
    assert all(a["modified"].endswith("Z") for a in listed)
    everything = app.get(f"{app}/-/api/artifacts", params={"prefix": prefix}).json()
    assert len(everything) == 3


def test_directory_json_listing(app, prefix):
    put(app, f"{app}/{prefix}/sub/a.bin", b"a")
    put(app, f"{app}/{prefix}/top.bin", b"top")
    listing = app.get(f"{app}/{prefix}/", headers={"Accept": "application/json"}).json()
    assert listing["path"] == f"{prefix}/"
    assert [d["name"] for d in listing["directories"]] == ["sub"]
    assert [(a["name"], a["sha256"]) for a in listing["artifacts"]] == [("top.bin", sha256(b"top"))]
    same = app.get(f"{app}/{prefix}", headers={"Accept": "application/json"}).json()
    assert same == listing


def test_directory_html_listing_shows_names_sizes_and_sha256(app, prefix):
    put(app, f"{app}/{prefix}/shown.tar.gz", b"visible bytes")
    page = app.get(f"{app}/{prefix}/", headers={"Accept": "text/html"})
    assert page.status_code == 200
    assert page.headers["Content-Type"].startswith("text/html")
    assert "shown.tar.gz" in page.text
    assert sha256(b"visible bytes") in page.text
    assert f'href="/{prefix}/shown.tar.gz"' in page.text


def test_metrics_count_requests_bytes_and_rejections(app, prefix):
    def scrape():
        lines = app.get(f"{app}/-/metrics").text.splitlines()
        return {
            k: float(v)
            for k, _, v in (line.rpartition(" ") for line in lines if not line.startswith("#"))
        }

    before = scrape()
    put(app, f"{app}/{prefix}/m.bin", b"m" * 1000)
    app.get(f"{app}/{prefix}/m.bin")
    app.put(f"{app}/{prefix}/m2.bin", data=b"x")
    after = scrape()
    assert after["artifact_received_bytes_total"] - before["artifact_received_bytes_total"] == 1000
    assert after["artifact_sent_bytes_total"] - before["artifact_sent_bytes_total"] >= 1000
    rejected = 'artifact_uploads_rejected_total{reason="unauthorized"}'
    assert after[rejected] - before[rejected] == 1
    created = 'artifact_http_requests_total{status="201"}'
    assert after[created] - before.get(created, 0) == 1


def test_plain_http_clients_can_fetch(live_server, prefix, http, tmp_path):
    """Istio's init.sh fetches with `curl -fLSs`: the same command must get the bytes."""
    import subprocess

    data = os.urandom(5000)
    put(http, f"{live_server}/{prefix}/mosn.tar.gz", data)
    out = tmp_path / "got"
    subprocess.run(
        ["curl", "-fLSs", "--retry", "5", "-o", str(out), f"{live_server}/{prefix}/mosn.tar.gz"],
        check=True,
    )
    assert out.read_bytes() == data
    missing = subprocess.run(
        ["curl", "-fLSs", "-o", os.devnull, f"{live_server}/{prefix}/missing.tar.gz"]
    )
    assert missing.returncode == 22


def test_responses_are_not_cached_without_revalidation(app, prefix):
    put(app, f"{app}/{prefix}/c.bin", b"c")
    assert app.get(f"{app}/{prefix}/c.bin").headers["Cache-Control"] == "no-cache"


def test_unsupported_method_is_405(app, prefix):
    response = app.post(f"{app}/{prefix}/x", data=b"x", headers=AUTH)
    assert response.status_code == 405


def test_empty_artifact_round_trip(app, prefix):
    url = f"{app}/{prefix}/empty.txt"
    created = put(app, url, b"")
    assert created.status_code == 201
    assert created.json()["sha256"] == sha256(b"")
    got = app.get(url)
    assert (got.status_code, got.content, got.headers["Content-Length"]) == (200, b"", "0")
    assert got.headers["ETag"] == f'"{sha256(b"")}"'


def test_upload_without_length_is_411(live_server, prefix):
    """Neither Content-Length nor a chunked body: the server cannot know where the body ends."""
    parts = urlsplit(live_server)
    head = f"PUT /{prefix}/nolength.bin HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n"
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(head.encode())
        reply = sock.recv(4096)
    assert reply.split(b" ", 2)[1] == b"411"
    assert raw_request(live_server, "GET", f"/{prefix}/nolength.bin") == 404


BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


def test_a_browser_gets_an_html_error_page_and_api_clients_json(app, prefix):
    missing = f"{app}/{prefix}/missing.tar.gz"
    page = app.get(missing, headers={"Accept": BROWSER_ACCEPT})
    assert page.status_code == 404
    assert page.headers["Content-Type"].startswith("text/html")
    assert f"no artifact at /{prefix}/missing.tar.gz" in page.text
    assert 'href="/"' in page.text
    folder = app.get(f"{app}/{prefix}/nowhere/", headers={"Accept": BROWSER_ACCEPT})
    assert (folder.status_code, folder.headers["Content-Type"][:9]) == (404, "text/html")
    for accept in ("*/*", "application/json", None):
        answer = app.get(missing, headers={"Accept": accept} if accept else {})
        assert answer.status_code == 404
        assert answer.json()["reason"] == "not_found", accept
    # A write is an API call whatever it accepts.
    refused = app.put(missing, data=b"x", headers={"Accept": BROWSER_ACCEPT})
    assert refused.json()["reason"] == "unauthorized"


def test_the_browse_page_shows_human_sizes_and_dates_that_do_not_wrap(app, prefix):
    put(app, f"{app}/{prefix}/tiny.bin", b"13 bytes here")
    put(app, f"{app}/{prefix}/large.bin", b"x" * (3 * 1024 * 1024 + 200 * 1024))
    page = app.get(f"{app}/{prefix}/", headers={"Accept": BROWSER_ACCEPT}).text
    assert '<td class="size" title="13 bytes">13 B</td>' in page
    assert f'<td class="size" title="{3 * 1024 * 1024 + 200 * 1024} bytes">3.2 MiB</td>' in page
    listed = app.get(f"{app}/{prefix}/", headers={"Accept": "application/json"}).json()
    modified = listed["artifacts"][0]["modified"]  # the JSON keeps bytes and ISO times
    assert f'<time datetime="{modified}">{modified[:10]} {modified[11:16]}</time>' in page
    assert "td.size, td.modified { white-space: nowrap; }" in page


def test_a_folder_emptied_by_deletes_leaves_the_listings(live_server, prefix):
    import requests

    base = f"{live_server}/{prefix}"
    put(requests, f"{base}/keep.txt", b"kept")
    put(requests, f"{base}/v1/deep/a.tar.gz", b"a")
    put(requests, f"{base}/v1/b.tar.gz", b"b")
    for name in ("v1/deep/a.tar.gz", "v1/b.tar.gz"):
        assert requests.delete(f"{base}/{name}", headers=AUTH).status_code == 204
    listing = requests.get(f"{base}/", headers={"Accept": "application/json"}).json()
    assert listing["directories"] == []
    assert [a["name"] for a in listing["artifacts"]] == ["keep.txt"]
    assert requests.get(f"{base}/v1/", headers={"Accept": "application/json"}).status_code == 404
    assert not (live_server.root / prefix / "v1").exists()


def test_uploads_into_a_folder_whose_last_file_is_being_deleted_all_land(live_server, prefix):
    """A DELETE removes its emptied folder; an upload into that folder at the same moment
    makes it again rather than fail."""
    import threading

    import requests

    statuses: list[int] = []

    def churn(name: str) -> None:
        with requests.Session() as session:
            for _ in range(60):
                url = f"{live_server}/{prefix}/shared/{name}"
                statuses.append(session.put(url, data=name.encode(), headers=AUTH).status_code)
                statuses.append(session.delete(url, headers=AUTH).status_code)

    threads = [threading.Thread(target=churn, args=(f"{n}.bin",)) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(set(statuses)) == [201, 204], statuses
