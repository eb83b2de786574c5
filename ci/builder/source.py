"""Sources: shallow git clones in a cache (MOSN, Istio), or MOSN from the Go module proxy.

Each clone lands in a folder named after the commit it resolved to
(`<cache>/<project>/<repository>/<commit>`), made in a temporary folder and renamed into
place, so a folder in the cache is always a whole checkout. A branch or tag is resolved with
`git ls-remote` on every run (it may have moved) and cloned only when that commit is not
cached yet; a full commit hash already in the cache is used without touching the network.
If the remote cannot be reached, the commit the same ref resolved to last time is used, with
a warning.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

from ci import log, names, proc
from ci.errors import UserError
from ci.fsutil import atomic_write
from ci.names import MOSN_MODULE

FULL_COMMIT = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")


def _slug(text: str) -> str:
    """A readable folder name for `text` that two different texts never share."""
    digest = hashlib.sha256(text.encode()).hexdigest()[:10]
    return f"{names.UNSAFE_CHARS.sub('_', text).strip('_.')[-60:]}-{digest}"


def _secrets(repo: str) -> list[str]:
    # https://user:token@host/... must not reach the log.
    password = urlsplit(repo).password
    return [password] if password else []


def _display(repo: str) -> str:
    parts = urlsplit(repo)
    if parts.password:
        return repo.replace(f":{parts.password}@", ":***@")
    return repo


def clone(repo: str, ref: str, cache_dir: Path, *, project: str = "mosn", hint: str = "") -> Path:
    """Shallow-clone `ref` (tag, branch or full commit hash) of `repo`; return the checkout.

    `project` names the cache folder and the flags in messages (--mosn-repo, --istio-repo).
    """
    hint = hint or f"check --{project}-repo and the ref (a tag, a branch or a full commit)"
    if not ref or ref.startswith("-"):
        raise UserError(f"{ref!r} is not a git ref; pass a tag, branch or full commit hash")
    if not repo:
        raise UserError(
            f"no repository to clone from; pass --{project}-repo URL or --{project}-src DIR"
        )
    # Named without the password: folder names end up in logs.
    home = cache_dir / project / _slug(_display(repo))
    pointer = home / "refs" / _slug(ref)
    commit = ref if FULL_COMMIT.fullmatch(ref) else _resolve(repo, ref)
    if commit and (home / commit / ".git").is_dir():
        said = f"{ref} is {commit[:12]}," if ref != commit else f"{commit[:12]}"
        log.info(f"    using cached {said} from {home / commit}")
        _point(pointer, commit)
        return home / commit
    work = _scratch(home, home, cache_dir)
    try:
        try:
            _fetch(repo, ref, work, hint)
        except UserError as exc:
            cached = _previous(home, pointer)
            if cached is None:
                raise
            log.warn(f"could not clone {ref} ({exc}); using the copy cached at {cached}")
            return cached
        commit = proc.run(["git", "-C", work, "rev-parse", "HEAD"], stream=False).strip()
        final = home / commit
        try:
            os.rename(work, final)
        except OSError:
            # Already cached (by an earlier build, or a concurrent one): that copy is the same.
            if not (final / ".git").is_dir():
                raise
        _point(pointer, commit)
        log.info(f"    {ref} is {commit[:12]}, checked out in {final}")
        return final
    finally:
        shutil.rmtree(work, ignore_errors=True)
        # A first clone that failed leaves no empty folders behind.
        for folder in (home, home.parent):
            with contextlib.suppress(OSError):
                folder.rmdir()


def _point(pointer: Path, commit: str) -> None:
    """Remember the commit a ref resolved to, for when the remote cannot be reached."""
    pointer.parent.mkdir(exist_ok=True)
    atomic_write(pointer, commit + "\n")


def _scratch(folder: Path, home: Path, cache_dir: Path) -> Path:
    """Make `folder`; return a new temporary folder in `home` to build a cache entry in."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=".new-", dir=home))
    except OSError as exc:
        raise UserError(
            f"cannot write the cache {cache_dir}: {exc.strerror};"
            " set cache_dir (MOSN_PROXYV2_CACHE_DIR) to a writable folder"
        ) from None


def _resolve(repo: str, ref: str) -> str:
    """The commit a tag or branch names now, or "" when the remote does not say."""
    out = proc.run(
        ["git", "ls-remote", "--", repo, f"refs/tags/{ref}", f"refs/tags/{ref}^{{}}",
         f"refs/heads/{ref}"],
        stream=False, check=False, secrets=_secrets(repo), env={"GIT_TERMINAL_PROMPT": "0"},
    )  # fmt: skip
    found = dict(reversed(line.split("\t", 1)) for line in out.splitlines() if "\t" in line)
    # An annotated tag's own object is not a commit: prefer the peeled ^{} line.
    for name in (f"refs/tags/{ref}^{{}}", f"refs/tags/{ref}", f"refs/heads/{ref}"):
        if FULL_COMMIT.fullmatch(found.get(name, "")):
            return found[name]
    return ""


