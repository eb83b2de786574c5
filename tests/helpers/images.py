"""Base images for tests, made with `docker import` because nothing can be pulled here."""

from __future__ import annotations

import shutil
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path

BUSYBOX = Path(shutil.which("busybox") or "/bin/busybox")
BUSYBOX_BASE = "mosn-proxyv2-test/base:busybox"
APPLETS = ("sh", "ls", "cat", "echo", "env", "sleep", "true", "false", "mkdir", "rm", "cp", "wget")


def add_busybox(tar: tarfile.TarFile, *folders: str) -> None:
    """Put a minimal root filesystem into `tar`: /tmp, /usr/local/bin, `folders`, and a
    static busybox with a few applets."""
    for folder in ("bin", "tmp", "usr", "usr/local", "usr/local/bin", "etc", *folders):
        info = tarfile.TarInfo(folder)
        info.type = tarfile.DIRTYPE
        info.mode = 0o1777 if folder == "tmp" else 0o755
        tar.addfile(info)
    tar.add(str(BUSYBOX.resolve()), arcname="bin/busybox")
    for applet in APPLETS:
        link = tarfile.TarInfo(f"bin/{applet}")
        link.type = tarfile.SYMTYPE
        link.linkname = "busybox"
        tar.addfile(link)


def import_rootfs(
    client, reference: str, write_rootfs: Callable[[Path], None], changes: list[str]
) -> str:
    """`docker import` the root filesystem tar `write_rootfs` makes, as `reference`, unless the
    engine has it already (the test engine is shared: no dangling re-imports)."""
    import docker.errors

    try:
        client.images.get(reference)
        return reference
    except docker.errors.ImageNotFound:
        pass
    repository, tag = reference.rsplit(":", 1)
    with tempfile.TemporaryDirectory(prefix="mp-rootfs-") as tmp:
        rootfs = Path(tmp) / "rootfs.tar"
        write_rootfs(rootfs)
        client.api.import_image_from_file(
            str(rootfs), repository=repository, tag=tag, changes=changes
        )
    return reference


def busybox_rootfs(dest: Path) -> None:
    """A root filesystem tar: a static busybox with a few applets, /tmp and /usr/local/bin."""
    with tarfile.open(dest, "w") as tar:
        add_busybox(tar)


def import_busybox_base(client, reference: str = BUSYBOX_BASE) -> str:
    """The busybox root filesystem as the image `reference`."""
    return import_rootfs(client, reference, busybox_rootfs, ['CMD ["/bin/sh"]'])
