"""Artifacts on disk: streamed, hashed, atomic uploads and checksum sidecars that cannot lie.

Layout under the root:
- `.blobs/sha256/ab/abcd...`  the bytes, once per content, named by their sha256 (as
                       registries and devpi store files): a blob never changes;
- `a/b/name`           the artifact: a hard link to its blob (the same inode), so names read
                       like any static file tree;
- `a/b/.name.meta`     its sidecar: sha256, size and the inode fingerprint (inode number,
                       size, mtime in ns) of the file it describes;
- `.tmp/uploads/`      uploads in progress (same filesystem, so the final rename is atomic);
- `.tmp/locks/`        lock files that serialise the commit step per path;
- `.tmp/retired/<sha>` blobs no name links to any more (overwritten or deleted), removed
                       once RETIRE_GRACE seconds have passed;
- `.blobs/current/ab/<sha256 of the name>-<sha>`  behind the nginx front: a symlink to the
                       blob, which exists only while the name holds that blob (see
                       link_current); emptied at every start.

Why the fingerprint: the data file and its sidecar are two renames, and a crash can fall
between them. A reader trusts a sidecar only when its fingerprint matches the file it has
open; otherwise it hashes the file again and repairs the sidecar, so an ETag is never stale.

Why blobs: behind the nginx front the app answers with headers for the file it opened and
nginx opens the file to send afterwards. It opens the blob named by the sha256 the app
sent, which holds those bytes whatever happened to the name meanwhile (an overwrite, a
DELETE); a blob is kept RETIRE_GRACE seconds after its last name went. The link count is
the blob's reference count: 1 means only the blob itself is left.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import io
import itertools
import json
import os
import shutil
import stat
import sys
import tempfile
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from server import paths
from server.headers import CHECKSUM_HEADER

CHUNK = 1024 * 1024
LOCK_BUCKETS = 64
TMP_DIR = ".tmp"
BLOBS_DIR = ".blobs/sha256"
CURRENT_DIR = ".blobs/current"
# How long a blob outlives its last name: nginx opens it microseconds after the app's answer.
RETIRE_GRACE = 60.0
SIDECAR_SUFFIX = ".meta"
KNOWN_LIMIT = 10_000
_DISK_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


class StoreError(Exception):
    """A refused operation, with a message for the client; the views say what it is in HTTP."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidPath(StoreError):
    """Not a path an artifact may have, or one that leads outside the root."""


class NotFound(StoreError):
    pass


class Conflict(StoreError):
    """The path is taken: by different bytes (overwrite denied), a directory, or a file."""


class TooLarge(StoreError):
    pass


class ChecksumMismatch(StoreError):
    pass


class ClientDisconnected(StoreError):
    """The body ended before it was whole."""


class DiskFull(StoreError):
    pass


@dataclass(frozen=True)
class Artifact:
    path: str
    size: int
    sha256: str
    modified: float


@dataclass(frozen=True)
class Entry:
    """One line of a directory listing: a sub-directory (artifact None) or an artifact."""

    name: str
    path: str
    artifact: Artifact | None


