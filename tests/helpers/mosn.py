"""MOSN checkouts for the tests: the stand-in under tests/fixtures/mosn-mini, and real MOSN
from the Go module proxy."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from tests.helpers.cli import REPO_ROOT, clean_environ, run_invoke

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "mosn-mini"
COMMIT_DATE = "2022-03-25T00:00:00+00:00"


def git(path: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "test",
        "GIT_AUTHOR_EMAIL": "test@example.invalid",
        "GIT_COMMITTER_NAME": "test",
        "GIT_COMMITTER_EMAIL": "test@example.invalid",
        "GIT_AUTHOR_DATE": COMMIT_DATE,
        "GIT_COMMITTER_DATE": COMMIT_DATE,
    }
    return subprocess.run(
        ["git", "-C", str(path), *args], env=env, check=True, capture_output=True, text=True
    ).stdout.strip()


def make_checkout(dest: Path, version: str = "v1.0.0") -> Path:
    """A git repository holding the stand-in MOSN module, one commit, fixed dates."""
    shutil.copytree(FIXTURE, dest)
    (dest / "VERSION").write_text(version + "\n")
    git(dest, "init", "-q", "-b", "main")
    git(dest, "add", "-A")
    git(dest, "commit", "-q", "-m", "mosn-mini")
    return dest


# ---- real MOSN, unmodified, through the Go module proxy ------------------------------------

# The two modules this machine's proxy refuses, served as a file:// proxy that go.sum verifies
# (its README). A user with the internet needs none of this.
# ../shared beside the checkout (CI), or beside a folder of worktrees.
SHARED_GOPROXY = next(
    (p / "shared" / "goproxy" for p in REPO_ROOT.parents if (p / "shared" / "goproxy").is_dir()),
    REPO_ROOT.parent / "shared" / "goproxy",
)
UNVERIFIED = "mosn.io,vimagination.zapto.org"  # the checksum database is out of reach here


def module_proxy_env(
    env: dict[str, str], proxy: str = f"file://{SHARED_GOPROXY}"
) -> dict[str, str]:
    """`env` with the shared module proxy (`proxy`: the folder, or an HTTP server of it) ahead of
    the machine's own GOPROXY."""
    machine = subprocess.run(
        ["go", "env", "GOPROXY"], env=env, capture_output=True, text=True, check=True
    ).stdout.strip()
    return {**env, "GOPROXY": f"{proxy},{machine}", "GONOSUMDB": UNVERIFIED}


def module_source(version: str, dest: Path) -> Path:
    """A writable copy of real MOSN `version` from the module proxy, as `go mod download` gives it."""
    out = subprocess.run(
        ["go", "mod", "download", "-json", f"mosn.io/mosn@{version}"],
        env={**module_proxy_env(clean_environ()), "GO111MODULE": "on"},
        cwd="/",
        capture_output=True,
        text=True,
    ).stdout
    info = json.loads(out)
    if info.get("Error"):
        raise RuntimeError(f"go mod download mosn.io/mosn@{version}: {info['Error']}")
    shutil.copytree(info["Dir"], dest, copy_function=shutil.copyfile)
    for folder, dirs, _ in os.walk(dest):
        for name in [".", *dirs]:
            os.chmod(os.path.join(folder, name), 0o700)
    return dest


class RealMosnBuilds:
    """`invoke build --mosn-module V` of real MOSN, each distinct build once per session.

    The machine's Go environment is used as it is (its module and build caches, its go env
    file); only the Go on PATH and the module proxy are chosen here."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.done: dict[tuple, tuple[subprocess.CompletedProcess, Path]] = {}

    def build(
        self, version: str, goroot: Path | None = None, *extra: str
    ) -> tuple[subprocess.CompletedProcess, Path]:
        """(the invoke run, its dist folder) for MOSN `version` built for linux/amd64 with the
        Go at `goroot` (default: the machine's go) and `extra` build flags."""
        key = (version, str(goroot), extra)
        if key not in self.done:
            out = self.root / f"{version}-{len(self.done)}"
            args = ("--mosn-module", version, "--platforms", "linux/amd64", "--out", out)
            result = run_invoke("build", *args, *extra, env=self.env(goroot), timeout=1800)
            self.done[key] = (result, out)
        return self.done[key]

    def env(self, goroot: Path | None = None, **extra: str) -> dict[str, str]:
        """The environment those builds run in: the machine's, this session's tool cache, the
        Go at `goroot` first on PATH, the shared module proxy ahead of the machine's."""
        env = clean_environ()
        env["MOSN_PROXYV2_CACHE_DIR"] = str(self.root / "cache")
        if goroot is not None:
            env["PATH"] = f"{goroot}/bin:{env['PATH']}"
        return {**module_proxy_env(env), **extra}
