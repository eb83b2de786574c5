"""Start a built MOSN the way pilot-agent does and prove it proxies HTTP.

pilot-agent hands MOSN an Envoy bootstrap (`mosn start -c envoy-rev0.json`): `admin`,
`node`, `dynamic_resources` (ADS over the xds-grpc cluster) and `static_resources`, whose
listeners MOSN converts with its xDS code (istio/istio1106/xds/conv at v1.0.0). That
conversion is where a Go release that breaks reflect2 crashes, and `mosn --version` never
reaches it. So the smoke config is such a bootstrap: one static listener with an HTTP
connection manager whose route goes to MOSN's own admin port, the shape of the bootstrap's
Prometheus listener. The upstream being MOSN itself means the same check runs on the host
and inside an image with no network, with nothing else to start.

`python -m ci.builder.smoke probe LISTENER ADMIN` is the client, run as is on the host or, for
an image, inside the container's network namespace.
"""

from __future__ import annotations

import io
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from ci import log, proc
from ci.errors import UserError

LISTENER = "mosn-proxyv2-smoke"
STARTUP_TIMEOUT = 30
STOP_TIMEOUT = 10
LOG_LINES = 15
# What MOSN's admin API answers on /api/v1/states: "pid=<pid>&state=<n>".
STATES_PATH = "/api/v1/states"
CONFIG_DUMP_PATH = "/api/v1/config_dump"
PROBE_OK = "ok"


def bootstrap(listener_port: int, admin_port: int, xds_socket: str) -> dict:
    """An Envoy v3 bootstrap as pilot-agent writes it, cut down to what the smoke needs."""

    def cluster(name: str, address: dict) -> dict:
        endpoints = [{"lb_endpoints": [{"endpoint": {"address": address}}]}]
        return {
            "name": name,
            "type": "STATIC",
            "connect_timeout": "1s",
            "lb_policy": "ROUND_ROBIN",
            "load_assignment": {"cluster_name": name, "endpoints": endpoints},
        }

    def socket_address(port: int) -> dict:
        return {"socket_address": {"address": "127.0.0.1", "port_value": port}}

    manager = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network"
        ".http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": LISTENER,
        "codec_type": "AUTO",
        "route_config": {
            "name": LISTENER,
            "virtual_hosts": [
                {
                    "name": "admin",
                    "domains": ["*"],
                    "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "admin"}}],
                }
            ],
        },
        "http_filters": [
            {
                "name": "envoy.filters.http.router",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
                },
            }
        ],
    }
    ads = {"ads": {}, "resource_api_version": "V3"}
    return {
        "node": {"id": "sidecar~127.0.0.1~smoke.default~default.svc.cluster.local"},
        "admin": {"address": socket_address(admin_port)},
        "dynamic_resources": {
            "lds_config": ads,
            "cds_config": ads,
            "ads_config": {
                "api_type": "GRPC",
                "transport_api_version": "V3",
                "grpc_services": [{"envoy_grpc": {"cluster_name": "xds-grpc"}}],
            },
        },
        "static_resources": {
            # No istiod here: MOSN retries this socket in the background, as it would
            # before pilot-agent's XDS proxy is up.
            "clusters": [
                cluster("xds-grpc", {"pipe": {"path": xds_socket}}),
                cluster("admin", socket_address(admin_port)),
            ],
            "listeners": [
                {
                    "name": LISTENER,
                    "address": socket_address(listener_port),
                    "filter_chains": [
                        {
                            "filters": [
                                {
                                    "name": "envoy.filters.network.http_connection_manager",
                                    "typed_config": manager,
                                }
                            ]
                        }
                    ],
                }
            ],
        },
    }


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as resp:
            return resp.status, resp.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, ""
    except OSError as exc:
        return 0, str(exc)


def probe(listener_port: int, admin_port: int, deadline: float) -> str:
    """ "" when MOSN proxies and answers on its admin API, else why not (after `deadline`)."""
    why = "nothing answered"
    while True:
        status, body = _get(listener_port, STATES_PATH)
        if status == 200 and "state=" in body:
            status, dump = _get(admin_port, CONFIG_DUMP_PATH)
            if status == 200 and LISTENER in dump:
                return ""
            why = f"admin API {CONFIG_DUMP_PATH} answered {status} without the listener"
        elif status:
            why = f"the listener answered HTTP {status} with {body[:80]!r}"
        else:
            why = f"the listener on 127.0.0.1:{listener_port} did not answer ({body})"
        if time.monotonic() > deadline:
            return why
        time.sleep(0.3)


