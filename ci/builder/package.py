"""Reproducible tarballs: one file, usr/local/bin/mosn, that GNU `tar xz` extracts.

Compression is the slow part of a build (MOSN is ~100 MB), so it is parallel in the way pigz
is: the tar stream is cut into fixed-size blocks, each block is deflated on its own thread
(zlib releases the GIL) with the previous 32 KiB as its dictionary and ends on a byte
boundary (Z_SYNC_FLUSH), and the pieces are joined into one gzip member. Where a block is cut
depends only on BLOCK_SIZE, never on the number of threads or the timing, so the bytes
depend only on the input, GZIP_LEVEL, BLOCK_SIZE and the zlib version.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import struct
import tarfile
import tempfile
import threading
import zlib
from collections import deque
from collections.abc import Iterator, Mapping
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ci import names
from ci.dist import Dist, DistFile, remove_records
from ci.errors import UserError

# Measured on Go binaries against gzip -6 (bench/bench_package.py): level 4 is ~3% larger
# for ~40% of the CPU time per byte, so both compressed tarballs together cost less CPU than
# one `tar -czf` and meet that even on a machine with a single free core; level 5 is <1%
# larger but needs two free cores to keep up.
GZIP_LEVEL = 4
BLOCK_SIZE = 1 << 20
WINDOW = 32 * 1024
# ID1 ID2, deflate, no flags (so no name, no comment), mtime 0, no extra flags, OS "unknown".
GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
READ_SIZE = 1 << 20


def compress_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def tar_stream(binary: Path, mtime: int) -> Iterator[bytes]:
    """The bytes of a USTAR archive holding `binary` as usr/local/bin/mosn, read as it goes.

    Same layout as tarfile writes (header, data padded to 512, two zero blocks, padding to
    a whole 10 KiB record), without holding the binary in memory.
    """
    size = binary.stat().st_size
    info = tarfile.TarInfo(names.BINARY_PATH_IN_TARBALL)
    info.size = size
    info.mode = 0o755
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mtime = mtime
    yield info.tobuf(tarfile.USTAR_FORMAT, "utf-8", "surrogateescape")
    written = 0
    with open(binary, "rb") as src:
        while chunk := src.read(READ_SIZE):
            written += len(chunk)
            if written > size:
                break
            yield chunk
    if written != size:
        raise UserError(f"{binary} changed size while it was being packaged; build again")
    total = tarfile.BLOCKSIZE + size
    tail = -size % tarfile.BLOCKSIZE + 2 * tarfile.BLOCKSIZE
    total += tail
    tail += -total % tarfile.RECORDSIZE
    yield bytes(tail)


def _blocks(stream: Iterator[bytes], size: int) -> Iterator[bytes]:
    """Re-cut a stream of chunks into blocks of exactly `size` bytes (the last may be short)."""
    pending = bytearray()
    for chunk in stream:
        pending += chunk
        while len(pending) >= size:
            yield bytes(pending[:size])
            del pending[:size]
    if pending:
        yield bytes(pending)


def _deflate(block: bytes, dictionary: bytes, level: int, last: bool) -> bytes:
    if dictionary:
        comp = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS, zdict=dictionary)
    else:
        comp = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS)
    return comp.compress(block) + comp.flush(zlib.Z_FINISH if last else zlib.Z_SYNC_FLUSH)


def write_gzip(
    stream: Iterator[bytes],
    sink: BinaryIO,
    pool: ThreadPoolExecutor,
    level: int | None = None,
    block_size: int = BLOCK_SIZE,
) -> None:
    """Gzip `stream` into `sink` as one member, deflating blocks on `pool`.

    At most a few blocks per worker are in flight, so memory stays bounded whatever the size.
    """
    level = GZIP_LEVEL if level is None else level
    in_flight: deque[Future[bytes]] = deque()
    limit = 2 * compress_workers() + 2
    crc = 0
    length = 0
    previous = b""
    held: bytes | None = None
    sink.write(GZIP_HEADER)

    def submit(block: bytes, last: bool) -> None:
        nonlocal previous
        in_flight.append(pool.submit(_deflate, block, previous[-WINDOW:], level, last))
        previous = block
        while len(in_flight) > limit:
            sink.write(in_flight.popleft().result())

    try:
        # Hold one block back: only when the next arrives is it known not to be the last.
        for block in _blocks(stream, block_size):
            crc = zlib.crc32(block, crc)
            length += len(block)
            if held is not None:
                submit(held, last=False)
            held = block
        submit(held or b"", last=True)
        while in_flight:
            sink.write(in_flight.popleft().result())
    finally:
        for future in in_flight:
            future.cancel()
    sink.write(struct.pack("<II", crc, length & 0xFFFFFFFF))


class _HashingWriter:
    """Counts and hashes what passes through, so a tarball is not read back to checksum it."""

    def __init__(self, sink: BinaryIO) -> None:
        self.sink = sink
        self.digest = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        self.size += len(data)
        return self.sink.write(data)


class _Stopped(Exception):
    """Another platform's packaging failed or the user interrupted: stop this one too."""


