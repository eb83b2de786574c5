"""MOSN checkouts for the tests: the stand-in under tests/fixtures/mosn-mini, and real MOSN."""

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


# Real MOSN from the Go module proxy. This machine's proxy refuses the host
# vimagination.zapto.org ("Go module fetches are limited to the module-host allowlist",
# HTTP 403), and MOSN's seata filter imports vimagination.zapto.org/byteio (its go.mod also
# requires .../memio). So the checkouts below replace those two modules with stand-ins of
# the same API (seata's context.go uses BigEndianWriter/Reader with WriteUint32, ReadUint32,
# Write and Read); every other module is the real one, verified against MOSN's go.sum.
# The smoke run never touches seata. `invoke build --mosn-module` itself is tested up to the
# toolchain check, which comes before any dependency is needed.
MODULE_ENV = {"GONOSUMDB": "mosn.io"}  # the checksum database is not reachable here
BLOCKED_HOST = "vimagination.zapto.org"
BYTEIO_STANDIN = """// Stand-in for vimagination.zapto.org/byteio: only what MOSN's seata filter calls.
package byteio

import (
	"encoding/binary"
	"io"
)

type BigEndianWriter struct{ Writer io.Writer }

func (w BigEndianWriter) Write(p []byte) (int, error) { return w.Writer.Write(p) }

func (w BigEndianWriter) WriteUint32(v uint32) (int, error) {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], v)
	return w.Writer.Write(b[:])
}

type BigEndianReader struct{ Reader io.Reader }

func (r BigEndianReader) Read(p []byte) (int, error) { return r.Reader.Read(p) }

func (r BigEndianReader) ReadUint32() (uint32, int, error) {
	var b [4]byte
	n, err := io.ReadFull(r.Reader, b[:])
	return binary.BigEndian.Uint32(b[:]), n, err
}
"""


def module_dir(version: str, env: dict[str, str]) -> Path:
    """`go mod download` mosn.io/mosn@version; its folder in the module cache."""
    out = subprocess.run(
        ["go", "mod", "download", "-json", f"mosn.io/mosn@{version}"],
        env={**env, **MODULE_ENV, "GO111MODULE": "on"},
        cwd="/",
        capture_output=True,
        text=True,
    ).stdout
    info = json.loads(out)
    if info.get("Error"):
        raise RuntimeError(f"go mod download mosn.io/mosn@{version}: {info['Error']}")
    return Path(info["Dir"])


def real_mosn_checkout(version: str, dest: Path, env: dict[str, str]) -> Path:
    """A git checkout of real MOSN `version` with the two blocked modules stood in for."""
    shutil.copytree(module_dir(version, env), dest, copy_function=shutil.copyfile)
    for folder, dirs, _ in os.walk(dest):
        for name in [".", *dirs]:
            os.chmod(os.path.join(folder, name), 0o700)
    standin = dest / "_standin"
    for name, source in (("byteio", BYTEIO_STANDIN), ("memio", "")):
        module = standin / name
        module.mkdir(parents=True)
        (module / "go.mod").write_text(f"module {BLOCKED_HOST}/{name}\n")
        if source:
            (module / f"{name}.go").write_text(source)
        with open(dest / "go.mod", "a") as gomod:
            gomod.write(f"\nreplace {BLOCKED_HOST}/{name} => ./_standin/{name}\n")
    gosum = dest / "go.sum"
    lines = gosum.read_text().splitlines(keepends=True)
    gosum.write_text("".join(line for line in lines if not line.startswith(BLOCKED_HOST)))
    git(dest, "init", "-q", "-b", "main")
    git(dest, "add", "-A")
    git(dest, "commit", "-q", "-m", f"MOSN {version} with stand-ins for {BLOCKED_HOST}")
    return dest


# ---- real MOSN, unmodified, through the Go module proxy ------------------------------------

# The two modules this machine's proxy refuses, served as a file:// proxy that go.sum verifies
# (its README). A user with the internet needs none of this.
SHARED_GOPROXY = REPO_ROOT.parent / "shared" / "goproxy"
UNVERIFIED = "mosn.io,vimagination.zapto.org"  # the checksum database is out of reach here


def module_proxy_env(env: dict[str, str]) -> dict[str, str]:
    """`env` with the shared file proxy ahead of the machine's own GOPROXY."""
    machine = subprocess.run(
        ["go", "env", "GOPROXY"], env=env, capture_output=True, text=True, check=True
    ).stdout.strip()
    return {**env, "GOPROXY": f"file://{SHARED_GOPROXY},{machine}", "GONOSUMDB": UNVERIFIED}


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
            env = clean_environ()
            env["MOSN_PROXYV2_CACHE_DIR"] = str(self.root / "cache")
            if goroot is not None:
                env["PATH"] = f"{goroot}/bin:{env['PATH']}"
            args = ("--mosn-module", version, "--platforms", "linux/amd64", "--out", out)
            result = run_invoke("build", *args, *extra, env=module_proxy_env(env), timeout=1200)
            self.done[key] = (result, out)
        return self.done[key]
