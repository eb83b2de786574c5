"""Make every sidecar in `istioctl kube-inject` output run MOSN, by editing the parsed YAML.

kube-inject writes the proxy's binary path into a sidecar's PROXY_CONFIG only when it differs
from Istio's default /usr/local/bin/envoy, so after installing with binaryPath=mosn most
sidecars already name mosn. The guide's `sed` is a safety net; this is the same net with the
YAML parsed: rewrite only what still names envoy (or leaves the default in force), then check
that every istio-proxy container names mosn and nothing in it names envoy.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import yaml

from ci import names
from ci.errors import UserError

SIDECAR_CONTAINER = "istio-proxy"
PROXY_CONFIG_ENV = "PROXY_CONFIG"
BINARY_PATH_KEY = "binaryPath"
BINARY_PATH_FLAG = "--binaryPath"


@dataclass
class Rewrite:
    text: str
    sidecars: int = 0
    rewritten: int = 0
    # Where each rewrite happened, e.g. "Deployment/reviews-v1: PROXY_CONFIG binaryPath".
    changes: list[str] = field(default_factory=list)

    @property
    def already_mosn(self) -> int:
        return self.sidecars - self.rewritten


def _pod_specs(node: Any) -> Iterator[dict]:
    """Every pod spec (a mapping with a `containers` list) anywhere in a document."""
    if isinstance(node, dict):
        if isinstance(node.get("containers"), list):
            yield node
        for value in node.values():
            yield from _pod_specs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _pod_specs(item)


def _sidecars(document: Any) -> Iterator[dict]:
    for spec in _pod_specs(document):
        for key in ("initContainers", "containers"):
            for container in spec.get(key) or []:
                if isinstance(container, dict) and container.get("name") == SIDECAR_CONTAINER:
                    yield container


def _parse_proxy_config(value: str, where: str) -> tuple[dict, bool]:
    """The proxy config and whether it was written as JSON (kept in the same form)."""
    try:
        parsed = yaml.safe_load(value) if value.strip() else {}
    except yaml.YAMLError as exc:
        raise UserError(f"{where}: {PROXY_CONFIG_ENV} is not JSON or YAML ({exc})") from None
    if parsed is None:
        parsed = {}
    if not isinstance(parsed, dict):
        raise UserError(f"{where}: {PROXY_CONFIG_ENV} is not a mapping")
    return parsed, value.lstrip().startswith("{")


def _dump_proxy_config(config: dict, as_json: bool) -> str:
    if as_json:
        return json.dumps(config, separators=(",", ":"))
    return yaml.safe_dump(config, sort_keys=False)


def _rewrite_container(container: dict, where: str, changes: list[str]) -> bool:
    changed = False
    env = container.setdefault("env", [])
    entry = next(
        (e for e in env if isinstance(e, dict) and e.get("name") == PROXY_CONFIG_ENV), None
    )
    if entry is None:
        # No proxy config at all means the default binary (envoy); PROXY_CONFIG is laid over
        # the mesh config by pilot-agent, so a one-key value changes only the binary.
        env.append(
            {
                "name": PROXY_CONFIG_ENV,
                "value": json.dumps({BINARY_PATH_KEY: names.BINARY_PATH_IN_IMAGE}),
            }
        )
        changes.append(f"{where}: {PROXY_CONFIG_ENV} added")
        changed = True
    elif "value" in entry:
        config, as_json = _parse_proxy_config(str(entry["value"]), where)
        if config.get(BINARY_PATH_KEY, names.ENVOY_BINARY_PATH) == names.ENVOY_BINARY_PATH:
            config[BINARY_PATH_KEY] = names.BINARY_PATH_IN_IMAGE
            entry["value"] = _dump_proxy_config(config, as_json)
            changes.append(f"{where}: {PROXY_CONFIG_ENV} {BINARY_PATH_KEY}")
            changed = True
    args = container.get("args")
    if isinstance(args, list):
        for i, arg in enumerate(args):
            text = str(arg)
            if text == f"{BINARY_PATH_FLAG}={names.ENVOY_BINARY_PATH}":
                args[i] = f"{BINARY_PATH_FLAG}={names.BINARY_PATH_IN_IMAGE}"
            elif text == names.ENVOY_BINARY_PATH and i > 0 and str(args[i - 1]) == BINARY_PATH_FLAG:
                args[i] = names.BINARY_PATH_IN_IMAGE
            else:
                continue
            changes.append(f"{where}: args {BINARY_PATH_FLAG}")
            changed = True
    return changed


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for value in node.values():
            yield from _strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from _strings(item)
    elif isinstance(node, str):
        yield node


def _names_mosn(container: dict) -> bool:
    for entry in container.get("env") or []:
        if isinstance(entry, dict) and entry.get("name") == PROXY_CONFIG_ENV:
            config, _ = _parse_proxy_config(str(entry.get("value", "")), "check")
            return config.get(BINARY_PATH_KEY) == names.BINARY_PATH_IN_IMAGE
    return False


def _label(document: Any) -> str:
    if isinstance(document, dict):
        name = (document.get("metadata") or {}).get("name", "?")
        return f"{document.get('kind', '?')}/{name}"
    return "?"


def rewrite(text: str) -> Rewrite:
    """Rewrite a multi-document manifest; raise UserError if any sidecar still names envoy."""
    try:
        documents = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        raise UserError(f"the injected manifest is not valid YAML: {exc}") from None
    result = Rewrite(text="")
    for document in documents:
        where = _label(document)
        for container in _sidecars(document):
            result.sidecars += 1
            if _rewrite_container(container, where, result.changes):
                result.rewritten += 1
            leftovers = [s for s in _strings(container) if names.ENVOY_BINARY_PATH in s]
            if leftovers or not _names_mosn(container):
                raise UserError(
                    f"{where}: the {SIDECAR_CONTAINER} container still names "
                    f"{names.ENVOY_BINARY_PATH} after the rewrite; inspect the injected "
                    "manifest in the artifacts folder"
                )
    if result.sidecars == 0:
        raise UserError(
            "the injected manifest has no istio-proxy containers: istioctl kube-inject did "
            "not inject; check that Istio is installed in the cluster"
        )
    result.text = yaml.safe_dump_all(documents, sort_keys=False, default_flow_style=False)
    return result
