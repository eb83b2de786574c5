"""Where `invoke mesh` gets Istio's pilot-discovery and pilot-agent.

The interface the rest of ci/mesh uses is `resolve`. The binaries come from, in this order:
a folder the user gives (--istio-bin-dir); Istio's own images in the Docker engine (copied
out through the Docker SDK); a build from an Istio source tree (--istio-src) or, for lack of
anything else, from istio.io/istio through the Go module proxy. Builds and copies are kept in
cache_dir. Every binary is run with `version` and refused unless it says it is the asked
Istio release. docs/istio-binaries.md is the user's side.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from ci import engine, log, names, proc
from ci.builder import toolchain
from ci.config import Settings
from ci.errors import UserError
from ci.image.result import ImageResult


@dataclass(frozen=True)
class IstioBinaries:
    pilot_discovery: Path
    # None: no pilot-agent was found, and MOSN is started directly on a bootstrap of our own.
    pilot_agent: Path | None
    # Istio's envoy_bootstrap.json template, which pilot-agent renders; None without an agent.
    bootstrap_template: Path | None
    # One line for the report: where these came from (a folder, an image, a build).
    origin: str


@dataclass(frozen=True)
class IstioRelease:
    version: str
    commit: str  # what the release's tag points at in istio/istio
    # A source tree without git history is recognised by its go.sum: 1.10.6's differs from
    # that of every other 1.10.x and 1.11.x tag (checked against istio/istio's tags).
    go_sum_sha256: str
    # The Go it is built with, fetched by a Go >= 1.21 through GOTOOLCHAIN: go.mod's release
    # (1.16 for Istio 1.10), last patch.
    go: str
    # The newest Go release a Go on PATH may be to build it as it is. For 1.10.6, 1.17:
    # pilot-agent links reflect2 v1.0.1, which crashes from Go 1.18 on (ci/builder/toolchain.py).
    go_newest: tuple[int, int]


RELEASES: dict[str, IstioRelease] = {
    release.version: release
    for release in (
        IstioRelease(
            version="1.10.6",
            commit="fd053c6165d21105d66dac6e3d0649db2dde5b86",
            go_sum_sha256="5ed7f7eb32579c623133e9d13fa426c97fb8b552eb4cd054bd3e7aa6584b5710",
            go="go1.16.15",
            go_newest=(1, 17),
        ),
    )
}

PILOT_DISCOVERY = "pilot-discovery"
PILOT_AGENT = "pilot-agent"
# The template's name in Istio's source, and so in our folders; proxyv2 images call it
# envoy_bootstrap_tmpl.json, and a folder the user gives may hold either.
BOOTSTRAP = "envoy_bootstrap.json"
BOOTSTRAP_NAMES = (BOOTSTRAP, "envoy_bootstrap_tmpl.json")
BOOTSTRAP_IN_SOURCE = "tools/packaging/common/envoy_bootstrap.json"
ISTIO_MODULE = "istio.io/istio"
# Each command Istio's Makefile builds, with its build tags (the agent's as in Makefile.core.mk).
COMMANDS = {
    PILOT_DISCOVERY: ("./pilot/cmd/pilot-discovery", ()),
    PILOT_AGENT: ("./pilot/cmd/pilot-agent", ("-tags=agent",)),
}
# Bump when the build changes in a way the cache key does not see.
BUILD_FORMAT = 1


def resolve(settings: Settings) -> IstioBinaries:
    """pilot-discovery (and pilot-agent with its bootstrap template, when available) for
    settings.istio_version; raises UserError saying how to provide them."""
    release = release_for(settings.istio_version)
    if settings.istio_bin_dir:
        return from_folder(settings.path("istio_bin_dir"), release)
    pilot, proxy = from_images(settings, release)
    built = None
    if settings.istio_src and not (pilot and proxy):
        built = build_from_source(settings)
    elif pilot is None:
        built = build_from_module(settings, release)
    origins = [taken.origin for taken in (pilot, proxy, built) if taken]
    if pilot:
        discovery = pilot.folder / PILOT_DISCOVERY
    else:
        assert built is not None  # the module route raises rather than give nothing
        discovery = built.pilot_discovery
    if proxy:
        agent, template = proxy.folder / PILOT_AGENT, proxy.folder / BOOTSTRAP
    elif built:
        agent, template = built.pilot_agent, built.bootstrap_template
    else:
        log.info("    no proxyv2 image with pilot-agent in Docker: MOSN is started directly")
        agent = template = None
    return IstioBinaries(discovery, agent, template, "; ".join(origins))


def routes(release: IstioRelease) -> str:
    """What a user can do when no route gave pilot-discovery."""
    return (
        f"give --istio-bin-dir a folder that holds it, load istio/pilot:{release.version} into"
        f" Docker (docker pull or docker load), or give --istio-src an Istio {release.version}"
        " checkout"
    )


def release_for(version: str) -> IstioRelease:
    release = RELEASES.get(version.strip())
    if release is None:
        known = ", ".join(RELEASES)
        raise UserError(
            f"no Istio binaries are known for Istio {version!r} (known: {known}); pass"
            f" --istio-version {next(iter(RELEASES))} or add the release to ci/mesh/binaries.py"
        )
    return release


# ---- a folder the user gives ---------------------------------------------------------------


def from_folder(folder: Path, release: IstioRelease) -> IstioBinaries:
    """The binaries in `folder`: pilot-discovery, and pilot-agent with its template if there."""
    where = f"--istio-bin-dir {folder}"
    if not folder.is_dir():
        raise UserError(
            f"{where} is not a folder; give the folder that holds Istio {release.version}'s"
            " pilot-discovery"
        )
    discovery = folder / PILOT_DISCOVERY
    if not _executable(discovery):
        raise UserError(
            f"no pilot-discovery in {where}; put Istio {release.version}'s pilot-discovery"
            " there (executable), or drop --istio-bin-dir to take it from an image or a build"
        )
    agent, template = folder / PILOT_AGENT, _first_file(folder, BOOTSTRAP_NAMES)
    if not _executable(agent):
        log.info(f"    no pilot-agent in {folder}: MOSN is started directly")
        agent = template = None
    elif template is None:
        raise UserError(
            f"pilot-agent in {where} has no bootstrap template beside it; copy Istio's"
            f" {BOOTSTRAP_IN_SOURCE} there as {BOOTSTRAP}, or remove pilot-agent to start"
            " MOSN directly"
        )
    go = check_version(discovery, release, where)
    if agent is not None:
        check_version(agent, release, where)
    names = "pilot-discovery" + (", pilot-agent" if agent else "")
    return IstioBinaries(discovery, agent, template, f"{names} from {folder} ({go})")


def _executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def _first_file(folder: Path, names: tuple[str, ...]) -> Path | None:
    return next((folder / name for name in names if (folder / name).is_file()), None)


# ---- the version each binary reports --------------------------------------------------------

# `version` prints Go's %+v of istio.io/pkg/version.BuildInfo: Name:"value" pairs.
_BUILD_INFO_FIELD = re.compile(r'(\w+):"([^"]*)"')


def check_version(binary: Path, release: IstioRelease, where: str) -> str:
    """Refuse `binary` unless it says it is `release`; return the Go it was built with.

    Istio's release builds stamp Version; a `make` build from a checkout stamps Version
    1.10-dev but GitTag and GitRevision from git, so any of the three may name the release.
    """
    try:
        out = proc.run([binary, "version"], stream=False, what=f"{binary.name} version")
    except UserError as exc:
        raise UserError(
            f"{binary} ({where}) does not run here ({exc}); give Istio {release.version}'s"
            " linux binaries for this machine"
        ) from None
    info = dict(_BUILD_INFO_FIELD.findall(out))
    revision = info.get("GitRevision", "").removesuffix("-dirty")
    if release.version in (info.get("Version"), info.get("GitTag")) or revision == release.commit:
        return info.get("GolangVersion") or "an unknown Go"
    said = info.get("Version") or " ".join(out.split())[:80] or "nothing"
    raise UserError(
        f"{binary} ({where}) is Istio {said}, not {release.version}; give Istio"
        f" {release.version}'s {binary.name}, or pass the --istio-version it is"
    )


# ---- Istio's images, through the Docker engine --------------------------------------------

# Where Istio 1.10's Dockerfiles put them (pilot/docker/Dockerfile.pilot, Dockerfile.proxyv2).
IN_PILOT_IMAGE = {PILOT_DISCOVERY: "/usr/local/bin/pilot-discovery"}
IN_PROXY_IMAGE = {
    PILOT_AGENT: "/usr/local/bin/pilot-agent",
    BOOTSTRAP: "/var/lib/istio/envoy/envoy_bootstrap_tmpl.json",
}
ENGINE_TIMEOUT = 300


class Taken(NamedTuple):
    folder: Path  # where the files copied out of an image are
    origin: str


def from_images(settings: Settings, release: IstioRelease) -> tuple[Taken | None, Taken | None]:
    """(pilot-discovery from the pilot image, pilot-agent and template from a proxyv2 image),
    each None where Docker has no such image. An image the user named must be there."""
    explicit = bool(settings.istio_pilot_image or settings.istio_proxy_image)
    try:
        client = engine.client(ENGINE_TIMEOUT)
    except UserError as exc:
        if explicit:
            raise
        log.info(f"    images not searched: {exc}")
        return None, None
    pilot = [(settings.istio_pilot_image or f"istio/pilot:{release.version}",) * 2]
    with engine.errors():
        discovery = _first_image(client, pilot, IN_PILOT_IMAGE, settings, release, "pilot")
        agent = _first_image(
            client, _proxy_images(settings, release), IN_PROXY_IMAGE, settings, release, "proxy"
        )
    return discovery, agent


def _proxy_images(settings: Settings, release: IstioRelease) -> list[tuple[str, str]]:
    """(what to look up, what to call it): the named one; else the image `invoke image` built
    (by id: its tags may have moved since), then Istio's own."""
    if settings.istio_proxy_image:
        return [(settings.istio_proxy_image,) * 2]
    found = []
    record = settings.path("dist") / names.IMAGE_JSON
    if record.is_file():
        built = ImageResult.load(record)
        found.append((built.image_id, (built.references or [built.image_id])[0]))
    return [*found, (f"istio/proxyv2:{release.version}",) * 2]


