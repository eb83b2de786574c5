"""MOSN as a proxy of the mesh: productpage's sidecar and the ingress gateway.

Through pilot-agent when one is available, as in a proxyv2 pod: pilot-agent renders Istio's
envoy_bootstrap.json (its PROXY_CONFIG names MOSN as the binary), runs its xDS proxy towards
istiod and starts `mosn -c envoy-rev0.json` with the Envoy flags it gives Envoy. Otherwise MOSN
is started directly on a bootstrap of our own: the node and metadata pilot-agent would send,
ADS to istiod. The sidecar's interception mode is NONE (no iptables here), so istiod binds its
outbound listeners to 127.0.0.1 and productpage calls reviews there.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ci import proc
from ci.errors import UserError
from ci.fsutil import atomic_write
from ci.mesh.binaries import IstioBinaries
from ci.mesh.istiod import DOMAIN
from ci.mesh.network import Network

SIDECAR, ROUTER = "sidecar", "router"
# Istio's fixed ports in its bootstrap template: pilot-agent's status server (the template's
# `agent` cluster), the readiness listener and the Prometheus listener. Two proxies on one
# loopback cannot both have them, so each proxy's copy of the template gets its own.
TEMPLATE_PORTS = {"status": 15020, "readiness": 15021, "prometheus": 15090}
ADMIN_PORT = 15000
STOP_TIMEOUT = 10
CONFIG_DUMP = "/api/v1/config_dump"
# Go's own crash (`panic: ...`), or MOSN's recover wrapper logging one it caught
# (`... goroutine panic: ...`), then the goroutine's frames: `function(args)` lines, each
# followed by a tab-indented `file:line` that names the module and its version.
_PANIC = re.compile(r"\bpanic: (.*)")
_FRAME = re.compile(r"^[\w.-]+(/[\w.@-]+)*\.[\w.()*\[\]-]+\(.*\)$")
_ARGS = re.compile(r"\((?:0x|\{|\.\.\.|\)).*$")
_MODULE = re.compile(r"^\t([\w.-]+(?:/[\w.-]+)*@v[\w.+-]+)")
# Frames of the panic machinery and of MOSN's recover wrapper, not of the crash.
_NOT_THE_CRASH = ("runtime/", "runtime.", "panic(", "mosn.io/pkg/utils.")
# Where MOSN's xDS code starts converting what it was sent.
_ENTRY = re.compile(r"\.handle[A-Z]\w+$|loadStaticResources$")


@dataclass(frozen=True)
class Workload:
    """A pod's worth of identity: what istiod knows the proxy by."""

    name: str
    namespace: str
    kind: str
    address: str
    labels: dict[str, str]
    service_account: str

    @property
    def pod(self) -> str:
        return f"{self.name}-0"

    @property
    def proxy_id(self) -> str:
        return f"{self.pod}.{self.namespace}"

    @property
    def node_id(self) -> str:
        return f"{self.kind}~{self.address}~{self.proxy_id}~{self.namespace}.{DOMAIN}"

    def metadata(self, istio_version: str) -> dict[str, object]:
        """Node metadata as pilot-agent sends it (the ISTIO_META_* of an injected pod)."""
        meta: dict[str, object] = {
            "NAMESPACE": self.namespace,
            "LABELS": self.labels,
            "ISTIO_VERSION": istio_version,
            "CLUSTER_ID": "Kubernetes",
            "SERVICE_ACCOUNT": self.service_account,
            "NAME": self.pod,
            "WORKLOAD_NAME": self.name,
            "INSTANCE_IPS": self.address,
        }
        if self.kind == SIDECAR:
            meta["INTERCEPTION_MODE"] = "NONE"
        return meta


