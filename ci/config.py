"""The one configuration object, read from defaults, invoke.yaml, the environment and flags.

Precedence, lowest first: the defaults below, the `mosn_proxyv2:` section of invoke.yaml,
environment variables, command-line flags. Every setting reads `MOSN_PROXYV2_<NAME>` from
the environment; a few also read the names people already use (see ALIASES).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ci.errors import UserError

ENV_PREFIX = "MOSN_PROXYV2_"
CONFIG_SECTION = "mosn_proxyv2"

# Settings that also answer to a conventional environment variable (checked after the prefixed one).
ALIASES: dict[str, tuple[str, ...]] = {
    "mosn_src": ("MOSN_SRC",),
    "token": ("ARTIFACT_TOKEN",),
    "registry_password": ("REGISTRY_PASSWORD",),
    "region": ("AWS_REGION", "AWS_DEFAULT_REGION"),
    "endpoint_url": ("AWS_ENDPOINT_URL_S3",),
}

# Settings whose values are secrets: never printed, never in repr.
SECRETS = frozenset({"token", "registry_password"})


class Secret(str):
    """A string that does not show itself in repr, logs or f-string debugging."""

    def __repr__(self) -> str:
        return "Secret('***')" if self else "Secret('')"


@dataclass(frozen=True)
class Settings:
    # shared
    dist: str = "dist"
    quiet: bool = False
    cache_dir: str = "~/.cache/mosn-proxyv2"
    # build
    mosn_src: str = ""
    mosn_ref: str = ""
    mosn_repo: str = "https://github.com/mosn/mosn.git"
    # [mosn.io/mosn@]VERSION from the Go module proxy (GOPROXY) instead of git.
    mosn_module: str = ""
    default_mosn_ref: str = "v1.0.0"
    version: str = ""
    istio_version: str = "1.10.6"
    platforms: tuple[str, ...] = ("linux/amd64", "darwin/amd64")
    in_docker: bool = False
    # Empty: the BUILD_IMAGE the checkout's Makefile names (MOSN's own `make build`).
    go_image: str = ""
    go_cache_volume: str = "mosn-proxyv2-gomod"
    cgo: bool = False
    skip_toolchain_check: bool = False
    skip_smoke: bool = False
    # publish
    to: str = "server"
    server_url: str = "http://127.0.0.1:8080"
    token: str = field(default="", repr=False)
    bucket: str = ""
    prefix: str = "mosn"
    endpoint_url: str = ""
    region: str = ""
    url_expiry: int = 7 * 24 * 3600
    public: bool = False
    wasm: str = "placeholder"
    force: bool = False
    server_root: str = ".artifacts"
    # image
    mode: str = "quick"
    base: str = ""
    image: str = ""
    tags: tuple[str, ...] = ()
    push: bool = False
    registry_username: str = ""
    registry_password: str = field(default="", repr=False)
    istio_src: str = ""
    istio_repo: str = "https://github.com/istio/istio.git"
    host_build: bool = False
    istio_go: str = ""
    build_image: str = ""
    istio_base: str = ""
    # e2e
    cluster_name: str = "mosn-proxyv2"
    keep_cluster: bool = False
    artifacts: str = "e2e-artifacts"
    samples: int = 0
    ingress_port: int = 30080
    wait_timeout: int = 300
    pull_image: bool = False

    def path(self, name: str) -> Path:
        """A path-valued setting with ~ expanded."""
        return Path(os.path.expanduser(str(getattr(self, name))))

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **_coerce_all(changes, "override"))


def check_choice(flag: str, value: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise UserError(f"--{flag} {value!r} is not one of {', '.join(choices)}; pick one")
    return value


def _coerce(name: str, raw: Any, source: str) -> Any:
    kind = {f.name: f for f in fields(Settings)}[name]
    default = kind.default
    try:
        if isinstance(default, bool):
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in {"1", "true", "yes", "on"}:
                return True
            if text in {"0", "false", "no", "off", ""}:
                return False
            raise ValueError(raw)
        if isinstance(default, int):
            return int(raw)
        if isinstance(default, tuple):
            if isinstance(raw, str):
                return tuple(part.strip() for part in raw.split(",") if part.strip())
            return tuple(str(part) for part in raw)
    except (TypeError, ValueError):
        kind_name = type(default).__name__
        raise UserError(
            f"{source}: {name} must be a {kind_name}, got {raw!r}; fix the value and run again"
        ) from None
    value = str(raw)
    return Secret(value) if name in SECRETS else value


def _coerce_all(values: Mapping[str, Any], source: str) -> dict[str, Any]:
    known = {f.name for f in fields(Settings)}
    out = {}
    for key, raw in values.items():
        name = key.replace("-", "_")
        if name not in known:
            raise UserError(
                f"{source}: unknown setting {key!r}; see the Configuration section of README.md"
            )
        out[name] = _coerce(name, raw, source)
    return out


def from_environment(environ: Mapping[str, str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for f in fields(Settings):
        for var in (ENV_PREFIX + f.name.upper(), *ALIASES.get(f.name, ())):
            if environ.get(var, "") != "":
                found[f.name] = environ[var]
                break
    return found


def load(
    file_layer: Mapping[str, Any] | None = None,
    flags: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Merge the layers. Flags whose value is None were not given and do not override."""
    environ = os.environ if environ is None else environ
    merged: dict[str, Any] = {}
    merged.update(_coerce_all(dict(file_layer or {}), f"invoke.yaml [{CONFIG_SECTION}]"))
    merged.update(_coerce_all(from_environment(environ), "environment"))
    given = {k: v for k, v in (flags or {}).items() if v is not None}
    merged.update(_coerce_all(given, "command line"))
    return Settings(**merged)
