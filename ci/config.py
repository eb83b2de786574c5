"""The one configuration object, read from defaults, invoke.yaml, the environment and flags.

Precedence, lowest first: the defaults below, the `mosn_proxyv2:` section of invoke.yaml,
environment variables, command-line flags. Every setting reads `MOSN_PROXYV2_<NAME>` from
the environment; a few also read the names people already use (their Option's `env`).

Each Settings field is declared once, with its Option: the tasks that take it as a flag, the
help text, the choices, the environment aliases, whether it is secret and the composite
action's input for it. tasks.py, the action (ci/github.py) and action.yml's test read it from
here; one validator (`_coerce`) checks every layer the same way. `invoke serve`'s settings are
the artifact server's own options, declared in server/options.py (which `python -m server`
reads too) and turned into Settings fields here.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ci import log, names
from ci.errors import UserError
from server import options as server_options
from server.options import at_least

ENV_PREFIX = "MOSN_PROXYV2_"
MAX_URL_EXPIRY = 7 * 24 * 3600  # S3 signs URLs for 7 days at most
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
    # What is wrong with a value of the right type, as the end of "<where> <value> ...", or
    # "" when nothing is: the ranges and formats below (between, matches, ...).
    check: Callable[[Any], str] | None = None

    def tasks_taking(self) -> tuple[str, ...]:
        return tuple(self.help) if isinstance(self.help, Mapping) else self.tasks


def opt(default: Any, help: str | Mapping[str, str], **kwargs: Any) -> Any:
    option = Option(help, **kwargs)
    return field(default=default, repr=not option.secret, metadata={_OPTION: option})


# ---- checks of a value's range or format (Option.check) ------------------------------------


def between(low: float, high: float, unit: str = "") -> Callable[[Any], str]:
    def check(value: float) -> str:
        return "" if low <= value <= high else f"is out of range: give {low} to {high}{unit}"

    return check


def matches(pattern: str, what: str) -> Callable[[Any], str]:
    compiled = re.compile(pattern)

    def check(value: str) -> str:
        return "" if compiled.fullmatch(value) else f"is not {what}"

    return check


def _each_of(choices: Iterable[str]) -> Callable[[Any], str]:
    allowed = ", ".join(choices)

    def check(value: tuple[str, ...]) -> str:
        wrong = [part for part in value if part not in choices]
        if wrong:
            return f"has unknown {', '.join(wrong)}; choose from {allowed}, comma-separated"
        return "" if value else f"names none; choose from {allowed}, comma-separated"

    return check


_STORE_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")


def prefix_problem(prefix: str) -> str:
    """What is wrong with a folder in a store (outer slashes aside): /-separated names of
    letters, digits, . _ - not starting with a dot."""
    inner = prefix.strip("/")
    if not inner or all(_STORE_NAME.fullmatch(part) for part in inner.split("/")):
        return ""
    return (
        "is not a folder name: each /-separated part must be letters, digits, . _ -"
        " and not start with a dot; pick another prefix"
    )


ISTIO_VERSION_HELP = {
    "build": "Istio version stamped into MOSN and used downstream (default {default})",
    "image": "full mode: the Istio tag to build (default {default})",
    "e2e": "Istio release to install; picks kind and the node image (default {default})",
    "mesh": "Istio release whose pilot-discovery and pilot-agent route MOSN (default {default})",
}


@dataclass(frozen=True)
class _PipelineSettings:
    """The pipeline's own settings; Settings, below, adds the artifact server's."""

    # shared
    dist: str = opt(
        "dist",
        {
            "build": "output folder for tarballs, SHA256SUMS and manifest.json (default {default}/)",
            "image": "dist folder from `invoke build` (default {default}/); image.json is written there",
            "publish": "dist folder to publish (default {default}/, as written by `invoke build`)",
            "mesh": "dist folder from `invoke build`: MOSN comes from its mosn.tar.gz (default {default}/)",
        },
        flags={"build": "out"},
    )
    quiet: bool = opt(
        False, "print only warnings and errors", tasks=("build", "image", "e2e", "publish", "mesh")
    )
    cache_dir: str = opt(
        "~/.cache/mosn-proxyv2",
        {
            "image": "where full mode keeps its Istio clone (default {default})",
            "e2e": "where kind, kubectl and the Istio release are cached",
            "mesh": "where Istio binaries built or taken from images, and the Istio release"
            " whose samples hold the rule files, are kept (default {default})",
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
    istio_version: str = opt(
        "1.10.6",
        ISTIO_VERSION_HELP,
        action="istio-version",
        # Istio's release tags: 1.10.6, 1.11.0-rc.1 (no leading v).
        check=matches(r"\d+\.\d+\.\d+(-[0-9A-Za-z.]+)?", "an Istio release such as 1.10.6"),
    )
    platforms: tuple[str, ...] = opt(
        ("linux/amd64", "darwin/amd64"),
        {"build": f"comma-separated from {', '.join(names.PLATFORMS)} (default {{default}})"},
        action="platforms",
        check=_each_of(names.PLATFORMS),
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
    fix_deps: bool = opt(
        False,
        {
            "build": "move dependencies a Go release breaks to versions measured to work"
            " (ci/builder/toolchain.py FIXES), in the build's own copy of the checkout"
        },
        action="fix-deps",
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
        check=prefix_problem,
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
        MAX_URL_EXPIRY,
        {"publish": "lifetime of presigned S3 URLs in seconds (default and maximum {default})"},
        check=between(1, MAX_URL_EXPIRY, " seconds (7 days, the longest a presigned URL lives)"),
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
            "serve": f"{server_options.OPTIONS['root'].help} (default: server_root, {{default}})",
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
            "mesh": "take MOSN from this built proxyv2 image (Docker) instead of the dist",
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
        {
            "image": "full mode: an Istio checkout to build in place instead of cloning",
            "mesh": "an Istio checkout or source tree to build pilot-discovery and pilot-agent"
            " from (read-only is fine) when no folder or image provides them",
        },
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
    # mesh: Istio binaries (ci/mesh/binaries.py; docs/istio-binaries.md)
    istio_bin_dir: str = opt(
        "",
        {
            "mesh": "a folder holding pilot-discovery (and pilot-agent with envoy_bootstrap.json)"
            " of --istio-version: used instead of images and builds"
        },
    )
    istio_pilot_image: str = opt(
        "",
        {
            "mesh": "the image to take pilot-discovery from (default: istio/pilot:<istio"
            " version>, when Docker has it)"
        },
    )
    istio_proxy_image: str = opt(
        "",
        {
            "mesh": "the proxyv2 image to take pilot-agent and its bootstrap template from"
            " (default: the image in DIST/image.json, else istio/proxyv2:<istio version>,"
            " when Docker has it)"
        },
    )
    # e2e
    cluster_name: str = opt(
        "mosn-proxyv2",
        {"e2e": "kind cluster name; must not exist yet (default {default})"},
        check=matches(
            r"[a-z0-9]([a-z0-9.-]{0,48}[a-z0-9])?",
            "a kind cluster name; use lowercase letters, digits, '-' and '.' (e.g. mosn-proxyv2)",
        ),
    )
    keep_cluster: bool = opt(
        False,
        {"e2e": "leave the kind cluster running afterwards (Istio and Bookinfo still removed)"},
    )
    artifacts: str = opt(
        "e2e-artifacts",
        {
            "e2e": "folder for the report, manifests and diagnostics (default {default}/)",
            "mesh": "folder for the report, and the logs and config dumps of a failed run"
            " (default {default}/)",
        },
    )
    samples: int = opt(
        0,
        "requests for the 50/50 check (default 0: the N chosen in ci/e2e/stats.py)",
        tasks=("e2e", "mesh"),
        check=at_least(0, " (0: let ci/e2e/stats.py choose)"),
    )
    ingress_port: int = opt(
        30080,
        {"e2e": "host port on 127.0.0.1 mapped to the ingress gateway (default {default})"},
        check=between(1, 65535, " (a TCP port)"),
    )
    wait_timeout: int = opt(
        300,
        {
            "e2e": "seconds to wait for rollouts and for routing to settle (default {default})",
            "mesh": "seconds to wait for a proxy to listen or a rule to reach it (default {default})",
        },
        check=at_least(1, " seconds"),
    )
    pull_image: bool = opt(
        False, {"e2e": "let the cluster pull --image from its registry instead of kind load"}
    )
    # mesh
    istio_samples: str = opt(
        "",
        {
            "mesh": "folder holding Istio's samples/ (bookinfo/networking/*.yaml are read in place;"
            " default: those of the Istio release in cache_dir, fetched as the kind job does)"
        },
    )
    direct: bool = opt(
        False,
        {"mesh": "start MOSN on a bootstrap of our own even when pilot-agent is available"},
    )
    network: str = opt(
        "auto",
        {
            "mesh": "auto (a private network namespace when it may make one, as root; else"
            " shared), private (Istio's"
            " own ports in a network namespace of the run's own; needs root) or shared (free"
            " loopback addresses and ports)"
        },
        choices=("auto", "private", "shared"),
    )
    restart_istiod: bool = opt(
        False,
        {
            "mesh": "after the scenarios, restart istiod and measure how long MOSN takes to"
            " subscribe again and to take a rule"
        },
    )
    xds_refresh_delay: float = opt(
        0.0,
        {
            "mesh": "seconds between MOSN's CDS requests (refresh_delay in its bootstrap's"
            " ads_config), which is also how long it waits to subscribe again after istiod"
            " restarts (default 0: MOSN's own, 10 s)"
        },
    )
    mesh_check: bool = opt(
        False,
        "run `invoke mesh` on the built MOSN after the build, before publish and any push",
        action="mesh-check",
    )

    def path(self, name: str) -> Path:
        """A path-valued setting with ~ expanded."""
        return Path(os.path.expanduser(str(getattr(self, name))))

    def replace(self, **changes: Any) -> Settings:
        values, found = _coerce_all(changes, _OVERRIDE)
        _raise_first(found)
        return dataclasses.replace(self, **values)


# How `invoke serve` differs from `python -m server`: its root is server_root (declared above,
# shared with publish, which starts a server there too), and it listens where server_url
# points unless told otherwise: {option: (default, the default as the help says it)}.
_SERVE_DEFAULTS = {"bind": ("", "host and port of server_url, {server_url}")}


def _serve_setting(option: server_options.Option) -> tuple[str, type, Any]:
    """A Settings field for one of the artifact server's options (server/options.py)."""
    default, shown = _SERVE_DEFAULTS.get(option.name, (option.default, None))
    return (
        option.name,
        type(default),
        opt(
            default,
            {"serve": server_options.help_text(option, shown)},
            choices=option.choices,
            env=(option.env,) if option.env else (),
            secret=option.secret,
            fold_case=bool(option.choices),  # the server's own rule
            check=option.check,
        ),
    )


