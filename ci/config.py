"""The one configuration object, read from defaults, invoke.yaml, the environment and flags.

Precedence, lowest first: the defaults below, the `mosn_proxyv2:` section of invoke.yaml,
environment variables, command-line flags. Every setting reads `MOSN_PROXYV2_<NAME>` from
the environment; a few also read the names people already use (their Option's `env`).

Each Settings field is declared once, with its Option: the tasks that take it as a flag, the
help text, the choices, the environment aliases, whether it is secret and the composite
action's input for it. tasks.py, the action (ci/github.py) and action.yml's test read it from
here; one validator (`_coerce`) checks every layer the same way.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ci import names
from ci.errors import UserError

ENV_PREFIX = "MOSN_PROXYV2_"
CONFIG_SECTION = "mosn_proxyv2"
_OPTION = "option"


class Secret(str):
    """A string that does not show itself in repr, logs or f-string debugging."""

    def __repr__(self) -> str:
        return "Secret('***')" if self else "Secret('')"


@dataclass(frozen=True)
class Option:
    """How one setting is given: help is a text, or one per task ({task: text}); `{default}`
    in it (and `{<setting>}`) is filled from the defaults, never typed by hand."""

    help: str | Mapping[str, str]
    tasks: tuple[str, ...] = ()  # tasks taking it as a flag (a help dict names them itself)
    choices: tuple[str, ...] = ()
    env: tuple[str, ...] = ()  # read after MOSN_PROXYV2_<NAME>
    secret: bool = False
    action: str | None = None  # the composite action's input for it
    flags: Mapping[str, str] = field(default_factory=dict)  # {task: flag} when not the name
    fold_case: bool = False  # choices compared lower-cased (the server's own rule)

    def tasks_taking(self) -> tuple[str, ...]:
        return tuple(self.help) if isinstance(self.help, Mapping) else self.tasks


def opt(default: Any, help: str | Mapping[str, str], **kwargs: Any) -> Any:
    option = Option(help, **kwargs)
    return field(default=default, repr=not option.secret, metadata={_OPTION: option})


ISTIO_VERSION_HELP = {
    "build": "Istio version stamped into MOSN and used downstream (default {default})",
    "image": "full mode: the Istio tag to build (default {default})",
    "e2e": "Istio release to install; picks kind and the node image (default {default})",
}


@dataclass(frozen=True)
class Settings:
    # shared
    dist: str = opt(
        "dist",
        {
            "build": "output folder for tarballs, SHA256SUMS and manifest.json (default {default}/)",
            "image": "dist folder from `invoke build` (default {default}/); image.json is written there",
            "publish": "dist folder to publish (default {default}/, as written by `invoke build`)",
        },
        flags={"build": "out"},
    )
    quiet: bool = opt(
        False, "print only warnings and errors", tasks=("build", "image", "e2e", "publish")
    )
    cache_dir: str = opt(
        "~/.cache/mosn-proxyv2",
        {
            "image": "where full mode keeps its Istio clone (default {default})",
            "e2e": "where kind, kubectl and the Istio release are cached",
        },
    )
    # build
    mosn_src: str = opt(
        "",
        {"build": "MOSN checkout to build (default: invoke.yaml / MOSN_SRC)"},
        env=("MOSN_SRC",),
        action="mosn-src",
    )
    mosn_ref: str = opt(
        "",
        {
            "build": "tag, branch or full commit to shallow-clone from --mosn-repo and build"
            " (with neither this nor --mosn-src, MOSN {default_mosn_ref} is cloned)"
        },
        action="mosn-ref",
    )
    mosn_repo: str = opt(
        "https://github.com/mosn/mosn.git",
        {"build": "repository to clone --mosn-ref from (default: MOSN's GitHub repository)"},
    )
    mosn_module: str = opt(
        "",
        {
            "build": "[mosn.io/mosn@]VERSION (tag, branch or commit) to download through the Go"
            " module proxy (GOPROXY, GONOSUMDB, GOPRIVATE, GOFLAGS apply) instead of cloning"
        },
        action="mosn-module",
    )
    default_mosn_ref: str = opt("v1.0.0", "the MOSN ref built when neither source is given")
    version: str = opt(
        "",
        {"build": "version to stamp instead of VERSION(<git short hash>)"},
        action="version",
    )
    istio_version: str = opt("1.10.6", ISTIO_VERSION_HELP, action="istio-version")
    platforms: tuple[str, ...] = opt(
        ("linux/amd64", "darwin/amd64"),
        {"build": f"comma-separated from {', '.join(names.PLATFORMS)} (default {{default}})"},
        action="platforms",
    )
    in_docker: bool = opt(
        False,
        {"build": "compile inside a golang container (Docker SDK) instead of with the host's go"},
        action="in-docker",
    )
    go_image: str = opt(
        "",
        {
            "build": "golang image for --in-docker (default: the BUILD_IMAGE of the checkout's"
            " Makefile, golang:1.14.13 for MOSN v1.0.0)"
        },
        action="go-image",
    )
    go_cache_volume: str = opt("mosn-proxyv2-gomod", "Docker volume of --in-docker's module cache")
    cgo: bool = opt(False, {"build": "enable CGO for Linux builds (default off: a static binary)"})
    skip_toolchain_check: bool = opt(
        False,
        {"build": "compile even with a Go release known to break a pinned dependency"},
        action="skip-toolchain-check",
    )
    skip_smoke: bool = opt(
        False,
        {
            "build": "do not start the built binary on an Envoy-format listener (cross-only builds)",
            "image": "quick mode: do not start MOSN inside the built image before tagging it",
        },
        action="skip-smoke",
    )
    # publish
    to: str = opt(
        "server",
        {
            "publish": "where to publish: server (the bundled artifact server, default) or s3",
        },
        choices=("server", "s3"),
        action="store",
    )
    server_url: str = opt(
        "http://127.0.0.1:8080",
        {
            "publish": "artifact server base URL (default {default}; started if local and down)",
        },
        action="server-url",
    )
    token: str = opt(
        "",
        {
            "publish": "artifact server write token (better: the ARTIFACT_TOKEN environment variable)"
        },
        env=("ARTIFACT_TOKEN",),
        secret=True,
        action="server-token",
    )
    bucket: str = opt("", {"publish": "S3 bucket (--to s3)"}, action="s3-bucket")
    prefix: str = opt(
        "mosn",
        {
            "publish": "folder in the store: files go to <prefix>/<version>/<file> (default {default})",
        },
        action="s3-prefix",
    )
    endpoint_url: str = opt(
        "",
        {"publish": "S3-compatible endpoint, e.g. http://127.0.0.1:9000 (default: AWS)"},
        env=("AWS_ENDPOINT_URL_S3",),
        action="s3-endpoint-url",
    )
    region: str = opt(
        "",
        {"publish": "S3 region (default: AWS_REGION / the AWS config)"},
        env=("AWS_REGION", "AWS_DEFAULT_REGION"),
        action="aws-region",
    )
    url_expiry: int = opt(
        7 * 24 * 3600,
        {"publish": "lifetime of presigned S3 URLs in seconds (default and maximum {default})"},
    )
    public: bool = opt(
        False,
        {
            "publish": "write plain S3 object URLs instead of presigned ones (the bucket must allow reads)"
        },
    )
    wasm: str = opt(
        "placeholder",
        {
            "publish": "placeholder (publish empty WASM files for Istio's init.sh, default) or patch",
            "image": "full mode: placeholder (ISTIO_ENVOY_BASE_URL from DIST/istio.env) or patch",
        },
        choices=names.WASM_MODES,
        action="wasm",
    )
    force: bool = opt(
        False, {"publish": "replace files already published with different bytes at this version"}
    )
    server_root: str = opt(
        ".artifacts",
        {
            "publish": "storage folder of a server publish starts itself (default {default})",
            "serve": "directory to serve and store into (default: server_root, {default})",
        },
        flags={"serve": "root"},
    )
    # image
    mode: str = opt(
        "quick",
        {"image": "quick (swap the dist's mosn into --base) or full (Istio's make docker.proxyv2)"},
        choices=("quick", "full"),
        action="mode",
    )
    base: str = opt(
        "",
        {"image": "quick mode: the image to build FROM, e.g. mosnio/proxyv2:v1.0.0-1.10.6"},
        action="base-image",
    )
    image: str = opt(
        "",
        {
            "image": "REGISTRY/REPO[:TAG] to tag (a name without a / is refused); default tag <mosn>-<istio>",
            "e2e": "the proxyv2 image to prove, REGISTRY/REPO:TAG (loaded into kind from Docker)",
        },
        action="image",
    )
    tags: tuple[str, ...] = opt(
        (), {"image": "comma-separated extra tags, e.g. latest,dev"}, action="tags"
    )
    push: bool = opt(
        False, {"image": "push every tag and record the digest in DIST/image.json"}, action="push"
    )
    registry_username: str = opt(
        "",
        {"image": "log in as this user with REGISTRY_PASSWORD (default: Docker config)"},
        action="registry-username",
    )
    registry_password: str = opt(
        "",
        "registry password for --registry-username",
        env=("REGISTRY_PASSWORD",),
        secret=True,
        action="registry-password",
    )
    istio_src: str = opt(
        "",
        {"image": "full mode: an Istio checkout to build in place instead of cloning"},
        action="istio-src",
    )
    istio_repo: str = opt(
        "https://github.com/istio/istio.git",
        {"image": "full mode: repository to shallow-clone --istio-version from"},
    )
    host_build: bool = opt(
        False,
        {"image": "full mode: Istio's make with the host's Go and docker (BUILD_WITH_CONTAINER=0)"},
    )
    istio_go: str = opt(
        "",
        {
            "image": "full mode, --host-build: the go binary to build Istio with (default: go on PATH)"
        },
    )
    build_image: str = opt(
        "",
        {"image": "full mode: Istio's build-tools image (its IMG) instead of Istio's default"},
    )
    istio_base: str = opt(
        "",
        {"image": "full mode: an image to build on, tagged as the base Istio's Dockerfile names"},
    )
    # e2e
    cluster_name: str = opt(
        "mosn-proxyv2",
        {"e2e": "kind cluster name; must not exist yet (default {default})"},
    )
    keep_cluster: bool = opt(
        False,
        {"e2e": "leave the kind cluster running afterwards (Istio and Bookinfo still removed)"},
    )
    artifacts: str = opt(
        "e2e-artifacts",
        {"e2e": "folder for the report, manifests and diagnostics (default {default}/)"},
    )
    samples: int = opt(
        0, {"e2e": "requests for the 50/50 check (default 0: the N chosen in ci/e2e/stats.py)"}
    )
    ingress_port: int = opt(
        30080,
        {"e2e": "host port on 127.0.0.1 mapped to the ingress gateway (default {default})"},
    )
    wait_timeout: int = opt(
        300,
        {"e2e": "seconds to wait for rollouts and for routing to settle (default {default})"},
    )
    pull_image: bool = opt(
        False, {"e2e": "let the cluster pull --image from its registry instead of kind load"}
    )
    # serve: the artifact server's own options (server/config.py checks them again for
    # `python -m server`); the ARTIFACT_* names are the ones the server reads itself.
    bind: str = opt(
        "",
        {"serve": "HOST:PORT to listen on (default: host and port of server_url, {server_url})"},
    )
    workers: int = opt(0, {"serve": "gunicorn worker processes (default: 2 per CPU core)"})
    connections: int = opt(
        1000, {"serve": "connections held at once per worker (default {default})"}
    )
    header_timeout: float = opt(
        10.0,
        {"serve": "seconds a request head or an idle keep-alive may take (default {default})"},
    )
    send_timeout: float = opt(
        60.0,
        {
            "serve": "seconds a send or body read may stall before the client is dropped (default {default})"
        },
    )
    trusted_proxies: str = opt(
        "",
        {
            "serve": "comma-separated proxy addresses whose X-Forwarded-* headers are believed (default none)"
        },
    )
    token_file: str = opt(
        "",
        {"serve": "file of write tokens, one a line (also env ARTIFACT_TOKENS, comma-separated)"},
    )
    # No ARTIFACT_READ_TOKEN alias: the server reads it itself, after --read-token-file.
    read_token: str = opt(
        "",
        {
            "serve": "require this bearer token for reads (prefer env ARTIFACT_READ_TOKEN: argv shows in ps)"
        },
        secret=True,
    )
    read_token_file: str = opt("", {"serve": "file whose first line is the read token"})
    max_upload_size: str = opt(
        "4G",
        {
            "serve": "largest accepted upload, e.g. 2G (default {default}; env ARTIFACT_MAX_UPLOAD_SIZE)"
        },
        env=("ARTIFACT_MAX_UPLOAD_SIZE",),
    )
    overwrite: str = opt(
        "deny",
        {"serve": "deny (default) or allow replacing an artifact with different bytes"},
        choices=("deny", "allow"),
        env=("ARTIFACT_OVERWRITE",),
        fold_case=True,
    )
    read_only: bool = opt(
        False, {"serve": "refuse every PUT and DELETE"}, env=("ARTIFACT_READ_ONLY",)
    )
    access_log: str = opt("-", {"serve": "access log file, '-' for stdout (default), '' for none"})
    front: str = opt(
        "none",
        {
            "serve": "nginx: nginx in front of the app (production mode: the speed targets;"
            " env ARTIFACT_FRONT); default {default}"
        },
        choices=("none", "nginx"),
        env=("ARTIFACT_FRONT",),
        fold_case=True,
    )
    front_cache: int = opt(
        1,
        {
            "serve": "seconds nginx may reuse a small download before asking the app again (default {default}; 0: off)"
        },
        env=("ARTIFACT_FRONT_CACHE",),
    )

    def path(self, name: str) -> Path:
        """A path-valued setting with ~ expanded."""
        return Path(os.path.expanduser(str(getattr(self, name))))

    def replace(self, **changes: Any) -> Settings:
        values, found = _coerce_all(changes, _OVERRIDE)
        _raise_first(found)
        return dataclasses.replace(self, **values)


OPTIONS: dict[str, Option] = {f.name: f.metadata[_OPTION] for f in fields(Settings)}
DEFAULTS: dict[str, Any] = {f.name: f.default for f in fields(Settings)}


def env_name(setting: str) -> str:
    return ENV_PREFIX + setting.upper()


def env_names(setting: str) -> tuple[str, ...]:
    return (env_name(setting), *OPTIONS[setting].env)


def flag(setting: str, task: str) -> str:
    return OPTIONS[setting].flags.get(task, setting.replace("_", "-"))


def show(value: Any) -> str:
    """A value as a user types it: lists comma-separated, 10.0 as 10."""
    if isinstance(value, tuple):
        return ",".join(value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def help_for(task: str, **extra: str) -> dict[str, str]:
    """invoke's help dict for a task: its settings' help with defaults filled in, then `extra`
    (the task's flags that are not settings)."""
    shown = {name: show(value) for name, value in DEFAULTS.items()}
    found = {}
    for name, option in OPTIONS.items():
        if task in option.tasks_taking():
            text = option.help[task] if isinstance(option.help, Mapping) else option.help
            found[flag(name, task)] = text.format_map({**shown, "default": shown[name]})
    return {**found, **extra}


def task_flags(task: str, given: Mapping[str, Any]) -> dict[str, Any]:
    """The settings a task's keyword arguments give, by the task's flag names. A switch left
    False and a value left None were not given: invoke.yaml and the environment decide."""
    out = {}
    for name, option in OPTIONS.items():
        if task in option.tasks_taking():
            value = given[flag(name, task).replace("-", "_")]
            out[name] = None if value is False else value
    return out


# ---- the one validator --------------------------------------------------------------------


@dataclass(frozen=True)
class _Source:
    label: str  # for type errors: "command line", "environment", ...
    names: Callable[[str], str]  # a setting as this source's user names it
    booleans: tuple[str, ...] = ()  # a source with its own spelling of booleans


_FLAGS = _Source("command line", lambda name: "--" + name.replace("_", "-"))
_FILE = _Source(f"invoke.yaml [{CONFIG_SECTION}]", lambda name: f"invoke.yaml {name}")
_OVERRIDE = _Source("override", lambda name: name)
_TRUTHY = {"1", "true", "yes", "on"}
_FALSY = {"0", "false", "no", "off", ""}


def _coerce(name: str, raw: Any, source: _Source) -> Any:
    """`raw` as the setting's type, checked against its choices; UserError says what to fix."""
    option, default = OPTIONS[name], DEFAULTS[name]
    if (
        isinstance(default, bool)
        and source.booleans
        and str(raw).strip().lower() not in source.booleans
    ):
        raise UserError(not_one_of(source.names(name), raw, source.booleans))
    try:
        if isinstance(default, bool):
            text = str(raw).strip().lower()
            if isinstance(raw, bool) or text in _TRUTHY | _FALSY:
                return raw if isinstance(raw, bool) else text in _TRUTHY
            raise ValueError(raw)
        if isinstance(default, (int, float)):
            return type(default)(raw)
        if isinstance(default, tuple):
            if isinstance(raw, str):
                return tuple(part.strip() for part in raw.split(",") if part.strip())
            return tuple(str(part) for part in raw)
    except (TypeError, ValueError):
        kind_name = type(default).__name__
        raise UserError(
            f"{source.label}: {name} must be a {kind_name}, got {raw!r}; fix the value and run again"
        ) from None
    value = str(raw).lower() if option.fold_case else str(raw)
    if option.choices and value not in option.choices:
        raise UserError(not_one_of(source.names(name), value, option.choices))
    return Secret(value) if option.secret else value


def not_one_of(where: str, value: Any, choices: Iterable[str]) -> str:
    """The one wording of a value outside its choices, wherever it was given."""
    return f"{where} {value!r} is not one of {', '.join(choices)}; pick one"


def _coerce_all(values: Mapping[str, Any], source: _Source) -> tuple[dict[str, Any], list[str]]:
    """The values that are valid, and a sentence for each that is not."""
    out, found = {}, []
    for key, raw in values.items():
        name = key.replace("-", "_")
        if name not in OPTIONS:
            found.append(f"{source.label}: unknown setting {key!r}; see docs/reference/settings.md")
            continue
        try:
            out[name] = _coerce(name, raw, source)
        except UserError as exc:
            found.append(str(exc))
    return out, found


def _raise_first(found: list[str]) -> None:
    if found:
        raise UserError(found[0])


def _environment(var: str, action_input: str | None) -> _Source:
    """A variable as its user names it: the action's input that sets it, else itself."""
    if action_input:
        return _Source("environment", lambda _: f"input `{action_input}`:", ("true", "false"))
    return _Source("environment", lambda _: var)


def from_environment(environ: Mapping[str, str]) -> dict[str, tuple[str, str]]:
    """{setting: (variable, value)} for each setting the environment gives."""
    found: dict[str, tuple[str, str]] = {}
    for name in OPTIONS:
        for var in env_names(name):
            if environ.get(var, "") != "":
                found[name] = (var, environ[var])
                break
    return found


def read(
    file_layer: Mapping[str, Any] | None = None,
    flags: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    action: bool = False,
) -> tuple[Settings, list[str]]:
    """The merged settings (each bad value left at the layer below) and what was wrong.

    With `action`, the environment is the composite action's: a MOSN_PROXYV2_<NAME> that an
    input sets is named as that input, and its booleans are spelled true or false."""
    environ = os.environ if environ is None else environ
    merged, found = _coerce_all(dict(file_layer or {}), _FILE)
    for name, (var, raw) in from_environment(environ).items():
        given = OPTIONS[name].action if action and var == env_name(name) else None
        values, problems = _coerce_all({name: raw}, _environment(var, given))
        merged.update(values)
        found += problems
    values, problems = _coerce_all(
        {k: v for k, v in (flags or {}).items() if v is not None}, _FLAGS
    )
    merged.update(values)
    return Settings(**merged), found + problems


def load(
    file_layer: Mapping[str, Any] | None = None,
    flags: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Merge the layers, or refuse the first bad value. Flags whose value is None were not
    given and do not override."""
    settings, found = read(file_layer, flags, environ)
    _raise_first(found)
    return settings
