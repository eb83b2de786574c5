"""Quick-mode image build through the Docker SDK vs `docker build` of the same Dockerfile.

Both build on the same engine in the same run, alternating order, each iteration timed from
"have a dist" to "image exists": the SDK side includes reading the binary out of the tarball
and making the in-memory context; the CLI side gets a ready folder (Dockerfile + binary).
Prints the medians and their ratio (target: SDK / CLI <= 1.1), without and with the
builder's cache.

    python3 bench/bench_image.py [--iterations 7] [--dist DIR]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ci import image, log, names  # noqa: E402
from ci.config import Settings  # noqa: E402
from ci.dist import Dist  # noqa: E402
from ci.image import engine  # noqa: E402
from tests.helpers.images import import_busybox_base  # noqa: E402
from tests.helpers.mosn import make_checkout  # noqa: E402

REPOSITORY = "example.invalid/mp-image-bench/proxyv2"


def dist_for_bench(given: str | None, work: Path) -> Dist:
    if given:
        return Dist.load(given)
    from ci.builder import build

    checkout = make_checkout(work / "mosn")
    return build(Settings(mosn_src=str(checkout), dist=str(work / "dist"), quiet=True))


def sdk_build(client, dist: Dist, base: str, labels: dict[str, str], nocache: bool) -> float:
    started = time.perf_counter()
    binary = Dist.load(dist.root).binary(names.LINUX_TARBALL)
    reference, _ = engine.build_unverified(
        client, base, binary, labels, REPOSITORY, dist.source_date_epoch, nocache=nocache
    )
    elapsed = time.perf_counter() - started
    client.images.remove(reference)
    return elapsed


def cli_build(client, folder: Path, nocache: bool, i: int) -> float:
    reference = f"{REPOSITORY}:cli-{i}"
    cmd = ["docker", "build", "-q", "-t", reference, str(folder)]
    if nocache:
        cmd.insert(2, "--no-cache")
    env = {**os.environ, "DOCKER_BUILDKIT": "0"}  # the engine's builder, as the SDK's /build
    started = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    elapsed = time.perf_counter() - started
    client.images.remove(reference)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=7)
    parser.add_argument("--dist", help="a dist from `invoke build` (default: build the stand-in)")
    args = parser.parse_args()
    log.set_quiet(True)
    client = engine.connect()
    base = import_busybox_base(client, "example.invalid/mp-image-bench/base:busybox")
    with tempfile.TemporaryDirectory(prefix="mp-image-bench-") as tmp:
        work = Path(tmp)
        dist = dist_for_bench(args.dist, work)
        labels = image.image_labels(dist, dist.istio_version)
        folder = work / "context"
        folder.mkdir()
        (folder / "Dockerfile").write_text(engine.dockerfile(base, True, labels))
        (folder / "mosn").write_bytes(dist.binary(names.LINUX_TARBALL))
        (folder / "mosn").chmod(0o755)
        print(f"engine {client.version()['Version']}, {args.iterations} iterations, base {base}")
        print(f"{'':10} {'SDK median':>11} {'CLI median':>11} {'SDK/CLI':>8}")
        for nocache in (True, False):
            sdk, cli = [], []
            if not nocache:
                # An image that stays for the whole round keeps the cached steps alive.
                warm = ["docker", "build", "-q", "-t", f"{REPOSITORY}:warm", str(folder)]
                subprocess.run(
                    warm, check=True, env={**os.environ, "DOCKER_BUILDKIT": "0"},
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )  # fmt: skip
            for i in range(args.iterations):
                order = (0, 1) if i % 2 == 0 else (1, 0)
                for which in order:
                    if which == 0:
                        sdk.append(sdk_build(client, dist, base, labels, nocache))
                    else:
                        cli.append(cli_build(client, folder, nocache, i))
            s, c = statistics.median(sdk), statistics.median(cli)
            label = "no cache" if nocache else "cached"
            print(f"{label:10} {s:10.3f}s {c:10.3f}s {s / c:8.2f}")
    client.images.remove(f"{REPOSITORY}:warm")
    client.images.remove(base)


if __name__ == "__main__":
    main()
