"""`invoke publish --to server` against the real artifact server (gunicorn on loopback), run as
a user runs it: `python -m invoke` in a subprocess; Istio's part played with curl and tar."""

from __future__ import annotations

import json
import secrets
import shlex
import stat
import subprocess
import sys

import pytest
import requests

from ci import names
from ci.dist import Dist, sha256_bytes
from ci.progress import human
from ci.publish import record as publish
from tests.helpers.artifact_server import running_server
from tests.helpers.net import free_port, running_process
from tests.helpers.publish import (
    REPO_ROOT,
    StandIn,
    assert_other_bytes_caught,
    copy_dist,
    invoke,
    istio_fetch,
    parse_github_output,
    read_env,
    rebuild_with_other_bytes,
    s3_environ,
)

pytestmark = pytest.mark.slow
TOKEN = f"publish-test-{secrets.token_hex(12)}"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with running_server(tmp_path_factory.mktemp("artifacts") / "root", tokens=[TOKEN]) as url:
        yield url


@pytest.fixture
def dist(built_dist, tmp_path):
    return copy_dist(built_dist, tmp_path / "dist")


@pytest.fixture
def prefix(request):
    # One module-wide server; each test publishes under its own prefix.
    return f"t-{request.node.name[5:40].replace('_', '-')}"


def environ(tmp_path, token=TOKEN, **extra):
    # s3_environ strips every AWS_ and MOSN_PROXYV2_ variable; the server root stays in tmp.
    return s3_environ(
        tmp_path,
        ARTIFACT_TOKEN=token,
        MOSN_PROXYV2_SERVER_ROOT=str(tmp_path / "server-root"),
        **extra,
    )


def publish_server(dist, url, env, *extra):
    return invoke("publish", "--dist", str(dist), "--server-url", url, *extra, env=env)


def assert_no_token(run, *files, token=TOKEN):
    for text in (run.stdout, run.stderr, *(f.read_text() for f in files if f.exists())):
        assert token not in text


def test_publish_is_what_istio_build_fetches(built_dist, dist, server, prefix, tmp_path):
    outputs = tmp_path / "github_output"
    outputs.touch()
    run = publish_server(
        dist, server, environ(tmp_path, GITHUB_OUTPUT=str(outputs)), "--prefix", prefix
    )
    assert run.code == 0, run.output
    version = built_dist.mosn_version_safe
    folder = f"{server}/{prefix}/{version}"
    env_file = dist / names.ISTIO_ENV
    assert read_env(env_file) == {
        "SIDECAR": "mosn",
        "ISTIO_ENVOY_VERSION": version,
        "ISTIO_ENVOY_RELEASE_URL": f"{folder}/mosn.tar.gz",
        "ISTIO_ENVOY_CENTOS_RELEASE_URL": f"{folder}/mosn-centos.tar.gz",
        "ISTIO_ENVOY_MACOS_RELEASE_URL": f"{folder}/mosn-macos.tar.gz",
        "ISTIO_ENVOY_MACOS_RELEASE_NAME": f"mosn-{version}",
        "ISTIO_ENVOY_BASE_URL": folder,
    }
    values = read_env(env_file)
    fetched = istio_fetch(values, tmp_path / "istio")
    for var in names.RELEASE_URL_VARS:
        assert fetched[var].is_file()
    out = subprocess.run(
        [fetched[names.ISTIO_ENVOY_CENTOS_RELEASE_URL], "--version"], capture_output=True, text=True
    )
    assert out.stdout == f"mosn version {built_dist.mosn_version}\n"
    for placeholder in names.wasm_placeholders(version):
        assert fetched[placeholder].read_bytes() == b""

    listing = requests.get(f"{server}/-/api/artifacts", params={"prefix": prefix}, timeout=10)
    stored = {a["path"].rsplit("/", 1)[1]: a["sha256"] for a in listing.json()}
    expected = {f.name: f.sha256 for f in built_dist.files}
    expected.update(dict.fromkeys(names.wasm_placeholders(version), sha256_bytes(b"")))
    expected[names.SHA256SUMS] = sha256_bytes((built_dist.root / names.SHA256SUMS).read_bytes())
    assert stored == expected

    # published.json records what was done: every file, the bytes at its URL, istio.env's path.
    record = json.loads((dist / names.PUBLISHED_JSON).read_text())
    assert record["store"] == "server" and record["location"] == f"the artifact server at {server}"
    assert record["istio_env"] == str(env_file.resolve())
    assert record["wasm_base_url"] == folder
    assert {f["name"]: f["sha256"] for f in record["files"]} == expected
    for f in record["files"]:
        body = requests.get(f["url"], timeout=10).content
        assert (len(body), sha256_bytes(body)) == (f["size"], f["sha256"])
    assert publish.load(dist / names.PUBLISHED_JSON).url(names.LINUX_TARBALL) == (
        f"{folder}/{names.LINUX_TARBALL}"
    )

    gh = parse_github_output(outputs)
    assert {k: gh[k] for k in ("sidecar", "istio-envoy-version", "istio-envoy-base-url")} == {
        "sidecar": "mosn",
        "istio-envoy-version": version,
        "istio-envoy-base-url": folder,
    }
    assert gh["make-command"] in run.stdout
    assert json.loads(gh["tarballs"])[0] == {
        "file": "mosn.tar.gz",
        "url": f"{folder}/mosn.tar.gz",
        "sha256": built_dist.file("mosn.tar.gz").sha256,
    }
    assert_no_token(run, env_file, outputs)
    # Not a terminal: plain lines, no bar redrawn with carriage returns.
    assert "\r" not in run.stdout and "[#" not in run.stdout