def _fetch(repo: str, ref: str, dest: Path, hint: str) -> None:
    secrets = _secrets(repo)
    what = f"git clone of {ref} from {_display(repo)}"
    if FULL_COMMIT.fullmatch(ref):
        # `clone --branch` takes only names; a commit needs init + fetch of that one object.
        steps = [
            ["git", "-C", dest, "init", "-q"],
            ["git", "-C", dest, "remote", "add", "origin", repo],
            ["git", "-C", dest, "fetch", "-q", "--depth", "1", "origin", ref],
            ["git", "-C", dest, "-c", "advice.detachedHead=false", "checkout", "-q", "FETCH_HEAD"],
        ]
    else:
        steps = [
            ["git", "-c", "advice.detachedHead=false", "clone", "-q", "--depth", "1"]
            + ["--branch", ref, "--single-branch", "--", repo, dest]
        ]
    for step in steps:
        proc.run(step, secrets=secrets, what=what, hint=hint, env={"GIT_TERMINAL_PROMPT": "0"})


def _previous(home: Path, pointer: Path) -> Path | None:
    with contextlib.suppress(OSError):
        commit = pointer.read_text().strip()
        if FULL_COMMIT.fullmatch(commit) and (home / commit / ".git").is_dir():
            return home / commit
    return None


@dataclass(frozen=True)
class Module:
    path: Path
    version: str
    # (commit, short commit, commit time) for the build's stamp, as git's HEAD would give.
    origin: tuple[str, str, int]


_PSEUDO_COMMIT = re.compile(r"-(?:\d+\.)?\d{14}-([0-9a-f]{12})(?:\+incompatible)?$")


def download_module(spec: str, cache_dir: Path, go_env: Mapping[str, str]) -> Module:
    """`go mod download` MOSN at `spec` ([mosn.io/mosn@]VERSION) and copy it out of the cache.

    The go command does the download, so GOPROXY, GONOSUMDB, GOPRIVATE and GOFLAGS apply
    as for any module (`go_env`: the host Go's, see compile.HostGo). The copy is writable (the
    module cache is not) and lands in `<cache>/mosn-module/<version>` whole or not at all.
    """
    path, _, version = spec.rpartition("@")
    if path and path != MOSN_MODULE:
        raise UserError(f"--mosn-module {spec!r} names {path}, not {MOSN_MODULE}; pass a version")
    if not version or version.startswith("-") or re.search(r"[\s@]", version):
        raise UserError(
            f"--mosn-module {spec!r} is not a version; pass e.g. v1.0.0, a branch or a commit"
        )
    command = f"go mod download {MOSN_MODULE}@{version}"
    with tempfile.TemporaryDirectory(prefix="mosn-module-") as empty:
        try:
            # Outside any module, so the caller's go.mod (if any) plays no part.
            out = proc.run(
                ["go", "mod", "download", "-json", f"{MOSN_MODULE}@{version}"],
                cwd=empty, env={"GO111MODULE": "on", **go_env}, stream=False,
                separate_stderr=True, what=f"`{command}`", hint="check Go and GOPROXY",
            )  # fmt: skip
        except proc.CommandFailed as exc:
            # A module the proxy lacks is a JSON record on stdout; anything else is Go's stderr.
            out = exc.output if exc.output.lstrip().startswith("{") else ""
            if not out:
                raise
    try:
        info = json.loads(out)
    except ValueError:
        said = " ".join(out.split())[-300:]
        raise UserError(f"`{command}` printed {said!r}, not JSON; check Go and GOPROXY") from None
    if info.get("Error") or not info.get("Dir"):
        reason = " ".join(str(info.get("Error", "no module directory")).split())
        raise UserError(
            f"the Go module proxy has no {MOSN_MODULE}@{version}: {reason};"
            " check the version and GOPROXY (a private proxy may need GONOSUMDB or GOPRIVATE)"
        )
    resolved = info["Version"]
    commit = (info.get("Origin") or {}).get("Hash", "")
    pseudo = _PSEUDO_COMMIT.search(resolved)
    when = _timestamp(info.get("Time", ""))
    if FULL_COMMIT.fullmatch(commit):
        origin = (commit, commit[:7], when)
    elif pseudo:
        origin = ("", pseudo.group(1)[:7], when)
    else:
        log.warn(
            f"the module proxy records no commit for {MOSN_MODULE}@{resolved};"
            f" the stamp says {resolved} in its place (pass --version to choose another)"
        )
        origin = ("", resolved, when)
    said = f"commit {origin[0] or origin[1]}" if origin[0] or pseudo else "no commit recorded"
    log.info(f"    {MOSN_MODULE}@{version} is {resolved}, {said}")
    return Module(_copy_module(Path(info["Dir"]), cache_dir, resolved), resolved, origin)