Settings = dataclasses.make_dataclass(
    "Settings",
    [_serve_setting(o) for o in server_options.OPTIONS.values() if o.name != "root"],
    bases=(_PipelineSettings,),
    frozen=True,
    namespace={
        "__module__": __name__,
        "__doc__": "Every setting: the pipeline's, then `invoke serve`'s.",
    },
)

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
    label: str  # where a setting it does not know was given: "invoke.yaml [mosn_proxyv2]", ...
    names: Callable[[str], str]  # a setting as this source's user names it
    booleans: tuple[str, ...] = ()  # a source with its own spelling of booleans


def _flags(task: str | None) -> _Source:
    """The command line, its settings named as `task`'s flags (--out, not --dist)."""
    return _Source("command line", lambda name: "--" + flag(name, task or ""))


_FILE = _Source(f"invoke.yaml [{CONFIG_SECTION}]", lambda name: f"invoke.yaml {name}")
_OVERRIDE = _Source("override", lambda name: name)
_TRUTHY = {"1", "true", "yes", "on"}
_FALSY = {"0", "false", "no", "off", ""}
# What a value of each type is, for "<where> <value> is not ...".
_KINDS = {
    bool: "true or false",
    int: "a whole number",
    float: "a number",
    tuple: "a comma-separated list",
    str: "a single value",
}
# Variables with the settings' prefix that are not settings: the test suite's own switches
# (tests/helpers/tools.py), which CI exports for every command.
NOT_SETTINGS_ENV = ("MOSN_PROXYV2_REQUIRE_DOCKER", "MOSN_PROXYV2_REQUIRE_CLUSTER")
_warned: set[str] = set()


