"""The option registry (ci/config.py): tasks, help, the one validator, and `invoke serve`."""

from __future__ import annotations

import inspect

import pytest

import tasks
from ci import config
from ci.errors import UserError
from tests.helpers.cli import clean_environ, project_with_invoke_yaml, run_invoke

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
    with pytest.raises(UserError, match=r"^MOSN_PROXYV2_SEND_TIMEOUT 'x' is not a number;"):
        config.load({}, {}, {"MOSN_PROXYV2_SEND_TIMEOUT": "x"})


def test_secret_options_are_secrets():
    secret = {name for name, option in config.OPTIONS.items() if option.secret}
    assert secret == {"token", "registry_password", "read_token"}
    s = config.load({}, {"read_token": "r3ad-t0ken"}, {"ARTIFACT_TOKEN": "s3cr3t"})
    assert isinstance(s.read_token, config.Secret) and isinstance(s.token, config.Secret)
    assert "r3ad-t0ken" not in repr(s) and "s3cr3t" not in repr(s)


def test_invoke_serve_and_python_m_server_take_the_same_options():
    # Both are built from server/options.py; a flag added by hand to either shows here.
    from server.config import argument_parser

    server = {
        action.option_strings[-1].removeprefix("--"): action.help
        for action in argument_parser()._actions
        if action.dest != "help"
    }
    ours = config.help_for("serve", stop=tasks.serve.help["stop"])
    assert server.keys() == ours.keys()
    # root is server_root and bind follows server_url (below); --stop names the pid file.
    assert {flag for flag in ours if ours[flag] != server[flag]} == {"root", "bind", "stop"}


def test_invoke_serve_reads_the_servers_own_variables():
    environ = {
        "ARTIFACT_BIND": "127.0.0.1:9",
        "ARTIFACT_WORKERS": "3",
        "ARTIFACT_TRUSTED_PROXIES": "10.0.0.1",
        "ARTIFACT_ROOT": "/srv/elsewhere",
    }
    s = config.load({}, {}, environ)
    assert (s.bind, s.workers, s.trusted_proxies) == ("127.0.0.1:9", 3, "10.0.0.1")
    # Not ARTIFACT_ROOT: server_root is also where publish starts a server of its own.
    assert s.server_root == config.DEFAULTS["server_root"]
    with pytest.raises(UserError, match=r"^ARTIFACT_WORKERS 'many' is not a whole number;"):
        config.load({}, {}, {"ARTIFACT_WORKERS": "many"})


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (
            ("--workers", "abc"),
            "error: --workers 'abc' is not a whole number; fix the value and run again",
        ),
        (
            ("--header-timeout", "soon"),
            "error: --header-timeout 'soon' is not a number; fix the value and run again",
        ),
        (
            ("--header-timeout", "0"),
            "error: --header-timeout '0' is out of range: give more than 0 seconds",
        ),
        (
            ("--max-upload-size", "lots"),
            "error: --max-upload-size 'lots' is not a size: write bytes or a number with K, M, G"
            " or T, e.g. 2G",
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


# ---- ranges and formats: one validator for flags, environment, invoke.yaml and action inputs


@pytest.mark.parametrize(
    ("layers", "expected"),
    [
        (
            {"flags": {"url_expiry": "-5"}},
            "--url-expiry '-5' is out of range: give 1 to 604800 seconds",
        ),
        (
            {"environ": {"MOSN_PROXYV2_URL_EXPIRY": "-5"}},
            "MOSN_PROXYV2_URL_EXPIRY '-5' is out of range: give 1 to 604800 seconds",
        ),
        (
            {"file_layer": {"url_expiry": -5}},
            "invoke.yaml url_expiry -5 is out of range: give 1 to 604800 seconds",
        ),
        (
            {"environ": {"MOSN_PROXYV2_ISTIO_VERSION": "banana"}, "action": True},
            "input `istio-version`: 'banana' is not an Istio release such as 1.10.6",
        ),
        (
            {"environ": {"ARTIFACT_FRONT_CACHE": "-1"}},
            "ARTIFACT_FRONT_CACHE '-1' is out of range: give 0 or more seconds (0: off)",
        ),
        ({"file_layer": {"workers": 2.5}}, "invoke.yaml workers 2.5 is not a whole number"),
        ({"file_layer": {"samples": True}}, "invoke.yaml samples True is not a whole number"),
        ({"file_layer": {"mode": ["quick"]}}, "invoke.yaml mode ['quick'] is not a single value"),
        ({"flags": {"send_timeout": "inf"}}, "--send-timeout 'inf' is not a number"),
        (
            {"flags": {"platforms": "linux/amd64,linux/arm"}},
            "--platforms 'linux/amd64,linux/arm' has unknown linux/arm; choose from linux/amd64,"
            " darwin/amd64, linux/arm64, comma-separated",
        ),
        (
            {"file_layer": {"prefix": "a/../b"}},
            "invoke.yaml prefix 'a/../b' is not a folder name",
        ),
        # A secret is never echoed, even when it is the wrong type.
        ({"file_layer": {"token": ["s3cr3t"]}}, "invoke.yaml token (hidden) is not a single value"),
    ],
)
def test_a_bad_value_is_refused_in_every_source_named_as_its_user_knows_it(layers, expected):
    layers = {"file_layer": {}, "flags": {}, "environ": {}, **layers}
    _, found = config.read(task="publish", **layers)
    assert len(found) == 1 and found[0].startswith(expected), found


def test_good_values_pass_every_check():
    s = config.load(
        {"istio_version": "1.11.0-rc.1", "prefix": "/team/mosn/", "url_expiry": 60},
        {"platforms": "linux/arm64", "max_upload_size": "512M", "cluster_name": "a.b-c"},
        {"MOSN_PROXYV2_INGRESS_PORT": "65535", "MOSN_PROXYV2_WORKERS": "0"},
    )
    assert (s.istio_version, s.prefix, s.url_expiry) == ("1.11.0-rc.1", "/team/mosn/", 60)
    assert (s.platforms, s.ingress_port, s.workers) == (("linux/arm64",), 65535, 0)


def test_an_empty_setting_in_invoke_yaml_is_not_given():
    # `mosn_src:` with nothing after it is YAML's null, not the text "None".
    assert config.load({"mosn_src": None, "url_expiry": None}, {}, {}) == config.Settings()


def test_unknown_variables_are_named_with_the_closest_setting():
    environ = {
        "MOSN_PROXYV2_PLAFORMS": "linux/amd64",
        "MOSN_PROXYV2_ZZZ": "1",
        "MOSN_PROXYV2_REQUIRE_DOCKER": "1",  # the test suite's own switch
        "MOSN_PROXYV2_PLATFORMS": "linux/amd64",
    }
    assert config.unknown_variables(environ) == [
        "MOSN_PROXYV2_PLAFORMS is not a setting and was ignored;"
        " did you mean MOSN_PROXYV2_PLATFORMS?",
        "MOSN_PROXYV2_ZZZ is not a setting and was ignored; see docs/configuration.md for the"
        " names",
    ]


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (
            ("build", "--istio-version", "banana"),
            "error: --istio-version 'banana' is not an Istio release such as 1.10.6",
        ),
        (
            ("publish", "--url-expiry", "-5"),
            "error: --url-expiry '-5' is out of range: give 1 to 604800 seconds (7 days, the"
            " longest a presigned URL lives)",
        ),
        (
            ("publish", "--url-expiry", "abc"),
            "error: --url-expiry 'abc' is not a whole number; fix the value and run again",
        ),
    ],
)
def test_invoke_refuses_a_bad_value_before_any_work(tmp_path, args, error):
    dist = tmp_path / "dist"
    where = ("--out", dist) if args[0] == "build" else ("--dist", dist)
    result = run_invoke(*args, *where, timeout=60)
    assert (result.returncode, result.stderr.strip()) == (1, error)
    assert not dist.exists()