def _timestamp(text: str) -> int:
    with contextlib.suppress(ValueError):
        return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp())
    return 0


def _copy_module(source: Path, cache_dir: Path, version: str) -> Path:
    home = cache_dir / "mosn-module"
    final = home / _slug(version)
    if (final / "go.mod").is_file():
        return final
    work = _scratch(home, home, cache_dir)
    try:
        tree = work / "mosn"
        # The module cache is read-only; the copy must let go write go.sum and build.
        shutil.copytree(source, tree, copy_function=shutil.copyfile)
        os.chmod(tree, 0o700)
        for folder, dirs, _ in os.walk(tree):
            for name in dirs:
                os.chmod(os.path.join(folder, name), 0o700)
        try:
            os.rename(tree, final)
        except OSError:
            if not (final / "go.mod").is_file():
                raise
        return final
    finally:
        shutil.rmtree(work, ignore_errors=True)


@dataclass(frozen=True)
class Checkout:
    path: Path
    version_file: str
    go_directive: tuple[int, int]
    commit: str
    short_commit: str
    commit_time: int
    vendored: bool
    # Needs a network in the build container: requirements and no vendor folder.
    downloads_modules: bool
    # Uncommitted changes, as Go's own VCS stamp (vcs.modified) counts them: `git status`
    # lists something, untracked files included (an untracked .go file is compiled too).
    changes: tuple[str, ...] = ()


def inspect_checkout(
    path: Path, origin: tuple[str, str, int] | None = None, out: Path | None = None
) -> Checkout:
    """Check `path` is a MOSN checkout and read what the build stamps from it.

    `origin` (commit, short commit, commit time) stands in for git's HEAD when the source
    is a module from the Go module proxy rather than a git checkout. `out`, the build's
    output folder, does not count as a change when it lies inside the checkout.
    """
    if not path.is_dir():
        raise UserError(
            f"MOSN source {path} is not a directory; pass --mosn-src DIR or --mosn-ref REF"
        )
    gomod = path / "go.mod"
    if not gomod.is_file():
        raise UserError(f"{path} has no go.mod: not a MOSN checkout; pass the root of a MOSN clone")
    text = gomod.read_text(errors="replace")
    module = re.search(r"^module\s+(\S+)", text, re.M)
    if not module or module.group(1) != names.MOSN_MODULE:
        found = module.group(1) if module else "none"
        raise UserError(
            f"{gomod} declares module {found}, not {names.MOSN_MODULE}: not a MOSN checkout"
        )
    if not (path / names.MOSN_MAIN_DIR).is_dir():
        raise UserError(f"{path} has no {names.MOSN_MAIN_DIR}: not a MOSN checkout")
    version_path = path / "VERSION"
    if not version_path.is_file():
        raise UserError(f"{path} has no VERSION file; add one or pass --version")
    version_file = version_path.read_text().strip()
    directive = re.search(r"^go\s+(\d+)\.(\d+)", text, re.M)
    go_directive = (int(directive.group(1)), int(directive.group(2))) if directive else (1, 0)
    commit, short, when = origin or _git_head(path)
    changes = () if origin or not commit else _uncommitted(path, out)
    vendored = (path / "vendor" / "modules.txt").is_file()
    return Checkout(
        path=path,
        version_file=version_file,
        go_directive=go_directive,
        commit=commit,
        short_commit=short,
        commit_time=when,
        vendored=vendored,
        downloads_modules=not vendored and re.search(r"^require\b", text, re.M) is not None,
        changes=changes,
    )


def _git_head(path: Path) -> tuple[str, str, int]:
    out = proc.run(
        ["git", "-C", path, "log", "-1", "--format=%H %h %ct"],
        stream=False,
        check=False,
    ).strip()
    parts = out.split()
    if len(parts) != 3 or not re.fullmatch(r"[0-9a-f]{40,64}", parts[0]):
        return "", "", 0
    return parts[0], parts[1], int(parts[2])


def _uncommitted(path: Path, out: Path | None) -> tuple[str, ...]:
    status = proc.run(
        ["git", "-C", path, "status", "--porcelain", "--untracked-files=all"],
        stream=False,
        what=f"git status in {path}",
    )
    changed = [line[3:] for line in status.splitlines() if line.strip()]
    if out is not None:
        with contextlib.suppress(ValueError):
            inside = out.resolve().relative_to(path.resolve()).as_posix() + "/"
            changed = [name for name in changed if not (name + "/").startswith(inside)]
    return tuple(changed)
