"""Which Go may compile a checkout: the go.mod floor and one table of measured breakages.

A Go release that compiles MOSN is not always one that makes a working MOSN: a dependency
that reaches into runtime internals builds fine and crashes at run time. Each rule below
was measured (built and smoke-run on this project's CI machine); add a rule only with its
evidence.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ci import log
from ci.errors import UserError


@dataclass(frozen=True)
class Rule:
    module: str
    version: str
    # Go releases that break this module version: [first_bad, first_good_again).
    first_bad: tuple[int, int]
    evidence: str
    # A Go >= 1.21 that works, fetched by the go command itself through GOTOOLCHAIN.
    toolchain: str = ""


RULES = (
    Rule(
        module="github.com/modern-go/reflect2",
        version="v1.0.1",
        first_bad=(1, 18),
        evidence=(
            "MOSN v1.0.0 from the module proxy, smoke-run: go1.15.15 converts the static"
            " listener and proxies HTTP; go1.19.8 panics (SIGSEGV) in reflect2 Type2 and"
            " go1.26.8 in UnsafeMapIterator.HasNext, both under conv.toMap while converting"
            " the listener (modern-go/reflect2#24). Measured 2026-12-01. Not a rule: v1.0.2"
            " (MOSN v1.6.1) smoke-runs with go1.19.8 and go1.26.8, modern-go/reflect2#32"
            " notwithstanding."
        ),
    ),
)


def parse_go_version(out: str) -> tuple[str, tuple[int, int]]:
    """`go version` output ("go version go1.15.15 linux/amd64") -> ("go1.15.15", (1, 15)).

    `go version` rather than `go env GOVERSION`, which Go before 1.16 does not know; a bare
    label is accepted too.
    """
    # Also a bare label ("go1.19.8", as `go env GOVERSION` prints it on Go 1.16+).
    match = re.search(r"\b(go(\d+)\.(\d+)[^\s,;]*)", out)
    if not match:
        line = out.strip().splitlines()[-1] if out.strip() else out
        raise UserError(f"could not read the Go version from {line!r}; check your Go installation")
    # A bare label is kept whole, as `go env GOVERSION` callers print it.
    label = match.group(1) if "go version" in out else out.strip()
    return label, (int(match.group(2)), int(match.group(3)))


def pinned_modules(go_sum: str) -> dict[str, set[str]]:
    """Module versions whose code go.sum holds a hash for (not just a go.mod hash)."""
    found: dict[str, set[str]] = {}
    for line in go_sum.splitlines():
        parts = line.split()
        if len(parts) == 3 and not parts[1].endswith("/go.mod"):
            found.setdefault(parts[0], set()).add(parts[1])
    return found


def _release(minor: tuple[int, int]) -> str:
    return ".".join(map(str, minor))


def breaking_rules(source: Path) -> list[Rule]:
    """The rules whose module version the checkout's go.sum pins."""
    go_sum = source / "go.sum"
    pinned = pinned_modules(go_sum.read_text(errors="replace")) if go_sum.is_file() else {}
    return [rule for rule in RULES if rule.version in pinned.get(rule.module, ())]


def newest_working(source: Path) -> tuple[int, int] | None:
    """The newest Go release no rule refuses for this checkout (None: the table sets no limit)."""
    firsts = [rule.first_bad for rule in breaking_rules(source)]
    if not firsts:
        return None
    major, minor = min(firsts)
    return major, minor - 1


def check(
    source: Path,
    go_directive: tuple[int, int],
    label: str,
    minor: tuple[int, int],
    where: str,
    skip_rules: bool = False,
) -> None:
    """Refuse, before compiling, a Go older than go.mod asks or known to break a dependency.

    `skip_rules` (--skip-toolchain-check) turns a broken dependency into a warning; a Go
    older than go.mod's could not compile at all, so that stays an error.
    """
    if minor < go_directive:
        need = _release(go_directive)
        # From Go 1.21 on, the go command fetches a newer release itself (module proxy).
        fetch = f", GOTOOLCHAIN=go{need}.0" if minor >= (1, 21) else ""
        raise UserError(
            f"{label} ({where}) is older than go {need} that go.mod asks for;"
            f" install a newer Go{fetch} or use --in-docker --go-image golang:{need}"
        )
    for rule in breaking_rules(source):
        if minor >= rule.first_bad:
            floor = _release(go_directive)
            newest = f"{rule.first_bad[0]}.{rule.first_bad[1] - 1}"
            fixes = ["--in-docker (the golang image the checkout's Makefile names)"]
            fixes.append(f"a Go from {floor} to {newest}")
            if rule.toolchain:
                fixes.append(f"GOTOOLCHAIN={rule.toolchain}")
            if skip_rules:
                log.warn(
                    f"--skip-toolchain-check: {label} breaks {rule.module} {rule.version};"
                    " expect the smoke run to catch the crash"
                )
                continue
            raise UserError(
                f"{label} ({where}) breaks {rule.module} {rule.version} pinned in go.sum"
                f" (it crashes at run time); it works with Go {floor} to {newest}:"
                f" build with {' or '.join(fixes)}, or pass --skip-toolchain-check"
            )