def test_rerun_uploads_nothing_and_other_bytes_need_force(dist, server, prefix, tmp_path):
    env = environ(tmp_path)
    assert publish_server(dist, server, env, "--prefix", prefix).code == 0
    with StandIn(server) as counting:
        again = publish_server(dist, counting.url, env, "--prefix", prefix)
    assert again.code == 0, again.output
    # One PUT: the token check, sending the smallest file (an empty WASM placeholder) again.
    puts = [path for method, path in counting.requests if method == "PUT"]
    assert len(puts) == 1 and puts[0].endswith(".wasm"), puts
    assert "nothing uploaded: every file was already there with the same bytes" in again.stdout

    version = read_env(dist / names.ISTIO_ENV)[names.ISTIO_ENVOY_VERSION]
    url = f"{server}/{prefix}/{version}/{names.LINUX_TARBALL}"
    before = requests.get(url, timeout=10).content
    new_sha = rebuild_with_other_bytes(dist)
    refused = publish_server(dist, server, env, "--prefix", prefix)
    assert refused.code == 1
    assert refused.last_error_line == (
        f"error: {url}: version {version} is already published with different bytes"
        " (mosn.tar.gz, SHA256SUMS); build another version (`invoke build --version V`), or pass"
        " --force to replace them"
    )
    assert not (dist / names.ISTIO_ENV).exists()
    assert not (dist / names.PUBLISHED_JSON).exists()
    assert requests.get(url, timeout=10).content == before

    forced = publish_server(dist, server, env, "--prefix", prefix, "--force")
    assert forced.code == 0, forced.output
    assert sha256_bytes(requests.get(url, timeout=10).content) == new_sha
    assert istio_fetch(read_env(dist / names.ISTIO_ENV), tmp_path / "istio")


