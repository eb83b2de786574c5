"""Where `invoke mesh` gets Istio's binaries (ci/mesh/binaries.py): a folder, a source build,
and every refusal, with the real pilot-discovery and pilot-agent built from Istio 1.10.6."""

from __future__ import annotations

import hashlib
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from ci.config import Settings
from ci.errors import UserError
from ci.mesh import binaries
from ci.mesh.binaries import RELEASES, resolve, source_key
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


# ---- the source build -----------------------------------------------------------------------


def test_a_source_build_is_the_asked_release_built_with_go_1_16(istio_binaries, istio_source):
    for binary in (istio_binaries.pilot_discovery, istio_binaries.pilot_agent):
        info = version_of(binary)
        assert 'Version:"1.10.6"' in info
        assert 'GolangVersion:"go1.16.15"' in info
    template = istio_source / binaries.BOOTSTRAP_IN_SOURCE
    assert istio_binaries.bootstrap_template.read_bytes() == template.read_bytes()
    assert f"built from {istio_source}" in istio_binaries.origin


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


def test_no_route_names_the_routes():
    message = refusal(Settings())
    assert message.startswith("no pilot-discovery for Istio 1.10.6: give --istio-bin-dir")
    assert "--istio-src" in message


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
    fake.write_text(
        '#!/bin/sh\necho \'version.BuildInfo{Version:"1.11.0", GitRevision:"3a0b3b3",'
        ' GolangVersion:"go1.16.7", BuildStatus:"Clean", GitTag:"1.11.0"}\'\n'
    )
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


def test_a_tree_that_is_not_istio_is_refused(tmp_path):
    (tmp_path / "go.mod").write_text("module example.com/other\n\ngo 1.16\n")
    message = refusal(Settings(istio_src=str(tmp_path), cache_dir=str(tmp_path / "cache")))
    assert message == (
        f"--istio-src {tmp_path} is not Istio's source (no go.mod of istio.io/istio); give a"
        " checkout of istio/istio at tag 1.10.6"
    )
