"""`invoke build --fix-deps` on the stand-in MOSN, whose go.mod requires reflect2 v1.0.1 from a
module proxy made here (a file:// GOPROXY holding stand-ins of the modules the fix moves, with
real go.sum hashes, so the go command verifies them as any module). What real MOSN does with
the fix is in test_build_real_mosn.py.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import http.server
import io
import json
import subprocess
import zipfile
from pathlib import Path

import pytest

from ci import names
from ci.dist import Dist
from ci.github import summary_markdown
from ci.image import image_labels
from ci.publish.record import Record
from tests.ci.test_build_errors import edit
from tests.helpers.build import (
    GOROOT_119,
    import_golang_image,
    invoke,
    isolated_env,
    snapshot,
    with_go,
)
from tests.helpers.build import invoke_build as build
from tests.helpers.mosn import git, make_checkout
from tests.helpers.net import serving

REFLECT2 = "github.com/modern-go/reflect2"
JSONITER = "github.com/json-iterator/go"


def h1(files: dict[str, bytes]) -> str:
    """Go's dirhash.Hash1: the go.sum hash of a set of files."""
    summary = "".join(
        f"{hashlib.sha256(files[name]).hexdigest()}  {name}\n" for name in sorted(files)
    )
    return "h1:" + base64.b64encode(hashlib.sha256(summary.encode()).digest()).decode()


def add_module(proxy: Path, module: str, version: str, requires: str = "") -> list[str]:
    """Put `module@version` into the file proxy at `proxy`; its two go.sum lines."""
    folder = proxy / module / "@v"
    folder.mkdir(parents=True, exist_ok=True)
    mod = f"module {module}\n\ngo 1.12\n{requires}".encode()
    package = module.rsplit("/", 1)[-1].replace("go", "jsoniter")
    files = {
        f"{module}@{version}/go.mod": mod,
        f"{module}@{version}/doc.go": f"// Stand-in.\npackage {package}\n".encode(),
    }
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zip_file:
        for name, data in files.items():
            zip_file.writestr(name, data)
    (folder / f"{version}.zip").write_bytes(archive.getvalue())
    (folder / f"{version}.mod").write_bytes(mod)
    (folder / f"{version}.info").write_text(json.dumps({"Version": version}))
    with open(folder / "list", "a") as listing:
        listing.write(version + "\n")
    return [
        f"{module} {version} {h1(files)}",
        # A go.mod's hash names the file "go.mod" alone (cmd/go's goModSum).
        f"{module} {version}/go.mod {h1({'go.mod': mod})}",
    ]


@pytest.fixture
def proxy(tmp_path) -> tuple[Path, list[str]]:
    """The stand-in proxy with reflect2 v1.0.1 and v1.0.2 and json-iterator v1.1.12; the go.sum
    lines of reflect2 v1.0.1."""
    root = tmp_path / "proxy"
    old = add_module(root, REFLECT2, "v1.0.1")
    add_module(root, REFLECT2, "v1.0.2")
    add_module(root, JSONITER, "v1.1.12", f"\nrequire {REFLECT2} v1.0.2\n")
    return root, old


def checkout_requiring_reflect2(tmp_path, go_sum: list[str]) -> Path:
    src = make_checkout(tmp_path / "src")
    (src / "go.sum").write_text("\n".join(go_sum) + "\n")
    return edit(src, "go.mod", f"module mosn.io/mosn\n\ngo 1.19\n\nrequire {REFLECT2} v1.0.1\n")


def proxy_env(tmp_path, root: Path, **extra: str) -> dict[str, str]:
    # The test is about where modules come from: its own proxy, and no checksum database for
    # the stand-ins (go.sum and the hashes go computes still verify them).
    return isolated_env(
        tmp_path,
        GOPROXY=root.as_uri(),
        GONOSUMDB=f"{REFLECT2},{JSONITER}",
        GOMODCACHE=str(tmp_path / "modcache"),
        **extra,
    )


def test_fix_deps_moves_reflect2_in_a_copy_and_records_it_everywhere(proxy, tmp_path):
    root, go_sum = proxy
    src = checkout_requiring_reflect2(tmp_path, go_sum)
    before = snapshot(src)
    out = tmp_path / "dist"
    env = proxy_env(tmp_path, root)
    result = build(src, out, tmp_path, "--platforms", "linux/amd64", "--fix-deps", env=env)
    assert result.returncode == 0, result.stderr
    assert f"    --fix-deps: {JSONITER} (new) -> v1.1.12\n" in result.stdout
    assert f"    --fix-deps: {REFLECT2} v1.0.1 -> v1.0.2\n" in result.stdout
    assert "proxied /api/v1/states" in result.stdout
    # The user's checkout is as it was: the fix went into the build's own copy.
    assert snapshot(src) == before
    assert git(src, "status", "--porcelain") == ""
    dist = Dist.load(out)
    fixes = [
        {"module": JSONITER, "from": "", "to": "v1.1.12"},
        {"module": REFLECT2, "from": "v1.0.1", "to": "v1.0.2"},
    ]
    assert json.loads((out / names.MANIFEST).read_text())["fixes"] == fixes
    stamp = f"v1.0.0({git(src, 'log', '-1', '--format=%h')}-fix-deps)"
    assert dist.mosn_version == stamp
    subprocess.run(["tar", "xzf", out / names.LINUX_TARBALL, "-C", tmp_path], check=True)
    printed = subprocess.run(
        [tmp_path / names.BINARY_PATH_IN_TARBALL, "--version"], capture_output=True, text=True
    )
    assert printed.stdout == f"mosn version {stamp}\n"
    # The image's labels and the action's job summary say the same.
    labels = image_labels(dist, dist.istio_version)
    assert labels["io.mosn.proxyv2.fix-deps"] == (
        f"{JSONITER} =>v1.1.12, {REFLECT2} v1.0.1=>v1.0.2"
    )
    summary = summary_markdown(dist, Record("server", "here", (), ""), None)
    assert (
        f"Dependency fixes (fix-deps, built with {dist.go_version}): `{JSONITER}`  → v1.1.12,"
        f" `{REFLECT2}` v1.0.1 → v1.0.2"
    ) in summary


