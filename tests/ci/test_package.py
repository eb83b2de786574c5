"""ci.builder.package: the tar layout, the parallel gzip, and a dist that appears all at once."""

from __future__ import annotations

import gzip
import io
import subprocess
import tarfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from ci import names
from ci.builder import package
from ci.dist import Dist, sha256_file
from ci.errors import UserError
from tests.helpers.build import host_goroot, snapshot

MTIME = 1648166400


def template(root: Path) -> Dist:
    return Dist(
        root=root,
        mosn_version="v1.0.0(abc1234)",
        mosn_version_safe="v1.0.0-abc1234",
        istio_version="1.10.6",
        git_commit="a" * 40,
        go_version="go1.19.8",
        source_date_epoch=MTIME,
        cgo=False,
    )


@pytest.fixture(scope="module")
def go_binary(tmp_path_factory) -> Path:
    """A real Go binary a few MiB long: several compression blocks."""
    dest = tmp_path_factory.mktemp("bin") / "mosn"
    dest.write_bytes((host_goroot() / "bin" / "gofmt").read_bytes() + b"tail" * 999)
    return dest


def gzip_bytes(binary: Path, **kwargs) -> bytes:
    sink = io.BytesIO()
    workers = kwargs.pop("workers", 2)
    with ThreadPoolExecutor(workers) as pool:
        package.write_gzip(package.tar_stream(binary, MTIME), sink, pool, **kwargs)
    return sink.getvalue()


def test_tar_stream_is_what_tarfile_writes(go_binary):
    expected = io.BytesIO()
    info = tarfile.TarInfo(names.BINARY_PATH_IN_TARBALL)
    info.size, info.mode, info.mtime = go_binary.stat().st_size, 0o755, MTIME
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    with tarfile.open(fileobj=expected, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        tar.addfile(info, io.BytesIO(go_binary.read_bytes()))
    assert b"".join(package.tar_stream(go_binary, MTIME)) == expected.getvalue()


def test_tarball_is_one_gzip_member_with_no_name_or_time(go_binary, tmp_path):
    tarball = tmp_path / "mosn.tar.gz"
    with open(tarball, "wb") as sink:
        size, digest = package.write_tarball(go_binary, sink, MTIME)
    data = tarball.read_bytes()
    assert (size, digest) == (len(data), sha256_file(tarball))
    assert data[:3] == b"\x1f\x8b\x08"
    assert data[3] == 0, "FLG must be 0: no file name, no comment"
    assert data[4:8] == b"\0\0\0\0", "gzip mtime must be 0"
    inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
    tar_bytes = inflate.decompress(data)
    assert inflate.eof and inflate.unused_data == b"", "exactly one gzip member"
    assert tar_bytes == b"".join(package.tar_stream(go_binary, MTIME))
    # The readers Istio's build and users have: gzip, GNU tar, Python.
    subprocess.run(["gzip", "-t", tarball], check=True)
    out = tmp_path / "x"
    out.mkdir()
    subprocess.run(["tar", "xzf", tarball, "-C", out], check=True)
    assert (out / names.BINARY_PATH_IN_TARBALL).read_bytes() == go_binary.read_bytes()
    listing = subprocess.run(
        ["tar", "tvzf", tarball], check=True, capture_output=True, text=True
    ).stdout.splitlines()
    assert len(listing) == 1 and listing[0].startswith("-rwxr-xr-x 0/0 ")
    with tarfile.open(tarball, "r:gz") as tar:
        (member,) = tar.getmembers()
        assert (member.name, member.mode, member.uid, member.gid) == (
            names.BINARY_PATH_IN_TARBALL,
            0o755,
            0,
            0,
        )
        assert (member.uname, member.gname, member.mtime) == ("", "", MTIME)


def test_bytes_do_not_depend_on_thread_count(go_binary):
    one = gzip_bytes(go_binary, workers=1, block_size=64 * 1024)
    four = gzip_bytes(go_binary, workers=4, block_size=64 * 1024)
    assert one == four
    assert gzip.decompress(one) == b"".join(package.tar_stream(go_binary, MTIME))


def test_each_block_is_primed_with_the_bytes_before_it(go_binary):
    # Blocks far smaller than the 32 KiB window, of an odd size: a wrong dictionary would
    # make back-references point at the wrong bytes and the CRC check fail.
    data = gzip_bytes(go_binary, block_size=5000)
    assert gzip.decompress(data) == b"".join(package.tar_stream(go_binary, MTIME))


def test_blocks_cost_almost_nothing_against_one_stream(go_binary):
    whole = zlib.compress(b"".join(package.tar_stream(go_binary, MTIME)), package.GZIP_LEVEL)
    assert len(gzip_bytes(go_binary)) < len(whole) * 1.005


def test_dist_has_tarballs_sums_and_manifest_and_nothing_else(go_binary, tmp_path):
    out = tmp_path / "dist"
    dist = package.write_dist(out, {"linux/amd64": go_binary}, template(out))
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["mosn.tar.gz", "mosn-centos.tar.gz", names.SHA256SUMS, names.MANIFEST]
    )
    assert (out / "mosn.tar.gz").read_bytes() == (out / "mosn-centos.tar.gz").read_bytes()
    assert Dist.load(out) == dist
    subprocess.run(["sha256sum", "-c", "--strict", names.SHA256SUMS], cwd=out, check=True)
    assert oct((out / "mosn.tar.gz").stat().st_mode & 0o777) == "0o644"


