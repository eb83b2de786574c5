"""Where `invoke mesh` gets Istio's binaries (ci/mesh/binaries.py): a folder, a source build,
and every refusal, with the real pilot-discovery and pilot-agent built from Istio 1.10.6."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import secrets
import shutil
import stat
import subprocess
import tarfile
import zipfile
from pathlib import Path

import pytest

from ci.config import Settings
from ci.errors import UserError
from ci.image.result import ImageResult
from ci.mesh import binaries
from ci.mesh.binaries import IN_PILOT_IMAGE, IN_PROXY_IMAGE, RELEASES, resolve, source_key
from tests.helpers import tools
from tests.helpers.images import import_rootfs
from tests.helpers.mosn import git

RELEASE = RELEASES["1.10.6"]


def refusal(settings: Settings) -> str:
    """The one line resolve refuses `settings` with."""
    with pytest.raises(UserError) as caught:
        resolve(settings)
    message = str(caught.value)
    assert "\n" not in message
    return message


def version_of(binary: Path) -> str:
    return subprocess.run(
        [binary, "version"], capture_output=True, text=True, check=True, timeout=60
    ).stdout


def writable_copy(source: Path, dest: Path) -> Path:
    """A copy of the read-only source tree that a test may change."""
    shutil.copytree(source, dest)
    for path in [dest, *dest.rglob("*")]:
        path.chmod(path.stat().st_mode | stat.S_IWUSR)
    return dest


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


WRONG_RELEASE = (
    '#!/bin/sh\necho \'version.BuildInfo{Version:"1.11.0", GitRevision:"3a0b3b3",'
    ' GolangVersion:"go1.16.7", BuildStatus:"Clean", GitTag:"1.11.0"}\'\n'
)


# ---- the source build -----------------------------------------------------------------------


def test_a_source_build_is_the_asked_release_built_with_go_1_16(istio_binaries, istio_source):
    for binary in (istio_binaries.pilot_discovery, istio_binaries.pilot_agent):
        info = version_of(binary)
        assert 'Version:"1.10.6"' in info
        assert 'GolangVersion:"go1.16.15"' in info
    template = istio_source / binaries.BOOTSTRAP_IN_SOURCE
    assert istio_binaries.bootstrap_template.read_bytes() == template.read_bytes()
    # The source as the tool resolved it (../shared may be a symbolic link).
    assert f"built from {istio_source.resolve()}" in istio_binaries.origin


def test_pilot_discovery_serves_without_kubernetes(istio_binaries, tmp_path):
    # The binary's own flag set, as `invoke mesh` starts it: a file config store, no registry.
    help_text = subprocess.run(
        [istio_binaries.pilot_discovery, "discovery", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    for flag in ("--configDir", "--registries", "--meshConfig", "--grpcAddr"):
        assert flag in help_text


def test_the_build_is_kept_and_used_again(istio_build, istio_binaries):
    before = istio_binaries.pilot_discovery.stat().st_mtime_ns
    again = resolve(istio_build)
    assert again.pilot_discovery == istio_binaries.pilot_discovery
    assert again.pilot_discovery.stat().st_mtime_ns == before
    assert "earlier" in again.origin


def test_a_changed_source_go_or_release_is_another_cache_entry(istio_source, tmp_path):
    copy = writable_copy(istio_source, tmp_path / "src")
    salt = "1.10.6 go1.16.15 flags 1"
    key = source_key(istio_source, salt)
    assert source_key(copy, salt) == key  # by content and relative path, not by location
    (copy / "pilot" / "cmd" / "pilot-discovery" / "main_test.go").write_text("package main\n")
    assert source_key(copy, salt) == key  # a test file is not compiled into the binaries
    assert source_key(copy, salt.replace("go1.16.15", "go1.17.13")) != key
    main = copy / "pilot" / "cmd" / "pilot-discovery" / "main.go"
    main.write_text(main.read_text() + "\n// changed\n")
    assert source_key(copy, salt) != key


def test_a_failed_build_leaves_nothing_to_reuse(istio_binaries, istio_source, tmp_path):
    # After the session build, so only the broken package compiles (the Go build cache is warm).
    copy = writable_copy(istio_source, tmp_path / "src")
    main = copy / "pilot" / "cmd" / "pilot-discovery" / "main.go"
    main.write_text(main.read_text() + "\nfunc broken( {\n")
    cache = tmp_path / "cache"
    message = refusal(Settings(istio_src=str(copy), cache_dir=str(cache)))
    assert message.startswith("go build of pilot-discovery failed")
    assert list((cache / "istio").iterdir()) == []


# ---- a folder the user gives ----------------------------------------------------------------


def test_a_folder_gives_both_binaries_and_either_template_name(istio_binaries, tmp_path):
    folder = tmp_path / "bin"
    folder.mkdir()
    (folder / "pilot-discovery").symlink_to(istio_binaries.pilot_discovery)
    (folder / "pilot-agent").symlink_to(istio_binaries.pilot_agent)
    # The name proxyv2 images give it.
    shutil.copyfile(istio_binaries.bootstrap_template, folder / "envoy_bootstrap_tmpl.json")
    found = resolve(Settings(istio_bin_dir=str(folder)))
    assert found.pilot_discovery == folder / "pilot-discovery"
    assert found.pilot_agent == folder / "pilot-agent"
    assert found.bootstrap_template == folder / "envoy_bootstrap_tmpl.json"
    assert found.origin == f"pilot-discovery, pilot-agent from {folder} (go1.16.15)"


def test_a_folder_wins_over_a_source(istio_binaries, tmp_path):
    folder = tmp_path / "bin"
    folder.mkdir()
    (folder / "pilot-discovery").symlink_to(istio_binaries.pilot_discovery)
    # A source that would be refused: the folder is taken without looking at it.
    found = resolve(Settings(istio_bin_dir=str(folder), istio_src=str(tmp_path)))
    assert (found.pilot_discovery, found.pilot_agent, found.bootstrap_template) == (
        folder / "pilot-discovery",
        None,
        None,
    )


def test_pilot_agent_without_its_template_is_refused(istio_binaries, tmp_path):
    folder = tmp_path / "bin"
    folder.mkdir()
    (folder / "pilot-discovery").symlink_to(istio_binaries.pilot_discovery)
    (folder / "pilot-agent").symlink_to(istio_binaries.pilot_agent)
    message = refusal(Settings(istio_bin_dir=str(folder)))
    assert message.startswith(f"pilot-agent in --istio-bin-dir {folder} has no bootstrap template")
    assert "tools/packaging/common/envoy_bootstrap.json" in message


# ---- refusals --------------------------------------------------------------------------------


def test_an_unknown_istio_version_is_refused_with_the_known_ones(tmp_path):
    message = refusal(Settings(istio_version="1.9.0", istio_bin_dir=str(tmp_path)))
    assert message == (
        "no Istio binaries are known for Istio '1.9.0' (known: 1.10.6); pass --istio-version"
        " 1.10.6 or add the release to ci/mesh/binaries.py"
    )


def test_a_missing_folder_or_binary_is_refused(tmp_path):
    missing = tmp_path / "nowhere"
    assert refusal(Settings(istio_bin_dir=str(missing))).startswith(
        f"--istio-bin-dir {missing} is not a folder"
    )
    message = refusal(Settings(istio_bin_dir=str(tmp_path)))
    assert message.startswith(f"no pilot-discovery in --istio-bin-dir {tmp_path}; put Istio 1.10.6")


def test_a_standin_binary_of_another_release_is_refused(tmp_path):
    # A script printing what `pilot-discovery version` of Istio 1.11.0 prints.
    fake = tmp_path / "pilot-discovery"
    fake.write_text(WRONG_RELEASE)
    fake.chmod(0o755)
    message = refusal(Settings(istio_bin_dir=str(tmp_path)))
    assert message == (
        f"{fake} (--istio-bin-dir {tmp_path}) is Istio 1.11.0, not 1.10.6; give Istio 1.10.6's"
        " pilot-discovery, or pass the --istio-version it is"
    )


def test_a_binary_that_does_not_run_is_refused(tmp_path):
    (tmp_path / "pilot-discovery").write_bytes(b"\x7fELF not really")
    (tmp_path / "pilot-discovery").chmod(0o755)
    message = refusal(Settings(istio_bin_dir=str(tmp_path)))
    assert "does not run here" in message
    assert message.endswith("give Istio 1.10.6's linux binaries for this machine")


def test_a_source_of_another_release_is_refused_before_building(istio_source, tmp_path):
    copy = writable_copy(istio_source, tmp_path / "src")
    with open(copy / "go.sum", "a") as go_sum:
        go_sum.write("example.com/other v1.0.0 h1:AAAA=\n")
    cache = tmp_path / "cache"
    message = refusal(Settings(istio_src=str(copy), cache_dir=str(cache)))
    assert message == (
        f"--istio-src {copy} is not Istio 1.10.6's source (its go.sum is another release's);"
        " give a checkout of tag 1.10.6, or pass the --istio-version it is"
    )
    assert not cache.exists()


def test_a_checkout_at_another_commit_is_refused(istio_source, tmp_path):
    # Unchanged files, but the checkout's commit is not the release's tag: git decides.
    copy = writable_copy(istio_source, tmp_path / "src")
    git(copy, "init", "-q", "-b", "main")
    git(copy, "add", "-A")
    git(copy, "commit", "-q", "-m", "not the release")
    head = git(copy, "rev-parse", "HEAD")
    message = refusal(Settings(istio_src=str(copy), cache_dir=str(tmp_path / "cache")))
    assert message == (
        f"--istio-src {copy} is at commit {head[:12]}, not Istio 1.10.6 (fd053c6165d2);"
        " `git checkout 1.10.6` there, or pass the --istio-version it is"
    )


@pytest.mark.parametrize("release", ["1.19", "1.15"])
def test_a_go_that_can_neither_build_istio_nor_fetch_the_go_that_does_is_refused(
    release, istio_source, tmp_path, monkeypatch
):
    # Debian's Go 1.19 (too new for reflect2 v1.0.1, too old for GOTOOLCHAIN) and Go 1.15.
    goroot = Path(f"/usr/lib/go-{release}")
    if not (goroot / "bin" / "go").is_file():
        tools.need("go releases", f"no Go {release} at {goroot}")
    monkeypatch.setenv("PATH", f"{goroot}/bin:{os.environ['PATH']}")
    message = refusal(Settings(istio_src=str(istio_source), cache_dir=str(tmp_path)))
    said = r"go1\.19\.\d+" if release == "1.19" else "a Go before 1\\.16"
    assert re.fullmatch(
        rf"Istio 1\.10\.6 builds with Go 1\.16 to 1\.17 and the go on PATH is {said}; install Go"
        r" 1\.21 or newer \(it fetches go1\.16\.15 through the module proxy\) or put Go 1\.16 to"
        r" 1\.17 first on PATH",
        message,
    )
    assert not (tmp_path / "istio").exists()


def test_a_tree_that_is_not_istio_is_refused(tmp_path):
    (tmp_path / "go.mod").write_text("module example.com/other\n\ngo 1.16\n")
    message = refusal(Settings(istio_src=str(tmp_path), cache_dir=str(tmp_path / "cache")))
    assert message == (
        f"--istio-src {tmp_path} is not Istio's source (no go.mod of istio.io/istio); give a"
        " checkout of istio/istio at tag 1.10.6"
    )


# ---- Istio's images, made here with `docker import` from the binaries built above ----------


def import_image(client, label: str, files: dict[str, Path | str]) -> str:
    """An image holding `files` ({path in the image: file or text}), as Istio's images hold
    them; nothing else (the binaries are static)."""
    reference = f"mp-mesh-{label}-{secrets.token_hex(4)}:1.10.6"

    def rootfs(dest: Path) -> None:
        with tarfile.open(dest, "w") as tar:
            for inside, content in files.items():
                parts = Path(inside.lstrip("/")).parts
                for depth in range(1, len(parts)):
                    folder = tarfile.TarInfo("/".join(parts[:depth]))
                    folder.type, folder.mode = tarfile.DIRTYPE, 0o755
                    tar.addfile(folder)
                if isinstance(content, Path):
                    tar.add(str(content), arcname=inside.lstrip("/"))
                else:
                    info = tarfile.TarInfo(inside.lstrip("/"))
                    info.size, info.mode = len(content.encode()), 0o755
                    tar.addfile(info, io.BytesIO(content.encode()))

    return import_rootfs(client, reference, rootfs, [])


@pytest.fixture(scope="module")
def istio_images(docker_client, istio_binaries):
    """(pilot image, proxyv2 image) in the engine, removed afterwards."""
    pilot = import_image(
        docker_client, "pilot", {IN_PILOT_IMAGE["pilot-discovery"]: istio_binaries.pilot_discovery}
    )
    proxy = import_image(
        docker_client,
        "proxyv2",
        {
            IN_PROXY_IMAGE["pilot-agent"]: istio_binaries.pilot_agent,
            IN_PROXY_IMAGE["envoy_bootstrap.json"]: istio_binaries.bootstrap_template,
        },
    )
    yield pilot, proxy
    for reference in (pilot, proxy):
        docker_client.images.remove(reference)


def test_binaries_come_out_of_istio_images(istio_images, istio_binaries, tmp_path):
    pilot, proxy = istio_images
    settings = Settings(
        istio_pilot_image=pilot,
        istio_proxy_image=proxy,
        cache_dir=str(tmp_path),
        dist=str(tmp_path),
    )
    found = resolve(settings)
    assert sha256(found.pilot_discovery) == sha256(istio_binaries.pilot_discovery)
    assert sha256(found.pilot_agent) == sha256(istio_binaries.pilot_agent)
    assert found.bootstrap_template.read_bytes() == istio_binaries.bootstrap_template.read_bytes()
    assert found.origin == (
        f"pilot-discovery from image {pilot} (go1.16.15); pilot-agent from image {proxy}"
        " (go1.16.15)"
    )
    # Copied once per image: the second time nothing is written.
    before = found.pilot_discovery.stat().st_mtime_ns
    assert resolve(settings) == found
    assert found.pilot_discovery.stat().st_mtime_ns == before


def test_the_image_invoke_image_built_gives_pilot_agent(
    docker_client, istio_images, istio_binaries, tmp_path
):
    pilot, proxy = istio_images
    image_id = docker_client.images.get(proxy).id
    repository, tag = proxy.rsplit(":", 1)
    ImageResult(repository, [tag], image_id, {}).write(tmp_path)
    found = resolve(Settings(istio_pilot_image=pilot, dist=str(tmp_path), cache_dir=str(tmp_path)))
    assert sha256(found.pilot_agent) == sha256(istio_binaries.pilot_agent)
    assert f"pilot-agent from image {proxy}" in found.origin


def test_without_a_proxyv2_image_mosn_starts_directly(istio_images, tmp_path):
    pilot, _ = istio_images
    found = resolve(Settings(istio_pilot_image=pilot, dist=str(tmp_path), cache_dir=str(tmp_path)))
    assert (found.pilot_agent, found.bootstrap_template) == (None, None)
    assert found.origin == f"pilot-discovery from image {pilot} (go1.16.15)"


def test_a_source_gives_what_the_images_lack(istio_images, istio_build, istio_binaries, tmp_path):
    _, proxy = istio_images
    # No pilot image (a name Docker does not have is skipped only when not given: the default).
    settings = istio_build.replace(istio_proxy_image=proxy, dist=str(tmp_path))
    found = resolve(settings)
    assert found.pilot_discovery == istio_binaries.pilot_discovery  # the session's build, kept
    assert found.pilot_agent.parent != istio_binaries.pilot_agent.parent
    assert found.origin.startswith(f"pilot-agent from image {proxy} (go1.16.15); pilot-* built")


def test_a_named_image_docker_lacks_is_refused(docker_client, tmp_path):
    missing = f"mp-mesh-missing-{secrets.token_hex(4)}:1.10.6"
    message = refusal(Settings(istio_pilot_image=missing, cache_dir=str(tmp_path)))
    assert message == (
        f"--istio-pilot-image {missing} is not in the Docker engine; `docker pull {missing}`"
        " (or docker load) it, or drop the flag"
    )


def test_an_image_of_another_release_is_refused(docker_client, tmp_path):
    pilot = import_image(
        docker_client, "pilot-1.11", {IN_PILOT_IMAGE["pilot-discovery"]: WRONG_RELEASE}
    )
    try:
        message = refusal(Settings(istio_pilot_image=pilot, cache_dir=str(tmp_path)))
    finally:
        docker_client.images.remove(pilot)
    assert message.endswith(
        f"(image {pilot}) is Istio 1.11.0, not 1.10.6; give Istio 1.10.6's pilot-discovery,"
        " or pass the --istio-version it is"
    )


def test_a_proxyv2_image_without_the_template_is_refused(docker_client, istio_images, tmp_path):
    pilot, _ = istio_images
    agent_only = {IN_PROXY_IMAGE["pilot-agent"]: WRONG_RELEASE}
    proxy = import_image(docker_client, "agent-only", agent_only)
    settings = Settings(istio_pilot_image=pilot, istio_proxy_image=proxy, cache_dir=str(tmp_path))
    try:
        message = refusal(settings)
    finally:
        docker_client.images.remove(proxy)
    assert message == (
        f"image {proxy} has no /var/lib/istio/envoy/envoy_bootstrap_tmpl.json: not an Istio"
        " proxy image as Istio's Dockerfile builds it; give --istio-proxy-image another image"
    )
    assert [p.name for p in (tmp_path / "istio").iterdir()] == [
        p.name for p in (tmp_path / "istio").iterdir() if p.name.startswith("image-pilot-")
    ]


# ---- the Go module proxy ---------------------------------------------------------------------


def test_the_module_proxy_refusal_names_the_other_routes(tmp_path):
    # This machine's proxy refuses istio.io/istio (403); no Istio image is in its engine.
    message = refusal(Settings(cache_dir=str(tmp_path), dist=str(tmp_path)))
    assert message.startswith(
        "no pilot-discovery for Istio 1.10.6: the Go module proxy did not give"
        " istio.io/istio@1.10.6 (invalid version: reading https://"
    )
    assert "403 Forbidden" in message
    assert message.endswith(
        "; give --istio-bin-dir a folder that holds it, load istio/pilot:1.10.6 into Docker"
        " (docker pull or docker load), or give --istio-src an Istio 1.10.6 checkout"
    )


def file_proxy(source: Path, root: Path) -> str:
    """A GOPROXY folder serving `source` as istio.io/istio at 1.10.6's pseudo-version (the
    proxy protocol's files, as the go command reads them from file://)."""
    version = "v0.0.0-20211124180606-fd053c6165d2"  # tag 1.10.6's commit and its date
    folder = root / "istio.io" / "istio" / "@v"
    folder.mkdir(parents=True)
    info = json.dumps({"Version": version, "Time": "2021-11-24T18:06:06Z"})
    for query in ("1.10.6", version):
        (folder / f"{query}.info").write_text(info)
    shutil.copyfile(source / "go.mod", folder / f"{version}.mod")
    with zipfile.ZipFile(folder / f"{version}.zip", "w") as archive:
        for path in sorted(source.rglob("*")):
            if path.is_file():
                inside = path.relative_to(source).as_posix()
                archive.write(path, f"istio.io/istio@{version}/{inside}")
    return version


def test_the_module_route_builds_what_a_file_proxy_standin_serves(
    istio_build, istio_binaries, istio_source, tmp_path, monkeypatch
):
    version = file_proxy(istio_source, tmp_path / "proxy")
    machine = subprocess.run(["go", "env", "GOPROXY", "GOMODCACHE"], capture_output=True, text=True)
    proxy, modcache = machine.stdout.split()
    # A module cache of its own, so the stand-in never sits in the machine's; the machine's
    # download cache serves the Go toolchain without the network.
    monkeypatch.setenv("GOMODCACHE", str(tmp_path / "mod"))
    monkeypatch.setenv("GOFLAGS", "-modcacherw")
    monkeypatch.setenv(
        "GOPROXY", f"file://{tmp_path / 'proxy'},file://{modcache}/cache/download,{proxy}"
    )
    monkeypatch.setenv("GONOSUMDB", "istio.io/istio")  # the stand-in is not the real zip
    found = resolve(istio_build.replace(istio_src="", dist=str(tmp_path)))
    # The same files as the session's source: its build is found, not made again.
    assert found.pilot_discovery == istio_binaries.pilot_discovery
    assert found.origin.startswith(f"pilot-* built from istio.io/istio@{version} (module proxy)")