def test_without_fix_deps_the_refusal_names_it_and_nothing_is_compiled(proxy, tmp_path):
    root, go_sum = proxy
    src = checkout_requiring_reflect2(tmp_path, go_sum)
    result = build(src, tmp_path / "dist", tmp_path, env=proxy_env(tmp_path, root))
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert f"breaks {REFLECT2} v1.0.1 in the build list" in last
    assert f"--fix-deps ({JSONITER} v1.1.12 with {REFLECT2} v1.0.2, measured with Go" in last
    assert "==> compile" not in result.stdout


def test_the_fix_option_comes_from_the_environment_too(proxy, tmp_path):
    root, go_sum = proxy
    src = checkout_requiring_reflect2(tmp_path, go_sum)
    env = proxy_env(tmp_path, root, MOSN_PROXYV2_FIX_DEPS="true")
    result = build(src, tmp_path / "dist", tmp_path, "--platforms", "linux/amd64", env=env)
    assert result.returncode == 0, result.stderr
    assert f"--fix-deps: {REFLECT2} v1.0.1 -> v1.0.2" in result.stdout


def test_a_fix_the_proxy_cannot_resolve_is_one_line_with_gos_reason(proxy, tmp_path):
    root, go_sum = proxy
    for leftover in (root / JSONITER / "@v").iterdir():
        leftover.unlink()
    src = checkout_requiring_reflect2(tmp_path, go_sum)
    out = tmp_path / "dist"
    env = proxy_env(tmp_path, root)
    result = build(src, out, tmp_path, "--fix-deps", env=env)
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0, result.stderr
    line = result.stderr.strip()
    assert line.startswith(
        f"error: --fix-deps: `go get {JSONITER}@v1.1.12 {REFLECT2}@v1.0.2` failed with exit code 1:"
        f" go: {JSONITER}@v1.1.12:"
    )
    assert line.endswith("; check GOPROXY (GONOSUMDB or GOPRIVATE for a private proxy)")
    assert not out.exists()


def test_a_checkout_that_needs_no_fix_is_built_as_it_is_said_in_one_line(tmp_path):
    src = make_checkout(tmp_path / "src")
    result = invoke(
        "build", "--mosn-src", str(src), "--out", str(tmp_path / "dist"), "--fix-deps",
        "--platforms", "linux/amd64", env=isolated_env(tmp_path),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    said = [line for line in result.stdout.splitlines() if "--fix-deps" in line]
    assert said == [
        "    --fix-deps: nothing to fix, the checkout is built as it is"
        f" ({REFLECT2} is not in the build list)"
    ]
    manifest = json.loads((tmp_path / "dist" / names.MANIFEST).read_text())
    assert manifest["fixes"] == [] and not manifest["mosn_version"].endswith("-fix-deps)")


@pytest.mark.parametrize(
    "goproxy, source",
    [
        (None, "golang.org/toolchain on the module proxy"),
        ("off", "this tool's table (the module proxy's list of Go toolchains was out of reach)"),
    ],
    ids=["proxy", "offline"],
)
def test_a_go_without_security_fixes_is_warned_about_naming_fix_deps(tmp_path, goproxy, source):
    src = make_checkout(tmp_path / "src")
    env = with_go(isolated_env(tmp_path, **({"GOPROXY": goproxy} if goproxy else {})), GOROOT_119)
    out = tmp_path / "dist"
    result = build(src, out, tmp_path, "--platforms", "linux/amd64", env=env)
    assert result.returncode == 0, result.stderr
    (warning,) = [line for line in result.stderr.splitlines() if "security fixes" in line]
    assert warning.startswith("warning: go1.19.8 gets no security fixes any more")
    assert f"per {source})" in warning and "--fix-deps" in warning
    # The Go the binary says it was built with.
    assert json.loads((out / names.MANIFEST).read_text())["go_version"] == "go1.19.8"


@pytest.mark.docker
def test_fix_deps_in_docker_runs_go_get_in_the_container_on_the_copy(
    proxy, docker_client, tmp_path
):
    root, go_sum = proxy
    src = checkout_requiring_reflect2(tmp_path, go_sum)
    before = snapshot(src)
    image = import_golang_image(docker_client)
    out = tmp_path / "dist"
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=root)
    # The container cannot read the file proxy: the same folder over loopback (host network).
    with serving(handler) as url:
        env = {**proxy_env(tmp_path, root), "GOPROXY": url}
        args = ("--platforms", "linux/amd64", "--fix-deps", "--in-docker", "--go-image", image)
        result = build(src, out, tmp_path, *args, env=env)
    assert result.returncode == 0, result.stderr
    assert f"--fix-deps: {REFLECT2} v1.0.1 -> v1.0.2" in result.stdout
    assert f"(in {image})" in result.stdout
    assert snapshot(src) == before
    assert json.loads((out / names.MANIFEST).read_text())["fixes"][1]["to"] == "v1.0.2"
