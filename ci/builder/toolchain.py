"""Which Go may compile a checkout: the go.mod floor, one table of measured breakages, the
dependency fixes that undo them, and whether a Go release still gets security fixes.

A Go release that compiles MOSN is not always one that makes a working MOSN: a dependency
that reaches into runtime internals builds fine and crashes at run time. Each rule below
was measured (built and smoke-run on this project's CI machine); add a rule only with its
evidence. The same holds for the fixes (FIXES, applied by `invoke build --fix-deps`): each
moves a broken module version to versions measured to work, and says where it was measured.

Both tables are judged against the build list, the module versions that are compiled
(`go list -m all`), not against go.sum, which keeps the hashes of versions no longer used.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from ci import log
from ci.errors import UserError

FIX_FLAG = "--fix-deps"


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


@dataclass(frozen=True)
class Fix:
    """Move `module` off `version` (a rule's) to module versions measured to work."""

    module: str
    version: str
    # What `go get` asks for, in the build's own copy of the checkout.
    to: tuple[tuple[str, str], ...]
    # The Go releases a MOSN built with the fix was measured to work with (smoke run).
    works: tuple[tuple[int, int], ...]
    evidence: str

    def describe(self) -> str:
        moves = " with ".join(f"{module} {to}" for module, to in self.to)
        return f"{moves}, measured with Go {', '.join(map(_release, self.works))}"


FIXES = (
    Fix(
        module="github.com/modern-go/reflect2",
        version="v1.0.1",
        # MOSN's own move when it went to Go 1.18 (mosn/mosn#2160): json-iterator v1.1.12 is the
        # release that requires reflect2 v1.0.2.
        to=(
            ("github.com/json-iterator/go", "v1.1.12"),
            ("github.com/modern-go/reflect2", "v1.0.2"),
        ),
        works=((1, 26),),
        evidence=(
            "MOSN v1.0.0 from the module proxy (plus ../shared/goproxy), `invoke build"
            " --mosn-module v1.0.0 --fix-deps --platforms linux/amd64` with go1.26.8:"
            " json-iterator v1.1.10 -> v1.1.12 and reflect2 v1.0.1 -> v1.0.2 in the build"
            " list; the smoke run (an Envoy-format static listener through MOSN's xDS"
            " conversion, where the unfixed build panics in reflect2 from go1.18 on) passes."
            " Measured 2026-12-04; the same bump built by hand also routed Bookinfo's rules"
            " from a real istiod 1.10.6 (issue 21)."
        ),
    ),
)

# Go publishes security fixes for its two newest major releases (go.dev/doc/devel/release,
# "Release Policy"). Read from the module proxy's golang.org/toolchain list when it answers;
# this is what that list said on 2026-12-05, for when it does not.
SUPPORTED_WHEN_OFFLINE = ((1, 27), (1, 26))
TOOLCHAIN_MODULE = "golang.org/toolchain"


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


def parse_build_list(text: str) -> dict[str, str]:
    """`go list -m all` (or vendor/modules.txt) -> {module: version compiled}.

    A replacement by another version of the same module counts as that version; one by a
    local folder or another module is not a version of this module, and matches no rule.
    """
    found = {}
    for line in text.splitlines():
        if line.startswith("## "):
            continue
        parts = line.removeprefix("# ").split()
        if len(parts) < 2 or not parts[1].startswith("v"):
            continue
        module, version = parts[0], parts[1]
        if "=>" in parts:
            replacement = parts[parts.index("=>") + 1 :]
            same = len(replacement) == 2 and replacement[0] == module
            version = replacement[1] if same else "=> " + " ".join(replacement)
        found[module] = version
    return found


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


def breaking_rules(build_list: Mapping[str, str]) -> list[Rule]:
    """The rules whose module version the build list compiles."""
    return [rule for rule in RULES if build_list.get(rule.module) == rule.version]


def fixes_for(build_list: Mapping[str, str]) -> list[Fix]:
    """The fixes whose module version the build list compiles."""
    return [fix for fix in FIXES if build_list.get(fix.module) == fix.version]


def _fix_for(rule: Rule) -> Fix | None:
    return next((f for f in FIXES if (f.module, f.version) == (rule.module, rule.version)), None)


def newest_working(source: Path) -> tuple[int, int] | None:
    """The newest Go release no rule refuses for the checkout's go.sum pins (None: no limit).

    For a checkout built by someone else's make (Istio's): go.sum, read without a go command,
    may name a version its build no longer compiles, so this errs on the side of refusing.
    """
    go_sum = source / "go.sum"
    pinned = pinned_modules(go_sum.read_text(errors="replace")) if go_sum.is_file() else {}
    firsts = [rule.first_bad for rule in RULES if rule.version in pinned.get(rule.module, ())]
    if not firsts:
        return None
    major, minor = min(firsts)
    return major, minor - 1


def check_go_mod(
    go_directive: tuple[int, int], label: str, minor: tuple[int, int], where: str
) -> None:
    """Refuse a Go older than go.mod's `go` line: it could not even read the module graph."""
    if minor < go_directive:
        need = _release(go_directive)
        # From Go 1.21 on, the go command fetches a newer release itself (module proxy).
        fetch = f", GOTOOLCHAIN=go{need}.0" if minor >= (1, 21) else ""
        raise UserError(
            f"{where} is older than go {need} that go.mod asks for;"
            f" install a newer Go{fetch} or use --in-docker --go-image golang:{need}"
        )


def check(
    build_list: Mapping[str, str],
    go_directive: tuple[int, int],
    label: str,
    minor: tuple[int, int],
    where: str,
    skip_rules: bool = False,
) -> None:
    """Refuse, before compiling, a Go older than go.mod asks or known to break a dependency
    the build list compiles.

    `skip_rules` (--skip-toolchain-check) turns a broken dependency into a warning; a Go
    older than go.mod's could not compile at all, so that stays an error.
    """
    check_go_mod(go_directive, label, minor, where)
    for rule in breaking_rules(build_list):
        if minor >= rule.first_bad:
            floor = _release(go_directive)
            newest = f"{rule.first_bad[0]}.{rule.first_bad[1] - 1}"
            fixes = ["--in-docker (the golang image the checkout's Makefile names)"]
            fixes.append(f"a Go from {floor} to {newest}")
            if rule.toolchain:
                fixes.append(f"GOTOOLCHAIN={rule.toolchain}")
            fix = _fix_for(rule)
            if fix:
                fixes.append(f"{FIX_FLAG} ({fix.describe()})")
            if skip_rules:
                log.warn(
                    f"--skip-toolchain-check: {label} breaks {rule.module} {rule.version};"
                    " expect the smoke run to catch the crash"
                )
                continue
            raise UserError(
                f"{where} breaks {rule.module} {rule.version} in the build list"
                f" (it crashes at run time); it works with Go {floor} to {newest}:"
                f" build with {' or '.join(fixes)}, or pass --skip-toolchain-check"
            )


def supported_releases(toolchains: Iterable[str]) -> tuple[tuple[int, int], ...]:
    """The two newest Go releases among golang.org/toolchain's versions
    (`v0.0.1-go1.27.4.linux-amd64`; release candidates and betas do not count)."""
    found = set()
    for version in toolchains:
        match = re.fullmatch(r"v0\.0\.1-go(\d+)\.(\d+)(?:\.\d+)?\.[\w-]+", version)
        if match:
            found.add((int(match.group(1)), int(match.group(2))))
    return tuple(sorted(found, reverse=True)[:2])


def warn_unsupported(
    label: str, minor: tuple[int, int], supported: tuple[tuple[int, int], ...], source: str
) -> None:
    """A warning when the Go that compiles gets no security fixes any more."""
    if not supported or minor >= min(supported):
        return
    releases = " and ".join(map(_release, supported))
    log.warn(
        f"{label} gets no security fixes any more (Go fixes only its two newest releases,"
        f" {releases}, per {source}): scanners will flag the binary's standard library;"
        f" build with Go {_release(min(supported))} or newer, with {FIX_FLAG} where a pinned"
        " dependency breaks on it"
    )