def test_server_failing_twice_is_retried(built_dist, dist, server, prefix, tmp_path):
    with StandIn(server, fail=2) as flaky:
        run = publish_server(dist, flaky.url, environ(tmp_path), "--prefix", prefix)
    assert run.code == 0, run.output
    assert "mosn.tar.gz: HTTP 503; retry 1/4 in 0.5s" in run.stdout
    assert "mosn.tar.gz: HTTP 503; retry 2/4 in 1.0s" in run.stdout
    assert flaky.methods("PUT") == 8 + 2
    sent = [
        h.get("x-checksum-sha256")
        for (m, _), h in zip(flaky.requests, flaky.headers, strict=True)
        if m == "PUT"
    ]
    assert sent[-8] == built_dist.file(names.LINUX_TARBALL).sha256
    assert all(sent)


def test_server_that_keeps_failing_is_a_one_line_error(dist, server, prefix, tmp_path):
    with StandIn(server, fail=100) as broken:
        run = publish_server(dist, broken.url, environ(tmp_path), "--prefix", prefix)
    assert run.code == 1
    line = run.last_error_line
    assert line.startswith(f"error: {broken.url}/{prefix}/")
    assert "/mosn.tar.gz: HTTP 503 (gave up after 5 attempts in " in line
    assert line.endswith(
        "check that the artifact server is running and --server-url is right (`curl URL/-/healthz`)"
    )
    assert broken.methods("PUT") == 5
    assert not (dist / names.ISTIO_ENV).exists()
    assert not (dist / names.PUBLISHED_JSON).exists()
    assert "Traceback" not in run.stderr


def test_unreachable_server_is_a_one_line_error(dist, tmp_path):
    # 127.0.0.2 is loopback but not a name publish starts a server for.
    url = f"http://127.0.0.2:{free_port()}"
    run = publish_server(dist, url, environ(tmp_path))
    assert run.code == 1
    assert run.last_error_line.startswith(f"error: {url}/-/healthz: connection refused")
    assert ": connection refused (gave up after 5 attempts in" in run.last_error_line
    assert not (dist / names.ISTIO_ENV).exists()
    assert not (dist / names.PUBLISHED_JSON).exists()
    assert not (tmp_path / "server-root").exists()


def test_server_returning_other_bytes_is_caught(dist, server, prefix, tmp_path):
    with StandIn(server, corrupt_get=True) as corrupting:
        run = publish_server(dist, corrupting.url, environ(tmp_path), "--prefix", prefix)
    assert_other_bytes_caught(run, Dist.load(dist), f"{corrupting.url}/{prefix}/")


def test_upload_damaged_on_the_way_is_caught_and_taken_back(dist, server, prefix, tmp_path):
    with StandIn(server, corrupt_put=True) as rewriting:
        run = publish_server(dist, rewriting.url, environ(tmp_path), "--prefix", prefix)
    assert run.code == 1
    assert run.last_error_line.startswith(f"error: {rewriting.url}/{prefix}/")
    size = Dist.load(dist).file(names.LINUX_TARBALL).size
    assert f"/mosn.tar.gz: the server stored {size} bytes" in run.last_error_line
    assert "(that copy was deleted); check for a proxy rewriting uploads" in run.last_error_line
    assert not (dist / names.ISTIO_ENV).exists()
    assert not (dist / names.PUBLISHED_JSON).exists()
    listing = requests.get(f"{server}/-/api/artifacts", params={"prefix": prefix}, timeout=10)
    assert listing.json() == []
    # Nothing left behind, so the same publish on a clean path just works.
    assert publish_server(dist, server, environ(tmp_path), "--prefix", prefix).code == 0


def test_progress_bars_on_a_terminal(dist, server, prefix, tmp_path):
    command = shlex.join(
        [sys.executable, "-m", "invoke", "-r", str(REPO_ROOT), "publish", "--dist", str(dist)]
        + ["--server-url", server, "--prefix", prefix]
    )
    tty = subprocess.run(
        ["script", "-qec", command, "/dev/null"],
        env=environ(tmp_path),
        capture_output=True,
        timeout=120,
    )
    assert tty.returncode == 0, tty.stdout
    assert b"\r    uploading mosn.tar.gz [" in tty.stdout
    size = human(Dist.load(dist).file(names.LINUX_TARBALL).size)
    assert f"] 100% {size}/{size}".encode() in tty.stdout


