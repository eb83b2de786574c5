"""Benchmark the artifact server against Go's http.FileServer, nginx and pypiserver.

The artifact server runs as `invoke serve` runs it (gunicorn alone, once more without its
access log) and behind its nginx front (`invoke serve --front nginx`, server/front.py).

    python3 bench/bench_server.py [--seconds 5] [--rounds 3] [--clients 1000] [--hold 30]

Throughput: a 64 MiB artifact with 16 concurrent connections, the same again with each
connection on its own copy of it ("apart"), and a 1 KiB one with 16 (wrk, keep-alive,
loopback), the servers taking turns, medians of the rounds; and each server's CPU time per GiB
of the 64 MiB file (all its processes, user + system), alone and with wrk's added. Ratios are
paired: the median of the per-round ratios, each server's 64 MiB x16 run right after a run of
Go's. The 64 MiB x16 runs give wrk and the server CPUs of their own and steer loopback's
receive work to wrk's (as root; --shared-cpus leaves it all to the kernel): left alone, the
kernel does the receiving side's TCP work in whichever process is on the CPU, and the server's
share of a GiB swings twofold between rounds (CpuSplit). The sum with wrk's is the whole cost
of a GiB. The other runs share all CPUs.
Why "apart": with 16 connections on one file, wrk's cost per byte depends on the exact length
of the response head. With wrk pinned to one core and the server to the other, the artifact
server's 483-byte head measured 0.78x-0.86x Go, while the same app with heads of 12 other
lengths (164 to 611 bytes) measured 0.93x-1.03x. With a copy per connection it measured
0.98x-1.08x. The one-file figure stays, because CI fleets do fetch one tarball at once.
Slow clients, against each server in turn: --clients slow readers (each GETs the 64 MiB file
and reads about 1 KiB/s), then --clients slowloris connections (each sends one header byte
per second and reconnects when the server closes it), held for --hold seconds while a probe
GETs /-/healthz (the artifact server only) and the 1 KiB file ten times a second each, on new
connections with a 5 s timeout: p99 latency, failures, connections the server closed, peak
RSS of all the server's processes. Then the artifact server's peak RSS during a 1 GiB upload
(both modes).
--baseline-tree DIR adds the artifact server of another checkout (both modes) to the
throughput runs, paired like the rest: what a change buys, in one run.
Targets (issues 11 and 24): >= 0.9x Go large, >= 0.5x Go small, p99 < 250 ms and no failures
under slow clients; CPU per GiB within 1.15x nginx's behind the front, 1.25x Go's without it. Needs wrk (Debian: apt-get install wrk), go, nginx and pypiserver (pip).
Loopback only; every phase is bounded in time.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import hashlib
import http.client
import os
import re
import resource
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from server import background  # noqa: E402
from server.config import ENV_TOKENS  # noqa: E402
from tests.helpers.net import free_port, wait_for_port  # noqa: E402

HERE = Path(__file__).resolve().parent
TOKEN = "bench-token"  # noqa: S105 - a throwaway token for a loopback run
LARGE = "big/artifact-64m.bin"
SMALL = "small/artifact-1k.bin"
# Separate 64 MiB files, one per wrk connection: {} is 0..COPIES-1.
COPIES = 16
COPY = "copies/copy-{}.bin"
# pypiserver serves only files named like packages, flat under /packages/.
PYPI_LARGE = "packages/big-1.0.tar.gz"
PYPI_SMALL = "packages/small-1.0.tar.gz"
PYPI_COPY = "packages/copy{}-1.0.tar.gz"
# wrk's per-thread Lua state: each thread starts its connections on different copies and
# walks on, so no two connections read the same file at the same time.
SPREAD_SCRIPT = """
local threads = 0
function setup(thread) thread:set("first", threads * 4); threads = threads + 1 end
function init(args) n = first end
function request()
    n = n + 1
    return wrk.format("GET", (path:gsub("{}", tostring(n % copies))))