def host_platform() -> str:
    machine = {"x86_64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(platform.machine())
    system = {"linux": "linux", "darwin": "darwin"}.get(sys.platform)
    return f"{system}/{machine}" if machine and system else ""


def free_ports(count: int) -> list[int]:
    socks = [socket.socket() for _ in range(count)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def last_lines(text: str) -> str:
    """MOSN's last log lines; for a crash, from the panic on (its first frames say where)."""
    lines = text.strip().splitlines()
    for i, line in enumerate(lines):
        if line.startswith(("panic:", "fatal error:")):
            return "\n".join(lines[i : i + LOG_LINES])
    return "\n".join(lines[-LOG_LINES:])


# The dynamic loader a glibc-linked Go binary names as its ELF interpreter.
GLIBC_LOADERS = {
    "linux/amd64": "/lib64/ld-linux-x86-64.so.2",
    "linux/arm64": "/lib/ld-linux-aarch64.so.1",
}


def exec_hint(output: str) -> str:
    """Why an image could not start a binary it holds, when its output says `exec ...: no such
    file or directory`: the file is there, the ELF interpreter it names is not."""
    if not re.search(r"exec \S+: no such file or directory", output):
        return ""
    loaders = ", ".join(f"{path} on {platform}" for platform, path in GLIBC_LOADERS.items())
    return (
        " (likely a CGO build in a base without glibc: the binary is there, but a glibc-linked"
        f" binary needs glibc's dynamic loader ({loaders}), which musl and busybox bases do not"
        " have; rebuild without --cgo for a static binary, or use a glibc base)"
    )


def run_host(binary: Path) -> None:
    """Start `binary` on the smoke bootstrap, check it, stop it; one UserError if it fails."""
    listener_port, admin_port = free_ports(2)
    with tempfile.TemporaryDirectory(prefix="mosn-smoke-") as work:
        config = Path(work) / "envoy-rev0.json"
        config.write_text(json.dumps(bootstrap(listener_port, admin_port, f"{work}/XDS")))
        log_path = Path(work) / "mosn.log"
        mosn = proc.start([binary, "start", "-c", config], log_path=log_path, cwd=work)
        try:
            why = _watch(mosn, listener_port, admin_port)
        finally:
            proc.stop(mosn, STOP_TIMEOUT)
        if why:
            raise UserError(
                f"smoke run failed: {why}; the built MOSN does not work"
                " (a Go release that breaks a dependency? see MOSN's log above)",
                detail=last_lines(log_path.read_text(errors="replace")),
            )
    log.info(f"    proxied {STATES_PATH} through listener {LISTENER}, admin API answered")


def _watch(mosn: subprocess.Popen, listener_port: int, admin_port: int) -> str:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while True:
        code = mosn.poll()
        if code is not None:
            return f"MOSN exited with code {code} before it proxied a request"
        why = probe(listener_port, admin_port, 0)
        if not why:
            return ""
        if time.monotonic() > deadline:
            return why
        time.sleep(0.3)


# Istio's own ports: MOSN's admin (15000) and the bootstrap's Prometheus listener (15090).
IMAGE_ADMIN_PORT = 15000
IMAGE_LISTENER_PORT = 15090
IMAGE_CONFIG = "/tmp/mosn-proxyv2-smoke.json"  # noqa: S108 - inside the throwaway container
IMAGE_XDS = "/tmp/XDS"  # noqa: S108 - inside the throwaway container
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def run_in_image(client, reference: str, binary: str) -> None:
    """The same smoke inside `reference`, network none: proves the base image's libc runs it.

    As root (CI machines, act) the client is this module, run on the host inside the
    container's network namespace (nsenter), so the image needs no HTTP client. Otherwise
    (a GitHub runner's user) it is the image's own curl or wget, through `docker exec`:
    proxyv2's Ubuntu base has curl, busybox has wget.
    """
    config = json.dumps(bootstrap(IMAGE_LISTENER_PORT, IMAGE_ADMIN_PORT, IMAGE_XDS)).encode()
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        info = tarfile.TarInfo(IMAGE_CONFIG.lstrip("/"))
        info.size, info.mode = len(config), 0o644
        tar.addfile(info, io.BytesIO(config))
    container = client.containers.create(
        reference,
        entrypoint=[binary],
        command=["start", "-c", IMAGE_CONFIG],
        network_mode="none",
        labels={"io.mosn.proxyv2.purpose": "smoke"},
    )
    try:
        container.put_archive("/", archive.getvalue())
        container.start()
        container.reload()
        pid = container.attrs["State"].get("Pid") or 0
        why = _probe_in(container, pid) if pid else "MOSN exited"
        if why and not _still_running(container):
            why = f"MOSN exited with code {container.attrs['State'].get('ExitCode')}"
        if why:
            logs = container.logs(stdout=True, stderr=True).decode(errors="replace")
            cause = exec_hint(logs) or " (a CGO build against a newer libc?)"
            raise UserError(
                f"smoke run in {reference} (network none) failed: {why}; the binary does not"
                f" run on this base image{cause}",
                detail=last_lines(logs),
            )
    finally:
        container.remove(force=True)
    log.info(f"    in the image (network none): proxied {STATES_PATH}, admin API answered")


def _still_running(container, grace: float = 2.0) -> bool:
    """Whether the container still runs once Docker has caught up: the engine records a
    process's exit a moment after it happens, and a probe that found MOSN gone can be quicker."""
    deadline = time.monotonic() + grace
    container.reload()
    while container.status == "running" and time.monotonic() < deadline:
        time.sleep(0.1)
        container.reload()
    return container.status == "running"


def _probe_in(container, pid: int) -> str:
    ports = [str(IMAGE_LISTENER_PORT), str(IMAGE_ADMIN_PORT), str(STARTUP_TIMEOUT)]
    if os.geteuid() == 0 and shutil.which("nsenter"):
        said = proc.run(
            ["nsenter", f"--net=/proc/{pid}/ns/net", "--", sys.executable, "-m", "ci.builder.smoke"]
            + ["probe", *ports],
            cwd=PROJECT_ROOT,
            env={"PYTHONPATH": str(PROJECT_ROOT)},
            stream=False,
            check=False,
            # runpy warns on stderr that ci.builder imported this module first.
            separate_stderr=True,
        ).strip()
        # The probe prints "ok" when MOSN proxied, else why not; nothing at all means it did
        # not run (nsenter finds no namespace once MOSN has exited).
        return "" if said == PROBE_OK else said or "the probe printed nothing"
    deadline = time.monotonic() + STARTUP_TIMEOUT
    why = "neither curl nor wget in the image to send the request with"
    # busybox's wget crashes with -q -T; plain -O - works everywhere.
    clients = (["curl", "-fsS", "-m", "2"], ["wget", "-O", "-"])
    while time.monotonic() < deadline:
        for client in clients:
            code, states = _exec(container, [*client, _url(IMAGE_LISTENER_PORT, STATES_PATH)])
            if code in (126, 127):
                continue  # this client is not in the image
            if code == 0 and "state=" in states:
                code, dump = _exec(container, [*client, _url(IMAGE_ADMIN_PORT, CONFIG_DUMP_PATH)])
                if code == 0 and LISTENER in dump:
                    return ""
            why = f"{client[0]} through the listener: exit code {code}, {states[:120]!r}"
            clients = (client,)
            break
        time.sleep(0.5)
    return why


def _url(port: int, path: str) -> str:
    return f"http://127.0.0.1:{port}{path}"


def _exec(container, command: list[str]) -> tuple[int, str]:
    result = container.exec_run(command, demux=True)
    stdout = (result.output[0] if result.output else None) or b""
    return result.exit_code, stdout.decode(errors="replace")


def main(argv: list[str]) -> int:
    if len(argv) != 4 or argv[0] != "probe":
        print(
            "usage: python -m ci.builder.smoke probe LISTENER_PORT ADMIN_PORT TIMEOUT",
            file=sys.stderr,
        )
        return 2
    why = probe(int(argv[1]), int(argv[2]), time.monotonic() + float(argv[3]))
    print(why or PROBE_OK)
    return 1 if why else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
