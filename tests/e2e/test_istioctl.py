"""Fetching istioctl + samples, kind and kubectl: checksum-verified, cached, nothing partial."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import resource
import signal
import tarfile
from http.server import SimpleHTTPRequestHandler
from pathlib import Path

import pytest

from ci.e2e import istioctl
from ci.e2e.istioctl import Tools
from ci.e2e.versions import for_istio
from ci.errors import UserError
from tests.helpers.net import serving

VERSION = "1.10.6"


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def serve(root: Path):
    return serving(functools.partial(_Quiet, directory=str(root)))


def _tarball(members: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o755
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    return buffer.getvalue()


def _release(root: Path, data: bytes, published: str | None = None) -> None:
    folder = root / "istio" / "istio" / "releases" / "download" / VERSION
    folder.mkdir(parents=True, exist_ok=True)
    name = f"istio-{VERSION}-linux-amd64.tar.gz"
    (folder / name).write_bytes(data)
    digest = published or hashlib.sha256(data).hexdigest()
    (folder / f"{name}.sha256").write_text(f"{digest}  {name}\n")


ISTIO_TREE = {
    f"istio-{VERSION}/bin/istioctl": b"#!/bin/sh\necho 1.10.6\n",
    f"istio-{VERSION}/samples/bookinfo/platform/kube/bookinfo.yaml": b"kind: Service\n",
    f"istio-{VERSION}/samples/bookinfo/platform/kube/cleanup.sh": b"#!/bin/bash\n",
}


@pytest.fixture
def tools(tmp_path) -> Tools:
    return Tools.in_cache(tmp_path / "cache", for_istio(VERSION), VERSION)


def test_release_is_verified_unpacked_and_then_served_from_cache(tmp_path, tools):
    site = tmp_path / "site"
    _release(site, _tarball(ISTIO_TREE))
    with serve(site) as base:
        istioctl.ensure_istio(tools, VERSION, "amd64", github=base)
    assert tools.istioctl.read_bytes() == ISTIO_TREE[f"istio-{VERSION}/bin/istioctl"]
    assert (tools.samples / "bookinfo" / "platform" / "kube" / "cleanup.sh").is_file()
    # The server is gone: a second call must not need it.
    istioctl.ensure_istio(tools, VERSION, "amd64", github="http://127.0.0.1:9")
    assert sorted(p.name for p in tools.istio_home.parent.parent.iterdir()) == [f"istio-{VERSION}"]


def test_a_checksum_mismatch_keeps_nothing(tmp_path, tools):
    site = tmp_path / "site"
    _release(site, _tarball(ISTIO_TREE), published="0" * 64)
    with serve(site) as base, pytest.raises(UserError, match="expected 0000000000"):
        istioctl.ensure_istio(tools, VERSION, "amd64", github=base)
    assert not tools.istio_home.exists()
    assert list(tools.istio_home.parent.parent.iterdir()) == []


def test_a_missing_release_names_the_status(tmp_path, tools):
    (tmp_path / "site").mkdir()
    with serve(tmp_path / "site") as base, pytest.raises(UserError, match=r"\.sha256 answered 404"):
        istioctl.ensure_istio(tools, VERSION, "amd64", github=base)


def test_a_tarball_escaping_its_folder_is_refused(tmp_path, tools):
    site = tmp_path / "site"
    _release(site, _tarball({**ISTIO_TREE, "../../evil": b"x"}))
    with serve(site) as base, pytest.raises(UserError, match="unsafe member '../../evil'"):
        istioctl.ensure_istio(tools, VERSION, "amd64", github=base)
    assert not (tmp_path / "evil").exists() and not tools.istio_home.exists()


def test_a_symlink_leaving_the_tarball_is_refused(tmp_path, tools):
    site = tmp_path / "site"
    _release(site, _tarball(ISTIO_TREE, links={f"istio-{VERSION}/bin/sh": "/bin/sh"}))
    with serve(site) as base, pytest.raises(UserError, match="link leaving the archive"):
        istioctl.ensure_istio(tools, VERSION, "amd64", github=base)


def test_a_release_without_istioctl_is_the_wrong_asset(tmp_path, tools):
    site = tmp_path / "site"
    _release(site, _tarball({f"istio-{VERSION}/README.md": b"hi"}))
    with serve(site) as base, pytest.raises(UserError, match="has no istio-1.10.6/bin/istioctl"):
        istioctl.ensure_istio(tools, VERSION, "amd64", github=base)


def test_download_checks_a_pinned_digest_and_leaves_no_part_file(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "kind").write_bytes(b"kind binary")
    dest = tmp_path / "cache" / "kind"
    with serve(site) as base:
        with pytest.raises(UserError, match="the download is corrupt or was replaced"):
            istioctl.download(f"{base}/kind", dest, "1" * 64)
        assert not dest.parent.exists()
        istioctl.download(f"{base}/kind", dest, hashlib.sha256(b"kind binary").hexdigest())
    assert dest.read_bytes() == b"kind binary" and dest.stat().st_mode & 0o111


def test_a_checksum_file_without_a_digest_is_refused(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "kubectl.sha256").write_text("<html>not found</html>\n")
    with serve(site) as base, pytest.raises(UserError, match="does not start with a sha256 digest"):
        istioctl.published_sha256(f"{base}/kubectl.sha256")


def test_release_urls_follow_the_projects_layouts():
    row = for_istio(VERSION)
    assert istioctl.istio_release_url(VERSION, "amd64") == (
        "https://github.com/istio/istio/releases/download/1.10.6/istio-1.10.6-linux-amd64.tar.gz"
    )
    assert istioctl.kind_url(row, "amd64") == (
        "https://github.com/kubernetes-sigs/kind/releases/download/v0.17.0/kind-linux-amd64"
    )
    assert istioctl.kubectl_url(row, "amd64") == (
        "https://dl.k8s.io/release/v1.24.7/bin/linux/amd64/kubectl"
    )


def test_an_unreachable_host_is_one_line_and_leaves_no_folder(tmp_path):
    from tests.helpers.net import free_port

    dest = tmp_path / "cache" / "tools" / "kind-v0.17.0" / "kind"
    url = f"http://127.0.0.1:{free_port()}/kind"
    with pytest.raises(UserError) as failure:
        istioctl.download(url, dest, "1" * 64)
    assert str(failure.value) == f"could not download {url} (ConnectionError); check the network"
    assert not dest.parent.exists()


@contextlib.contextmanager
def file_size_limit(limit: int):
    """A disk that fills mid-write (a small tmpfs would do; RLIMIT_FSIZE does the same without
    root): every write past `limit` bytes fails with EFBIG."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    old = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, old)


