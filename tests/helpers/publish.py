"""Test helpers for `invoke publish`: a real S3 API (moto in server mode), a stand-in for a
flaky or corrupting network path, Istio's own download step, and running the CLI."""

from __future__ import annotations

import contextlib
import http.client
import os
import shutil
import subprocess
import sys
import tarfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

from ci import names
from ci.dist import Dist, sha256_file
from tests.helpers import tools
from tests.helpers.cli import run_invoke
from tests.helpers.net import free_port, running_process

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
# Fake credentials for moto; distinctive so a leak into any output is easy to assert on.
FAKE_ACCESS_KEY = "AKIAMOSNPROXYTEST"
FAKE_SECRET_KEY = "fake-secret-key-9d1c7e3b2a"
S3_SLOWDOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>"
)

S3_ACL_NOT_SUPPORTED = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessControlListNotSupported</Code>'
    b"<Message>The bucket does not allow ACLs</Message></Error>"
)


@contextlib.contextmanager
def moto_server(workdir: Path, **env: str) -> Iterator[str]:
    """moto's S3 API as a real HTTP server process on loopback; yields its endpoint URL.
    `env` configures moto (e.g. INITIAL_NO_AUTH_ACTION_COUNT="0" to check credentials)."""
    port = free_port()
    tools.module("moto", "moto.server")
    argv = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    with running_process(argv, port, log=workdir / "moto.log", env={**os.environ, **env}):
        yield f"http://127.0.0.1:{port}"