def _typed(raw: Any, default: Any) -> Any:
    """`raw` as the type of `default`; ValueError or TypeError when it is not one."""
    if isinstance(default, bool):
        text = str(raw).strip().lower()
        if isinstance(raw, bool) or text in _TRUTHY | _FALSY:
            return raw if isinstance(raw, bool) else text in _TRUTHY
        raise ValueError(raw)
    if isinstance(raw, bool):
        raise TypeError("a switch is not a number or a text")  # yes/true in invoke.yaml
    if isinstance(default, int):
        if isinstance(raw, float) and not raw.is_integer():
            raise ValueError(raw)  # int() would cut 2.5 to 2
        return int(raw)
    if isinstance(default, float):
        value = float(raw)
        if not math.isfinite(value):
            raise ValueError(raw)
        return value
    if isinstance(default, tuple):
        if isinstance(raw, str):
            return tuple(part.strip() for part in raw.split(",") if part.strip())
        if not isinstance(raw, (list, tuple)):
            raise TypeError(raw)
        return tuple(str(part).strip() for part in raw)
    if not isinstance(raw, (str, int, float)):
        raise TypeError(raw)  # a list or a mapping in invoke.yaml
    return str(raw)


def _coerce(name: str, raw: Any, source: _Source) -> Any:
    """`raw` as the setting's type, within its choices, range and format; else a UserError
    that names the setting as `source` does and says what to give."""
    option, default = OPTIONS[name], DEFAULTS[name]
    where = source.names(name)
    shown = "(hidden)" if option.secret else repr(raw)
    if (
        isinstance(default, bool)
        and source.booleans
        and str(raw).strip().lower() not in source.booleans
    ):
        raise UserError(not_one_of(where, raw, source.booleans))
    try:
        value = _typed(raw, default)
    except (TypeError, ValueError):
        raise UserError(
            f"{where} {shown} is not {_KINDS[type(default)]}; fix the value and run again"
        ) from None
    if isinstance(value, str):
        value = value.lower() if option.fold_case else value
        if option.choices and value not in option.choices:
            raise UserError(not_one_of(where, value, option.choices))
    problem = option.check(value) if option.check else ""
    if problem:
        raise UserError(f"{where} {shown} {problem}")
    return Secret(value) if option.secret else value