def test_a_misspelt_variable_is_warned_about_with_the_name_meant(tmp_path):
    environ = {**clean_environ(), "MOSN_PROXYV2_PLAFORMS": "linux/amd64"}
    result = run_invoke("publish", "--dist", tmp_path / "none", env=environ, timeout=60)
    assert result.stderr.splitlines()[0] == (
        "warning: MOSN_PROXYV2_PLAFORMS is not a setting and was ignored;"
        " did you mean MOSN_PROXYV2_PLATFORMS?"
    )


@pytest.mark.parametrize(
    ("text", "error"),
    [
        (
            "mosn_proxyv2:\n  dist: [a\n  to: s3\n",
            "invoke.yaml, line 3 column 5: expected ',' or ']', but got ':'; fix the YAML and"
            " run again",
        ),
        (
            "mosn_proxyv2:\n- dist\n",
            "invoke.yaml: expected `mosn_proxyv2:` followed by indented `setting: value` lines;"
            " fix the file (docs/configuration.md)",
        ),
        (
            "mosn_proxyv2:\n  plaforms: linux/amd64\n",
            "invoke.yaml [mosn_proxyv2]: unknown setting 'plaforms'; did you mean platforms?",
        ),
        (
            "mosn_proxyv2:\n  url_expiry: 1h\n",
            "invoke.yaml url_expiry '1h' is not a whole number; fix the value and run again",
        ),
    ],
)
def test_a_bad_invoke_yaml_is_one_line(tmp_path, text, error):
    project = project_with_invoke_yaml(tmp_path / "project", text)
    result = run_invoke("publish", "--dist", tmp_path / "none", cwd=project, timeout=60)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    line = result.stderr.strip()
    assert line.startswith("error: ") and line.endswith(error), line
