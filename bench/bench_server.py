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
import statistics
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
HELLO = "gunicorn floor"
NO_LOG = "server, no log"
# Contenders measured on the small file only: what they show is per-request overhead.
SMALL_ONLY = (HELLO, NO_LOG)
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
def listening(argv: list[str], port: int, **popen):
    """Run a baseline server until the block ends; yield its base URL once the port answers."""
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **popen)
    try:
        wait_for_port(port)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait()


def go_fileserver(tmp: Path, root: Path):
    binary = tmp / "fileserver"
    subprocess.run(
        ["go", "build", "-o", str(binary), str(HERE / "fileserver.go")],
        check=True,
        env={**os.environ, "GO111MODULE": "off"},
    )
    port = free_port()
    return listening([str(binary), f"127.0.0.1:{port}", str(root)], port)


def nginx(tmp: Path, root: Path):
    port = free_port()
    conf = tmp / "nginx.conf"
    conf.write_text(NGINX_CONF.format(tmp=tmp, port=port, root=root))
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    return listening(
        [binary, "-c", str(conf), "-p", str(tmp), "-e", str(tmp / "nginx-error.log")], port
    )


HELLO_APP = """
BODY = b"x" * 1024


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", "1024")])
    return [BODY]
"""


def gunicorn_hello(tmp: Path, workers: int, threads: int):
    """gunicorn with the same worker settings and a constant 1 KiB answer: the ceiling any
    Python app served this way can reach on the small-file test."""
    (tmp / "hello_app.py").write_text(HELLO_APP)
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "gunicorn",
        "-k",
        "gthread",
        "-w",
        str(workers),
        "--threads",
        str(threads),
    ]
    argv += ["--no-control-socket", "-b", f"127.0.0.1:{port}", "hello_app:app"]
    return listening(argv, port, cwd=tmp)


@contextlib.contextmanager
def artifact_server(root: Path, workers: int, threads: int, access_log: str | None = None):
    port = free_port()
    background.start(
        root,
        f"127.0.0.1:{port}",
        [TOKEN],
        workers=workers,
        threads=threads,
        access_log=access_log,
        log_file=root.parent / f"server-{port}.log",
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


def figures_line(name: str, large_bps: float, small_rps: float) -> str:
    large = "       -    " if name in SMALL_ONLY else f"{large_bps / 1024**2:8.1f} MiB/s"
    return f"{name:16s} 64 MiB x16: {large}   1 KiB x16: {small_rps:8.0f} req/s"


def measure(bases: dict[str, str], seconds: int, rounds: int) -> dict[str, dict[str, float]]:
    """Median of `rounds` runs per server, the servers taking turns so that a burst of load
    from elsewhere on the machine hits them all alike."""
    for base in bases.values():
        # Warm-up: page cache, worker start-up, and the artifact server's checksum sidecars
        # (the files were written behind its back, so the first read hashes them once).
        for path in (LARGE, SMALL):
            requests.head(f"{base}/{path}", timeout=120)
        wrk(f"{base}/{SMALL}", 4, 1)
    samples: dict[str, dict[str, list[float]]] = {
        name: {"large": [], "small": []} for name in bases
    }
    for round_number in range(1, rounds + 1):
        for name, base in bases.items():
            # The constant-answer gunicorn app has no large file to send.
            large_bps = 0.0 if name in SMALL_ONLY else wrk(f"{base}/{LARGE}", 16, seconds)[1]
            small_rps, _ = wrk(f"{base}/{SMALL}", 16, seconds)
            samples[name]["large"].append(large_bps)
            samples[name]["small"].append(small_rps)
            print(f"  round {round_number} {figures_line(name, large_bps, small_rps)}", flush=True)
    return {
        name: {kind: statistics.median(values) for kind, values in kinds.items()}
        for name, kinds in samples.items()
    }


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
        "--seconds", type=int, default=5, help="duration of each wrk run (default 5)"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="runs per server and file; the median is kept (default 3)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=2 * (os.cpu_count() or 1),
        help="gunicorn workers (default 2 per core)",
    )
    parser.add_argument(
        "--threads", type=int, default=32, help="threads per gunicorn worker (default 32)"
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
        # A second artifact server (without access log) needs a root of its own.
        quiet_root = tmp / "quiet-root"
        write_artifacts(quiet_root)
        print(
            f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; gunicorn gthread, "
            f"{args.workers} workers x {args.threads} threads, sendfile on; wrk {args.seconds}s x {args.rounds} rounds"
        )
        with (
            go_fileserver(tmp, root) as go_base,
            nginx(tmp, root) as nginx_base,
            artifact_server(root, args.workers, args.threads) as base,
            gunicorn_hello(tmp, args.workers, args.threads) as hello_base,
            artifact_server(quiet_root, args.workers, args.threads, access_log="") as quiet_base,
        ):
            results = measure(
                {
                    "Go FileServer": go_base,
                    "nginx": nginx_base,
                    "artifact server": base,
                    NO_LOG: quiet_base,
                    HELLO: hello_base,
                },
                args.seconds,
                args.rounds,
            )
            rss, upload_speed = upload_rss(base, root, tmp)
        print("medians:")
        for name, figures in results.items():
            print(f"  {figures_line(name, figures['large'], figures['small'])}")
        hello = results[HELLO]["small"]
        results_all = results
        results = {
            "go": results["Go FileServer"],
            "nginx": results["nginx"],
            "server": results["artifact server"],
        }
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
            f"gunicorn floor: a constant 1 KiB WSGI app under the same gunicorn settings does {hello:.0f} req/s, "
            f"{hello / go['small']:.2f}x Go: the ceiling for any Python app served this way; the artifact server reaches "
            f"{ours['small'] / hello:.2f}x of it"
        )
        print(
            f"access log: without it the artifact server does {results_all[NO_LOG]['small']:.0f} req/s on the small file"
        )
        print(
            f"1 GiB upload: {upload_speed:.0f} MiB/s, server peak RSS {rss:.0f} MiB (target < 150)"
        )
        met = large_ratio >= 0.9 and small_ratio >= 0.5 and rss < 150
        print("targets: " + ("all met" if met else "NOT all met"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