def _first_image(
    client,
    candidates: list[tuple[str, str]],
    files: dict[str, str],
    settings: Settings,
    release: IstioRelease,
    kind: str,
) -> Taken | None:
    """The files of the first candidate Docker has, copied out and checked."""
    import docker.errors

    named = getattr(settings, f"istio_{kind}_image")
    for lookup, shown in candidates:
        try:
            image = client.images.get(lookup)
        except docker.errors.ImageNotFound:
            continue
        started = time.monotonic()
        folder, copied = _copy_from_image(client, image.id, shown, files, settings, kind)
        took = f" in {time.monotonic() - started:.1f}s" if copied else ", copied earlier"
        commands = [name for name in files if name != BOOTSTRAP]
        go = ", ".join(check_version(folder / name, release, f"image {shown}") for name in commands)
        log.info(f"    {', '.join(commands)}: taken from image {shown}{took} ({go})")
        return Taken(folder, f"{', '.join(commands)} from image {shown} ({go})")
    if named:
        raise UserError(
            f"--istio-{kind}-image {named} is not in the Docker engine; `docker pull {named}`"
            " (or docker load) it, or drop the flag"
        )
    return None


def _copy_from_image(
    client, image_id: str, shown: str, files: dict[str, str], settings: Settings, kind: str
) -> tuple[Path, bool]:
    """`files` copied out of the image into cache_dir, once per image id; (folder, whether
    they were copied now)."""
    import docker.errors

    digest = image_id.split(":")[-1][:16]
    folder = settings.path("cache_dir") / "istio" / f"image-{kind}-{digest}"
    if all((folder / name).is_file() for name in files):
        return folder, False
    folder.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    # Created, never started: the files are read from its filesystem.
    container = client.containers.create(
        image_id,
        entrypoint=[next(iter(files.values()))],
        network_mode="none",
        labels={engine.PURPOSE_LABEL: "istio-binaries"},
    )
    try:
        for name, path in files.items():
            try:
                engine.copy_out(
                    container, path, building / name, 0o644 if name == BOOTSTRAP else 0o755
                )
            except docker.errors.NotFound:
                raise UserError(
                    f"image {shown} has no {path}: not an Istio {kind} image as Istio's"
                    f" Dockerfile builds it; give --istio-{kind}-image another image"
                ) from None
        building.chmod(0o755)
        _rename_into_place(building, folder, files)
    finally:
        container.remove(force=True)
        shutil.rmtree(building, ignore_errors=True)
    return folder, True


