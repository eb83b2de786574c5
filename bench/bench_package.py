"""Time packaging a ~100 MB Go binary into all three tarballs against one `tar -czf`.

    python3 bench/bench_package.py [--mib 100] [--rounds 3]
    python3 bench/bench_package.py --linux dist-linux/mosn --darwin dist-darwin/mosn

With --linux (and optionally --darwin) the inputs are real MOSN binaries, as they are;
without --darwin the Linux binary, rotated, stands in for the macOS one.

The inputs are real Go machine code: the `go` tool padded with its own bytes to the size
asked for. The darwin input uses a different padding so that nothing can be shared between
the two compressions. Each round runs `tar -czf` of the Linux input (GNU tar + gzip -6, the
usual way to make such a tarball) and `ci.builder.package.write_dist` for linux/amd64 and
darwin/amd64 (three tarballs: mosn.tar.gz, mosn-centos.tar.gz, mosn-macos.tar.gz), in
alternation, and the best time of each is compared. Target: ratio <= 1.0 in time and
<= 1.05 in size, and every round's tarballs byte-identical.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ci import names
from ci.builder import package  # noqa: E402
from ci.dist import Dist, sha256_file  # noqa: E402


def go_tool() -> Path:
    found = shutil.which("go")
    if not found:
        sys.exit("bench_package: needs Go's `go` tool on PATH (Debian: apt-get install golang-go)")
    return Path(found).resolve()


def padded_binary(source: bytes, dest: Path, size: int, rotate: int) -> None:
    """`source` followed by copies of itself rotated by `rotate` bytes, cut to `size`."""
    pad = source[rotate:] + source[:rotate]
    with open(dest, "wb") as out:
        out.write(source[:size])
        written = min(size, len(source))
        while written < size:
            piece = pad[: size - written]
            out.write(piece)
            written += len(piece)


def cpu_seconds(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mib", type=int, default=100, help="input size in MiB (default 100)")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds of each (default 3)")
    parser.add_argument(
        "--level", type=int, default=package.GZIP_LEVEL, help="gzip level to try (default: ours)"
    )
    parser.add_argument("--linux", type=Path, help="a real linux MOSN binary to pack as is")
    parser.add_argument("--darwin", type=Path, help="a real darwin MOSN binary (with --linux)")
    args = parser.parse_args()
    package.GZIP_LEVEL = args.level
    size = args.mib << 20
    if args.darwin and not args.linux:
        sys.exit("bench_package: --darwin needs --linux")

    with tempfile.TemporaryDirectory(prefix="mp-build-bench-") as tmp:
        work = Path(tmp)
        source = (args.linux or go_tool()).read_bytes()
        linux, darwin = work / "linux" / "mosn", work / "darwin" / "mosn"
        linux.parent.mkdir()
        darwin.parent.mkdir()
        if args.linux:
            size = len(source)
            linux.write_bytes(source)
        else:
            padded_binary(source, linux, size, rotate=0)
        if args.darwin:
            darwin.write_bytes(args.darwin.read_bytes())
        else:
            padded_binary(source, darwin, size, rotate=len(source) // 3)
        what = f"real MOSN {args.linux}" if args.linux else "padded `go` tool"
        template = Dist(
            root=work,
            mosn_version="bench",
            mosn_version_safe="bench",
            istio_version="1.10.6",
            git_commit="",
            go_version="",
            source_date_epoch=1648166400,
            cgo=False,
        )
        binaries = {"linux/amd64": linux, "darwin/amd64": darwin}

        tar_times, ours_times, digests = [], [], set()
        tar_cpu, ours_cpu = [], []
        tar_size = ours_size = 0
        for round_no in range(args.rounds):
            baseline = work / "baseline.tar.gz"
            started, cpu = time.perf_counter(), cpu_seconds(resource.RUSAGE_CHILDREN)
            subprocess.run(["tar", "-czf", baseline, "-C", linux.parent, "mosn"], check=True)
            tar_times.append(time.perf_counter() - started)
            tar_cpu.append(cpu_seconds(resource.RUSAGE_CHILDREN) - cpu)
            tar_size = baseline.stat().st_size
            baseline.unlink()

            out = work / f"dist-{round_no}"
            started, cpu = time.perf_counter(), cpu_seconds(resource.RUSAGE_SELF)
            dist = package.write_dist(out, binaries, template)
            ours_times.append(time.perf_counter() - started)
            ours_cpu.append(cpu_seconds(resource.RUSAGE_SELF) - cpu)
            ours_size = dist.file(names.LINUX_TARBALL).size
            digests.add(tuple(sha256_file(dist.path(f.name)) for f in dist.files))
            shutil.rmtree(out)

    best_tar, best_ours = min(tar_times), min(ours_times)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"input: {size / 2**20:.1f} MiB linux ({what}), {args.rounds} rounds")
    print(
        f"cores: {package.compress_workers()}, gzip level {package.GZIP_LEVEL}, "
        f"block {package.BLOCK_SIZE >> 10} KiB"
    )
    print(
        f"tar -czf (1 tarball):            best {best_tar:6.2f}s  "
        f"({', '.join(f'{t:.2f}' for t in tar_times)})  {tar_size} bytes"
    )
    print(
        f"ci.builder.package (3 tarballs, 2 compressed): best {best_ours:6.2f}s  "
        f"({', '.join(f'{t:.2f}' for t in ours_times)})  {ours_size} bytes (mosn.tar.gz)"
    )
    print(f"time ratio (ours / tar -czf): {best_ours / best_tar:.2f}   target <= 1.00")
    # Each round's pair ran back to back, so its ratio sees about the same machine load.
    per_round = sorted(o / t for o, t in zip(ours_times, tar_times, strict=True))
    print(
        f"per-round ratios: {', '.join(f'{r:.2f}' for r in per_round)}"
        f" (median {statistics.median(per_round):.2f})"
    )
    print(
        f"CPU seconds: tar -czf {min(tar_cpu):.2f}, ours {min(ours_cpu):.2f}"
        f" (ratio {min(ours_cpu) / min(tar_cpu):.2f}; what a fully loaded machine would see)"
    )
    print(f"size ratio (ours / tar -czf): {ours_size / tar_size:.3f}  target <= 1.05")
    print(f"byte-identical across rounds: {'yes' if len(digests) == 1 else 'NO'}")
    print(f"peak RSS of this process: {peak_mib:.0f} MiB (linux input {size / 2**20:.1f} MiB)")
    if len(digests) != 1:
        sys.exit(1)


if __name__ == "__main__":
    main()
