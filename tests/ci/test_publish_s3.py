"""`invoke publish --to s3` against a real S3 API: moto in server mode on loopback, driven
through boto3 by the CLI in a subprocess, with fake credentials in the environment only."""

from __future__ import annotations

import base64
import json
import shlex
import subprocess
import uuid

import pytest

from ci import names
from ci.dist import Dist
from tests.helpers.publish import (
    FAKE_SECRET_KEY,
    S3_SLOWDOWN,
    StandIn,
    assert_other_bytes_caught,
    copy_dist,
    invoke,
    istio_fetch,
    moto_server,
    parse_github_output,
    read_env,
    rebuild_with_other_bytes,
    s3_client,
    s3_environ,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def moto(tmp_path_factory):
    with moto_server(tmp_path_factory.mktemp("moto")) as endpoint:
        yield endpoint


@pytest.fixture
def bucket(moto):
    name = f"mosn-{uuid.uuid4().hex[:12]}"
    s3_client(moto).create_bucket(Bucket=name)
    return name


@pytest.fixture
def dist(built_dist, tmp_path):
    return copy_dist(built_dist, tmp_path / "dist")


def publish_s3(dist, bucket, endpoint, env, *extra):
    return invoke(
        "publish",
        "--dist",
        str(dist),
        "--to",
        "s3",
        "--bucket",
        bucket,
        "--endpoint-url",
        endpoint,
        *extra,
        env=env,
    )


def assert_no_secret(run, *files):
    for text in (run.stdout, run.stderr, *(f.read_text() for f in files if f.exists())):
        assert FAKE_SECRET_KEY not in text


def test_presigned_publish_is_what_istio_build_fetches(built_dist, dist, bucket, moto, tmp_path):
    outputs = tmp_path / "github_output"
    outputs.touch()
    env = s3_environ(tmp_path, GITHUB_OUTPUT=str(outputs))
    run = publish_s3(dist, bucket, moto, env)
    assert run.code == 0, run.output
    env_file = dist / names.ISTIO_ENV
    values = read_env(env_file)
    version = built_dist.mosn_version_safe
    assert values[names.ISTIO_ENVOY_VERSION] == version
    assert values[names.SIDECAR_VAR] == "mosn"
    assert values[names.ISTIO_ENVOY_MACOS_RELEASE_NAME] == f"mosn-{version}"
    folder = f"{moto}/{bucket}/mosn/{version}"
    assert values[names.ISTIO_ENVOY_BASE_URL] == folder
    for var, tarball in names.RELEASE_URL_VARS.items():
        assert values[var].startswith(f"{folder}/{tarball}?X-Amz-Algorithm=AWS4-HMAC-SHA256")

    fetched = istio_fetch(values, tmp_path / "istio")
    linux = subprocess.run(
        [fetched[names.ISTIO_ENVOY_RELEASE_URL], "--version"], capture_output=True, text=True
    )
    assert linux.stdout == f"mosn version {built_dist.mosn_version}\n"
    assert fetched[names.ISTIO_ENVOY_MACOS_RELEASE_URL].read_bytes()[:4] == b"\xcf\xfa\xed\xfe"
    for placeholder in names.wasm_placeholders(version):
        assert fetched[placeholder].stat().st_size == 0

    # The store keeps the sha256 with the object, for later runs to compare against.
    head = s3_client(moto).head_object(Bucket=bucket, Key=f"mosn/{version}/{names.LINUX_TARBALL}")
    assert head["Metadata"]["sha256"] == built_dist.file(names.LINUX_TARBALL).sha256

    # The printed make line carries the same values, quoted for a shell.
    make_line = next(line for line in run.stdout.splitlines() if "make docker.proxyv2" in line)
    words = shlex.split(make_line)
    assert words[:5] == ["make", "clean", "&&", "make", "docker.proxyv2"]
    assert dict(w.split("=", 1) for w in words[5:]) == values

    out = parse_github_output(outputs)
    assert out["istio-envoy-release-url"] == values[names.ISTIO_ENVOY_RELEASE_URL]
    assert out["istio-envoy-base-url"] == values[names.ISTIO_ENVOY_BASE_URL]
    assert out["env-file"] == str(env_file.resolve())
    assert json.loads(out["tarballs"]) == [
        {"file": f.name, "url": values[var], "sha256": f.sha256}
        for f, var in zip(built_dist.files, names.RELEASE_URL_VARS, strict=True)
    ]
    assert_no_secret(run, env_file, outputs)


def test_rerun_uploads_nothing_and_other_bytes_need_force(dist, bucket, moto, tmp_path):
    env = s3_environ(tmp_path)
    assert publish_s3(dist, bucket, moto, env).code == 0
    with StandIn(moto) as counting:
        again = publish_s3(dist, bucket, counting.url, env)
    assert again.code == 0, again.output
    assert counting.methods("PUT") == 0
    assert "nothing uploaded" in again.stdout

    new_sha = rebuild_with_other_bytes(dist)
    key = f"mosn/{read_env(dist / names.ISTIO_ENV)[names.ISTIO_ENVOY_VERSION]}/mosn.tar.gz"
    refused = publish_s3(dist, bucket, moto, env)
    assert refused.code == 1
    assert refused.last_error_line.startswith(f"error: s3://{bucket}/{key}: version ")
    assert "different bytes (mosn.tar.gz, SHA256SUMS)" in refused.last_error_line
    assert "--force" in refused.last_error_line
    assert not (dist / names.ISTIO_ENV).exists()
    assert not (dist / names.PUBLISHED_JSON).exists()
    assert s3_client(moto).head_object(Bucket=bucket, Key=key)["Metadata"]["sha256"] != new_sha

    forced = publish_s3(dist, bucket, moto, env, "--force")
    assert forced.code == 0, forced.output
    assert s3_client(moto).head_object(Bucket=bucket, Key=key)["Metadata"]["sha256"] == new_sha
    fetched = istio_fetch(read_env(dist / names.ISTIO_ENV), tmp_path / "istio")
    assert fetched[names.ISTIO_ENVOY_RELEASE_URL].is_file()


def test_public_urls_and_wasm_patch(built_dist, dist, bucket, moto, tmp_path):
    run = publish_s3(dist, bucket, moto, s3_environ(tmp_path), "--public", "--wasm", "patch")
    assert run.code == 0, run.output
    values = read_env(dist / names.ISTIO_ENV)
    version = built_dist.mosn_version_safe
    assert values[names.ISTIO_ENVOY_RELEASE_URL] == f"{moto}/{bucket}/mosn/{version}/mosn.tar.gz"
    assert names.ISTIO_ENVOY_BASE_URL not in values
    listed = s3_client(moto).list_objects_v2(Bucket=bucket)["Contents"]
    assert sorted(o["Key"].rsplit("/", 1)[1] for o in listed) == sorted(
        [f.name for f in built_dist.files] + [names.SHA256SUMS]
    )
    assert istio_fetch(values, tmp_path / "istio")[names.ISTIO_ENVOY_RELEASE_URL].is_file()


def test_bucket_without_acls_needs_a_policy_for_public_urls(dist, bucket, moto, tmp_path):
    env = s3_environ(tmp_path)
    with StandIn(moto, refuse_acl=True) as no_acls:
        refused = publish_s3(dist, bucket, no_acls.url, env, "--public")
        assert refused.code == 1
        assert "refused a public-read ACL (AccessControlListNotSupported)" in refused.stdout
        assert "answered HTTP 403 to a plain GET" in refused.last_error_line
        assert "--public needs a bucket policy" in refused.last_error_line
        assert not (dist / names.ISTIO_ENV).exists()
        assert not (dist / names.PUBLISHED_JSON).exists()

        policy = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": "*",
                    "Action": "s3:GetObject",
                    "Resource": f"arn:aws:s3:::{bucket}/mosn/*",
                }
            ],
        }
        s3_client(moto).put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))
        run = publish_s3(dist, bucket, no_acls.url, env, "--public")
        assert run.code == 0, run.output
        assert "nothing uploaded" in run.stdout
        istio_fetch(read_env(dist / names.ISTIO_ENV), tmp_path / "istio")