def not_one_of(where: str, value: Any, choices: Iterable[str]) -> str:
    """The one wording of a value outside its choices, wherever it was given."""
    return f"{where} {value!r} is not one of {', '.join(choices)}; pick one"


def _did_you_mean(word: str, spell: Callable[[str], str] = str) -> str:
    """`did you mean X?` with X the setting nearest `word`, spelled by `spell`, if one is near."""
    match = difflib.get_close_matches(word.lower(), sorted(OPTIONS), n=1)
    return (
        f"did you mean {spell(match[0])}?" if match else "see docs/configuration.md for the names"
    )


def _coerce_all(values: Mapping[str, Any], source: _Source) -> tuple[dict[str, Any], list[str]]:
    """The values that are valid, and a sentence for each that is not."""
    out, found = {}, []
    for key, raw in values.items():
        name = str(key).replace("-", "_")
        if name not in OPTIONS:
            found.append(f"{source.label}: unknown setting {key!r}; {_did_you_mean(name)}")
            continue
        if raw is None:
            continue  # `name:` with nothing after it in invoke.yaml: not given
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


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """A warning for each MOSN_PROXYV2_* variable that is no setting (a typo is otherwise
    ignored without a word), naming the closest one that is."""
    known = {env_name(name) for name in OPTIONS}
    return [
        f"{var} is not a setting and was ignored;"
        f" {_did_you_mean(var.removeprefix(ENV_PREFIX), env_name)}"
        for var in sorted(environ)
        if var.startswith(ENV_PREFIX) and var not in known and var not in NOT_SETTINGS_ENV
    ]


def read(
    file_layer: Mapping[str, Any] | None = None,
    flags: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    task: str | None = None,
    action: bool = False,
) -> tuple[Settings, list[str]]:
    """The merged settings (each bad value left at the layer below) and what was wrong.

    Flags are named as `task`'s. With `action`, the environment is the composite action's: a
    MOSN_PROXYV2_<NAME> that an input sets is named as that input, and its booleans are
    spelled true or false."""
    environ = os.environ if environ is None else environ
    merged, found = _coerce_all(dict(file_layer or {}), _FILE)
    for name, (var, raw) in from_environment(environ).items():
        given = OPTIONS[name].action if action and var == env_name(name) else None
        values, problems = _coerce_all({name: raw}, _environment(var, given))
        merged.update(values)
        found += problems
    values, problems = _coerce_all(
        {k: v for k, v in (flags or {}).items() if v is not None}, _flags(task)
    )
    merged.update(values)
    return Settings(**merged), found + problems


def load(
    file_layer: Mapping[str, Any] | None = None,
    flags: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    task: str | None = None,
) -> Settings:
    """Merge the layers, or refuse the first bad value. Flags whose value is None were not
    given and do not override. Unknown MOSN_PROXYV2_* variables are warned about once."""
    environ = os.environ if environ is None else environ
    for warning in unknown_variables(environ):
        if warning not in _warned:
            _warned.add(warning)
            log.warn(warning)
    settings, found = read(file_layer, flags, environ, task=task)
    _raise_first(found)
    return settings


def check_file(path: Path) -> None:
    """Refuse, in one line, an invoke.yaml that is not YAML or whose settings section is not
    a mapping: invoke itself would stop with a traceback when it loads the file."""
    import yaml

    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        return
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror}; fix its permissions") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f", line {mark.line + 1} column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "not valid YAML"
        raise UserError(f"{path}{at}: {problem}; fix the YAML and run again") from None
    if data is None:
        return
    section = data.get(CONFIG_SECTION) if isinstance(data, dict) else None
    if not isinstance(data, dict) or not isinstance(section, (dict, type(None))):
        raise UserError(
            f"{path}: expected `{CONFIG_SECTION}:` followed by indented `setting: value` lines;"
            " fix the file (docs/configuration.md)"
        )