# ---- a build from Istio's source -----------------------------------------------------------


def build_from_source(settings: Settings) -> IstioBinaries:
    """Build both commands from settings.istio_src, once per distinct source: the result is
    kept in cache_dir under a key of the source's content, the Go and the build flags."""
    release = release_for(settings.istio_version)
    source = settings.path("istio_src").resolve()
    env, go = go_environment(release, settings)
    return _build(settings, release, source, f"--istio-src {source}", str(source), env, go)


def build_from_module(settings: Settings, release: IstioRelease) -> IstioBinaries:
    """Build both commands from istio.io/istio@<release> as the Go module proxy serves it.

    The last route, taken only when nothing else gave pilot-discovery: where the proxy does
    not serve the module (this project's refuses it, 403), the one line names the others."""
    module = f"{ISTIO_MODULE}@{release.version}"
    try:
        env, go = go_environment(release, settings)
    except UserError as exc:
        raise UserError(
            f"no pilot-discovery for Istio {release.version} ({exc}); {routes(release)}"
        ) from None
    log.info(f"    no folder, image or source given: downloading {module} (Go module proxy)")
    with tempfile.TemporaryDirectory(prefix="mosn-proxyv2-gomod-") as outside_any_module:
        out = proc.run(
            ["go", "mod", "download", "-json", module],
            cwd=outside_any_module,
            env=env,
            stream=False,
            check=False,
        )
    # -json prints the module's record (with Dir, or Error) after go's own progress lines.
    record = re.search(r"^\{.*^\}", out, re.M | re.S)
    found = json.loads(record.group(0)) if record else {}
    if not found.get("Dir") or found.get("Error"):
        why = found.get("Error") or (out.strip().splitlines() or ["no output"])[-1]
        why = why.splitlines()[0].removeprefix(f"{module}: ")
        raise UserError(
            f"no pilot-discovery for Istio {release.version}: the Go module proxy did not give"
            f" {module} ({why}); {routes(release)}"
        )
    source = Path(found["Dir"])
    shown = f"{ISTIO_MODULE}@{found['Version']} (module proxy)"
    return _build(settings, release, source, shown, shown, env, go)