def test_slowdown_and_503_are_retried(built_dist, dist, bucket, moto, tmp_path):
    with StandIn(moto, fail=2, fail_body=S3_SLOWDOWN) as flaky:
        run = publish_s3(dist, bucket, flaky.url, s3_environ(tmp_path))
    assert run.code == 0, run.output
    assert "SlowDown (HTTP 503); retry 1/4" in run.stdout
    assert "retry 2/4" in run.stdout
    assert flaky.methods("PUT") == 8 + 2
    # Every upload carried its sha256 for S3 to check on receipt (AWS does; moto ignores it).
    sent = {
        path.rsplit("/", 1)[1]: headers["x-amz-checksum-sha256"]
        for (method, path), headers in zip(flaky.requests, flaky.headers, strict=True)
        if method == "PUT"
    }
    sha = built_dist.file(names.LINUX_TARBALL).sha256
    assert sent[names.LINUX_TARBALL] == base64.b64encode(bytes.fromhex(sha)).decode()


def test_store_returning_other_bytes_is_caught(dist, bucket, moto, tmp_path):
    with StandIn(moto, corrupt_get=True) as corrupting:
        run = publish_s3(dist, bucket, corrupting.url, s3_environ(tmp_path))
    assert_other_bytes_caught(run, Dist.load(dist), f"s3://{bucket}/mosn/")


