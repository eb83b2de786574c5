"""`invoke build` with the host's Go, run as a user runs it, on the stand-in MOSN module."""

from __future__ import annotations

import json
import subprocess
import tarfile

import pytest

from ci import names
from tests.helpers.build import invoke, isolated_env
from tests.helpers.mosn import COMMIT_DATE, git, make_checkout

ALL_PLATFORMS = "linux/amd64,darwin/amd64,linux/arm64"
MACHO_64 = (b"\xcf\xfa\xed\xfe", b"\xfe\xed\xfa\xcf")
ELF_MACHINE = {b"\x3e\x00": "x86-64", b"\xb7\x00": "aarch64"}


@pytest.fixture(scope="module")
def checkout(tmp_path_factory):
    return make_checkout(tmp_path_factory.mktemp("src") / "mosn")


@pytest.fixture(scope="module")
def full_build(checkout, tmp_path_factory):
    """One CLI build of all three platforms; the tests below read what it wrote."""
    tmp = tmp_path_factory.mktemp("full")
    out = tmp / "dist"
    result = invoke(
        "build",
        "--mosn-src",
        str(checkout),
        "--out",
        str(out),
        "--platforms",
        ALL_PLATFORMS,
        env=isolated_env(tmp),
    )
    assert result.returncode == 0, result.stderr
    return out, result


def go_settings(binary) -> dict[str, str]:
    """The build settings Go records in a binary (`go version -m`), even a stripped one."""
    out = subprocess.run(
        ["go", "version", "-m", binary], check=True, capture_output=True, text=True
    ).stdout
    found = {}
    for line in out.splitlines():
        parts = line.split("\t")
        if len(parts) >= 3 and parts[1] == "build":
            key, _, value = parts[2].partition("=")
            found[key] = value
    return found


def extract(tarball, dest):
    dest.mkdir(exist_ok=True)
    subprocess.run(["tar", "xzf", tarball, "-C", dest], check=True)
    return dest / names.BINARY_PATH_IN_TARBALL


def test_prints_a_line_per_stage_with_its_duration(full_build):
    _, result = full_build
    for stage in ("inspect source", "compile linux/amd64", "compile darwin/amd64", "package"):
        assert f"==> {stage}\n" in result.stdout
        assert f"    {stage}: done in " in result.stdout
    assert result.stderr == ""


def test_writes_every_tarball_with_sums_and_manifest(full_build, checkout):
    out, _ = full_build
    expected = ["mosn.tar.gz", "mosn-centos.tar.gz", "mosn-macos.tar.gz", "mosn-linux-arm64.tar.gz"]
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [*expected, names.SHA256SUMS, names.MANIFEST]
    )
    subprocess.run(["sha256sum", "-c", "--strict", names.SHA256SUMS], cwd=out, check=True)
    manifest = json.loads((out / names.MANIFEST).read_text())
    commit = git(checkout, "rev-parse", "HEAD")
    short = git(checkout, "rev-parse", "--short", "HEAD")
    assert manifest["mosn_version"] == f"v1.0.0({short})"
    assert manifest["mosn_version_safe"] == f"v1.0.0-{short}"
    assert (manifest["git_commit"], manifest["istio_version"]) == (commit, "1.10.6")
    assert manifest["go_version"].startswith("go1.")
    assert manifest["cgo"] is False
    platforms = {f["name"]: f["platform"] for f in manifest["files"]}
    assert platforms == {
        "mosn.tar.gz": "linux/amd64",
        "mosn-centos.tar.gz": "linux/amd64",
        "mosn-macos.tar.gz": "darwin/amd64",
        "mosn-linux-arm64.tar.gz": "linux/arm64",
    }
    for f in manifest["files"]:
        assert f["size"] == (out / f["name"]).stat().st_size
    assert (out / "mosn.tar.gz").read_bytes() == (out / "mosn-centos.tar.gz").read_bytes()


def test_tarballs_hold_one_root_owned_executable_at_the_commit_time(full_build):
    out, _ = full_build
    from datetime import datetime

    commit_time = int(datetime.fromisoformat(COMMIT_DATE).timestamp())
    for name in ("mosn.tar.gz", "mosn-macos.tar.gz", "mosn-linux-arm64.tar.gz"):
        data = (out / name).read_bytes()
        assert data[3] == 0 and data[4:8] == b"\0\0\0\0", f"{name}: gzip name or time set"
        with tarfile.open(out / name, "r:gz") as tar:
            (member,) = tar.getmembers()
        assert member.name == names.BINARY_PATH_IN_TARBALL
        assert member.isfile() and member.mode == 0o755
        assert (member.uid, member.gid, member.uname, member.gname) == (0, 0, "", "")
        assert member.mtime == commit_time


