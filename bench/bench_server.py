"""Benchmark the artifact server against Go's http.FileServer and nginx, same machine, same files.

    python3 bench/bench_server.py [--seconds 10] [--workers N] [--threads N]

Prints, for each server: download throughput of a 64 MiB artifact with 16 concurrent
connections, and requests per second on a 1 KiB artifact (both measured with wrk, keep-alive,
loopback); then ratios to the Go server, and the artifact server's peak RSS (VmHWM of master
and workers) during a 1 GiB upload. Targets: >= 0.9x Go on the large file, >= 0.5x Go on the
small one, RSS < 150 MiB. Needs wrk (Debian: apt-get install wrk), go and nginx.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from server import background  # noqa: E402
from tests.helpers.net import free_port, wait_for_port  # noqa: E402

HERE = Path(__file__).resolve().parent
TOKEN = "bench-token"  # noqa: S105 - a throwaway token for a loopback run
LARGE = "big/artifact-64m.bin"
SMALL = "small/artifact-1k.bin"
NGINX_CONF = """worker_processes auto;
user root;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 100000;
    default_type application/octet-stream;
    client_body_temp_path {tmp}/nginx-body;
    proxy_temp_path {tmp}/nginx-proxy;
    fastcgi_temp_path {tmp}/nginx-fastcgi;
    uwsgi_temp_path {tmp}/nginx-uwsgi;
    scgi_temp_path {tmp}/nginx-scgi;
    server {{
        listen 127.0.0.1:{port};
        root {root};
    }}
}}
"""
_UNITS = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3}


def wrk(url: str, connections: int, seconds: int) -> tuple[float, float]:
    """(requests/s, bytes/s) from one wrk run."""
    threads = min(connections, 4)
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--timeout", "30s", url],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 60,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    value, unit = re.search(r"Transfer/sec:\s+([\d.]+)([KMG]?B)", out).groups()
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise SystemExit(f"wrk saw {errors.group(1)} error responses from {url}")
    return rps, float(value) * _UNITS[unit]


def write_artifacts(root: Path) -> None:
    block = os.urandom(1024 * 1024)
    (root / "big").mkdir(parents=True)
    with open(root / LARGE, "wb") as handle:
        for i in range(64):
            handle.write(block[i:] + block[:i])
    (root / "small").mkdir()
    (root / SMALL).write_bytes(os.urandom(1024))


@contextlib.contextmanager
def go_fileserver(tmp: Path, root: Path):
    binary = tmp / "fileserver"
    subprocess.run(
        ["go", "build", "-o", str(binary), str(HERE / "fileserver.go")],
        check=True,
        env={**os.environ, "GOFLAGS": "-mod=mod", "GO111MODULE": "off"},
    )
    port = free_port()
    proc = subprocess.Popen([str(binary), f"127.0.0.1:{port}", str(root)])
    try:
        wait_for_port(port)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait()


@contextlib.contextmanager
def nginx(tmp: Path, root: Path):
    port = free_port()
    conf = tmp / "nginx.conf"
    conf.write_text(NGINX_CONF.format(tmp=tmp, port=port, root=root))
    proc = subprocess.Popen(
        [
            shutil.which("nginx") or "/usr/sbin/nginx",
            "-c",
            str(conf),
            "-p",
            str(tmp),
            "-e",
            str(tmp / "nginx-error.log"),
        ]
    )
    try:
        wait_for_port(port)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait()


@contextlib.contextmanager
def artifact_server(root: Path, workers: int, threads: int):
    port = free_port()
    background.start(
        root,
        f"127.0.0.1:{port}",
        [TOKEN],
        workers=workers,
        threads=threads,
        log_file=root.parent / "server.log",
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        background.stop(root)


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def measure(name: str, base: str, seconds: int) -> dict:
    # One warm-up pass so page cache and connection pools are equal for everyone.
    wrk(f"{base}/{SMALL}", 4, 1)
    _, large_bps = wrk(f"{base}/{LARGE}", 16, seconds)
    small_rps, _ = wrk(f"{base}/{SMALL}", 16, seconds)
    print(
        f"  {name:16s} 64 MiB x16: {large_bps / 1024**2:9.1f} MiB/s   1 KiB x16: {small_rps:9.0f} req/s",
        flush=True,
    )
    return {"large": large_bps, "small": small_rps}


def upload_rss(base: str, root: Path, tmp: Path) -> tuple[float, float]:
    """Upload 1 GiB; return (peak RSS MiB of the busiest server process, upload MiB/s)."""
    source = tmp / "upload-1g.bin"
    block = os.urandom(1024 * 1024)
    digest = hashlib.sha256()
    with open(source, "wb") as handle:
        for i in range(1024):
            chunk = block[i % 512 :] + block[: i % 512]
            digest.update(chunk)
            handle.write(chunk)
    started = time.monotonic()
    with open(source, "rb") as body:
        response = requests.put(
            f"{base}/upload/1g.bin",
            data=body,
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=600,
        )
    elapsed = time.monotonic() - started
    assert response.status_code == 201, response.text
    assert response.json()["sha256"] == digest.hexdigest()
    master = background.running(root)
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    peaks = [peak_rss_mib(int(pid)) for pid in [master, *children]]
    source.unlink()
    return max(peaks), 1024 / elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--seconds", type=int, default=10, help="duration of each wrk run (default 10)"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=2 * (os.cpu_count() or 1),
        help="gunicorn workers (default 2 per core)",
    )
    parser.add_argument(
        "--threads", type=int, default=8, help="threads per gunicorn worker (default 8)"
    )
    args = parser.parse_args()
    for tool in ("wrk", "go", "nginx"):
        if not shutil.which(tool) and not (tool == "nginx" and Path("/usr/sbin/nginx").exists()):
            print(
                f"error: {tool} not found; install it (Debian: apt-get install wrk golang-go nginx)",
                file=sys.stderr,
            )
            return 1
    with tempfile.TemporaryDirectory(prefix="bench-server-") as tmpdir:
        tmp = Path(tmpdir)
        root = tmp / "root"
        write_artifacts(root)
        print(
            f"machine: {os.cpu_count()} CPUs; gunicorn gthread, {args.workers} workers x {args.threads} threads, sendfile on; wrk {args.seconds}s runs"
        )
        results = {}
        with go_fileserver(tmp, root) as base:
            results["go"] = measure("Go FileServer", base, args.seconds)
        with nginx(tmp, root) as base:
            results["nginx"] = measure("nginx", base, args.seconds)
        with artifact_server(root, args.workers, args.threads) as base:
            results["server"] = measure("artifact server", base, args.seconds)
            rss, upload_speed = upload_rss(base, root, tmp)
        go, ours, ng = results["go"], results["server"], results["nginx"]
        large_ratio = ours["large"] / go["large"]
        small_ratio = ours["small"] / go["small"]
        print(
            f"ratio to Go:    large {large_ratio:.2f}x (target >= 0.90)   small {small_ratio:.2f}x (target >= 0.50)"
        )
        print(
            f"ratio to nginx: large {ours['large'] / ng['large']:.2f}x   small {ours['small'] / ng['small']:.2f}x"
        )
        print(
            f"1 GiB upload: {upload_speed:.0f} MiB/s, server peak RSS {rss:.0f} MiB (target < 150)"
        )
        met = large_ratio >= 0.9 and small_ratio >= 0.5 and rss < 150
        print("targets: " + ("all met" if met else "NOT all met"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
