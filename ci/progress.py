"""Transfer progress: a redrawn bar on a terminal, a few plain lines in CI logs."""

from __future__ import annotations

import sys
import time

from ci import log

BAR_WIDTH = 28
REDRAW_EVERY = 0.1  # seconds
# In plain logs, a transfer this large gets a start line and a line per quarter.
PLAIN_STEPS_FROM = 8 << 20


def human(size: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"


class Progress:
    """Progress of one transfer of `total` bytes; `seen(n)` reports the running count."""

    def __init__(self, verb: str, name: str, total: int) -> None:
        self.verb, self.name, self.total = verb, name, total
        self.done_bytes = 0
        self.started = time.monotonic()
        self._last_draw = 0.0
        self._quarters = 0
        self.bar = sys.stdout.isatty() and not log.is_quiet()
        if not self.bar and total >= PLAIN_STEPS_FROM:
            log.info(f"    {verb} {name} ({human(total)})")

    def seen(self, count: int) -> None:
        self.done_bytes = count
        if self.bar:
            now = time.monotonic()
            if now - self._last_draw >= REDRAW_EVERY or count >= self.total:
                self._last_draw = now
                self._draw()
        elif self.total and count < self.total:
            # Plain logs get a line per quarter of a large transfer, not a line per block.
            quarter = count * 4 // self.total
            if quarter > self._quarters and self.total >= PLAIN_STEPS_FROM:
                self._quarters = quarter
                log.info(f"    {self.name}: {quarter * 25}%")

    def _draw(self) -> None:
        fraction = self.done_bytes / self.total if self.total else 1.0
        filled = int(fraction * BAR_WIDTH)
        bar = "#" * filled + "-" * (BAR_WIDTH - filled)
        sys.stdout.write(
            f"\r    {self.verb} {self.name} [{bar}] {fraction:4.0%}"
            f" {human(self.done_bytes)}/{human(self.total)}\x1b[K"
        )
        sys.stdout.flush()

    def abandon(self) -> None:
        """Clear a half-drawn bar so the error that follows starts on a clean line."""
        if self.bar:
            sys.stdout.write("\r\x1b[K")
            sys.stdout.flush()

    def finish(self, note: str = "") -> None:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        rate = f", {human(self.total / elapsed)}/s" if self.total >= 1 << 20 else ""
        line = f"    {self.name}: {note or 'done'} ({human(self.total)} in {elapsed:.1f}s{rate})"
        if self.bar:
            sys.stdout.write("\r\x1b[K")
        log.info(line)


class ReadCounter:
    """A file reader that reports each read to a Progress (for HTTP bodies sent from disk).

    Rewinding starts the count again: botocore reads a body once to sign it and once to send.
    """

    def __init__(self, handle, size: int, progress: Progress) -> None:
        self._handle, self._size, self._progress = handle, size, progress
        self._position = 0

    def __len__(self) -> int:
        return self._size

    def read(self, amount: int = -1) -> bytes:
        data = self._handle.read(amount)
        self._position += len(data)
        self._progress.seen(self._position)
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        self._position = self._handle.seek(offset, whence)
        return self._position

    def tell(self) -> int:
        return self._handle.tell()

    def seekable(self) -> bool:
        return True