def test_linux_binary_runs_and_reports_both_stamps(full_build, tmp_path):
    out, _ = full_build
    binary = extract(out / "mosn.tar.gz", tmp_path)
    version = json.loads((out / names.MANIFEST).read_text())["mosn_version"]
    run = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True)
    assert run.stdout == f"mosn version {version}\n"
    istio = subprocess.run([binary, "--istio-version"], capture_output=True, text=True)
    assert istio.stdout == "1.10.6\n"
    assert binary.read_bytes()[18:20] == b"\x3e\x00"  # ELF e_machine x86-64
    settings = go_settings(binary)
    assert (settings["GOOS"], settings["GOARCH"], settings["CGO_ENABLED"]) == (
        "linux",
        "amd64",
        "0",
    )
    assert settings["-trimpath"] == "true"


def test_macos_binary_is_mach_o_and_arm64_binary_is_aarch64_elf(full_build, tmp_path):
    out, _ = full_build
    macos = extract(out / "mosn-macos.tar.gz", tmp_path / "macos")
    assert macos.read_bytes()[:4] in MACHO_64
    assert go_settings(macos)["GOOS"] == "darwin"
    arm64 = extract(out / "mosn-linux-arm64.tar.gz", tmp_path / "arm64").read_bytes()
    assert arm64[:4] == b"\x7fELF" and ELF_MACHINE[arm64[18:20]] == "aarch64"


def test_rebuild_of_the_same_commit_is_byte_identical(full_build, checkout, tmp_path):
    first, _ = full_build
    again = tmp_path / "again"
    result = invoke(
        "build",
        "--mosn-src",
        str(checkout),
        "--out",
        str(again),
        "--platforms",
        ALL_PLATFORMS,
        "--quiet",
        env=isolated_env(tmp_path),
    )
    assert result.returncode == 0, result.stderr
    assert (result.stdout, result.stderr) == ("", ""), "--quiet must print nothing on success"
    for path in first.iterdir():
        assert (again / path.name).read_bytes() == path.read_bytes(), path.name


def test_source_date_epoch_sets_the_mtime_and_cgo_applies_to_linux_only(checkout, tmp_path):
    out = tmp_path / "dist"
    result = invoke(
        "build",
        "--mosn-src",
        str(checkout),
        "--out",
        str(out),
        "--cgo",
        "--version",
        "v9.9.9-custom",
        "--istio-version",
        "1.10.5",
        env=isolated_env(tmp_path, SOURCE_DATE_EPOCH="1234567890"),
    )
    assert result.returncode == 0, result.stderr
    manifest = json.loads((out / names.MANIFEST).read_text())
    assert (manifest["source_date_epoch"], manifest["cgo"]) == (1234567890, True)
    assert manifest["mosn_version_safe"] == "v9.9.9-custom"
    with tarfile.open(out / "mosn.tar.gz", "r:gz") as tar:
        assert tar.getmembers()[0].mtime == 1234567890
    linux = extract(out / "mosn.tar.gz", tmp_path / "linux")
    assert go_settings(linux)["CGO_ENABLED"] == "1"
    assert subprocess.run([linux, "--version"], capture_output=True, text=True).stdout == (
        "mosn version v9.9.9-custom\n"
    )
    assert subprocess.run([linux, "--istio-version"], capture_output=True, text=True).stdout == (
        "1.10.5\n"
    )
    macos = extract(out / "mosn-macos.tar.gz", tmp_path / "macos")
    assert go_settings(macos)["CGO_ENABLED"] == "0"


# --- sources from git: --mosn-ref / --mosn-repo / the default release -------------------


@pytest.fixture(scope="module")
def upstream(tmp_path_factory):
    """A repository like MOSN's: tag v1.0.0 on an older commit, main moved on to v1.1.0-dev."""
    repo = make_checkout(tmp_path_factory.mktemp("upstream") / "mosn")
    git(repo, "tag", "v1.0.0")
    (repo / "VERSION").write_text("v1.1.0-dev\n")
    git(repo, "commit", "-qam", "next")
    return repo


def built_version(out) -> str:
    return json.loads((out / names.MANIFEST).read_text())["mosn_version"]


def test_with_no_source_configured_builds_the_default_release(upstream, tmp_path):
    env = isolated_env(tmp_path, MOSN_PROXYV2_MOSN_REPO=upstream.as_uri())
    out = tmp_path / "dist"
    result = invoke("build", "--out", str(out), "--platforms", "linux/amd64", env=env)
    assert result.returncode == 0, result.stderr
    assert "==> clone MOSN v1.0.0" in result.stdout
    tagged = git(upstream, "rev-parse", "v1.0.0^{commit}")
    assert built_version(out) == f"v1.0.0({tagged[:7]})"
    assert json.loads((out / names.MANIFEST).read_text())["git_commit"] == tagged


