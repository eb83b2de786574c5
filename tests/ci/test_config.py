"""The option registry (ci/config.py): tasks, help, the one validator, and `invoke serve`."""

from __future__ import annotations

import inspect

import pytest

import tasks
from ci import config
from ci.errors import UserError
from tests.helpers.cli import run_invoke

# Task arguments that are not settings: what the task does, not what it is configured with.
NOT_SETTINGS = {"e2e": {"plan", "summarize"}, "serve": {"stop"}}
TASKS = ("build", "image", "e2e", "publish", "serve")


@pytest.mark.parametrize("name", TASKS)
def test_each_task_signature_is_its_registry_settings(name):
    # Both ways: a registry option missing from the signature would be a KeyError at run
    # time; a parameter missing from the registry would be silently ignored.
    body = getattr(tasks, name).body
    params = set(inspect.signature(body).parameters) - {"ctx"}
    registry = {
        config.flag(setting, name).replace("-", "_")
        for setting, option in config.OPTIONS.items()
        if name in option.tasks_taking()
    }
    assert params == registry | NOT_SETTINGS.get(name, set())
    assert set(getattr(tasks, name).help) == {p.replace("_", "-") for p in params}


def test_help_names_defaults_from_the_registry():
    for name in TASKS:
        for flag, text in config.help_for(name).items():
            assert "{" not in text and "}" not in text, f"{name} --{flag}: {text}"
    assert config.help_for("build")["out"].endswith("(default dist/)")
    assert config.help_for("serve")["header-timeout"].endswith("(default 10)")
    assert "(default and maximum 604800)" in config.help_for("publish")["url-expiry"]
    assert "(default linux/amd64,darwin/amd64)" in config.help_for("build")["platforms"]


def test_a_choice_is_checked_when_settings_are_read_and_named_as_its_source():
    with pytest.raises(UserError) as flag:
        config.load({}, {"wasm": "drop"}, {})
    assert str(flag.value) == "--wasm 'drop' is not one of placeholder, patch; pick one"
    with pytest.raises(UserError) as env:
        config.load({}, {}, {"MOSN_PROXYV2_MODE": "fast"})
    assert str(env.value) == "MOSN_PROXYV2_MODE 'fast' is not one of quick, full; pick one"
    with pytest.raises(UserError) as yaml:
        config.load({"to": "ftp"}, {}, {})
    assert str(yaml.value) == "invoke.yaml to 'ftp' is not one of server, s3; pick one"


def test_the_action_reads_the_same_registry_in_its_input_names():
    environ = {"MOSN_PROXYV2_WASM": "skip", "MOSN_PROXYV2_PUSH": "yes", "MOSN_PROXYV2_TO": "s3"}
    s, found = config.read({}, {}, environ)
    # By hand, "yes" is a boolean and the variable is named.
    assert found == ["MOSN_PROXYV2_WASM 'skip' is not one of placeholder, patch; pick one"]
    assert s.push is True
    s, found = config.read({}, {}, environ, action=True)
    assert found == [
        "input `wasm`: 'skip' is not one of placeholder, patch; pick one",
        "input `push`: 'yes' is not one of true, false; pick one",
    ]
    # The bad values are left at their defaults; the good one is read.
    assert (s.push, s.wasm, s.to) == (False, "placeholder", "s3")


def test_every_layer_is_coerced_by_the_same_rules():
    s = config.load(
        {"workers": "3", "header_timeout": 2.5},
        {"front_cache": "0"},
        {"ARTIFACT_FRONT": "NGINX", "ARTIFACT_READ_ONLY": "yes"},
    )
    assert (s.workers, s.header_timeout, s.front_cache) == (3, 2.5, 0)
    # The server's own rules for its variables: case-folded choices, yes/no booleans.
    assert (s.front, s.read_only) == ("nginx", True)
    with pytest.raises(UserError, match=r"^environment: send_timeout must be a float, got 'x'"):
        config.load({}, {}, {"MOSN_PROXYV2_SEND_TIMEOUT": "x"})


def test_secret_options_are_secrets():
    secret = {name for name, option in config.OPTIONS.items() if option.secret}
    assert secret == {"token", "registry_password", "read_token"}
    s = config.load({}, {"read_token": "r3ad-t0ken"}, {"ARTIFACT_TOKEN": "s3cr3t"})
    assert isinstance(s.read_token, config.Secret) and isinstance(s.token, config.Secret)
    assert "r3ad-t0ken" not in repr(s) and "s3cr3t" not in repr(s)


def test_serve_defaults_are_the_servers():
    # The server keeps its own defaults for `python -m server`; `invoke serve` must not drift.
    from server.config import DEFAULT_MAX_UPLOAD, ServeOptions, parse_size

    d = config.DEFAULTS
    for name in ("workers", "connections", "header_timeout", "send_timeout", "front"):
        assert d[name] == getattr(ServeOptions, name), name
    assert (d["front_cache"], d["access_log"]) == (
        ServeOptions.front_cache,
        ServeOptions.access_log,
    )
    assert parse_size(d["max_upload_size"]) == DEFAULT_MAX_UPLOAD


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (
            ("--workers", "abc"),
            "error: command line: workers must be a int, got 'abc'; fix the value and run again",
        ),
        (
            ("--header-timeout", "soon"),
            "error: command line: header_timeout must be a float, got 'soon'; fix the value and"
            " run again",
        ),
        (("--front", "apache"), "error: --front 'apache' is not one of none, nginx; pick one"),
    ],
)
def test_invoke_serve_refuses_a_bad_option_in_one_line(tmp_path, args, error):
    root = tmp_path / "root"
    result = run_invoke("serve", "--root", root, *args, timeout=60)
    assert result.returncode == 1
    assert result.stderr.strip() == error
    assert "Traceback" not in result.stderr + result.stdout
    assert not root.exists()