def test_wrong_and_missing_tokens_are_clear_errors(dist, server, prefix, tmp_path):
    wrong_token = f"wrong-{secrets.token_hex(8)}"
    wrong = publish_server(dist, server, environ(tmp_path, token=wrong_token), "--prefix", prefix)
    assert wrong.code == 1
    assert wrong.last_error_line.endswith(
        "the artifact server refused the token (HTTP 403); check ARTIFACT_TOKEN against the"
        " server's --token-file or ARTIFACT_TOKENS"
    )
    assert_no_token(wrong, token=wrong_token)

    missing = publish_server(dist, server, environ(tmp_path, token=""), "--prefix", prefix)
    assert missing.code == 1
    assert missing.last_error_line.endswith(
        "the artifact server wants a write token (HTTP 401); set ARTIFACT_TOKEN or pass --token"
    )
    assert not (dist / names.ISTIO_ENV).exists()
    assert not (dist / names.PUBLISHED_JSON).exists()
    listing = requests.get(f"{server}/-/api/artifacts", params={"prefix": prefix}, timeout=10)
    assert listing.json() == []


def test_wasm_patch_and_blocklisted_prefix(built_dist, dist, server, tmp_path):
    run = publish_server(dist, server, environ(tmp_path), "--wasm", "patch", "--prefix", "ACCESS")
    assert run.code == 0, run.output
    values = read_env(dist / names.ISTIO_ENV)
    assert names.ISTIO_ENVOY_BASE_URL not in values
    placeholder = names.wasm_placeholders(built_dist.mosn_version_safe)[0]
    folder = f"{server}/ACCESS/{built_dist.mosn_version_safe}"
    assert requests.head(f"{folder}/{placeholder}", timeout=10).status_code == 404
    warned = [line for line in run.stderr.splitlines() if line.startswith("warning:")]
    assert [w.split(" ")[1] for w in warned] == [
        "ISTIO_ENVOY_RELEASE_URL",
        "ISTIO_ENVOY_CENTOS_RELEASE_URL",
        "ISTIO_ENVOY_MACOS_RELEASE_URL",
    ]
    assert '"CC" in the URL\'s path' in warned[0] and "use another --prefix" in warned[0]


def test_build_publish_with_no_arguments_starts_the_bundled_server(mosn_checkout, tmp_path):
    """The README's Quick start: `invoke build publish` on defaults, nothing listening yet."""
    from server import background

    port = free_port()
    root = tmp_path / "server-root"
    env = environ(
        tmp_path,
        token="",
        MOSN_SRC=str(mosn_checkout),
        MOSN_PROXYV2_DIST=str(tmp_path / "dist"),
        MOSN_PROXYV2_SERVER_URL=f"http://127.0.0.1:{port}",
    )
    try:
        run = invoke("build", "publish", env=env)
        assert run.code == 0, run.output
        assert (
            f"nothing answered at 127.0.0.1:{port}: started the bundled artifact server"
            in run.stdout
        )
        assert "stop it with `invoke serve --stop`" in run.stdout
        pid = background.running(root)
        assert pid is not None
        token_file = root / ".write-token"
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        token = token_file.read_text().strip()
        assert len(token) >= 32
        env_file = tmp_path / "dist" / names.ISTIO_ENV
        assert_no_token(run, env_file, token=token)
        assert requests.get(f"http://127.0.0.1:{port}/.write-token", timeout=10).status_code >= 400
        istio_fetch(read_env(env_file), tmp_path / "istio")

        again = invoke("publish", env=env)
        assert again.code == 0, again.output
        assert "started the bundled" not in again.stdout
        assert "nothing uploaded" in again.stdout
        assert background.running(root) == pid

        stopped = invoke("serve", "--stop", env=env)
        assert stopped.code == 0, stopped.output
        assert background.running(root) is None
        with pytest.raises(requests.ConnectionError):
            requests.get(f"http://127.0.0.1:{port}/-/healthz", timeout=5)
    finally:
        background.stop(root)
    assert not (root / ".server.pid").exists()


