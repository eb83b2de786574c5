"""Prometheus counters for the whole server, whichever gunicorn worker answers.

prometheus_client's multiprocess mode: each process writes its counters to memory-mapped
files of its own under `<root>/.tmp/metrics/`, and a scrape sums them all. Files of workers
that exited stay and keep counting toward the totals; the launcher empties the directory at
each start (share_between_workers). An app built without the launcher (Flask's test client)
counts in its own process.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, generate_latest, values
from prometheus_client.multiprocess import MultiProcessCollector

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
# prometheus_client's switch to multiprocess mode, and where the files go.
MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"


def metrics_dir(root: Path) -> Path:
    return root / TMP_DIR / "metrics"


def share_between_workers(directory: Path) -> None:
    """Make the counters this process creates from now on, and those of the workers it
    forks, count in `directory`, emptied first. The launcher calls it once per start, before
    the app is created."""
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.iterdir():
        with contextlib.suppress(FileNotFoundError):
            old.unlink()
    os.environ[MULTIPROCESS_DIR] = str(directory)
    # prometheus_client reads the variable once, when it is imported, which was before the
    # root was known: it makes the same choice again now.
    values.ValueClass = values.get_value_class()


class Metrics:
    def __init__(self) -> None:
        self._registry = CollectorRegistry(auto_describe=True)
        self._shared = os.environ.get(MULTIPROCESS_DIR)
        self._requests = Counter(
            "artifact_http_requests",
            "HTTP requests answered, by status code.",
            ["status"],
            registry=self._registry,
        )
        self._received = Counter(
            "artifact_received_bytes",
            "Request body bytes received by uploads.",
            registry=self._registry,
        )
        self._sent = Counter(
            "artifact_sent_bytes", "Response body bytes sent.", registry=self._registry
        )
        rejected = Counter(
            "artifact_uploads_rejected",
            "Write requests refused, by reason.",
            ["reason"],
            registry=self._registry,
        )
        # Every reason is shown, at 0 until it happens; a status only once it was answered.
        self._rejected = {reason: rejected.labels(reason) for reason in REJECT_REASONS}
        self._by_status: dict[int, Counter] = {}

    def _status(self, status: int) -> Counter:
        child = self._by_status.get(status)
        if child is None:
            child = self._by_status[status] = self._requests.labels(str(status))
        return child

    def served(self, status: int, sent: int) -> None:
        """One response and its body bytes (the download hot path)."""
        self._status(status).inc()
        if sent > 0:
            self._sent.inc(sent)

    def request(self, status: int) -> None:
        self._status(status).inc()

    def bytes_in(self, amount: int) -> None:
        if amount > 0:
            self._received.inc(amount)

    def bytes_out(self, amount: int) -> None:
        if amount > 0:
            self._sent.inc(amount)

    def rejected(self, reason: str) -> None:
        self._rejected.get(reason, self._rejected["bad_request"]).inc()

    def render(self) -> bytes:
        """The Prometheus text exposition format (version 0.0.4), summed over the workers."""
        if not self._shared:
            return generate_latest(self._registry)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=self._shared)
        return generate_latest(registry)
