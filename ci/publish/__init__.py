"""`invoke publish`: put a dist's tarballs in a store and hand Istio's build what it needs.

Order matters: plan (what is there already), upload, verify every file through the URL
Istio's build will use, and only then write DIST/istio.env and DIST/published.json, so those
files exist only for a complete, checked publish.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ci import config, extras, istio_env, log, names
from ci.config import Settings
from ci.dist import Dist, remove_records, sha256_bytes, sha256_file
from ci.errors import UserError
from ci.publish import local_server
from ci.publish.base import Item, Store, Stored, download_digest
from ci.publish.record import PublishedFile, Record
from ci.publish.s3 import S3Store
from ci.publish.server import ServerStore


@dataclass
class Published:
    """What a publish did: the stage's result, for whoever runs it to show or hand on."""

    values: dict[str, str]
    env_file: Path
    record: Record
    tarball_names: tuple[str, ...]
    uploaded: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)

    @property
    def make_command(self) -> str:
        return istio_env.make_command(self.values)

    @property
    def tarballs(self) -> list[dict[str, str]]:
        return self.record.tarballs(self.tarball_names)


def check_prefix(prefix: str) -> str:
    """The prefix without its outer slashes, its parts checked by the settings' rule."""
    problem = config.prefix_problem(prefix)
    if problem:
        raise UserError(f"--prefix {prefix!r} {problem}")
    return prefix.strip("/")


def plan(dist: Dist, folder: str, wasm: str) -> list[Item]:
    """Every file to publish, under `folder`: the tarballs, SHA256SUMS, the WASM placeholders."""
    items = [
        Item(f.name, f"{folder}/{f.name}", f.size, f.sha256, dist.root / f.name) for f in dist.files
    ]
    sums = dist.root / names.SHA256SUMS
    if sums.is_file():
        items.append(
            Item(
                names.SHA256SUMS,
                f"{folder}/{names.SHA256SUMS}",
                sums.stat().st_size,
                sha256_file(sums),
                sums,
            )
        )
    if wasm == "placeholder":
        empty = sha256_bytes(b"")
        items += [
            Item(name, f"{folder}/{name}", 0, empty)
            for name in names.wasm_placeholders(dist.mosn_version_safe)
        ]
    return items


def open_store(settings: Settings) -> Store:
    if settings.to == "s3":
        extras.require("s3", "--to s3")
        return S3Store(settings)
    # The URL is checked (by ServerStore) before a server is started for it.
    store = ServerStore(settings.server_url, "")
    store.token, store.token_file = local_server.write_token(settings)
    store.check_server()
    return store


def same(stored: Stored | None, item: Item) -> bool:
    return stored is not None and stored.size == item.size and stored.sha256 == item.sha256


def upload(
    store: Store, items: list[Item], *, force: bool, version: str, dirty: bool = False
) -> tuple[list[str], list[str]]:
    """Upload what is missing; refuse (before sending anything) to replace different bytes."""
    found = {item.key: store.stat(item.key) for item in items}
    different = [
        item for item in items if found[item.key] is not None and not same(found[item.key], item)
    ]
    if different and not force:
        listed = ", ".join(item.name for item in different)
        # Every edit of an uncommitted tree gives new bytes under the same -dirty stamp.
        why = (
            " (the dist was built from a checkout with uncommitted changes: commit them and"
            " rebuild)"
            if dirty
            else ""
        )
        raise UserError(
            f"{store.display(different[0].key)}: version {version} is already published with"
            f" different bytes ({listed}){why}; build another version (`invoke build --version V`),"
            " or pass --force to replace them"
        )
    if items and all(same(found[item.key], item) for item in items):
        # Nothing to send, so nothing would show that the credentials may not write.
        store.check_write(min(items, key=lambda item: item.size))
    uploaded, unchanged = [], []
    for item in items:
        if same(found[item.key], item):
            log.info(
                f"    {item.name}: already there with sha256 {item.sha256[:12]}..., not uploaded"
            )
            unchanged.append(item.name)
            continue
        store.put(item, replace=found[item.key] is not None)
        uploaded.append(item.name)
    if not uploaded:
        log.info("    nothing uploaded: every file was already there with the same bytes")
    elif unchanged:
        log.info(f"    {len(uploaded)} uploaded, {len(unchanged)} already there")
    return uploaded, unchanged


def _check(got: Stored | None, item: Item, where: str, display: str) -> None:
    if same(got, item):
        return
    seen = "nothing" if got is None else f"{got.size} bytes with sha256 {got.sha256 or 'unknown'}"
    raise UserError(
        f"{display}: {where} gives {seen}, not the {item.size} bytes with sha256"
        f" {item.sha256} that were published; istio.env was not written; check the store and"
        " anything between (proxy, cache), then run again (with --force to replace)"
    )


def verify(store: Store, items: list[Item], urls: dict[str, str]) -> None:
    """Read back each file: the store's own record, then the bytes at the URL Istio uses."""
    for item in items:
        display = store.display(item.key)
        _check(store.stat(item.key), item, "the store's record", display)
        _check(
            download_digest(urls[item.name], display, store.unreadable_hint(item)),
            item,
            "a download",
            display,
        )
        log.info(f"    {item.name}: {item.size} bytes, sha256 {item.sha256[:12]}... verified")


def publish(settings: Settings) -> Published:
    prefix = check_prefix(settings.prefix)
    dist = Dist.load(settings.path("dist"))
    env_file = dist.root / names.ISTIO_ENV
    # istio.env and published.json describe the last complete publish of this dist; a new
    # attempt voids them, so a failure below cannot leave a hand-off that points at other bytes.
    remove_records(dist.root, (names.ISTIO_ENV, names.PUBLISHED_JSON))
    dist.verify()
    version = dist.mosn_version_safe
    folder = f"{prefix}/{version}" if prefix else version
    items = plan(dist, folder, settings.wasm)
    store = open_store(settings)

    with log.stage(f"publish {len(items)} files to {store.describe()} under {folder}/"):
        uploaded, unchanged = upload(
            store, items, force=settings.force, version=version, dirty=dist.dirty
        )

    base_url = store.folder_url(folder)
    urls = {
        item.name: (f"{base_url}/{item.name}" if item.placeholder else store.url(item.key))
        for item in items
    }
    with log.stage("verify published files"):
        verify(store, items, urls)

    tarballs = {f.name: urls[f.name] for f in dist.files}
    wasm_base_url = base_url if settings.wasm == "placeholder" else None
    values = istio_env.istio_values(version, tarballs, wasm_base_url)
    for warning in istio_env.blocklist_warnings(values):
        log.warn(warning)
    istio_env.write(env_file, values)
    record = Record(
        store=settings.to,
        location=store.describe(),
        files=tuple(
            PublishedFile(item.name, urls[item.name], item.sha256, item.size) for item in items
        ),
        istio_env=str(env_file.resolve()),
        wasm_base_url=wasm_base_url,
    )
    record.write(dist.root)
    result = Published(
        values=values,
        env_file=env_file,
        record=record,
        tarball_names=tuple(f.name for f in dist.files),
        uploaded=uploaded,
        unchanged=unchanged,
    )
    log.info(f"wrote {env_file}")
    log.info("Build Istio's proxyv2 from an Istio checkout with:")
    log.info(f"  {result.make_command}")
    return result