# ---- tokens and the server: what publish says when either is not what the user thinks ------


def test_the_token_read_from_the_write_token_file_is_named_when_refused(dist, server, tmp_path):
    # A server of the user's own on a local URL, and in server_root the token of the one
    # publish started there earlier: with ARTIFACT_TOKEN unset, that file's token is sent.
    root = tmp_path / "server-root"
    root.mkdir()
    (root / ".write-token").write_text("token-of-an-earlier-bundled-server\n")
    run = publish_server(dist, server, environ(tmp_path, token=""))
    assert run.code == 1
    token_file = root.resolve() / ".write-token"
    assert f"no token set (ARTIFACT_TOKEN, --token): using the one in {token_file}" in run.stdout
    assert run.last_error_line.endswith(
        f"the artifact server refused the token read from {token_file} (HTTP 403), which"
        " publish uses when ARTIFACT_TOKEN is not set: it is the token of the server publish"
        " starts itself; set ARTIFACT_TOKEN (or --token) to one of this server's write tokens"
    )
    assert_no_token(run, token="token-of-an-earlier-bundled-server")


def test_a_wrong_token_is_refused_even_when_every_file_is_already_there(
    dist, server, prefix, tmp_path
):
    assert publish_server(dist, server, environ(tmp_path), "--prefix", prefix).code == 0
    wrong = publish_server(dist, server, environ(tmp_path, token="wrong"), "--prefix", prefix)
    assert wrong.code == 1
    assert "nothing uploaded" not in wrong.stdout
    assert wrong.last_error_line.endswith(
        "the artifact server refused the token (HTTP 403); check ARTIFACT_TOKEN against the"
        " server's --token-file or ARTIFACT_TOKENS"
    )
    assert not (dist / names.ISTIO_ENV).exists()
    # The right token: the check is one PUT of a file already there, which changes nothing.
    again = publish_server(dist, server, environ(tmp_path), "--prefix", prefix)
    assert again.code == 0, again.output
    assert "nothing uploaded" in again.stdout
    assert "the server accepted the token (sent " in again.stdout


def test_a_web_server_that_is_not_an_artifact_server_is_named_at_once(dist, tmp_path):
    (tmp_path / "www").mkdir()
    port = free_port()
    argv = [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port)]
    with running_process(argv, port, log=tmp_path / "http.log", cwd=tmp_path / "www"):
        run = publish_server(dist, f"http://127.0.0.1:{port}", environ(tmp_path))
    assert run.code == 1
    assert run.last_error_line == (
        f"error: http://127.0.0.1:{port} is not a mosn-proxyv2 artifact server"
        " (GET /-/healthz answered HTTP 404 File not found); check --server-url"
    )
    assert "retry" not in run.output
    assert not (tmp_path / "server-root").exists()


def test_a_read_only_artifact_server_is_refused_before_any_upload(dist, tmp_path):
    with running_server(tmp_path / "ro", tokens=[TOKEN], read_only=True) as url:
        run = publish_server(dist, url, environ(tmp_path))
    assert run.code == 1
    assert run.last_error_line == (
        f"error: the artifact server at {url} is read-only (GET /-/healthz), so nothing can be"
        " published to it; publish to a writable one (--server-url)"
    )


def test_an_unknown_host_is_one_line_without_retries(dist, tmp_path):
    url = "http://no-such-host.invalid:8080"
    run = publish_server(dist, url, environ(tmp_path))
    assert run.code == 1
    assert run.last_error_line == (
        f"error: {url}: the host name no-such-host.invalid does not resolve; check --server-url"
    )
    assert "retry" not in run.output