def _fingerprint(st: os.stat_result) -> dict:
    return {"ino": st.st_ino, "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _sidecar(target: Path) -> Path:
    return target.with_name(f".{target.name}{SIDECAR_SUFFIX}")


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _off_loop(function, *args):
    """Run a call that may block on the disk for long (fsync, hashing a large file).

    Under the gevent worker one thread serves every connection of the process: such a call
    goes to gevent's thread pool, so the others go on meanwhile.
    """
    monkey = sys.modules.get("gevent.monkey")
    if monkey is not None and monkey.is_module_patched("socket"):
        import gevent

        return gevent.get_hub().threadpool.apply(function, args)
    return function(*args)


def _hash_fd(fd: int) -> str:
    digest = hashlib.sha256()
    offset = 0
    while chunk := os.pread(fd, CHUNK, offset):
        digest.update(chunk)
        offset += len(chunk)
    return digest.hexdigest()


class Store:
    def __init__(self, root: Path, *, max_upload_size: int, allow_overwrite: bool) -> None:
        self.root = Path(root)
        self.max_upload_size = max_upload_size
        self.allow_overwrite = allow_overwrite
        self._root_text = str(self.root)
        self._real_root = os.path.realpath(self.root)
        # Per process: file path -> (inode fingerprint, Artifact) of sidecars already read.
        self._known: dict[str, tuple[tuple[int, int, int, int], Artifact]] = {}
        self._hashing: dict[str, threading.Lock] = {}
        self.uploads = self.root / TMP_DIR / "uploads"
        self.locks = self.root / TMP_DIR / "locks"
        self.retired = self.root / TMP_DIR / "retired"
        self.blobs = self.root / BLOBS_DIR
        self.current = self.root / CURRENT_DIR

    # -- start-up ---------------------------------------------------------------------------

    def make_layout(self) -> None:
        """Create the root's folders, where missing; nothing else changes."""
        for directory in (self.uploads, self.locks, self.retired, self.blobs, self.current):
            directory.mkdir(parents=True, exist_ok=True)

    def prepare(self) -> int:
        """At a start, before any request: create the layout, and remove the uploads a crash
        left behind (return how many) and the blobs no name links to."""
        # The last run's links are garbage: nothing kept names them (server.front empties
        # nginx's caches at start), and a blob they lead to may go below.
        shutil.rmtree(self.current, ignore_errors=True)
        self.make_layout()
        removed = 0
        for leftover in self.uploads.iterdir():
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()
                removed += 1
        self._collect_unused_blobs()
        return removed

    def _collect_unused_blobs(self) -> None:
        # At start nothing is in flight: every blob no name links to can go now, those whose
        # retirement was never marked (a crash, a full disk) too.
        for shard in os.scandir(self.blobs):
            if not shard.is_dir(follow_symlinks=False):
                continue
            for blob in os.scandir(shard.path):
                with contextlib.suppress(OSError):
                    if blob.stat(follow_symlinks=False).st_nlink == 1:
                        os.unlink(blob.path)
        for marker in os.scandir(self.retired):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(marker.path)

    # -- blobs ------------------------------------------------------------------------------

    def blob_name(self, sha: str) -> str:
        """Where the blob of `sha` lives, relative to the blobs directory: `ab/abcd...`."""
        return f"{sha[:2]}/{sha}"

    def _blob(self, sha: str) -> Path:
        return self.blobs / sha[:2] / sha

    def blob_of(self, handle: io.FileIO, artifact: Artifact) -> str | None:
        """The blob (blob_name) holding exactly the inode `handle` has open, linking it there
        if no blob holds these bytes yet (a file placed by hand, or a root from before
        blobs); None when another inode holds that name (the caller sends the bytes itself)."""
        blob = self._blob(artifact.sha256)
        opened = os.fstat(handle.fileno())
        try:
            try:
                found = os.stat(blob)
            except FileNotFoundError:
                self._link_opened(artifact.path, opened, blob)
                found = os.stat(blob)
        except OSError:
            return None
        if (found.st_dev, found.st_ino) == (opened.st_dev, opened.st_ino):
            return self.blob_name(artifact.sha256)
        return None

    def link_current(self, handle: io.FileIO, artifact: Artifact) -> str | None:
        """A name (relative to CURRENT_DIR) that leads to the blob of the bytes `handle` has
        open for as long as artifact.path holds them, and to nothing once a PUT or DELETE has
        changed that name: nginx keeps a redirect to it, and asks the app again when it is
        gone. None when the name holds other bytes already (call blob_of first)."""
        sha = artifact.sha256
        name = f"{sha[:2]}/{_name_hash(artifact.path)}-{sha}"
        link = self.current / name
        for _ in range(2):
            try:
                os.symlink(f"../../sha256/{sha[:2]}/{sha}", link)
                break
            except FileExistsError:
                break
            except FileNotFoundError:
                link.parent.mkdir(parents=True, exist_ok=True)
        # After the link exists: a change of the name from now on removes it (put, delete),
        # and a change before shows here.
        if self._still_names(handle, artifact):
            return name
        with contextlib.suppress(FileNotFoundError):
            os.unlink(link)
        return None

    def _drop_current(self, rel: str, sha: str) -> None:
        """`rel` no longer holds the blob of `sha`: its link_current goes (before the write
        is answered, so no later read is sent the old bytes)."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.current / sha[:2] / f"{_name_hash(rel)}-{sha}")

    def _still_names(self, handle: io.FileIO, artifact: Artifact) -> bool:
        try:
            named = os.stat(os.path.join(self._root_text, artifact.path))
        except OSError:
            return False
        opened = os.fstat(handle.fileno())
        return (named.st_dev, named.st_ino) == (opened.st_dev, opened.st_ino)

    def _link_opened(self, rel: str, opened: os.stat_result, blob: Path) -> None:
        # By name, to a temporary link first: the name may hold other bytes by now, and only
        # the inode that was opened (and hashed) may become the blob of its sha256.
        link = self._new_link(os.path.join(self._root_text, rel))
        try:
            if os.stat(link).st_ino == opened.st_ino:
                blob.parent.mkdir(exist_ok=True)
                with contextlib.suppress(FileExistsError):
                    os.link(link, blob)
        finally:
            os.unlink(link)

    def _link_blob(self, received: str, sha: str, size: int) -> str:
        """The file to rename into place for a body `received` with this sha256: `received`
        itself, now also the blob; or a new link to the blob that holds these bytes already."""
        blob = self._blob(sha)
        blob.parent.mkdir(exist_ok=True)
        while True:
            try:
                os.link(received, blob)
                return received
            except FileExistsError:
                pass
            try:
                if os.stat(blob).st_size != size:  # not these bytes (changed by hand): ours win
                    os.replace(self._new_link(received), blob)
                    return received
                return self._new_link(str(blob))
            except FileNotFoundError:
                continue  # swept at this very moment: link ours instead

    def _new_link(self, source: str) -> str:
        name = os.path.join(self.uploads, f"{os.getpid()}-link-{os.urandom(8).hex()}")
        os.link(source, name)
        return name

    def _retire_if_unused(self, sha: str) -> None:
        """Mark the blob of `sha` for removal if no name links to it any more."""
        try:
            if os.stat(self._blob(sha)).st_nlink > 1:
                return
        except FileNotFoundError:
            return
        marker = self.retired / sha
        with contextlib.suppress(OSError):  # a full disk: collected at the next start instead
            marker.touch()
            os.utime(marker)

    def _sweep(self) -> None:
        """Remove the retired blobs whose grace has passed and that are still unused."""
        now = time.time()
        try:
            markers = list(os.scandir(self.retired))
        except FileNotFoundError:
            return
        for marker in markers:
            try:
                if now - marker.stat().st_mtime < RETIRE_GRACE:
                    continue
                blob = self._blob(marker.name)
                with contextlib.suppress(FileNotFoundError):
                    if os.stat(blob).st_nlink == 1:
                        os.unlink(blob)
                os.unlink(marker.path)
            except FileNotFoundError:
                continue

    # -- paths ------------------------------------------------------------------------------

    def locate(self, rel: str) -> Path:
        """The filesystem path of artifact `rel`, refusing anything a symlink takes outside."""
        try:
            paths.check(rel)
        except paths.BadPath as exc:
            raise InvalidPath(str(exc)) from None
        target = self.root / rel
        if not paths.inside(self.root, target):
            raise InvalidPath("path leads outside the server root")
        return target

    def locate_directory(self, rel: str) -> Path:
        try:
            clean = paths.check_directory(rel)
        except paths.BadPath as exc:
            raise InvalidPath(str(exc)) from None
        target = self.root / clean if clean else self.root
        if not paths.inside(self.root, target):
            raise InvalidPath("path leads outside the server root")
        return target

    @contextlib.contextmanager
    def _locked(self, rel: str) -> Iterator[None]:
        # flock conflicts between separate open() calls, so it serialises threads of one
        # worker as well as separate worker processes.
        bucket = zlib.crc32(rel.encode()) % LOCK_BUCKETS
        with open(self.locks / str(bucket), "a+b") as handle:
            # Polled, never a blocking flock: under gevent the holder may be another greenlet
            # of this very thread, which a blocking call would never let finish.
            while True:
                try:
                    fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    time.sleep(0.002)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    # -- reading ----------------------------------------------------------------------------

    def _recorded(self, rel: str, target: str, st: os.stat_result) -> Artifact | None:
        """The artifact as its sidecar records it, if the sidecar describes this very inode."""
        fingerprint = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        known = self._known.get(target)
        if known is not None and known[0] == fingerprint:
            # The same inode, unchanged since its sidecar was read: no need to read it again.
            return known[1]
        found = self._read_sidecar(rel, target, st)
        if found is not None:
            self._remember(target, st, found)
        return found

    def _remember(self, target: str, st: os.stat_result, found: Artifact) -> None:
        if len(self._known) >= KNOWN_LIMIT:
            self._known.clear()
        self._known[target] = ((st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns), found)

    def _read_sidecar(self, rel: str, target: str, st: os.stat_result) -> Artifact | None:
        head, name = os.path.split(target)
        try:
            # os-level calls: this runs on every download and io.open costs several times more.
            fd = os.open(os.path.join(head, f".{name}{SIDECAR_SUFFIX}"), os.O_RDONLY)
            try:
                recorded = json.loads(os.read(fd, 4096))
            finally:
                os.close(fd)
            if (recorded["ino"], recorded["size"], recorded["mtime_ns"]) == (
                st.st_ino,
                st.st_size,
                st.st_mtime_ns,
            ):
                return Artifact(rel, st.st_size, recorded["sha256"], st.st_mtime)
        except (OSError, ValueError, KeyError, TypeError):
            pass
        return None

    def open(self, rel: str, *, rehash: bool = True) -> tuple[io.FileIO, Artifact] | None:
        """Open artifact `rel` for reading; the Artifact describes exactly the bytes opened.

        A missing or stale sidecar means hashing the file again (and repairing the sidecar);
        with rehash=False the caller gets None instead, to take the slow path itself.
        """
        try:
            paths.check(rel)
        except paths.BadPath as exc:
            raise InvalidPath(str(exc)) from None
        target = os.path.join(self._root_text, rel)
        try:
            # Unbuffered: gunicorn sends it with sendfile; the caller owns it (WSGI file wrapper).
            handle = io.FileIO(target, "r")
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound(f"no artifact at /{rel}") from None
        except IsADirectoryError:
            raise NotFound(f"/{rel} is a directory") from None
        try:
            fd = handle.fileno()
            # Judge where the open file really is, not the path: no window for a symlink swap.
            if not self._fd_inside_root(fd, target):
                raise InvalidPath("path leads outside the server root")
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise NotFound(f"/{rel} is not a regular file")
            found = self._recorded(rel, target, st)
            if found is None:
                if not rehash:
                    handle.close()
                    return None
                found = self._rehash(rel, target, fd, st)
            return handle, found
        except BaseException:
            handle.close()
            raise

    def _rehash(self, rel: str, target: str, fd: int, st: os.stat_result) -> Artifact:
        # One hash per file at a time in this process: a thousand readers of a file whose
        # sidecar is missing wait for the first one's result instead of hashing it each.
        # (Locks are made here, in the worker, so under gevent they are gevent's.)
        lock = self._hashing.setdefault(target, threading.Lock())
        try:
            with lock:
                found = self._recorded(rel, target, st)
                if found is None:
                    found = Artifact(rel, st.st_size, _off_loop(_hash_fd, fd), st.st_mtime)
                    self._remember(target, st, found)
                    with contextlib.suppress(OSError):
                        self._write_sidecar(Path(target), found.sha256, st)
        finally:
            self._hashing.pop(target, None)
        return found

    def _fd_inside_root(self, fd: int, target: str) -> bool:
        try:
            real = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # no /proc: resolve the path instead
            return paths.inside(self.root, Path(target))
        return real.startswith(self._real_root + os.sep)

    def info(self, rel: str) -> Artifact | None:
        try:
            handle, artifact = self.open(rel)  # type: ignore[misc] - rehash=True never gives None
        except (NotFound, InvalidPath):
            return None
        handle.close()
        return artifact

    def is_directory(self, rel: str) -> bool:
        try:
            return self.locate_directory(rel).is_dir()
        except InvalidPath:
            return False

    def entries(self, rel: str) -> list[Entry]:
        """One directory level, sub-directories first, names sorted; dot names hidden."""
        directory = self.locate_directory(rel)
        prefix = rel.strip("/")
        prefix = f"{prefix}/" if prefix else ""
        try:
            scanned = sorted(os.scandir(directory), key=lambda e: e.name)
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound(f"no directory at /{rel}") from None
        dirs, files = [], []
        for item in scanned:
            if item.name.startswith(".") or not paths.inside(self.root, Path(item.path)):
                continue
            child = prefix + item.name
            if item.is_dir():
                dirs.append(Entry(item.name, child, None))
            elif item.is_file():
                artifact = self.info(child) if _valid(child) else None
                if artifact:
                    files.append(Entry(item.name, child, artifact))
        return dirs + files

    def walk(
        self, prefix: str = "", *, after: str | None = None, limit: int | None = None
    ) -> tuple[list[Artifact], bool]:
        """Artifacts whose path starts with `prefix` (a plain string prefix, like S3).

        In path order, segment by segment; only those after the path `after`, at most
        `limit`; and whether more follow. A page reads the artifacts it returns and the
        directories on the way to them, never the whole tree, however large it is.
        """
        start = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        try:
            base = self.locate_directory(start)
        except InvalidPath:
            return [], False
        cursor = tuple(after.split("/")) if after else None
        found = list(
            itertools.islice(
                self._artifacts_under(
                    base, tuple(start.split("/")) if start else (), prefix, cursor
                ),
                None if limit is None else limit + 1,
            )
        )
        more = limit is not None and len(found) > limit
        return found[:limit] if more else found, more

    def _artifacts_under(
        self, directory: Path, parts: tuple[str, ...], prefix: str, cursor: tuple[str, ...] | None
    ) -> Iterator[Artifact]:
        try:
            scanned = sorted(os.scandir(directory), key=lambda e: e.name)
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            return
        for item in scanned:
            if item.name.startswith("."):
                continue
            here = (*parts, item.name)
            if cursor is not None and here < cursor[: len(here)]:
                continue  # this name, and all below it, comes before the cursor
            rel = "/".join(here)
            if item.is_dir(follow_symlinks=False):
                if (
                    prefix.startswith(rel + "/") or (rel + "/").startswith(prefix)
                ) and paths.inside(self.root, Path(item.path)):
                    yield from self._artifacts_under(Path(item.path), here, prefix, cursor)
            elif (
                item.is_file()
                and (cursor is None or here > cursor)
                and (
                    rel.startswith(prefix)
                    and _valid(rel)
                    and paths.inside(self.root, Path(item.path))
                    and (artifact := self.info(rel))
                )
            ):
                yield artifact

    # -- writing ----------------------------------------------------------------------------

    def put(
        self,
        rel: str,
        stream: BinaryIO,
        *,
        content_length: int | None,
        expected_sha256: str | None = None,
    ) -> tuple[Artifact, bool]:
        """Store the stream at `rel`; return (artifact, created). Nothing is visible unless whole."""
        target = self.locate(rel)
        if content_length is not None and content_length > self.max_upload_size:
            raise TooLarge(
                f"upload of {content_length} bytes is over the {self.max_upload_size}-byte limit"
            )
        if expected_sha256 is not None:
            expected_sha256 = expected_sha256.strip().lower()
        fd, tmp = tempfile.mkstemp(dir=self.uploads, prefix=f"{os.getpid()}-")
        meta_tmp = placed = None
        try:
            sha, size = self._receive(stream, fd)
            if content_length is not None and size != content_length:
                # gunicorn ends the body stream quietly when the client goes away.
                raise ClientDisconnected(
                    f"the body ended after {size} of {content_length} bytes; nothing stored"
                )
            if expected_sha256 is not None and sha != expected_sha256:
                raise ChecksumMismatch(
                    f"body sha256 is {sha}, {CHECKSUM_HEADER} said {expected_sha256}; nothing stored"
                )
            os.close(fd)
            fd = -1
            placed = self._link_blob(tmp, sha, size)
            st = os.stat(placed)
            # The sidecar is written before anything is renamed so a full disk fails here,
            # while nothing is visible yet.
            meta_tmp = self._sidecar_temp(sha, st)
            with self._locked(rel):
                existing = self.info(rel) if target.exists() else None
                if existing is not None:
                    if existing.sha256 == sha:
                        return existing, False
                    if not self.allow_overwrite:
                        raise Conflict(
                            f"/{rel} exists with different bytes (sha256 {existing.sha256}) and overwrite is denied"
                        )
                self._place(rel, target, placed)
                os.replace(meta_tmp, _sidecar(target))
                _fsync_dir(target.parent)
                if existing is not None:
                    self._drop_current(rel, existing.sha256)
                    self._retire_if_unused(existing.sha256)
            return Artifact(rel, size, sha, st.st_mtime), True
        except OSError as exc:
            if exc.errno in _DISK_FULL:
                raise DiskFull("no space left on the server's disk; nothing was stored") from None
            raise
        finally:
            if fd >= 0:
                os.close(fd)
            for leftover in (tmp, placed, meta_tmp):
                if leftover:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(leftover)
            if placed:
                # A blob made for bytes that no name took (refused, or already there).
                self._retire_if_unused(sha)
            self._sweep()

    def _place(self, rel: str, target: Path, placed: str) -> None:
        # A DELETE of the directory's last other file may remove the directory between
        # making it and renaming into it: make it again.
        for attempt in range(3):
            self._make_parents(rel, target)
            if target.is_dir():
                raise Conflict(f"/{rel} is a directory")
            try:
                os.replace(placed, target)
                return
            except FileNotFoundError:
                if attempt == 2:
                    raise

    def _receive(self, stream: BinaryIO, fd: int) -> tuple[str, int]:
        digest = hashlib.sha256()
        size = 0
        while True:
            try:
                chunk = stream.read(CHUNK)
            except StoreError:
                raise
            except Exception:
                # Werkzeug raises ClientDisconnected, gunicorn NoMoreData or a socket error:
                # for us they all mean the body never arrived whole.
                raise ClientDisconnected(
                    "the client went away before the whole body arrived"
                ) from None
            if not chunk:
                break
            size += len(chunk)
            if size > self.max_upload_size:
                raise TooLarge(f"upload passed the {self.max_upload_size}-byte limit")
            digest.update(chunk)
            view = memoryview(chunk)
            while view:
                written = os.write(fd, view)
                view = view[written:]
        # Artifacts are public to every reader of the root (mkstemp made it 0600).
        os.fchmod(fd, 0o644)
        _off_loop(os.fsync, fd)
        return digest.hexdigest(), size

    def _make_parents(self, rel: str, target: Path) -> None:
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise Conflict(f"a parent of /{rel} is a file, not a directory") from None
        if not paths.inside(self.root, target.parent):
            raise InvalidPath("path leads outside the server root")

    def _sidecar_temp(self, sha: str, st: os.stat_result) -> str:
        fd, name = tempfile.mkstemp(dir=self.uploads, prefix=f"{os.getpid()}-meta-")
        try:
            payload = json.dumps({"sha256": sha, **_fingerprint(st)}).encode()
            os.write(fd, payload)
            os.fchmod(fd, 0o644)
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            os.unlink(name)
            raise
        os.close(fd)
        return name

    def _write_sidecar(self, target: Path, sha: str, st: os.stat_result) -> None:
        name = self._sidecar_temp(sha, st)
        try:
            os.replace(name, _sidecar(target))
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name)
            raise

    def delete(self, rel: str) -> Artifact:
        target = self.locate(rel)
        with self._locked(rel):
            artifact = self.info(rel)
            if artifact is None:
                if target.is_dir():
                    raise Conflict(f"/{rel} is a directory; delete the artifacts in it")
                raise NotFound(f"no artifact at /{rel}")
            os.unlink(target)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(_sidecar(target))
            # Another DELETE may have removed the emptied directory already.
            with contextlib.suppress(FileNotFoundError):
                _fsync_dir(target.parent)
            self._drop_current(rel, artifact.sha256)
            self._retire_if_unused(artifact.sha256)
            self._prune(target.parent)
        self._sweep()
        return artifact

    def _prune(self, directory: Path) -> None:
        """Remove `directory` and its parents up to the root while they are empty: a folder
        whose last artifact was deleted leaves the listings."""
        while directory != self.root and paths.inside(self.root, directory):
            try:
                directory.rmdir()
            except OSError:  # not empty (or gone): done
                return
            directory = directory.parent


def _name_hash(rel: str) -> str:
    return hashlib.sha256(rel.encode("utf-8", "surrogatepass")).hexdigest()


def _valid(rel: str) -> bool:
    try:
        paths.check(rel)
    except paths.BadPath:
        return False
    return True