def test_a_write_error_is_one_line_and_leaves_no_partial_file(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "kind").write_bytes(b"k" * (4 << 20))
    dest = tmp_path / "cache" / "kind"
    dest.parent.mkdir(parents=True)
    with serve(site) as base, file_size_limit(1 << 20), pytest.raises(UserError) as failure:
        istioctl.download(f"{base}/kind", dest, "1" * 64)
    assert str(failure.value) == (
        f"could not write {dest} (File too large); check the free space and permissions "
        f"of {dest.parent}"
    )
    assert list(dest.parent.iterdir()) == []


def test_a_write_error_while_unpacking_is_one_line_and_leaves_nothing(tmp_path, tools):
    """The tarball fits under the limit; its 4 MiB istioctl does not."""
    site = tmp_path / "site"
    _release(site, _tarball({**ISTIO_TREE, f"istio-{VERSION}/bin/istioctl": bytes(4 << 20)}))
    with serve(site) as base, file_size_limit(1 << 20), pytest.raises(UserError) as failure:
        istioctl.ensure_istio(tools, VERSION, "amd64", github=base)
    release = tools.istio_home.parent
    assert str(failure.value) == (
        f"could not write {release} (File too large); check the free space and permissions "
        f"of {release.parent}"
    )
    assert list(release.parent.iterdir()) == []