def test_missing_and_temporary_credentials_are_clear_errors(dist, bucket, moto, tmp_path):
    env = s3_environ(tmp_path)
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        env.pop(var)
    none = publish_s3(dist, bucket, moto, env)
    assert none.code == 1
    assert none.last_error_line.startswith("error: no AWS credentials found; set AWS_ACCESS_KEY_ID")

    session_token = "FwoGZXIvYXdzEXAMPLESESSIONTOKEN"
    temporary = publish_s3(
        dist, bucket, moto, s3_environ(tmp_path, AWS_SESSION_TOKEN=session_token)
    )
    assert temporary.code == 1
    assert "temporary" in temporary.last_error_line and "--public" in temporary.last_error_line
    assert session_token not in temporary.output
    assert not (dist / names.ISTIO_ENV).exists()
    assert not (dist / names.PUBLISHED_JSON).exists()


@pytest.mark.parametrize(
    ("endpoint", "checksums", "addressing"),
    [
        ("http://127.0.0.1:9000", "when_required", "path"),
        ("", "when_supported", None),
        ("https://s3.eu-west-1.amazonaws.com", "when_supported", None),
    ],
)
def test_checksum_settings_relaxed_only_off_aws(monkeypatch, endpoint, checksums, addressing):
    from ci.config import Settings
    from ci.publish.s3 import S3Store

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", FAKE_SECRET_KEY)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    config = S3Store(Settings(bucket="b", endpoint_url=endpoint)).client.meta.config
    assert config.request_checksum_calculation == checksums
    assert config.response_checksum_validation == checksums
    assert (config.s3 or {}).get("addressing_style") == addressing


def test_bad_credentials_are_a_clear_error(dist, tmp_path_factory, tmp_path):
    """A moto that checks credentials (INITIAL_NO_AUTH_ACTION_COUNT=0) knows no key at all."""
    workdir = tmp_path_factory.mktemp("moto-auth")
    with moto_server(workdir, INITIAL_NO_AUTH_ACTION_COUNT="0") as strict:
        run = publish_s3(dist, "mosn-any", strict, s3_environ(tmp_path))
    assert run.code == 1
    assert run.last_error_line.startswith("error: S3 refused the request for s3://mosn-any/mosn/")
    assert "check the credentials boto3 finds (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY" in (
        run.last_error_line
    )
    assert_no_secret(run)
    assert not (dist / names.ISTIO_ENV).exists()
    assert not (dist / names.PUBLISHED_JSON).exists()


def test_blocklisted_substrings_are_warned(dist, bucket, moto, tmp_path):
    # "GO" in the path (the prefix), and in the presigned signature's credential.
    env = s3_environ(tmp_path, AWS_ACCESS_KEY_ID="AKIAGOODKEY")
    run = publish_s3(dist, bucket, moto, env, "--prefix", "GOLDEN")
    assert run.code == 0, run.output
    warnings = [line for line in run.stderr.splitlines() if line.startswith("warning:")]
    release = [w for w in warnings if w.startswith("warning: ISTIO_ENVOY_RELEASE_URL ")]
    assert release and '"GO"' in release[0]
    assert "use another --prefix" in release[0] or "use --public" in release[0]
    base = [w for w in warnings if w.startswith("warning: ISTIO_ENVOY_BASE_URL ")]
    assert base and "in the URL's path" in base[0] and "another --prefix" in base[0]
    assert (dist / names.ISTIO_ENV).is_file()