def test_mosn_ref_clones_a_branch_and_a_full_commit(upstream, tmp_path):
    env = isolated_env(tmp_path)
    head = git(upstream, "rev-parse", "main")
    for ref in ("main", head):
        out = tmp_path / f"dist-{ref[:6]}"
        result = invoke(
            "build",
            "--mosn-ref",
            ref,
            "--mosn-repo",
            upstream.as_uri(),
            "--out",
            str(out),
            "--platforms",
            "linux/amd64",
            env=env,
        )
        assert result.returncode == 0, result.stderr
        assert built_version(out) == f"v1.1.0-dev({head[:7]})"
    # The clone is shallow: one commit, not the history.
    (clone,) = (tmp_path / "cache" / "mosn").glob(f"*/{head}")
    assert git(clone, "rev-list", "--count", "HEAD") == "1"


def test_cached_commit_builds_without_the_repository(upstream, tmp_path):
    """A full commit hash already cloned is reused; a tag falls back to its last clone."""
    moved = tmp_path / "upstream-copy"
    subprocess.run(["cp", "-a", upstream, moved], check=True)
    env = isolated_env(tmp_path)
    tagged = git(moved, "rev-parse", "v1.0.0^{commit}")
    for ref in (tagged, "v1.0.0"):
        args = ["build", "--mosn-ref", ref, "--mosn-repo", moved.as_uri(), "--quiet"]
        first = invoke(*args, "--out", str(tmp_path / "a"), env=env)
        assert first.returncode == 0, first.stderr
    subprocess.run(["rm", "-rf", moved], check=True)

    def build_from_moved(ref: str, out: str):
        return invoke(
            "build", "--mosn-ref", ref, "--mosn-repo", moved.as_uri(),
            "--out", str(tmp_path / out), env=env,
        )  # fmt: skip

    again = build_from_moved(tagged, "b")
    assert again.returncode == 0, again.stderr
    assert f"using cached {tagged[:12]}" in again.stdout
    offline = build_from_moved("v1.0.0", "c")
    assert offline.returncode == 0, offline.stderr
    assert "warning: could not clone v1.0.0" in offline.stderr
    assert (tmp_path / "c" / "mosn.tar.gz").read_bytes() == (
        tmp_path / "b" / "mosn.tar.gz"
    ).read_bytes()


def test_container_network_is_needed_only_for_unvendored_requirements(tmp_path):
    from ci.builder.source import inspect_checkout

    src = make_checkout(tmp_path / "src")
    assert inspect_checkout(src).downloads_modules is False
    (src / "go.mod").write_text(
        "module mosn.io/mosn\n\ngo 1.19\n\nrequire golang.org/x/net v0.1.0\n"
    )
    assert inspect_checkout(src).downloads_modules is True
    (src / "vendor").mkdir()
    (src / "vendor" / "modules.txt").write_text("# golang.org/x/net v0.1.0\n")
    checkout = inspect_checkout(src)
    assert (checkout.downloads_modules, checkout.vendored) == (False, True)


def test_mosn_ref_flag_beats_a_configured_source_and_vice_versa(checkout, upstream, tmp_path):
    env = isolated_env(tmp_path, MOSN_SRC=str(checkout))
    out = tmp_path / "by-ref"
    args = ("--mosn-ref", "main", "--mosn-repo", upstream.as_uri(), "--out", str(out))
    result = invoke("build", *args, env=env)
    assert result.returncode == 0, result.stderr
    assert built_version(out).startswith("v1.1.0-dev(")

    env = isolated_env(
        tmp_path, MOSN_PROXYV2_MOSN_REF="main", MOSN_PROXYV2_MOSN_REPO=upstream.as_uri()
    )
    out = tmp_path / "by-src"
    result = invoke("build", "--mosn-src", str(checkout), "--out", str(out), env=env)
    assert result.returncode == 0, result.stderr
    assert "clone MOSN" not in result.stdout
    assert built_version(out).startswith("v1.0.0(")


def test_boolean_flags_take_no_value_so_tasks_chain(checkout, tmp_path):
    # `invoke build --quiet publish` must run publish, not read "publish" as --quiet's value.
    one, two = tmp_path / "one", tmp_path / "two"
    common = ("--mosn-src", str(checkout), "--platforms", "linux/amd64")
    result = invoke(
        "build", *common, "--out", str(one), "--cgo", "--quiet",
        "build", *common, "--out", str(two), "--quiet",
        env=isolated_env(tmp_path),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads((one / names.MANIFEST).read_text())["cgo"] is True
    assert json.loads((two / names.MANIFEST).read_text())["cgo"] is False
