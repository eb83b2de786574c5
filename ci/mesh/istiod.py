"""istiod without Kubernetes: pilot-discovery on a config folder, and the rules written into it.

`pilot-discovery discovery --registries= --configDir=DIR` makes no Kubernetes client: services
come from ServiceEntries and the rules from Bookinfo's own files, both read from DIR, which
istiod watches. Writing a file there is what `kubectl apply -f` is to a cluster (each object
replaces the one of its kind and name), and istiod pushes the change to the proxies. Its CA is
off (ENABLE_CA_SERVER=false): there is no Kubernetes to authenticate workloads against.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import yaml

from ci import proc
from ci.errors import UserError
from ci.fsutil import atomic_write

NAMESPACE = "default"
DOMAIN = "svc.cluster.local"
GATEWAY_PORT = 80
# istiod's own ports, moved on a shared loopback (ci/mesh/network.py).
GRPC_PORT, HTTP_PORT, HTTPS_PORT, MONITORING_PORT, CTRLZ_PORT = 15010, 8080, 15017, 15014, 9876
# A cluster's sidecars send their outbound traffic there through iptables; nothing does here.
VIRTUAL_OUTBOUND_PORT = 15001
READY_TIMEOUT = 60
STOP_TIMEOUT = 10


def fqdn(service: str, namespace: str = NAMESPACE) -> str:
    return f"{service}.{namespace}.{DOMAIN}"


@dataclass(frozen=True)
class Endpoint:
    address: str
    port: int
    labels: dict[str, str]


def service_entry(service: str, port: int, endpoints: list[Endpoint]) -> dict:
    """A Bookinfo service as istiod sees a Kubernetes Service: mesh-internal, HTTP, the pods'
    addresses and the labels (app, version) that destination-rule-all.yaml's subsets select."""
    return {
        "apiVersion": "networking.istio.io/v1alpha3",
        "kind": "ServiceEntry",
        "metadata": {"name": service, "namespace": NAMESPACE},
        "spec": {
            "hosts": [fqdn(service)],
            "location": "MESH_INTERNAL",
            "resolution": "STATIC",
            "ports": [{"number": port, "name": "http", "protocol": "HTTP"}],
            "endpoints": [
                {"address": e.address, "ports": {"http": e.port}, "labels": e.labels}
                for e in endpoints
            ],
        },
    }


class ConfigFolder:
    """The folder istiod reads: one file per object, written as `kubectl apply` changes one."""

    def __init__(self, folder: Path, gateway_port: int = GATEWAY_PORT) -> None:
        self.folder = folder
        self.gateway_port = gateway_port
        self.folder.mkdir(parents=True, exist_ok=True)
        # (kind, name) -> the object as applied, for what a rule should look like in a proxy.
        self.objects: dict[tuple[str, str], dict] = {}

    def put(self, obj: dict) -> str:
        kind, name = obj["kind"], obj["metadata"]["name"]
        self.objects[(kind, name)] = obj
        atomic_write(self.folder / f"{kind}.{name}.yaml", yaml.safe_dump(obj, sort_keys=False))
        return f"{kind.lower()}/{name}"

    def apply(self, source: Path) -> list[str]:
        """Apply Bookinfo's rule file `source`, changed only where this machine needs it."""
        try:
            documents = [d for d in yaml.safe_load_all(source.read_text()) if d]
        except (OSError, yaml.YAMLError) as exc:
            raise UserError(f"cannot read the rule file {source}: {exc}") from None
        return [self.put(self.localize(d)) for d in documents]

    def localize(self, obj: dict) -> dict:
        """`kubectl apply` would put an object without a namespace into `default`; istiod's
        file store leaves it empty, and the short host `reviews` then resolves nowhere. And on a
        shared loopback the Gateway's port 80 moves to the check's free port."""
        obj = json.loads(json.dumps(obj))
        obj.setdefault("metadata", {}).setdefault("namespace", NAMESPACE)
        if obj.get("kind") == "Gateway" and self.gateway_port != GATEWAY_PORT:
            for server in obj.get("spec", {}).get("servers", []):
                if server.get("port", {}).get("number") == GATEWAY_PORT:
                    server["port"]["number"] = self.gateway_port
        return obj

    def routes(self, service: str) -> list[list[tuple[str, int]]]:
        """What the applied VirtualService for `service` routes to, route by route: each route's
        (subset, weight) destinations; one route to no subset when none applies."""
        for (kind, _), obj in self.objects.items():
            spec = obj.get("spec", {})
            if kind == "VirtualService" and service in spec.get("hosts", []):
                return [_destinations(route.get("route", [])) for route in spec.get("http", [])]
        return [[("", 100)]]

    def subsets(self, service: str) -> list[str]:
        """The subsets the applied DestinationRule for `service` defines."""
        for (kind, _), obj in self.objects.items():
            spec = obj.get("spec", {})
            if kind == "DestinationRule" and spec.get("host") == service:
                return [subset["name"] for subset in spec.get("subsets", [])]
        return []