class Proxy:
    def __init__(
        self,
        workload: Workload,
        mosn: Path,
        istio: IstioBinaries,
        discovery_address: str,
        istio_version: str,
        work: Path,
        network: Network,
        direct: bool,
        refresh_delay: float = 0.0,
    ) -> None:
        self.workload = workload
        self.mosn = mosn
        self.istio = istio
        self.discovery_address = discovery_address
        self.istio_version = istio_version
        self.work = work / workload.name
        self.work.mkdir(parents=True, exist_ok=True)
        self.through_agent = istio.pilot_agent is not None and not direct
        # MOSN reads `refresh_delay` in ads_config (Envoy ignores it for gRPC), but only as Go's
        # JSON of the protobuf struct: Envoy's "1s" makes MOSN drop ADS altogether.
        seconds, nanos = divmod(round(refresh_delay * 1e9), 10**9)
        self.refresh_delay = {"seconds": seconds, "nanos": nanos} if refresh_delay else None
        self.admin_port = network.port(ADMIN_PORT)
        self.ports = {name: network.port(port) for name, port in TEMPLATE_PORTS.items()}
        self.config_dir = self.work / "proxy"
        self.log_path = self.work / ("pilot-agent.log" if self.through_agent else "mosn.log")
        self.process: subprocess.Popen | None = None

    def describe(self) -> str:
        how = "pilot-agent" if self.through_agent else "MOSN directly on our bootstrap"
        return f"{self.workload.kind} {self.workload.proxy_id} through {how}"

    # -- starting -----------------------------------------------------------------------------

    def start(self) -> None:
        self.config_dir.mkdir(parents=True, exist_ok=True)
        if self.through_agent:
            argv, env = self._agent_command()
        else:
            bootstrap = self.config_dir / "envoy-rev0.json"
            atomic_write(bootstrap, json.dumps(self.bootstrap(), indent=2))
            argv, env = [str(self.mosn), "start", "-c", str(bootstrap)], None
        self.process = proc.start(argv, log_path=self.log_path, cwd=self.work, env=env)

    def _agent_command(self) -> tuple[list[str], dict[str, str]]:
        assert self.istio.pilot_agent is not None and self.istio.bootstrap_template is not None
        template = self.work / "envoy_bootstrap.json"
        text = self.istio.bootstrap_template.read_text()
        for name, port in TEMPLATE_PORTS.items():
            text = text.replace(f'"port_value": {port}', f'"port_value": {self.ports[name]}')
        if self.refresh_delay:
            text = text.replace(
                '"ads_config": {',
                f'"ads_config": {{\n      "refresh_delay": {json.dumps(self.refresh_delay)},',
                1,
            )
        atomic_write(template, text)
        proxy_config = {
            "binaryPath": str(self.mosn),
            "configPath": str(self.config_dir),
            "discoveryAddress": self.discovery_address,
            "proxyAdminPort": self.admin_port,
            "statusPort": self.ports["status"],
            # istiod's plain-text port: no certificates here (its CA is off).
            "controlPlaneAuthPolicy": "NONE",
            "proxyBootstrapTemplatePath": str(template),
            "drainDuration": "1s",
            "parentShutdownDuration": "2s",
            "terminationDrainDuration": "0s",
        }
        w = self.workload
        env = {
            "PROXY_CONFIG": json.dumps(proxy_config),
            "POD_NAME": w.pod,
            "POD_NAMESPACE": w.namespace,
            "INSTANCE_IP": w.address,
            "SERVICE_ACCOUNT": w.service_account,
            "ISTIO_META_CLUSTER_ID": "Kubernetes",
            "ISTIO_META_ISTIO_VERSION": self.istio_version,
            "ISTIO_META_WORKLOAD_NAME": w.name,
            "ISTIO_METAJSON_LABELS": json.dumps(w.labels),
            # No workload certificates to fetch: without this pilot-agent asks istiod's CA,
            # which is off, for them.
            "FILE_MOUNTED_CERTS": "true",
        }
        if w.kind == SIDECAR:
            # pilot-agent 1.10.6 refuses interceptionMode NONE inside PROXY_CONFIG.
            env["ISTIO_META_INTERCEPTION_MODE"] = "NONE"
        argv = [
            str(self.istio.pilot_agent),
            "proxy",
            w.kind,
            "--meshConfig",
            str(self.work / "mesh.yaml"),  # absent: PROXY_CONFIG is the whole proxy config
            "--serviceCluster",
            f"{w.name}.{w.namespace}",
            "--proxyLogLevel",
            "info",
        ]
        return argv, env

    def bootstrap(self) -> dict:
        """An Envoy v3 bootstrap as pilot-agent renders Istio's template, cut to what MOSN
        reads: node, admin, ADS to istiod's gRPC port."""
        host, _, port = self.discovery_address.rpartition(":")
        ads = {"ads": {}, "resource_api_version": "V3"}
        xds = {
            "name": "xds-grpc",
            "type": "STATIC",
            "connect_timeout": "1s",
            "lb_policy": "ROUND_ROBIN",
            "http2_protocol_options": {},
            "load_assignment": {
                "cluster_name": "xds-grpc",
                "endpoints": [
                    {
                        "lb_endpoints": [
                            {
                                "endpoint": {
                                    "address": {
                                        "socket_address": {"address": host, "port_value": int(port)}
                                    }
                                }
                            }
                        ]
                    }
                ],
            },
        }
        ads_config = {
            "api_type": "GRPC",
            "transport_api_version": "V3",
            "grpc_services": [{"envoy_grpc": {"cluster_name": "xds-grpc"}}],
        }
        if self.refresh_delay:
            ads_config["refresh_delay"] = self.refresh_delay
        w = self.workload
        return {
            "node": {
                "id": w.node_id,
                "cluster": f"{w.name}.{w.namespace}",
                "metadata": w.metadata(self.istio_version),
            },
            "admin": {
                "access_log_path": "/dev/null",
                "address": {
                    "socket_address": {"address": "127.0.0.1", "port_value": self.admin_port}
                },
            },
            "dynamic_resources": {
                "lds_config": ads,
                "cds_config": ads,
                "ads_config": ads_config,
            },
            "static_resources": {"clusters": [xds]},
        }

    # -- watching -------------------------------------------------------------------------------

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def config_dump(self) -> dict | None:
        """MOSN's admin API config dump, or None when it does not answer."""
        url = f"http://127.0.0.1:{self.admin_port}{CONFIG_DUMP}"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - loopback
                return json.loads(response.read())
        except (OSError, ValueError, urllib.error.URLError):
            return None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def mosn_pid(self) -> int | None:
        """MOSN's process ID (pilot-agent's child, or the process itself)."""
        if self.process is None:
            return None
        if not self.through_agent:
            return self.process.pid
        # Each thread of pilot-agent lists the children it started: any of them may be MOSN's.
        for children in Path(f"/proc/{self.process.pid}/task").glob("*/children"):
            try:
                pids = children.read_text().split()
            except OSError:
                continue
            for pid in pids:
                try:
                    if Path(f"/proc/{pid}/exe").resolve() == self.mosn.resolve():
                        return int(pid)
                except OSError:
                    continue
        return None

    def wait_for_listener(self, name: str, port: int, host: str, timeout: float) -> float:
        """Wait until MOSN has bound listener `name` (from LDS) and it accepts; the seconds it
        took. A MOSN that took the clusters but never binds it fails in one line that quotes
        the panic from its log, as soon as that is clear."""
        started = time.monotonic()
        deadline = started + timeout
        panic_seen: float | None = None
        while True:
            dump = self.config_dump()
            if dump and name in (dump.get("listener") or {}) and _accepts(host, port):
                return time.monotonic() - started
            if not self.alive():
                raise UserError(
                    f"MOSN ({self.describe()}) exited before it bound listener {name}"
                    f"{self._panic_said()}"
                )
            now = time.monotonic()
            if panic_seen is None and _panic_line(self.log()):
                panic_seen = now
            # MOSN retries on every push; once it panicked and has clusters but no listener a
            # few seconds later, waiting longer shows nothing new.
            if (panic_seen is not None and now - panic_seen > 3) or now > deadline:
                raise UserError(self.why_no_listener(name, dump))
            time.sleep(0.05)

    def why_no_listener(self, name: str, dump: dict | None) -> str:
        clusters = len((dump or {}).get("cluster") or {})
        listeners = sorted((dump or {}).get("listener") or {})
        if dump is None:
            took = "its admin API never answered"
        elif clusters:
            took = f"it took {clusters} clusters from CDS but bound no listener {name} from LDS"
        else:
            took = "it got no clusters from istiod"
        bound = f" (listeners: {', '.join(listeners)})" if listeners else ""
        return f"MOSN ({self.describe()}): {took}{bound}{self._panic_said()}"

    def _panic_said(self) -> str:
        line = _panic_line(self.log())
        return f"; MOSN's log: {line}" if line else ""

    def stop(self) -> None:
        if self.process is not None:
            proc.stop(self.process, STOP_TIMEOUT)


