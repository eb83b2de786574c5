"""Configuration (flags, environment, token files) and the auth modes it selects."""

from __future__ import annotations

import pytest
import requests

from server import create_app
from server.config import build_config, from_args, parse_size, size_text
from server.errors import ServerError
from tests.helpers.artifact_server import running_server
from tests.server.conftest import AUTH, TOKEN

READ_TOKEN = "reader-token-5e1d"


def test_tokens_come_from_the_token_file_and_the_environment(tmp_path):
    token_file = tmp_path / "tokens"
    token_file.write_text("# CI tokens\nfile-one\n\n  file-two  \n")
    config = build_config(
        tmp_path / "root",
        token_file=token_file,
        environ={"ARTIFACT_TOKENS": "env-one, env-two,,file-one"},
    )
    assert list(config.tokens) == ["file-one", "file-two", "env-one", "env-two"]
    assert "file-one" not in repr(config)


def test_defaults_deny_overwrite_and_allow_anonymous_reads(tmp_path):
    config = build_config(tmp_path, environ={})
    assert config.overwrite == "deny"
    assert config.anonymous_reads
    assert not config.read_only
    assert config.tokens == ()


def test_environment_sets_every_policy(tmp_path):
    env = {
        "ARTIFACT_READ_TOKEN": "r",
        "ARTIFACT_MAX_UPLOAD_SIZE": "10M",
        "ARTIFACT_OVERWRITE": "allow",
        "ARTIFACT_READ_ONLY": "yes",
    }
    config = build_config(tmp_path, environ=env)
    assert (config.read_token, config.max_upload_size, config.overwrite, config.read_only) == (
        "r",
        10 * 1024**2,
        "allow",
        True,
    )