def s3_environ(workdir: Path, **extra: str) -> dict[str, str]:
    """An environment whose only AWS credentials are the fake ones (no files, no profile)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MOSN_PROXYV2_"))}
    env.update(
        AWS_ACCESS_KEY_ID=FAKE_ACCESS_KEY,
        AWS_SECRET_ACCESS_KEY=FAKE_SECRET_KEY,
        AWS_DEFAULT_REGION="us-east-1",
        AWS_CONFIG_FILE=str(workdir / "no-aws-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(workdir / "no-aws-credentials"),
        AWS_EC2_METADATA_DISABLED="true",
        ARTIFACT_TOKEN="",
    )
    env.pop("GITHUB_OUTPUT", None)
    env.pop("GITHUB_ACTIONS", None)
    env.update(extra)
    return env


def s3_client(endpoint: str):
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=FAKE_ACCESS_KEY,
        aws_secret_access_key=FAKE_SECRET_KEY,
        config=Config(s3={"addressing_style": "path"}),
    )


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str

    @property
    def last_error_line(self) -> str:
        lines = self.stderr.strip().splitlines()
        return lines[-1] if lines else ""

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def invoke(*args: str, env: dict[str, str], cwd: Path = REPO_ROOT) -> Run:
    """Run `python -m invoke ARGS` the way a user does, from the repository root."""
    proc = run_invoke("-r", REPO_ROOT, *args, env=env, cwd=cwd, timeout=240)
    return Run(proc.returncode, proc.stdout, proc.stderr)


def copy_dist(dist: Dist, dest: Path) -> Path:
    shutil.copytree(dist.root, dest)
    (dest / names.ISTIO_ENV).unlink(missing_ok=True)
    return dest


def rebuild_with_other_bytes(root: Path) -> str:
    """Same version, different Linux tarball bytes (a rebuild that changed): the new sha256."""
    dist = Dist.load(root)
    tarball = root / names.LINUX_TARBALL
    binary = root / "mosn"
    binary.write_bytes(dist.binary() + b"\0")
    binary.chmod(0o755)
    with tarfile.open(tarball, "w:gz") as tar:
        tar.add(binary, arcname=names.BINARY_PATH_IN_TARBALL)
    binary.unlink()
    files = tuple(
        replace(f, size=tarball.stat().st_size, sha256=sha256_file(tarball))
        if f.name == names.LINUX_TARBALL
        else f
        for f in dist.files
    )
    replace(dist, files=files).write_manifest()
    return sha256_file(tarball)


def assert_other_bytes_caught(run: Run, dist: Dist, url_start: str) -> None:
    """The one-line error of a publish whose store handed back other bytes than were sent."""
    tarball = dist.file(names.LINUX_TARBALL)
    line = run.last_error_line
    assert run.code == 1
    assert line.startswith(f"error: {url_start}")
    assert f"/mosn.tar.gz: a download gives {tarball.size} bytes with sha256 " in line
    assert f"not the {tarball.size} bytes with sha256 {tarball.sha256}" in line
    assert "istio.env was not written" in line
    assert not (dist.root / names.ISTIO_ENV).exists()


def read_env(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        key, _, value = line.partition("=")
        values[key] = value
    return values


def istio_fetch(values: dict[str, str], workdir: Path) -> dict[str, Path]:
    """Do what Istio 1.10's bin/init.sh does with istio.env: `curl -fLSs URL | tar xz` for
    each release URL, and curl each WASM file under ISTIO_ENVOY_BASE_URL."""
    found = {}
    for var in names.RELEASE_URL_VARS:
        if var not in values:
            continue
        out = workdir / var
        out.mkdir(parents=True)
        subprocess.run(
            [
                "bash",
                "-o",
                "pipefail",
                "-c",
                'curl -fLSs "$1" | tar xz -C "$2"',
                "_",
                values[var],
                out,
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        found[var] = out / names.BINARY_PATH_IN_TARBALL
    if names.ISTIO_ENVOY_BASE_URL in values:
        for name in names.wasm_placeholders(values[names.ISTIO_ENVOY_VERSION]):
            target = workdir / "wasm" / name
            target.parent.mkdir(exist_ok=True)
            subprocess.run(
                ["curl", "-fLSs", "-o", target, f"{values[names.ISTIO_ENVOY_BASE_URL]}/{name}"],
                check=True,
                capture_output=True,
                timeout=60,
            )
            found[name] = target
    return found


def parse_github_output(path: Path) -> dict[str, str]:
    """Read a GITHUB_OUTPUT file (both `k=v` and `k<<DELIM` forms), as the runner does."""
    outputs, lines = {}, iter(path.read_text().splitlines())
    for line in lines:
        if "<<" in line:
            key, delimiter = line.split("<<", 1)
            body = []
            for inner in lines:
                if inner == delimiter:
                    break
                body.append(inner)
            outputs[key] = "\n".join(body)
        elif "=" in line:
            key, value = line.split("=", 1)
            outputs[key] = value
    return outputs


@dataclass
class StandIn:
    """A stand-in for the network path to a real server: an HTTP proxy on 127.0.0.1 that
    forwards to `upstream`, after failing the first `fail` requests whose method is in
    `fail_methods` (with `fail_status` and `fail_body`), and that can flip a byte in every
    GET body (`corrupt_get`) or every PUT body, dropping its X-Checksum-Sha256 header as a
    rewriting proxy would (`corrupt_put`), and can refuse ACLs as a bucket with ACLs disabled does
    (`refuse_acl`; moto does not enforce that setting). It records the method, path and headers of every request."""

    upstream: str
    fail: int = 0
    fail_methods: tuple[str, ...] = ("PUT",)
    fail_status: int = 503
    fail_body: bytes = b""
    corrupt_get: bool = False
    corrupt_put: bool = False
    refuse_acl: bool = False
    requests: list[tuple[str, str]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def methods(self, method: str) -> int:
        return sum(1 for m, _ in self.requests if m == method)

    def __enter__(self) -> StandIn:
        stand_in = self
        target = urlsplit(self.upstream)
        lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            # HTTP/1.1 so that `Expect: 100-continue` (botocore's PUTs) is answered at once.
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet test output
                pass

            def _forward(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with lock:
                    stand_in.requests.append((self.command, self.path))
                    stand_in.headers.append({k.lower(): v for k, v in self.headers.items()})
                    failing = stand_in.fail > 0 and self.command in stand_in.fail_methods
                    if failing:
                        stand_in.fail -= 1
                if failing:
                    self._answer(stand_in.fail_status, stand_in.fail_body)
                    return
                if stand_in.refuse_acl and "x-amz-acl" in {k.lower() for k in self.headers}:
                    self._answer(400, S3_ACL_NOT_SUPPORTED)
                    return
                conn = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
                dropped = {"connection", "expect"}
                if stand_in.corrupt_put and self.command == "PUT" and body:
                    body = bytes([body[0] ^ 0xFF]) + body[1:]
                    dropped.add("x-checksum-sha256")
                headers = {k: v for k, v in self.headers.items() if k.lower() not in dropped}
                conn.request(self.command, self.path, body=body, headers=headers)
                upstream = conn.getresponse()
                data = upstream.read()
                # Downloads only: the server's own /-/healthz passes, as publish asks it first.
                artifact = not self.path.startswith("/-/")
                if stand_in.corrupt_get and self.command == "GET" and data and artifact:
                    data = bytes([data[0] ^ 0xFF]) + data[1:]
                self.send_response(upstream.status)
                for key, value in upstream.getheaders():
                    if key.lower() not in {"connection", "transfer-encoding", "keep-alive"}:
                        self.send_header(key, value)
                self.send_header("Connection", "close")
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                conn.close()

            def _answer(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_PUT = do_HEAD = do_DELETE = do_POST = _forward

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