def _build(
    settings: Settings,
    release: IstioRelease,
    source: Path,
    where: str,
    shown: str,
    env: dict[str, str],
    go: str,
) -> IstioBinaries:
    revision = identify_source(source, release, where)
    ldflags = _ldflags(release, revision)
    key = source_key(source, f"{release.version} {go} {ldflags} {BUILD_FORMAT}")
    folder = settings.path("cache_dir") / "istio" / f"{release.version}-{key[:16]}"
    if _complete(folder):
        how = f"built from {shown} with {go} earlier, kept in {folder}"
        log.info(f"    Istio {release.version} binaries: {how}")
    else:
        seconds = _build_into(folder, source, env, ldflags, go)
        how = f"built from {shown} with {go} in {seconds:.0f}s, kept in {folder}"
    binaries = IstioBinaries(
        folder / PILOT_DISCOVERY, folder / PILOT_AGENT, folder / BOOTSTRAP, f"pilot-* {how}"
    )
    for binary in (binaries.pilot_discovery, binaries.pilot_agent):
        check_version(binary, release, f"built from {where}")
    return binaries


def identify_source(source: Path, release: IstioRelease, where: str) -> str:
    """Refuse a tree that is not `release`'s source; return its git commit ("unknown" without
    git). A checkout is named by its commit; a tree without git history by its go.sum."""
    gomod = source / "go.mod"
    text = gomod.read_text(errors="replace") if gomod.is_file() else ""
    if not re.search(rf"^module\s+{re.escape(ISTIO_MODULE)}\s*$", text, re.M):
        raise UserError(
            f"{where} is not Istio's source (no go.mod of {ISTIO_MODULE}); give a checkout of"
            f" istio/istio at tag {release.version}"
        )
    commit = _git_head(source)
    if commit is not None:
        if commit != release.commit:
            raise UserError(
                f"{where} is at commit {commit[:12]}, not Istio {release.version}"
                f" ({release.commit[:12]}); `git checkout {release.version}` there, or pass the"
                " --istio-version it is"
            )
        return commit
    go_sum = source / "go.sum"
    digest = hashlib.sha256(go_sum.read_bytes()).hexdigest() if go_sum.is_file() else ""
    if digest != release.go_sum_sha256:
        raise UserError(
            f"{where} is not Istio {release.version}'s source (its go.sum is another"
            f" release's); give a checkout of tag {release.version}, or pass the"
            " --istio-version it is"
        )
    return "unknown"