end
"""
GO = "Go FileServer"
NGINX = "nginx"
OURS = "artifact server"
NO_LOG = "server, no log"
FRONT = "server, nginx front"
# --baseline-tree: the same two modes from another checkout, to see what a change buys.
BASELINE = "baseline server"
BASELINE_FRONT = "baseline front"
# The figures of the 64 MiB x16 run, each paired with the Go run right before it.
PAIRED = ("large", "cpu", "total")
NGINX_CONF = """worker_processes auto;
user root;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 4096; }}
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
        listen 127.0.0.1:{port} backlog=4096;
        root {root};
    }}
}}
"""
_UNITS = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3}


@dataclass
class Peer:
    """One server under test: where it answers, what to fetch, which processes are it."""

    name: str
    base: str
    pid: int
    large: str = LARGE
    small: str = SMALL
    copy: str = COPY
    healthz: bool = False

    def pids(self) -> list[int]:
        found, todo = [], [self.pid]
        while todo:
            pid = todo.pop()
            found.append(pid)
            with contextlib.suppress(OSError):
                todo += [
                    int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
                ]
        return found


def wrk(
    url: str, connections: int, seconds: int, script: Path | None = None
) -> tuple[float, float]:
    """(requests/s, bytes/s) from one wrk run; `script` picks each request's path."""
    threads = min(connections, 4)
    extra = ["-s", str(script)] if script else []
    out = subprocess.run(
        [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{seconds}s",
            "--timeout",
            "30s",
            *extra,
            url,
        ],
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
    (root / COPY).parent.mkdir()
    for i in range(COPIES):
        # Copies, not links: each must be its own pages in the page cache. Each with bytes of
        # its own: identical copies placed by hand share one blob, which only one of them can
        # be, so behind the front the app would send the others itself (server.store).
        shutil.copyfile(root / LARGE, root / COPY.format(i))
        with open(root / COPY.format(i), "r+b") as handle:
            handle.write(b"copy %04d" % i)


def pypi_artifacts(root: Path, into: Path) -> None:
    into.mkdir(parents=True)
    os.link(root / LARGE, into / Path(PYPI_LARGE).name)
    os.link(root / SMALL, into / Path(PYPI_SMALL).name)
    for i in range(COPIES):
        os.link(root / COPY.format(i), into / Path(PYPI_COPY.format(i)).name)


def spread_script(tmp: Path, peer: Peer) -> Path:
    """The wrk script that sends each connection to its own copy of the large file."""
    script = tmp / f"spread-{peer.base.rsplit(':', 1)[1]}.lua"
    script.write_text(f"path = {('/' + peer.copy)!r}\ncopies = {COPIES}\n{SPREAD_SCRIPT}")
    return script


@contextlib.contextmanager
def listening(name: str, argv: list[str], port: int, **options):
    """Run a peer server until the block ends; yield it once its port answers."""
    peer_options = {k: options.pop(k) for k in ("large", "small", "copy") if k in options}
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **options)
    try:
        wait_for_port(port)
        yield Peer(name, f"http://127.0.0.1:{port}", proc.pid, **peer_options)
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
    return listening(GO, [str(binary), f"127.0.0.1:{port}", str(root)], port)


def nginx(tmp: Path, root: Path):
    port = free_port()
    conf = tmp / "nginx.conf"
    conf.write_text(NGINX_CONF.format(tmp=tmp, port=port, root=root))
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    return listening(
        NGINX, [binary, "-c", str(conf), "-p", str(tmp), "-e", str(tmp / "nginx-error.log")], port
    )


def pypi_server(root: Path, workers: int):
    """pypiserver as its own image runs it: gunicorn with gevent workers."""
    port = free_port()
    argv = [sys.executable, "-m", "gunicorn", "-k", "gevent", "-w", str(workers)]
    argv += [
        "--no-control-socket",
        "-b",
        f"127.0.0.1:{port}",
        f"pypiserver:app(root={str(root)!r})",
    ]
    return listening("pypiserver", argv, port, large=PYPI_LARGE, small=PYPI_SMALL, copy=PYPI_COPY)


@contextlib.contextmanager
def artifact_server(
    name: str, root: Path, workers: int, access_log: str | None = None, front: str | None = None
):
    port = free_port()
    pid = background.start(
        root,
        f"127.0.0.1:{port}",
        [TOKEN],
        workers=workers,
        access_log=access_log,
        front=front,
        log_file=root.parent / f"server-{port}.log",
    )
    try:
        yield Peer(name, f"http://127.0.0.1:{port}", pid, healthz=True)
    finally:
        background.stop(root)


@contextlib.contextmanager
def tree_server(name: str, tree: Path, root: Path, workers: int, front: str | None = None):
    """The artifact server of another checkout, run as `python -m server` from it."""
    port = free_port()
    argv = [sys.executable, "-m", "server", "--root", str(root), "--bind", f"127.0.0.1:{port}"]
    argv += ["--workers", str(workers), *(["--front", front] if front else [])]
    env = {**os.environ, ENV_TOKENS: TOKEN, "PYTHONPATH": str(tree)}
    with open(root.parent / f"server-{port}.log", "ab") as log:
        proc = subprocess.Popen(
            argv, cwd=tree, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while not _answers(f"{base}/-/healthz"):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"error: the server from {tree} did not start; see {log.name}")
            time.sleep(0.2)
        yield Peer(name, base, proc.pid, healthz=True)
    finally:
        proc.terminate()
        proc.wait()