def _unless_stopped(stream: Iterator[bytes], stop: threading.Event) -> Iterator[bytes]:
    for chunk in stream:
        if stop.is_set():
            raise _Stopped
        yield chunk


def write_tarball(
    binary: Path,
    sink: BinaryIO,
    mtime: int,
    pool: ThreadPoolExecutor | None = None,
    stop: threading.Event | None = None,
) -> tuple[int, str]:
    """Write the gzip'd tar of `binary` to `sink`; return its size and sha256."""
    writer = _HashingWriter(sink)
    stream = tar_stream(binary, mtime)
    if stop is not None:
        stream = _unless_stopped(stream, stop)
    with contextlib.ExitStack() as stack:
        if pool is None:
            pool = stack.enter_context(ThreadPoolExecutor(compress_workers()))
        write_gzip(stream, writer, pool)  # type: ignore[arg-type]
    return writer.size, writer.digest.hexdigest()


@dataclass(frozen=True)
class _Packed:
    platform: str
    names: tuple[str, ...]
    size: int
    sha256: str


def _package_platform(
    platform_name: str,
    binary: Path,
    staging: Path,
    mtime: int,
    pool: ThreadPoolExecutor,
    stop: threading.Event,
) -> _Packed:
    platform = names.PLATFORMS[platform_name]
    first, *copies = platform.tarballs
    with open(staging / first, "wb") as sink:
        size, digest = write_tarball(binary, sink, mtime, pool, stop)
    for copy in copies:
        # Same bytes under a second name: copy rather than compress again.
        shutil.copyfile(staging / first, staging / copy)
    return _Packed(platform_name, platform.tarballs, size, digest)


def write_dist(out: Path, binaries: Mapping[str, Path], template: Dist) -> Dist:
    """Package each platform's binary into `out` and describe them in the manifest.

    Everything is written into a hidden folder inside `out` first, so a failure or an
    interrupt before the end leaves `out` as it was. Then the old manifest goes, with the
    later stages' records of the old tarballs (ci.dist.STAGE_RECORDS), the
    tarballs and SHA256SUMS are renamed into place, and manifest.json comes last: whenever
    `out` holds a manifest.json, it describes the files beside it (a reader that loaded the
    old manifest just before a rebuild sees a checksum mismatch in `Dist.verify`, not a
    half-written file).
    """
    # Folders this call creates, deepest first: removed again if packaging fails.
    created = [folder for folder in (out, *out.parents) if not folder.exists()]
    try:
        out.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".mosn-build-", dir=out))
    except OSError as exc:
        _remove_empty(created)
        raise UserError(f"cannot write to {out}: {exc.strerror}; choose another --out") from None
    done = False
    try:
        # Platforms are packaged side by side, their blocks sharing one pool of workers.
        stop = threading.Event()
        with (
            ThreadPoolExecutor(compress_workers()) as pool,
            ThreadPoolExecutor(max(1, len(binaries))) as platforms,
        ):
            jobs = [
                platforms.submit(
                    _package_platform,
                    name,
                    binary,
                    staging,
                    template.source_date_epoch,
                    pool,
                    stop,
                )
                for name, binary in binaries.items()
            ]
            try:
                wait(jobs, return_when=FIRST_EXCEPTION)
                packed = [job.result() for job in jobs]
            except BaseException:
                # Leaving the pools waits for their threads: make them quit at the next block.
                stop.set()
                raise
        files = tuple(
            DistFile(name, p.platform, p.size, p.sha256) for p in packed for name in p.names
        )
        for f in files:
            os.chmod(staging / f.name, 0o644)
            _fsync(staging / f.name)
        Dist(**{**template.__dict__, "root": staging, "files": files}).write_manifest()
        _publish(staging, out, [f.name for f in files])
        done = True
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        raise UserError(
            f"packaging into {out} failed: {exc.strerror}{where};"
            " check the free space and permissions of --out"
        ) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if not done:
            _remove_empty(created)
    return Dist(**{**template.__dict__, "root": out, "files": files})


def _remove_empty(folders: list[Path]) -> None:
    for folder in folders:
        with contextlib.suppress(OSError):
            folder.rmdir()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _publish(staging: Path, out: Path, tarballs: list[str]) -> None:
    # Checked before anything is touched: a rename onto a folder would fail half-way.
    for name in (*tarballs, names.SHA256SUMS, names.MANIFEST):
        if (out / name).is_dir():
            raise UserError(f"{out / name} is a folder; move it away or choose another --out")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(out / names.MANIFEST)
    remove_records(out)
    for name in tarballs:
        os.replace(staging / name, out / name)
    _remove_stale_tarballs(out, set(tarballs))
    os.replace(staging / names.SHA256SUMS, out / names.SHA256SUMS)
    os.replace(staging / names.MANIFEST, out / names.MANIFEST)


def _remove_stale_tarballs(out: Path, keep: set[str]) -> None:
    """A tarball of ours left from an earlier build with other platforms would be published
    beside the new ones by a careless `cp`; drop it."""
    for platform in names.PLATFORMS.values():
        for name in platform.tarballs:
            if name not in keep:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(out / name)
