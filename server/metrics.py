"""Prometheus counters shared by every gunicorn worker.

Each worker process owns one small memory-mapped file of fixed counter slots under
`<root>/.tmp/metrics/`; a scrape sums all of them, so the figures cover the whole server no
matter which worker answers. Files of workers that exited stay and keep counting toward the
totals; the directory is emptied when the server starts.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import struct
import threading
from pathlib import Path

from server.store import TMP_DIR

REJECT_REASONS = (
    "unauthorized",
    "forbidden",
    "read_only",
    "bad_path",
    "too_large",
    "checksum_mismatch",
    "conflict",
    "client_disconnected",
    "disk_full",
    "length_required",
    "method_not_allowed",
    "not_found",
    "bad_request",
)
_STATUS_SLOTS = 600  # index = status code
_BYTES_IN = _STATUS_SLOTS
_BYTES_OUT = _STATUS_SLOTS + 1
_REASON_BASE = _STATUS_SLOTS + 2
_SLOTS = _REASON_BASE + len(REJECT_REASONS)
_FORMAT = "<Q"
_WIDTH = struct.calcsize(_FORMAT)


def metrics_dir(root: Path) -> Path:
    return root / TMP_DIR / "metrics"


class Metrics:
    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self._lock = threading.Lock()
        self._pid = -1
        self._map: mmap.mmap | None = None

    def reset(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        for old in self.directory.iterdir():
            with contextlib.suppress(FileNotFoundError):
                old.unlink()

    def _own_map(self) -> mmap.mmap:
        # Opened lazily per process: gunicorn forks workers after the app is created.
        pid = os.getpid()
        if self._pid != pid or self._map is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            path = self.directory / f"{pid}.bin"
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                os.ftruncate(fd, _SLOTS * _WIDTH)
                self._map = mmap.mmap(fd, _SLOTS * _WIDTH)
            finally:
                os.close(fd)
            self._pid = pid
        return self._map

    def _add(self, slot: int, amount: int) -> None:
        if amount <= 0:
            return
        with self._lock:
            area = self._own_map()
            (value,) = struct.unpack_from(_FORMAT, area, slot * _WIDTH)
            struct.pack_into(_FORMAT, area, slot * _WIDTH, value + amount)

    def served(self, status: int, sent: int) -> None:
        """One response and its body bytes, under a single lock (the download hot path)."""
        with self._lock:
            area = self._own_map()
            for slot, amount in ((status, 1), (_BYTES_OUT, sent)):
                (value,) = struct.unpack_from(_FORMAT, area, slot * _WIDTH)
                struct.pack_into(_FORMAT, area, slot * _WIDTH, value + amount)

    def request(self, status: int) -> None:
        if 0 <= status < _STATUS_SLOTS:
            self._add(status, 1)

    def bytes_in(self, amount: int) -> None:
        self._add(_BYTES_IN, amount)

    def bytes_out(self, amount: int) -> None:
        self._add(_BYTES_OUT, amount)

    def rejected(self, reason: str) -> None:
        index = (
            REJECT_REASONS.index(reason)
            if reason in REJECT_REASONS
            else REJECT_REASONS.index("bad_request")
        )
        self._add(_REASON_BASE + index, 1)

    def totals(self) -> list[int]:
        sums = [0] * _SLOTS
        if not self.directory.is_dir():
            return sums
        for path in self.directory.glob("*.bin"):
            with contextlib.suppress(OSError):
                data = path.read_bytes()
                for slot, (value,) in enumerate(
                    struct.iter_unpack(_FORMAT, data[: _SLOTS * _WIDTH])
                ):
                    sums[slot] += value
        return sums

    def render(self) -> str:
        """The Prometheus text exposition format (version 0.0.4)."""
        sums = self.totals()
        lines = [
            "# HELP artifact_http_requests_total HTTP requests answered, by status code.",
            "# TYPE artifact_http_requests_total counter",
        ]
        for status in range(_STATUS_SLOTS):
            if sums[status]:
                lines.append(f'artifact_http_requests_total{{status="{status}"}} {sums[status]}')
        lines += [
            "# HELP artifact_received_bytes_total Request body bytes received by uploads.",
            "# TYPE artifact_received_bytes_total counter",
            f"artifact_received_bytes_total {sums[_BYTES_IN]}",
            "# HELP artifact_sent_bytes_total Response body bytes sent.",
            "# TYPE artifact_sent_bytes_total counter",
            f"artifact_sent_bytes_total {sums[_BYTES_OUT]}",
            "# HELP artifact_uploads_rejected_total Write requests refused, by reason.",
            "# TYPE artifact_uploads_rejected_total counter",
        ]
        for index, reason in enumerate(REJECT_REASONS):
            lines.append(
                f'artifact_uploads_rejected_total{{reason="{reason}"}} {sums[_REASON_BASE + index]}'
            )
        return "\n".join(lines) + "\n"