def _answers(url: str) -> bool:
    with contextlib.suppress(requests.RequestException):
        return requests.get(url, timeout=2).status_code == 200
    return False


def rss_mib(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total / 1024


def cpu_seconds(pids: list[int]) -> float:
    """User plus system CPU time the processes have used so far."""
    ticks = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def peak_rss_mib(pid: int) -> float:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def figures_line(
    name: str, large_bps: float, spread_bps: float, small_rps: float, cpu_ms: float
) -> str:
    return (
        f"{name:20s} 64 MiB x16: {large_bps / 1024**2:8.1f} MiB/s   1 KiB x16: {small_rps:8.0f} req/s"
        f"   64 MiB apart: {spread_bps / 1024**2:8.1f} MiB/s   CPU {cpu_ms:5.0f} ms/GiB"
    )


def warm_up(peers: list[Peer]) -> None:
    """Page cache, worker start-up, and the artifact server's checksum sidecars (the files
    were written behind its back, so the first read hashes them once)."""
    for peer in peers:
        for path in (peer.large, peer.small, *(peer.copy.format(i) for i in range(COPIES))):
            requests.head(f"{peer.base}/{path}", timeout=120)
        wrk(f"{peer.base}/{peer.small}", 4, 1)


@dataclass
class CpuSplit:
    """Where a 64 MiB x16 run puts wrk, the server, and loopback's receive work. Left alone,
    the kernel does the receiving side's TCP work for a loopback packet in the sender's
    context, or in the receiver's when an ACK lets queued data out, so the server's share of
    one GiB's cost swings with timing (two identical nginx: 63 to 163 ms in the rounds of one
    run). With wrk and the server on CPUs of their own and the receive work steered to wrk's
    (RPS on `lo`), the server pays for its own sending, much as it would for a client on
    another machine (the ACKs it gets are handled on wrk's CPU too, alike for every server):
    over 21 rounds the middle half of the two nginx's ratios narrowed from 0.78x-1.10x to
    0.93x-1.08x (2026-12-05)."""

    client: set[int]
    server: set[int]
    queues: list[Path]  # /sys/class/net/lo/queues/rx-*/rps_cpus

    def describe(self) -> str:
        client, server = (",".join(map(str, sorted(cpus))) for cpus in (self.client, self.server))
        return (
            f"64 MiB x16 runs: wrk on CPU {client}, the server on CPU {server}, loopback's"
            " receive work steered to wrk's (--shared-cpus: none of this)"
        )

    @contextlib.contextmanager
    def applied(self, pids: list[int]):
        every = os.sched_getaffinity(0)
        saved = [queue.read_text() for queue in self.queues]
        try:
            for queue in self.queues:
                queue.write_text(format(sum(1 << cpu for cpu in self.client), "x"))
            pin(pids, self.server)
            os.sched_setaffinity(0, self.client)  # wrk inherits it
            yield
        finally:
            os.sched_setaffinity(0, every)
            pin(pids, every)
            for queue, mask in zip(self.queues, saved, strict=True):
                queue.write_text(mask)


def cpu_split() -> tuple[CpuSplit | None, str]:
    """The split when this machine allows it (2 CPUs or more, and root to steer loopback's
    receive work), else None and why not."""
    cpus = sorted(os.sched_getaffinity(0))
    queues = sorted(Path("/sys/class/net/lo/queues").glob("rx-*/rps_cpus"))
    if len(cpus) < 2:
        return None, "one CPU: wrk and the server share it"
    try:
        for queue in queues:
            queue.write_text(queue.read_text())
    except OSError as error:
        return None, f"cannot steer loopback's receive work ({error.strerror}; run as root)"
    if not queues:
        return None, "this kernel has no RPS on lo: wrk and the server share the CPUs"
    half = len(cpus) // 2
    return CpuSplit(set(cpus[:half]), set(cpus[half:]), queues), ""


def pin(pids: list[int], cpus: set[int]) -> None:
    """Every thread of these processes on `cpus`."""
    for pid in pids:
        with contextlib.suppress(OSError):
            for thread in os.listdir(f"/proc/{pid}/task"):
                with contextlib.suppress(OSError):
                    os.sched_setaffinity(int(thread), cpus)


def large_run(peer: Peer, seconds: int, split: CpuSplit | None) -> tuple[float, float, float]:
    """(bytes/s, the server's CPU ms per GiB, the server's and wrk's together) of one 64 MiB
    x16 run, on the CPUs `split` gives each (all of them for both when None)."""
    pids = peer.pids()
    with split.applied(pids) if split else contextlib.nullcontext():
        cpu_before, wrk_before = cpu_seconds(pids), children_cpu_seconds()
        large_bps = wrk(f"{peer.base}/{peer.large}", 16, seconds)[1]
        cpu_after, wrk_after = cpu_seconds(pids), children_cpu_seconds()
    gib = large_bps * seconds / 1024**3
    server = (cpu_after - cpu_before) * 1000 / gib
    return large_bps, server, server + (wrk_after - wrk_before) * 1000 / gib


def children_cpu_seconds() -> float:
    """User plus system CPU time of this script's finished children (the wrk runs)."""
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def measure(
    peers: list[Peer], seconds: int, rounds: int, tmp: Path, split: CpuSplit | None
) -> dict[str, dict[str, list]]:
    """Each server's figures, one per round; the servers take turns so that a burst of load
    from elsewhere on the machine hits them all alike. Go (peers[0]) runs its 64 MiB x16 run
    again right before each other server's: "go_large"/"go_cpu"/"go_total" keep that run of
    Go's, the pair `paired` divides (Go's own figure per round is the median of its runs)."""
    go = peers[0]
    kinds = ("large", "spread", "small", "cpu", "total", "go_large", "go_cpu", "go_total")
    samples = {peer.name: {kind: [] for kind in kinds} for peer in peers}
    scripts = {peer.name: spread_script(tmp, peer) for peer in peers}
    for round_number in range(1, rounds + 1):
        for peer in peers[1:]:
            for runner, prefix in ((go, "go_"), (peer, "")):
                for kind, figure in zip(PAIRED, large_run(runner, seconds, split), strict=True):
                    samples[peer.name][prefix + kind].append(figure)
        for kind in PAIRED:
            this_round = [samples[peer.name]["go_" + kind][-1] for peer in peers[1:]]
            samples[go.name][kind].append(statistics.median(this_round))
        for peer in peers:
            figures = samples[peer.name]
            figures["spread"].append(wrk(peer.base, 16, seconds, scripts[peer.name])[1])
            figures["small"].append(wrk(f"{peer.base}/{peer.small}", 16, seconds)[0])
            print(
                f"  round {round_number} "
                + figures_line(
                    peer.name, *(figures[kind][-1] for kind in ("large", "spread", "small", "cpu"))
                ),
                flush=True,
            )
    return samples


def median(samples: dict[str, dict[str, list]], name: str, kind: str) -> float:
    return statistics.median(samples[name][kind])


def paired(samples: dict[str, dict[str, list]], name: str, kind: str, base: str = GO) -> float:
    """The median of the per-round ratios of `name`'s figure to `base`'s: the same round's
    run, except that a 64 MiB x16 figure is paired with the Go run right before it."""
    if name == base:
        return 1.0
    if kind in PAIRED and GO in (name, base):
        other = base if name == GO else name
        ratios = [
            o / g for o, g in zip(samples[other][kind], samples[other]["go_" + kind], strict=True)
        ]
        if name == GO:
            ratios = [1 / r for r in ratios]
    else:
        ratios = [m / t for m, t in zip(samples[name][kind], samples[base][kind], strict=True)]
    return statistics.median(ratios)


def print_throughput(samples: dict[str, dict[str, list]]) -> None:
    print("medians:")
    for name in samples:
        large, spread, small, cpu = (
            median(samples, name, kind) for kind in ("large", "spread", "small", "cpu")
        )
        print(f"  {figures_line(name, large, spread, small, cpu)}")
    print("to Go, the median of the per-round ratios (64 MiB x16: the Go run right before):")
    for name in samples:
        if name != GO:
            print(
                f"  {name:20s} 64 MiB x16 {paired(samples, name, 'large'):.2f}x"
                f"   apart {paired(samples, name, 'spread'):.2f}x"
                f"   1 KiB {paired(samples, name, 'small'):.2f}x"
            )
    for kind, heading in (
        (
            "cpu",
            "server CPU per GiB of the 64 MiB x16 file (user + system time of all the server's"
            " processes; median, and the median of the per-round ratios):",
        ),
        (
            "total",
            "the same with wrk's CPU added (the whole cost of a GiB on loopback):",
        ),
    ):
        print(heading)
        for name in samples:
            print(
                f"  {name:20s} {median(samples, name, kind):6.0f} ms"
                f"   {paired(samples, name, kind):.2f}x Go   {paired(samples, name, kind, NGINX):.2f}x nginx"
            )
    checks = (
        (f"{FRONT}: 64 MiB x16 >= 0.90x Go", paired(samples, FRONT, "large") >= 0.90),
        (f"{FRONT}: CPU per GiB <= 1.15x nginx", paired(samples, FRONT, "cpu", NGINX) <= 1.15),
        (f"{OURS}: 64 MiB x16 >= 0.90x Go", paired(samples, OURS, "large") >= 0.90),
        (f"{OURS}: CPU per GiB <= 1.25x Go", paired(samples, OURS, "cpu") <= 1.25),
        (f"{FRONT}: 1 KiB >= 0.50x Go", paired(samples, FRONT, "small") >= 0.50),
    )
    for what, met in checks:
        print(f"target {what}: {'met' if met else 'NOT met'}")


# -- slow clients ----------------------------------------------------------------------------


@dataclass
class Hold:
    """What one slow-client scenario saw."""

    held: int = 0  # connections open at the end of the ramp
    closed: int = 0  # connections the server closed (each was reopened)
    probes: dict[str, list[float]] = field(default_factory=dict)  # path -> latencies (s)
    failures: dict[str, int] = field(default_factory=dict)
    peak_rss: float = 0.0
    peak_tcp: float = 0.0  # MiB of the kernel's TCP buffers (all sockets of the machine)


def _open(port: int, kind: str, path: str) -> socket.socket | None:
    sock = socket.socket()
    if kind == "reader":
        # A small receive window: the client, not the kernel, sets the pace.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(10)
    try:
        sock.connect(("127.0.0.1", port))
        if kind == "reader":
            sock.sendall(f"GET /{path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
        else:
            sock.sendall(f"GET /{path} HTTP/1.1\r\nHost: bench\r\nX-Slow: ".encode())
    except OSError:
        sock.close()
        return None
    sock.setblocking(False)
    return sock


def _probe(peer: Peer, path: str) -> float | None:
    """Seconds for one GET on a new connection, or None if it failed."""
    started = time.monotonic()
    connection = http.client.HTTPConnection(
        "127.0.0.1", int(peer.base.rsplit(":", 1)[1]), timeout=5
    )
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        response.read()
        ok = response.status == 200
    except OSError:
        ok = False
    finally:
        connection.close()
    return time.monotonic() - started if ok else None


def hold_slow_clients(
    peer: Peer,
    kind: str,
    count: int,
    seconds: float,
    *,
    path: str | None = None,
    tick: float = 1.0,
    probe_every: float = 0.1,
) -> Hold:
    """Hold `count` slow clients of `kind` ("reader" or "slowloris") on `peer` for `seconds`,
    probing it meanwhile; every socket is closed when it returns. A reader GETs `path` (the
    large file) and reads 1 KiB every `tick` seconds; each probe target is fetched every
    `probe_every` seconds."""
    port = int(peer.base.rsplit(":", 1)[1])
    path = path or (peer.large if kind == "reader" else peer.small)
    result = Hold()
    socks: list[socket.socket] = []
    stop = threading.Event()
    targets = (["/-/healthz"] if peer.healthz else []) + [f"/{peer.small}"]
    for target in targets:
        result.probes[target], result.failures[target] = [], 0

    def probing() -> None:
        while not stop.is_set():
            for target in targets:
                took = _probe(peer, target)
                if took is None:
                    result.failures[target] += 1
                else:
                    result.probes[target].append(took)
            stop.wait(probe_every)

    def sampling() -> None:
        while not stop.is_set():
            result.peak_rss = max(result.peak_rss, rss_mib(peer.pids()))
            result.peak_tcp = max(result.peak_tcp, tcp_memory_mib())
            stop.wait(0.5)

    try:
        for _ in range(count):
            if sock := _open(port, kind, path):
                socks.append(sock)
        result.held = len(socks)
        helpers = [threading.Thread(target=probing), threading.Thread(target=sampling)]
        for helper in helpers:
            helper.start()
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            started = time.monotonic()
            for index, sock in enumerate(socks):
                try:
                    if kind == "reader":
                        alive = sock.recv(1024) != b""
                    else:
                        # A closed connection shows as readable with nothing to read.
                        readable, _, _ = select.select([sock], [], [], 0)
                        alive = not readable or sock.recv(4096) != b""
                        if alive:
                            sock.send(b"a")
                except BlockingIOError:
                    alive = True
                except OSError as exc:
                    alive = exc.errno in (errno.EAGAIN,)
                if not alive:
                    result.closed += 1
                    sock.close()
                    socks[index] = _open(port, kind, path) or sock
            stop.wait(max(0.0, tick - (time.monotonic() - started)))
    finally:
        stop.set()
        for sock in socks:
            sock.close()
    for helper in helpers:
        helper.join()
    return result


def tcp_memory_mib() -> float:
    """The kernel's TCP buffer memory. Past net.ipv4.tcp_mem's middle figure the kernel is
    under memory pressure: it drops packets, and new connections wait for retransmissions."""
    with contextlib.suppress(OSError, IndexError, ValueError):
        pages = Path("/proc/net/sockstat").read_text().split("TCP:")[1].split("mem ")[1].split()[0]
        return int(pages) * os.sysconf("SC_PAGE_SIZE") / 1024**2
    return 0.0


def p99_ms(latencies: list[float]) -> str:
    if len(latencies) < 2:
        return "   -  "
    return f"{statistics.quantiles(latencies, n=100, method='inclusive')[98] * 1000:6.0f}"


def hold_line(peer: Peer, kind: str, hold: Hold) -> str:
    parts = []
    for target, latencies in hold.probes.items():
        label = "healthz" if target == "/-/healthz" else "1 KiB"
        parts.append(
            f"{label} p99 {p99_ms(latencies)} ms, {hold.failures[target]}/{len(latencies) + hold.failures[target]} failed"
        )
    return (
        f"{peer.name:20s} {kind:9s} held {hold.held:5d}, server closed {hold.closed:5d}; "
        + "; ".join(parts)
        + f"; peak RSS {hold.peak_rss:6.0f} MiB"
    )


# -- slow readers of a 16 MiB file (issue 23) --------------------------------------------------

MEDIUM = "medium/artifact-16m.bin"


def write_medium(root: Path) -> None:
    (root / MEDIUM).parent.mkdir(exist_ok=True)
    with open(root / MEDIUM, "wb") as handle:
        for _ in range(16):
            handle.write(os.urandom(1024 * 1024))


def percentile_ms(latencies: list[float], percent: int) -> float:
    if len(latencies) < 2:
        return float("nan")
    return statistics.quantiles(latencies, n=100, method="inclusive")[percent - 1] * 1000


def slow_readers(
    peers: list[Peer], counts: list[int], seconds: float, rounds: int
) -> dict[tuple[str, int], list[Hold]]:
    """Each count of readers (each GETs the 16 MiB file with a 4 KiB receive buffer and reads
    1 KiB every 0.5 s) held on each peer in turn for `seconds`, while /-/healthz (the artifact
    server only) and the 1 KiB file are fetched twice a second on new connections."""
    for peer in peers:
        requests.head(f"{peer.base}/{MEDIUM}", timeout=120)  # sidecars of files written here
    holds: dict[tuple[str, int], list[Hold]] = {}
    for round_number in range(1, rounds + 1):
        for count in counts:
            for peer in peers:
                hold = hold_slow_clients(
                    peer, "reader", count, seconds, path=MEDIUM, tick=0.5, probe_every=0.5
                )
                holds.setdefault((peer.name, count), []).append(hold)
                print(
                    f"  round {round_number} {count:5d} readers {reader_line(peer.name, [hold])}"
                    f"  (load {os.getloadavg()[0]:.2f})",
                    flush=True,
                )
                time.sleep(3)  # the server lets go of the closed connections
    return holds


def reader_line(name: str, holds: list[Hold]) -> str:
    """p50/p99 per probe target (medians over the rounds), held, closed, failures."""
    parts = []
    for target in holds[0].probes:
        label = "healthz" if target == "/-/healthz" else "1 KiB"
        p50 = statistics.median(percentile_ms(h.probes[target], 50) for h in holds)
        p99 = statistics.median(percentile_ms(h.probes[target], 99) for h in holds)
        failed = sum(h.failures[target] for h in holds)
        parts.append(f"{label} p50 {p50:5.0f} p99 {p99:5.0f} ms ({failed} failed)")
    held = min(h.held for h in holds)
    closed = sum(h.closed for h in holds)
    tcp = statistics.median(h.peak_tcp for h in holds)
    return (
        f"{name:20s} held {held:5d} closed {closed:4d}; "
        + "; ".join(parts)
        + f"; TCP memory {tcp:5.0f} MiB"
    )


def reader_summary(holds: dict[tuple[str, int], list[Hold]], counts: list[int]) -> None:
    small = f"/{SMALL}"
    for count in counts:
        go_p99 = statistics.median(
            percentile_ms(h.probes[small], 99) for h in holds["Go FileServer", count]
        )
        for name in (OURS, FRONT, "Go FileServer", "nginx"):
            if (name, count) not in holds:
                continue
            mine = holds[name, count]
            p99 = statistics.median(percentile_ms(h.probes[small], 99) for h in mine)
            worst = max(
                statistics.median(percentile_ms(h.probes[target], 99) for h in mine)
                for target in mine[0].probes
            )
            verdict = ""
            if name in (OURS, FRONT):
                ok = worst < 250 and not any(any(h.failures.values()) for h in mine)
                verdict = "   target p99 < 250 ms: " + ("met" if ok else "NOT met")
            print(
                f"  {count:5d} readers {reader_line(name, mine)}; 1 KiB p99 {p99 / go_p99:5.2f}x Go{verdict}"
            )


def run_slow_readers_only(args) -> int:
    """--readers-only: the slow-reader load alone, on the artifact server (both modes), Go's
    FileServer and nginx."""
    raise_file_limit(max(args.readers) * 3 + 256)
    with tempfile.TemporaryDirectory(prefix="bench-readers-") as tmpdir:
        tmp = Path(tmpdir)
        root, front_root = tmp / "root", tmp / "front-root"
        for each in (root, front_root):
            write_artifacts(each)
            write_medium(each)
        print(
            f"machine: {os.cpu_count()} CPUs, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())};"
            f" {args.workers} gevent workers; readers {args.readers} held {args.reader_seconds}s,"
            f" {args.reader_rounds} round(s)",
            flush=True,
        )
        with (
            go_fileserver(tmp, root) as go,
            nginx(tmp, root) as ng,
            artifact_server(OURS, root, args.workers) as ours,
            artifact_server(FRONT, front_root, args.workers, front="nginx") as fronted,
        ):
            holds = slow_readers(
                [ours, fronted, go, ng], args.readers, args.reader_seconds, args.reader_rounds
            )
        print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        print("slow readers, medians over the rounds:")
        reader_summary(holds, args.readers)
    return 0


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
    peer = Peer("", base, master)
    peaks = [peak_rss_mib(pid) for pid in peer.pids()]
    source.unlink()
    return max(peaks), 1024 / elapsed


def raise_file_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(needed, soft)), hard))
    if resource.getrlimit(resource.RLIMIT_NOFILE)[0] < needed:
        raise SystemExit(
            f"error: {needed} file descriptors needed, the hard limit is {hard}; raise ulimit -n"
        )


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
        help="workers of the artifact server and pypiserver (default 2 per core, the server's default)",
    )
    parser.add_argument(
        "--clients",
        type=int,
        default=1000,
        help="slow clients held at once (default 1000, at most 2000)",
    )
    parser.add_argument(
        "--hold",
        type=int,
        default=30,
        help="seconds each slow-client scenario lasts (default 30, at most 120)",
    )
    parser.add_argument(
        "--skip-throughput", action="store_true", help="only the slow-client scenarios"
    )
    parser.add_argument(
        "--shared-cpus",
        action="store_true",
        help="run wrk and the server on all CPUs in the 64 MiB x16 runs, and leave loopback's"
        " receive work where the kernel does it (by default each has CPUs of its own when root)",
    )
    parser.add_argument(
        "--readers",
        default="500,1000",
        help="counts of slow 16 MiB readers, comma-separated (default 500,1000; each at most 2000)",
    )
    parser.add_argument(
        "--reader-seconds",
        type=int,
        default=25,
        help="seconds each slow-reader load lasts (default 25, at most 120)",
    )
    parser.add_argument(
        "--reader-rounds",
        type=int,
        default=2,
        help="rounds of the slow-reader loads, servers taking turns (default 2, at most 5)",
    )
    parser.add_argument(
        "--readers-only",
        action="store_true",
        help="only the slow-reader loads (needs go and nginx, not wrk or pypiserver)",
    )
    parser.add_argument(
        "--baseline-tree",
        type=Path,
        help="another checkout (e.g. `git worktree add /tmp/base main`) whose artifact server,"
        " in both modes, joins the throughput runs: what a change buys, paired in one run",
    )
    args = parser.parse_args()
    args.clients, args.hold = min(args.clients, 2000), min(args.hold, 120)
    args.readers = [min(int(n), 2000) for n in args.readers.split(",") if n.strip()]
    args.reader_seconds = min(args.reader_seconds, 120)
    args.reader_rounds = max(1, min(args.reader_rounds, 5))
    if args.baseline_tree:
        args.baseline_tree = args.baseline_tree.resolve()
        if not (args.baseline_tree / "server" / "__main__.py").is_file():
            print(
                f"error: --baseline-tree {args.baseline_tree} has no server/ package;"
                " give a checkout of this repository",
                file=sys.stderr,
            )
            return 1
    if args.readers_only:
        return run_slow_readers_only(args)
    for tool in ("wrk", "go", "nginx"):
        if not shutil.which(tool) and not (tool == "nginx" and Path("/usr/sbin/nginx").exists()):
            print(
                f"error: {tool} not found; install it (Debian: apt-get install wrk golang-go nginx)",
                file=sys.stderr,
            )
            return 1
    try:
        import gevent  # noqa: F401
        import pypiserver  # noqa: F401
    except ImportError:
        print(
            "error: pypiserver not found; install it (pip install pypiserver gevent)",
            file=sys.stderr,
        )
        return 1
    # Each slow client is a socket here and a socket (plus a file) in the server.
    raise_file_limit(args.clients * 3 + 256)
    # A kill ends the run as Ctrl-C does: the servers stop and `lo` gets its RPS back.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    with tempfile.TemporaryDirectory(prefix="bench-server-") as tmpdir:
        tmp = Path(tmpdir)
        root = tmp / "root"
        write_artifacts(root)
        # A second artifact server (without access log) needs a root of its own.
        quiet_root = tmp / "quiet-root"
        write_artifacts(quiet_root)
        front_root = tmp / "front-root"
        write_artifacts(front_root)
        write_medium(root)
        write_medium(front_root)
        pypi_artifacts(root, tmp / "pypi")
        print(
            f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f}"
            f" {os.getloadavg()[2]:.2f}; artifact server as `invoke serve` runs it ({args.workers} gevent workers);"
            f" wrk {args.seconds}s x {args.rounds} rounds; {args.clients} slow clients held {args.hold}s"
        )
        split, why_not = (None, "--shared-cpus") if args.shared_cpus else cpu_split()
        print(split.describe() if split else f"64 MiB x16 runs on shared CPUs: {why_not}")
        with (
            go_fileserver(tmp, root) as go,
            nginx(tmp, root) as ng,
            artifact_server(OURS, root, args.workers) as ours,
            artifact_server(NO_LOG, quiet_root, args.workers, access_log="") as quiet,
            artifact_server(FRONT, front_root, args.workers, front="nginx") as fronted,
            pypi_server(tmp / "pypi", args.workers) as pypi,
            contextlib.ExitStack() as baselines,
        ):
            peers = [go, ng, ours, quiet, fronted, pypi]
            if args.baseline_tree and not args.skip_throughput:
                for name, front in ((BASELINE, None), (BASELINE_FRONT, "nginx")):
                    base_root = tmp / name.replace(" ", "-")
                    write_artifacts(base_root)
                    server = tree_server(name, args.baseline_tree, base_root, args.workers, front)
                    peers.append(baselines.enter_context(server))
            warm_up(peers)
            if not args.skip_throughput:
                results = measure(peers, args.seconds, args.rounds, tmp, split)
            print("slow clients:", flush=True)
            holds = {}
            for peer in (ours, fronted, go, ng, pypi):
                for kind in ("reader", "slowloris"):
                    holds[peer.name, kind] = hold = hold_slow_clients(
                        peer, kind, args.clients, args.hold
                    )
                    print(f"  {hold_line(peer, kind, hold)}", flush=True)
            print("slow readers of the 16 MiB file:", flush=True)
            reader_holds = slow_readers(
                [ours, fronted, go, ng], args.readers, args.reader_seconds, args.reader_rounds
            )
            rss, upload_speed = upload_rss(ours.base, root, tmp)
            front_rss, front_upload = upload_rss(fronted.base, front_root, tmp)
        print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        print("slow readers, medians over the rounds:")
        reader_summary(reader_holds, args.readers)
        if not args.skip_throughput:
            print_throughput(results)
        print(
            f"1 GiB upload: {upload_speed:.0f} MiB/s, server peak RSS {rss:.0f} MiB (target < 150);"
            f" through the front {front_upload:.0f} MiB/s, peak RSS {front_rss:.0f} MiB"
        )
        for mode in (OURS, FRONT):
            slow_ok = all(
                not any(hold.failures.values())
                and all(float(p99_ms(v)) < 250 for v in hold.probes.values())
                for (name, _), hold in holds.items()
                if name == mode
            )
            print(
                f"{mode}: slow-client target (p99 < 250 ms, no failures): "
                + ("met" if slow_ok else "NOT met")
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
