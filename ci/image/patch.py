"""`--wasm patch`: edit an Istio 1.10 checkout so its proxyv2 build needs no WASM filters and
its agent starts MOSN, the edits the MOSN guide makes by hand.

Each edit first recognises its file as either untouched Istio 1.10 or already edited by us; a
file that is neither is refused, by name, before any file is written. Edits comment lines
out rather than delete them, so a re-run finds them and changes nothing.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ci import log, names
from ci.errors import UserError
from ci.fsutil import atomic_write

ORIGINAL, APPLIED = "original", "applied"
COMMENT = "# "

INIT_SH = "bin/init.sh"
DOCKERFILE = "pilot/docker/Dockerfile.proxyv2"
DOCKER_MK = "tools/istio-docker.mk"
CONSTANTS_GO = "pkg/config/constants/constants.go"

# What Istio 1.10 names the four filters once downloaded (init.sh renames them).
WASM_FILES = tuple(
    f"{name}-filter{suffix}"
    for name in ("stats", "metadata-exchange")
    for suffix in (".wasm", ".compiled.wasm")
)


class Unexpected(Exception):
    """The file is neither Istio 1.10's nor our edit of it; the message says what was off."""


def _uncommented(line: str) -> str | None:
    """The text of a line we commented out, or None when the line is not a comment."""
    match = re.match(r"^(\s*)#\s?(.*)$", line)
    return match.group(1) + match.group(2) if match else None


def _comment(line: str) -> str:
    return COMMENT + line if line.strip() else line


@dataclass(frozen=True)
class LinesEdit:
    """Comment out exactly the lines `pick` selects; `pick` sees uncommented text."""

    path: str
    what: str
    pick: Callable[[list[str]], list[int]]

    def state(self, text: str) -> str:
        lines = text.splitlines()
        if self.pick(lines):
            return ORIGINAL
        revived = [_uncommented(line) or line for line in lines]
        picked = self.pick(revived)
        if not picked:
            raise Unexpected(f"not found: {self.what}")
        if any(_uncommented(lines[i]) is None for i in picked):
            raise Unexpected(f"partly commented out already: {self.what}")
        return APPLIED

    def apply(self, text: str) -> str:
        lines = text.splitlines(keepends=True)
        for i in self.pick(text.splitlines()):
            lines[i] = _comment(lines[i])
        return "".join(lines)


@dataclass(frozen=True)
class BinaryPathEdit:
    """Point BinaryPathFilename at MOSN instead of Envoy."""

    path: str = CONSTANTS_GO
    what: str = "BinaryPathFilename"
    pattern: re.Pattern = re.compile(r'^(\s*BinaryPathFilename\s*=\s*)"([^"]*)"', re.M)

    def state(self, text: str) -> str:
        found = self.pattern.findall(text)
        if len(found) != 1:
            raise Unexpected(f"expected one BinaryPathFilename constant, found {len(found)}")
        value = found[0][1]
        if value == names.ENVOY_BINARY_PATH:
            return ORIGINAL
        if value == names.BINARY_PATH_IN_IMAGE:
            return APPLIED
        raise Unexpected(f"BinaryPathFilename is {value!r}, neither Envoy's nor MOSN's path")

    def apply(self, text: str) -> str:
        return self.pattern.sub(lambda m: f'{m.group(1)}"{names.BINARY_PATH_IN_IMAGE}"', text)


def _pick_wasm_loop(lines: list[str]) -> list[int]:
    """The `for plugin in stats metadata_exchange ... done` loop that fetches the filters,
    through its matching `done` (loops nested in it included)."""
    for start, line in enumerate(lines):
        if not re.match(r"^\s*for\s+plugin\s+in\s+stats\s+metadata_exchange\s*(;\s*do)?\s*$", line):
            continue
        depth = 0
        for end in range(start, len(lines)):
            if re.search(r"(^|;)\s*do\s*$", lines[end]):
                depth += 1
            if re.match(r"^\s*done\s*(;.*)?$", lines[end]):
                depth -= 1
                if depth == 0:
                    block = list(range(start, end + 1))
                    body = "\n".join(lines[i] for i in block)
                    return block if names.ISTIO_ENVOY_BASE_URL in body else []
        return []
    return []


def _pick_exact(patterns: list[re.Pattern]) -> Callable[[list[str]], list[int]]:
    """Lines matching the patterns, only when each pattern matches exactly one line."""

    def pick(lines: list[str]) -> list[int]:
        hits = [[i for i, line in enumerate(lines) if p.match(line)] for p in patterns]
        if any(len(h) != 1 for h in hits):
            return []
        return sorted(h[0] for h in hits)

    return pick


_RELEASE_DIR = r"\$[({]ISTIO_ENVOY_LINUX_RELEASE_DIR[)}]"
EDITS = (
    LinesEdit(INIT_SH, "the WASM download loop", _pick_wasm_loop),
    LinesEdit(
        DOCKERFILE,
        "the four WASM COPY lines",
        _pick_exact(
            [
                re.compile(rf"^COPY\s+{re.escape(f)}\s+/etc/istio/extensions/{re.escape(f)}\s*$")
                for f in WASM_FILES
            ]
        ),
    ),
    LinesEdit(
        DOCKER_MK,
        "the WASM rules and docker.proxyv2's WASM dependencies",
        _pick_exact(
            [re.compile(rf"^{_RELEASE_DIR}/{re.escape(f)}:\s*init\s*$") for f in WASM_FILES]
            + [
                re.compile(rf"^docker\.proxyv2:\s*{_RELEASE_DIR}/{re.escape(f)}\s*$")
                for f in WASM_FILES
            ]
        ),
    ),
    BinaryPathEdit(),
)


def apply(root: Path) -> list[str]:
    """Edit the four files under `root`; return the paths changed (empty when already done)."""
    planned: list[tuple[Path, str, str]] = []
    for edit in EDITS:
        path = root / edit.path
        if not path.is_file():
            raise UserError(
                f"{path} not found: --wasm patch knows Istio 1.10's layout only; pass an Istio"
                " 1.10 checkout or use --wasm placeholder"
            )
        text = path.read_text()
        try:
            new = edit.apply(text) if edit.state(text) == ORIGINAL else text
            if edit.state(new) != APPLIED:
                raise Unexpected(f"editing {edit.what} did not take")
        except Unexpected as exc:
            raise UserError(
                f"{path} does not look like Istio 1.10's ({exc}); --wasm patch left every file"
                " alone: restore the file (git checkout) or use --wasm placeholder"
            ) from None
        planned.append((path, text, new))
    changed = []
    for path, old, new in planned:
        if new == old:
            log.info(f"    {path}: already patched")
            continue
        atomic_write(path, new, mode=path.stat().st_mode & 0o7777)
        changed.append(str(path))
        log.info(f"    {path}: patched")
    return changed
