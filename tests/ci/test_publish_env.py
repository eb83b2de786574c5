"""istio.env, the make line and the blocklist warnings, plus the publish flags' own errors."""

from __future__ import annotations

import shlex
import subprocess

import pytest

from ci import istio_env, names
from ci.errors import UserError
from ci.publish import check_prefix
from tests.helpers.publish import copy_dist, invoke, s3_environ

PRESIGNED = (
    "https://b.s3.amazonaws.com/mosn/v1/mosn.tar.gz?X-Amz-Algorithm=AWS4-HMAC-SHA256"
    "&X-Amz-Credential=AKIAGOEXAMPLE%2F20260101%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Signature=ab"
)


def values(release: str = "http://127.0.0.1:8080/mosn/v1/mosn.tar.gz") -> dict[str, str]:
    base = release.rsplit("/", 1)[0]
    return istio_env.istio_values(
        "v1",
        {
            names.LINUX_TARBALL: release,
            names.CENTOS_TARBALL: f"{base}/mosn-centos.tar.gz",
            names.MACOS_TARBALL: f"{base}/mosn-macos.tar.gz",
        },
        base,
    )


def test_env_file_round_trips_and_keeps_istio_order(tmp_path):
    original = values(PRESIGNED)
    path = tmp_path / names.ISTIO_ENV
    istio_env.write(path, original)
    assert istio_env.read(path) == original
    assert [line.split("=", 1)[0] for line in path.read_text().splitlines()] == [
        "SIDECAR",
        "ISTIO_ENVOY_VERSION",
        "ISTIO_ENVOY_RELEASE_URL",
        "ISTIO_ENVOY_CENTOS_RELEASE_URL",
        "ISTIO_ENVOY_MACOS_RELEASE_URL",
        "ISTIO_ENVOY_MACOS_RELEASE_NAME",
        "ISTIO_ENVOY_BASE_URL",
    ]
    assert original["ISTIO_ENVOY_MACOS_RELEASE_NAME"] == "mosn-v1"


def test_env_file_reads_as_docker_env_file_does(tmp_path):
    """`docker run --env-file` semantics, checked with bash: raw values, first `=` splits."""
    path = tmp_path / names.ISTIO_ENV
    istio_env.write(path, values(PRESIGNED))
    out = subprocess.run(
        ["bash", "-c", 'while IFS= read -r l; do printf "%s\\n" "${l#*=}"; done < "$1"', "_", path],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.splitlines()[2] == PRESIGNED


def test_make_line_quotes_every_value_for_the_shell():
    line = istio_env.make_command(values(PRESIGNED))
    words = shlex.split(line)
    assert words[:5] == ["make", "clean", "&&", "make", "docker.proxyv2"]
    assert dict(w.split("=", 1) for w in words[5:]) == values(PRESIGNED)
    # The unquoted & of a presigned URL would background make in a shell; it must be quoted.
    assert f"'ISTIO_ENVOY_RELEASE_URL={PRESIGNED}'" in line


def test_no_linux_tarball_is_an_error():
    with pytest.raises(UserError, match="no mosn.tar.gz"):
        istio_env.istio_values("v1", {names.MACOS_TARBALL: "http://x/m.tar.gz"}, None)


def test_blocklist_warnings_name_the_substring_and_the_way_out():
    plain = istio_env.blocklist_warnings(values())
    assert plain == []
    signed = istio_env.blocklist_warnings(values(PRESIGNED))
    assert signed[0].startswith('ISTIO_ENVOY_RELEASE_URL contains "GO" in the URL\'s signature')
    assert "use --public" in signed[0] and "BUILD_WITH_CONTAINER=0" in signed[0]
    in_path = istio_env.blocklist_warnings(values("http://h/HOME/v1/mosn.tar.gz"))
    keys = [w.split(" ", 1)[0] for w in in_path]
    assert keys == [
        "ISTIO_ENVOY_RELEASE_URL",
        "ISTIO_ENVOY_CENTOS_RELEASE_URL",
        "ISTIO_ENVOY_MACOS_RELEASE_URL",
        "ISTIO_ENVOY_BASE_URL",
    ]
    assert all('"HOME" in the URL\'s path' in w and "another --prefix" in w for w in in_path)


def test_make_arguments_do_not_get_past_istios_env_filter(tmp_path):
    """Why the warning does not advise make arguments: GNU make exports command-line variables
    and repeats them in MAKEFLAGS, and Istio's build container filters the environment (run.sh:
    `--env-file <(env | grep -v ${ENV_BLOCKLIST})`). Same mechanism, real make and grep."""
    blocklist = r"^_\|" + r"\|".join(names.ISTIO_ENV_BLOCKLIST)
    (tmp_path / "Makefile").write_text(
        f"docker.proxyv2:\n\t@env | grep -v '{blocklist}' | grep ISTIO_ENVOY || true\n"
    )
    clean = "ISTIO_ENVOY_RELEASE_URL=http://h/mosn/v1/mosn.tar.gz"
    blocked = "ISTIO_ENVOY_CENTOS_RELEASE_URL=http://h/GOLD/v1/mosn-centos.tar.gz"
    out = subprocess.run(
        ["make", "-s", "-C", tmp_path, "docker.proxyv2", clean, blocked],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert clean in out
    assert not [line for line in out if "GOLD" in line]


@pytest.mark.parametrize("prefix", ["a/../b", ".hidden", "sp ace", "a//b/.x"])
def test_bad_prefixes_are_refused(prefix):
    with pytest.raises(UserError, match="--prefix"):
        check_prefix(prefix)


def test_prefix_slashes_are_trimmed():
    assert check_prefix("/team/mosn/") == "team/mosn"
    assert check_prefix("") == ""


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--to", "ftp"], "error: --to 'ftp' is not one of server, s3"),
        (["--wasm", "drop"], "error: --wasm 'drop' is not one of placeholder, patch"),
        (["--to", "s3"], "error: --to s3 needs a bucket: pass --bucket NAME"),
        (
            ["--to", "s3", "--bucket", "b", "--url-expiry", "604801"],
            "error: --url-expiry '604801' is out of range: give 1 to 604800 seconds",
        ),
        (["--server-url", "ftp://h"], "error: --server-url 'ftp://h' is not an http(s) URL"),
    ],
)
def test_flag_errors_are_one_line_and_write_nothing(built_dist, tmp_path, flags, message):
    dist = copy_dist(built_dist, tmp_path / "dist")
    run = invoke("publish", "--dist", str(dist), *flags, env=s3_environ(tmp_path))
    assert run.code == 1
    assert run.last_error_line.startswith(message)
    assert "Traceback" not in run.stderr
    assert not (dist / names.ISTIO_ENV).exists()
    assert not (dist / names.PUBLISHED_JSON).exists()