def _destinations(route: list[dict]) -> list[tuple[str, int]]:
    if len(route) == 1:
        return [(route[0].get("destination", {}).get("subset", ""), 100)]
    return sorted(
        (d.get("destination", {}).get("subset", ""), int(d.get("weight", 0))) for d in route
    )


@dataclass(frozen=True)
class IstiodPorts:
    grpc: int
    http: int
    https: int
    monitoring: int
    ctrlz: int


class Istiod:
    def __init__(self, binary: Path, work: Path, config: ConfigFolder, ports: IstiodPorts) -> None:
        self.binary = binary
        self.work = work
        self.config = config
        self.ports = ports
        self.process = None
        self.log_path = work / "istiod.log"
        self.mesh_config = work / "mesh.yaml"
        self.starts = 0

    @property
    def grpc_address(self) -> str:
        return f"127.0.0.1:{self.ports.grpc}"

    def write_mesh_config(self, virtual_outbound_port: int) -> None:
        mesh = {
            "defaultConfig": {"discoveryAddress": self.grpc_address},
            "proxyListenPort": virtual_outbound_port,
        }
        atomic_write(self.mesh_config, yaml.safe_dump(mesh, sort_keys=False))

    def argv(self) -> list[str]:
        local = "127.0.0.1"
        return [
            str(self.binary),
            "discovery",
            "--registries=",
            f"--configDir={self.config.folder}",
            f"--meshConfig={self.mesh_config}",
            f"--networksConfig={self.work / 'mesh-networks.yaml'}",
            f"--grpcAddr={local}:{self.ports.grpc}",
            "--secureGRPCAddr=",
            f"--httpAddr={local}:{self.ports.http}",
            f"--httpsAddr={local}:{self.ports.https}",
            f"--monitoringAddr={local}:{self.ports.monitoring}",
            f"--ctrlz_address={local}",
            f"--ctrlz_port={self.ports.ctrlz}",
            "--domain=cluster.local",
        ]

    def start(self) -> float:
        """Start pilot-discovery and wait until it is ready; the seconds that took."""
        started = time.monotonic()
        self.starts += 1
        log_path = self.log_path if self.starts == 1 else self.work / f"istiod-{self.starts}.log"
        self.process = proc.start(
            self.argv(),
            log_path=log_path,
            cwd=self.work,
            env={"ENABLE_CA_SERVER": "false"},
        )
        deadline = started + READY_TIMEOUT
        while True:
            if self.process.poll() is not None:
                raise UserError(
                    f"pilot-discovery exited with code {self.process.returncode} before it was "
                    f"ready; see {log_path}",
                    detail=_tail(log_path),
                )
            if self.get("/ready")[0] == 200:
                return time.monotonic() - started
            if time.monotonic() > deadline:
                raise UserError(
                    f"pilot-discovery was not ready after {READY_TIMEOUT}s; see {log_path}",
                    detail=_tail(log_path),
                )
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None:
            proc.stop(self.process, STOP_TIMEOUT)

    def get(self, path: str, timeout: float = 2.0) -> tuple[int, str]:
        url = f"http://127.0.0.1:{self.ports.http}{path}"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - loopback
                return response.status, response.read().decode(errors="replace")
        except urllib.error.HTTPError as exc:
            return exc.code, ""
        except OSError as exc:
            return 0, str(exc)

    def connections(self) -> list[str]:
        """The IDs of istiod's live xDS streams (`<proxy ID>-<n>`)."""
        status, body = self.get("/debug/adsz")
        if status != 200:
            return []
        try:
            clients = json.loads(body).get("clients") or []
        except ValueError:
            return []
        return [c.get("connectionId", "") for c in clients if isinstance(c, dict)]

    def config_dump(self, proxy_id: str) -> str:
        """istiod's view of what it sends `proxy_id` (Envoy's config dump format)."""
        return self.get(f"/debug/config_dump?proxyID={proxy_id}", timeout=10)[1]


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