def test_rebuild_with_fewer_platforms_drops_the_old_tarballs(go_binary, tmp_path):
    out = tmp_path / "dist"
    package.write_dist(out, {"linux/amd64": go_binary, "linux/arm64": go_binary}, template(out))
    assert (out / "mosn-linux-arm64.tar.gz").exists()
    package.write_dist(out, {"linux/amd64": go_binary}, template(out))
    assert not (out / "mosn-linux-arm64.tar.gz").exists()
    assert [f.name for f in Dist.load(out).files] == ["mosn.tar.gz", "mosn-centos.tar.gz"]


def test_failed_packaging_leaves_the_previous_dist_as_it_was(go_binary, tmp_path):
    out = tmp_path / "dist"
    package.write_dist(out, {"linux/amd64": go_binary}, template(out))
    before = snapshot(out)
    missing = tmp_path / "no-such-binary"
    with pytest.raises(UserError):
        package.write_dist(out, {"linux/amd64": go_binary, "darwin/amd64": missing}, template(out))
    assert snapshot(out) == before


def test_interrupt_while_compressing_leaves_the_previous_dist_as_it_was(
    go_binary, tmp_path, monkeypatch
):
    out = tmp_path / "dist"
    package.write_dist(out, {"linux/amd64": go_binary}, template(out))
    before = snapshot(out)
    real_deflate = package._deflate
    calls = []

    def deflate_then_interrupt(*args):
        # Fault injection: Ctrl-C arriving half-way through the second tarball.
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_deflate(*args)

    monkeypatch.setattr(package, "_deflate", deflate_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        package.write_dist(
            out, {"linux/amd64": go_binary, "darwin/amd64": go_binary}, template(out)
        )
    assert snapshot(out) == before


def test_a_folder_in_the_way_fails_before_anything_is_replaced(go_binary, tmp_path):
    out = tmp_path / "dist"
    package.write_dist(out, {"darwin/amd64": go_binary}, template(out))
    (out / "mosn-centos.tar.gz").mkdir()
    before = snapshot(out)
    with pytest.raises(UserError, match="mosn-centos.tar.gz is a folder"):
        package.write_dist(out, {"linux/amd64": go_binary}, template(out))
    assert snapshot(out) == before
    Dist.load(out).verify()


def test_failed_packaging_removes_the_folders_it_created(go_binary, tmp_path):
    out = tmp_path / "new" / "dist"
    with pytest.raises(UserError):
        package.write_dist(out, {"linux/amd64": tmp_path / "no-such-binary"}, template(out))
    assert list(tmp_path.iterdir()) == []
