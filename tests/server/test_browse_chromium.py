"""The browse page as a person sees it: rendered by headless Chromium (Debian's chromium)."""

from __future__ import annotations

import re
import shutil
import subprocess
from html.parser import HTMLParser

import pytest
import requests

from tests.helpers import tools
from tests.server.conftest import AUTH, sha256

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


class _Rows(HTMLParser):
    """Collect the artifact rows (<tr class="artifact">) as lists of cell texts, and links."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self.links: list[str] = []
        self._row: list[str] | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "tr" and attributes.get("class") == "artifact":
            self._row = []
        elif tag == "td" and self._row is not None:
            self._cell = []
        elif tag == "a" and attributes.get("href"):
            self.links.append(attributes["href"])

    def handle_endtag(self, tag):
        if tag == "td" and self._row is not None and self._cell is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.rows.append(self._row)
            self._row = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def dump_dom(url: str, profile) -> str:
    result = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


@pytest.mark.slow
def test_browse_page_in_chromium_lists_the_artifacts(live_server, prefix, tmp_path):
    if not shutil.which(CHROMIUM):
        tools.need("chromium", f"{CHROMIUM} not found")
    files = {
        "mosn.tar.gz": b"linux tarball",
        "mosn-centos.tar.gz": b"centos tarball!",
        "mosn-macos.tar.gz": b"mac",
    }
    for name, data in files.items():
        assert (
            requests.put(f"{live_server}/{prefix}/v1/{name}", data=data, headers=AUTH).status_code
            == 201
        )
    dom = dump_dom(f"{live_server}/{prefix}/v1/", tmp_path / "profile")
    page = _Rows()
    page.feed(dom)
    shown = {row[0]: row for row in page.rows}
    assert sorted(shown) == sorted(files)
    for name, data in files.items():
        _, size, digest, modified = shown[name]
        assert (size, digest) == (f"{len(data)} B", sha256(data))
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d", modified), modified
        assert f"/{prefix}/v1/{name}" in page.links
    top = _Rows()
    top.feed(dump_dom(f"{live_server}/{prefix}/", tmp_path / "profile"))
    assert f"/{prefix}/v1/" in top.links
    # A missing page is a page, not JSON, for a browser.
    missing = dump_dom(f"{live_server}/{prefix}/v1/nothing.tar.gz", tmp_path / "profile")
    assert '<h1 id="status">404</h1>' in missing
    assert f"no artifact at /{prefix}/v1/nothing.tar.gz" in missing