def test_flags_win_over_environment(tmp_path):
    config, options, stop = from_args(
        [
            "--root",
            str(tmp_path),
            "--bind",
            "127.0.0.1:9999",
            "--workers",
            "3",
            "--overwrite",
            "deny",
            "--max-upload-size",
            "1G",
        ],
        environ={"ARTIFACT_OVERWRITE": "allow", "ARTIFACT_MAX_UPLOAD_SIZE": "5"},
    )
    assert (config.overwrite, config.max_upload_size) == ("deny", 1024**3)
    assert (options.bind, options.workers, stop) == ("127.0.0.1:9999", 3, False)


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("1048576", 1048576),
        ("512K", 512 * 1024),
        ("64m", 64 * 1024**2),
        ("2G", 2 * 1024**3),
        ("1TiB", 1024**4),
    ],
)
def test_parse_size(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("bad", ["lots", "-1", "2X", ""])
def test_bad_sizes_are_user_errors(bad, tmp_path):
    with pytest.raises(ServerError, match="size"):
        build_config(tmp_path, max_upload_size=bad, environ={})


def test_unreadable_token_file_is_a_user_error(tmp_path):
    with pytest.raises(ServerError, match="cannot read token file"):
        build_config(tmp_path, token_file=tmp_path / "missing", environ={})


def test_flask_test_client_sees_the_same_api(tmp_path):
    app = create_app({"root": tmp_path / "root", "tokens": ["t"]})
    client = app.test_client()
    assert (
        client.put("/a/b.txt", data=b"hi", headers={"Authorization": "Bearer t"}).status_code == 201
    )
    got = client.get("/a/b.txt")
    assert got.data == b"hi"
    assert got.headers["ETag"].strip('"') == __import__("hashlib").sha256(b"hi").hexdigest()


@pytest.fixture(scope="module")
def private_server(tmp_path_factory):
    with running_server(
        tmp_path_factory.mktemp("private") / "root", tokens=[TOKEN], read_token=READ_TOKEN
    ) as url:
        requests.put(f"{url}/p/a.bin", data=b"private", headers=AUTH)
        yield url


def test_read_token_required_when_configured(private_server):
    anonymous = requests.get(f"{private_server}/p/a.bin")
    assert anonymous.status_code == 401
    assert anonymous.headers["WWW-Authenticate"].startswith("Bearer")
    assert (
        requests.get(
            f"{private_server}/p/a.bin", headers={"Authorization": "Bearer nope"}
        ).status_code
        == 403
    )
    assert (
        requests.get(
            f"{private_server}/p/a.bin", headers={"Authorization": f"Bearer {READ_TOKEN}"}
        ).content
        == b"private"
    )
    assert requests.get(f"{private_server}/p/a.bin", headers=AUTH).content == b"private"


def test_read_token_guards_listings_and_metrics_but_not_health(private_server):
    for path in ("/", "/p/", "/-/api/artifacts", "/-/metrics"):
        assert requests.get(f"{private_server}{path}").status_code == 401, path
    assert requests.get(f"{private_server}/-/healthz").status_code == 200
    assert requests.get(f"{private_server}/-/openapi.json").status_code == 200


def test_read_token_cannot_write(private_server):
    response = requests.put(
        f"{private_server}/p/b.bin", data=b"x", headers={"Authorization": f"Bearer {READ_TOKEN}"}
    )
    assert response.status_code == 403


def test_read_only_mode_refuses_writes(tmp_path):
    root = tmp_path / "root"
    (root / "r").mkdir(parents=True)
    (root / "r" / "there.bin").write_bytes(b"preexisting")
    with running_server(root, tokens=[TOKEN], read_only=True) as url:
        put = requests.put(f"{url}/r/new.bin", data=b"x", headers=AUTH)
        assert put.status_code == 405
        assert put.json()["reason"] == "read_only"
        assert requests.delete(f"{url}/r/there.bin", headers=AUTH).status_code == 405
        assert requests.get(f"{url}/r/there.bin").content == b"preexisting"
        assert requests.get(f"{url}/-/healthz").json()["read_only"] is True


def test_overwrite_allowed_replaces_the_bytes(tmp_path):
    with running_server(tmp_path / "root", tokens=[TOKEN], overwrite="allow") as url:
        assert requests.put(f"{url}/o.bin", data=b"one", headers=AUTH).status_code == 201
        replaced = requests.put(f"{url}/o.bin", data=b"two", headers=AUTH)
        assert replaced.status_code == 201
        assert requests.get(f"{url}/o.bin").content == b"two"
        assert requests.put(f"{url}/o.bin", data=b"two", headers=AUTH).status_code == 200


def test_tokens_never_reach_the_logs(tmp_path):
    secret_basic = "basic-user-secret"
    with running_server(tmp_path / "root", tokens=[TOKEN], read_token=READ_TOKEN) as url:
        requests.put(f"{url}/l.bin", data=b"x", headers=AUTH)
        requests.put(
            f"{url}/l2.bin", data=b"x", headers={"Authorization": "Bearer wrong-token-abcdef"}
        )
        requests.get(f"{url}/l.bin", headers={"Authorization": f"Bearer {READ_TOKEN}"})
        requests.get(f"{url}/l.bin", auth=(secret_basic, "pw"))
        log = url.log.read_text()
    assert '"PUT /l.bin HTTP/1.1" 201' in log  # the access log is on
    for secret in (TOKEN, READ_TOKEN, "wrong-token-abcdef", secret_basic, TOKEN[:8], "Bearer"):
        assert secret not in log


def test_a_worker_count_from_the_environment_must_be_a_number(tmp_path):
    with pytest.raises(ServerError, match="ARTIFACT_WORKERS='abc' is not a number of processes"):
        from_args(["--root", str(tmp_path)], environ={"ARTIFACT_WORKERS": "abc"})


@pytest.mark.parametrize(("size", "text"), [(4 * 1024**3, "4G"), (3072, "3K"), (1000, "1000")])
def test_help_shows_sizes_as_parse_size_reads_them(size, text):
    assert size_text(size) == text
    assert parse_size(text) == size