def _panic_line(log: str) -> str:
    """MOSN's first panic in one line: its message, the function it happened in (with that
    module's version), and MOSN's own frames that led there, from the innermost out to the
    handler that ran them (handleLds, loadStaticResources, ...)."""
    lines = log.splitlines()
    for i, line in enumerate(lines):
        found = _PANIC.search(line)
        if not found:
            continue
        frames: list[tuple[str, str]] = []  # (function, module@version)
        for at in range(i + 1, min(i + 120, len(lines))):
            frame = lines[at]
            if not _FRAME.match(frame) or frame.startswith(_NOT_THE_CRASH):
                continue
            module = _MODULE.search(lines[at + 1]) if at + 1 < len(lines) else None
            frames.append((_ARGS.sub("", frame), module.group(1) if module else ""))
        text = f"panic: {found.group(1).strip()}"
        if not frames:
            return text
        where, module = frames[0]
        text += f", in {_short(where)}" + (f" ({module})" if module else "")
        ours = [_short(f) for f, _ in frames[1:] if f.startswith("mosn.io/mosn/")]
        entry = next((n for n, f in enumerate(ours) if _ENTRY.search(f)), len(ours) - 1)
        chain = ours[: entry + 1]
        if len(chain) > 4:
            chain = [*chain[:2], "...", *chain[-2:]]
        return text + (f" from {' < '.join(chain)}" if chain else "")
    return ""


def _short(function: str) -> str:
    """`mosn.io/mosn/istio/istio1106/xds.(*AdsStreamClient).handleLds` -> `xds.(*AdsStreamClient).handleLds`."""
    return function.rsplit("/", 1)[-1]


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False
