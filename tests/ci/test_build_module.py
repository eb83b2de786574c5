"""`--mosn-module` stamping, with a stand-in `go` that answers `go mod download -json` as the
go command does for a proxy that records the module's origin (proxy.golang.org records none
for MOSN's releases; the real download is in test_build_real_mosn.py)."""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile

import pytest

from ci import names
from tests.helpers.build import invoke, isolated_env
from tests.helpers.mosn import FIXTURE

COMMIT = "5b3c486e0f1e2d3c4b5a69788796a5b4c3d2e1f0"


def standin_go(tmp_path, info: dict):
    """A `go` whose `mod download` prints `info` and that runs the real go for the rest."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (tmp_path / "info.json").write_text(json.dumps(info))
    go = bin_dir / "go"
    go.write_text(
        "#!/bin/sh\n"
        f'[ "$1" = mod ] && exec cat {tmp_path / "info.json"}\n'
        f'exec {shutil.which("go")} "$@"\n'
    )
    go.chmod(0o755)
    return {**isolated_env(tmp_path), "PATH": f"{bin_dir}:/usr/bin:/bin"}


@pytest.mark.parametrize(
    "version, origin, stamp",
    [
        ("v1.0.0", {"VCS": "git", "Hash": COMMIT}, "v1.0.0(5b3c486)"),
        ("v1.0.1-0.20220415090537-abcdef123456", None, "v1.0.0(abcdef1)"),
        ("v1.0.0", None, "v1.0.0(v1.0.0)"),
    ],
)
def test_stamp_takes_the_commit_from_the_module_origin_or_pseudo_version_with_standin_go(
    tmp_path, version, origin, stamp
):
    module = tmp_path / "modcache" / f"mosn.io/mosn@{version}"
    shutil.copytree(FIXTURE, module)
    info = {"Path": "mosn.io/mosn", "Version": version, "Dir": str(module)}
    info |= {"Time": "2022-04-15T09:05:37Z", **({"Origin": origin} if origin else {})}
    env = standin_go(tmp_path, info)
    out = tmp_path / "dist"
    result = invoke(
        "build", "--mosn-module", version, "--out", str(out), "--platforms", "linux/amd64",
        env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert f"MOSN {stamp}, Istio 1.10.6" in result.stdout
    assert ("records no commit" in result.stderr) == (stamp == "v1.0.0(v1.0.0)")
    manifest = json.loads((out / names.MANIFEST).read_text())
    assert manifest["mosn_version"] == stamp
    assert manifest["git_commit"] == (COMMIT if origin else "")
    assert manifest["source_date_epoch"] == 1650013537
    with tarfile.open(out / names.LINUX_TARBALL) as tar:
        tar.extractall(tmp_path / "x", filter="data")
    binary = tmp_path / "x" / names.BINARY_PATH_IN_TARBALL
    printed = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True)
    assert printed.stdout == f"mosn version {stamp}\n"
    # The module cache stays untouched: the build ran in a writable copy under cache_dir.
    assert not (module / ".git").exists()
    assert list((tmp_path / "cache" / "mosn-module").iterdir())