def _git_head(source: Path) -> str | None:
    """HEAD of the git checkout whose top is `source`; None for a tree that is not one (or is
    a folder inside another repository, or git is missing or refuses it)."""
    try:
        out = proc.run(
            ["git", "-C", source, "rev-parse", "--show-toplevel", "HEAD"],
            stream=False,
            check=False,
            separate_stderr=True,
        )
    except UserError:
        return None
    lines = out.split()
    if len(lines) == 2 and Path(lines[0]).resolve() == source:
        return lines[1]
    return None


def source_key(source: Path, salt: str) -> str:
    """A digest of what `go build` reads from `source` (non-test Go files, go.mod, go.sum)
    and the template, by relative path, with `salt` (version, Go, flags)."""
    digest = hashlib.sha256(salt.encode())
    for path in sorted(_build_inputs(source)):
        digest.update(path.relative_to(source).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def _build_inputs(source: Path):
    yield source / BOOTSTRAP_IN_SOURCE
    for folder, subfolders, files in os.walk(source):
        # Hidden folders (.git) and Istio's build output hold nothing `go build` compiles.
        subfolders[:] = [d for d in subfolders if not d.startswith(".") and d != "out"]
        for name in files:
            top = folder == str(source)
            if (name.endswith(".go") and not name.endswith("_test.go")) or (
                top and name in ("go.mod", "go.sum")
            ):
                yield Path(folder) / name


def _ldflags(release: IstioRelease, revision: str) -> str:
    # What Istio's report_build_info.sh stamps, so `version` names the release; -s -w as its
    # gobuild.sh strips.
    stamp = {"buildVersion": release.version, "buildTag": release.version}
    stamp["buildGitRevision"] = revision
    return "-s -w " + " ".join(f"-X istio.io/pkg/version.{k}={v}" for k, v in stamp.items())


def _rename_into_place(building: Path, folder: Path, files) -> None:
    try:
        building.rename(folder)
    except OSError:
        if not all((folder / name).is_file() for name in files):
            raise
        # Another run finished the same work first; its folder is as good as ours.


def _complete(folder: Path) -> bool:
    return all((folder / name).is_file() for name in (PILOT_DISCOVERY, PILOT_AGENT, BOOTSTRAP))


def _build_into(folder: Path, source: Path, env: dict[str, str], ldflags: str, go: str) -> float:
    """Build into a hidden folder beside `folder` and rename it into place: a build that
    fails or is interrupted leaves nothing a later run could take for a result."""
    template = source / BOOTSTRAP_IN_SOURCE
    if not template.is_file():
        raise UserError(
            f"{source} has no {BOOTSTRAP_IN_SOURCE}: not Istio's source; fix --istio-src"
        )
    folder.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    building = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    log.info(f"    building pilot-discovery and pilot-agent from {source} with {go}")
    log.info("    (once per source; from an empty Go module cache this takes minutes)")
    try:
        for name, (package, flags) in COMMANDS.items():
            proc.run(
                [
                    "go",
                    "build",
                    "-trimpath",
                    *flags,
                    "-ldflags",
                    ldflags,
                    "-o",
                    building / name,
                    package,
                ],
                cwd=source,
                env=env,
                what=f"go build of {name}",
                hint="the compiler's last lines are above",
            )
        shutil.copyfile(template, building / BOOTSTRAP)
        record = {"source": str(source), "go": go, "ldflags": ldflags}
        (building / "build.json").write_text(json.dumps(record, indent=2) + "\n")
        building.chmod(0o755)  # mkdtemp's 0700 would hide the result from other users
        _rename_into_place(building, folder, (PILOT_DISCOVERY, PILOT_AGENT, BOOTSTRAP))
    finally:
        shutil.rmtree(building, ignore_errors=True)
    return time.monotonic() - started


# The go env values a build carries over from the user's Go (env variables and go env file)
# when it runs with GOENV=off.
_CARRIED = (
    "GOPROXY", "GONOPROXY", "GOSUMDB", "GONOSUMDB", "GOPRIVATE", "GOINSECURE", "GOFLAGS",
    "GOMODCACHE", "GOCACHE",
)  # fmt: skip
# GOFLAGS entries Go 1.16 stops at ("unknown flag"): -buildvcs is Go 1.18's, -pgo Go 1.21's.
_NEWER_FLAGS = ("-buildvcs", "-pgo")


def go_environment(release: IstioRelease, settings: Settings) -> tuple[dict[str, str], str]:
    """The environment the go command runs in for `release`, and the Go release it uses.

    A Go too new for Istio 1.10 fetches `release.go` itself through GOTOOLCHAIN. GOENV=off
    keeps the user's go env file (whose GOFLAGS may hold flags Go 1.16 refuses) away from that
    older Go; its settings are read first and passed on, without those flags. The module and
    build caches stay the user's when writable, else move under cache_dir.
    """
    fetch = f"install Go 1.21 or newer (it fetches {release.go} through the module proxy)"
    out = proc.run(
        ["go", "env", "-json", "GOVERSION", *_CARRIED],
        stream=False,
        separate_stderr=True,
        what="go env",
        hint=fetch,
    )
    values = json.loads(out)
    # GOVERSION is new in Go 1.16.
    given = values.pop("GOVERSION")
    label, minor = toolchain.parse_go_version(given) if given else ("a Go before 1.16", (1, 15))
    oldest, newest = toolchain.parse_go_version(release.go)[1], release.go_newest
    env = {"GOENV": "off", "GO111MODULE": "on", "CGO_ENABLED": "0"}
    if minor >= (1, 21):
        env["GOTOOLCHAIN"] = label = release.go
    elif not oldest <= minor <= newest:
        wanted = f"Go {oldest[0]}.{oldest[1]} to {newest[0]}.{newest[1]}"
        raise UserError(
            f"Istio {release.version} builds with {wanted} and the go on PATH is {label};"
            f" {fetch} or put {wanted} first on PATH"
        )
    own = settings.path("cache_dir") / "go"
    flags = [f for f in values.pop("GOFLAGS").split() if not f.startswith(_NEWER_FLAGS)]
    for name, fallback in (("GOMODCACHE", own / "mod"), ("GOCACHE", own / "build")):
        if not _writable(Path(values[name] or fallback)):
            values[name] = str(fallback)
            # Go writes its module cache read-only; our own must stay removable with cache_dir.
            flags += ["-modcacherw"] if name == "GOMODCACHE" else []
    return {**env, **values, "GOFLAGS": " ".join(flags)}, label


def _writable(path: Path) -> bool:
    """Whether `path` is, or can be made as, a folder this process writes to."""
    while not path.exists():
        if path.parent == path:
            return False
        path = path.parent
    return path.is_dir() and os.access(path, os.W_OK | os.X_OK)
