"""`invoke build --fix-deps`: the dependency fixes of ci/builder/toolchain.FIXES, applied to
the build's own copy of the checkout (never to the user's checkout or the module cache).

The go command makes the change (`go get MODULE@VERSION ...`), so GOPROXY, GONOSUMDB,
GOPRIVATE and GOFLAGS apply and every module it fetches is verified (go.sum, the checksum
database) as in any build. What changed is read back from the build list, not assumed.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

from ci import log
from ci.builder import compile, toolchain
from ci.builder.source import Checkout
from ci.errors import UserError

FLAG = toolchain.FIX_FLAG


def apply(
    go, checkout: Checkout, build_list: dict[str, str], work: Path, minor: tuple[int, int]
) -> tuple[Checkout, dict[str, str], tuple[dict[str, str], ...]]:
    """(the checkout to build, its build list, each module moved as {module, from, to})."""
    fixes = toolchain.fixes_for(build_list)
    if not fixes:
        found = ", ".join(
            f"{fix.module} is {build_list.get(fix.module, 'not in the build list')}"
            for fix in toolchain.FIXES
        )
        log.info(f"    {FLAG}: nothing to fix, the checkout is built as it is ({found})")
        return checkout, build_list, ()
    if checkout.vendored:
        raise UserError(
            f"{FLAG}: {checkout.path} vendors its modules (vendor/modules.txt), which a fix"
            " would have to rewrite; update vendor/ yourself, or build without --fix-deps"
        )
    copy = work / "src"
    shutil.copytree(checkout.path, copy, symlinks=True, ignore=shutil.ignore_patterns(".git"))
    fixed = dataclasses.replace(checkout, path=copy)
    targets = [f"{module}@{version}" for fix in fixes for module, version in fix.to]
    # Before Go 1.18, go get also builds what it names; -d only edits go.mod and go.sum.
    args = ["get", *(["-d"] if minor < (1, 18) else []), *targets]
    try:
        go.go(
            compile.GoCommand(
                args,
                copy,
                what=f"{FLAG}: `go {' '.join(args)}`",
                hint="check GOPROXY (GONOSUMDB or GOPRIVATE for a private proxy)",
                writes=True,
                # What moved is read back and logged below.
                echo=False,
            )
        )
    except UserError as exc:
        # One line: Go's reason is quoted in it; the rest is its download chatter.
        raise UserError(str(exc)) from None
    after = compile.build_list(go, fixed)
    moves = tuple(
        {"module": module, "from": build_list.get(module, ""), "to": version}
        for module, version in sorted(after.items())
        if build_list.get(module) != version
    )
    for move in moves:
        log.info(f"    {FLAG}: {move['module']} {move['from'] or '(new)'} -> {move['to']}")
    log.info(f"    {FLAG}: applied in the build's copy of the checkout, {copy}")
    return fixed, after, moves
