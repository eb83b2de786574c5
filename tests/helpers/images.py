"""Base images for tests, made with `docker import` because nothing can be pulled here."""

from __future__ import annotations

import io
import shutil
import tarfile
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


def busybox_rootfs() -> bytes:
    """A root filesystem tar: a static busybox with a few applets, /tmp and /usr/local/bin."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        add_busybox(tar)
    return buf.getvalue()


def import_busybox_base(client, reference: str = BUSYBOX_BASE) -> str:
    """Import the busybox root filesystem as `reference` unless it is there, and return it."""
    import docker.errors

    try:
        client.images.get(reference)
        return reference
    except docker.errors.ImageNotFound:
        pass
    repository, tag = reference.rsplit(":", 1)
    client.api.import_image_from_data(
        busybox_rootfs(), repository=repository, tag=tag, changes=['CMD ["/bin/sh"]']
    )
    return reference
