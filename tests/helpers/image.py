"""Helpers for the `invoke image` tests: the CLI as a subprocess, names, a file server, a
registry's view of a repository, and the stand-in Istio checkout."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import requests

from tests.helpers.cli import run_invoke
from tests.helpers.mosn import git
from tests.helpers.net import free_port, running_process

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
ISTIO_STANDIN = REPO_ROOT / "tests" / "fixtures" / "istio-standin"
MANIFEST_V2 = "application/vnd.docker.distribution.manifest.v2+json"


def unique(label: str) -> str:
    """A name for something this area creates on the shared engine."""
    return f"mp-image-{label}-{secrets.token_hex(4)}"


def invoke(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`python3 -m invoke ARGS` from the repository root, as a user would run it."""
    full_env = {**os.environ, **(env or {})}
    full_env.pop("MOSN_PROXYV2_QUIET", None)
    return run_invoke(*args, env=full_env)


def last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def copy_dist(dist_root: Path, dest: Path) -> Path:
    shutil.copytree(dist_root, dest)
    return dest


def registry_tags(address: str, repository: str) -> tuple[int, list[str]]:
    """(HTTP status, tags) of `repository` on the registry at `address`."""
    response = requests.get(f"http://{address}/v2/{repository}/tags/list", timeout=10)
    tags = response.json().get("tags") or [] if response.status_code == 200 else []
    return response.status_code, sorted(tags)


def registry_digest(address: str, repository: str, tag: str) -> str:
    response = requests.head(
        f"http://{address}/v2/{repository}/manifests/{tag}",
        headers={"Accept": MANIFEST_V2},
        timeout=10,
    )
    response.raise_for_status()
    return response.headers["Docker-Content-Digest"]


def local_references(client, repository: str) -> list[str]:
    return sorted(tag for image in client.images.list(name=repository) for tag in image.tags)


def remove_repository(client, repository: str) -> None:
    """Drop every reference into `repository` (tags and pulled-by-digest names), never by image
    id: an id may also carry names this test did not make, such as the shared base image's."""
    for found in client.images.list(name=repository):
        references = [
            *(t for t in found.tags if t.startswith(repository + ":")),
            *(d for d in found.attrs.get("RepoDigests") or [] if d.startswith(repository + "@")),
        ]
        for reference in references:
            with contextlib.suppress(Exception):
                client.images.remove(reference)


def run_in_image(client, reference: str, *command: str, entrypoint: str) -> str:
    output = client.containers.run(
        reference, list(command), entrypoint=[entrypoint], network_mode="none", remove=True
    )
    return output.decode()


@contextlib.contextmanager
def serve_directory(root: Path) -> Iterator[str]:
    """Serve `root` over HTTP on 127.0.0.1 with Python's http.server; yield its base URL."""
    port = free_port()
    argv = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"]
    with running_process(argv, port, cwd=root):
        yield f"http://127.0.0.1:{port}"


def make_istio_standin(dest: Path, tag: str = "1.10.6") -> Path:
    """A git repository of the stand-in Istio build, its one commit tagged `tag`."""
    shutil.copytree(ISTIO_STANDIN, dest)
    git(dest, "init", "-q", "-b", "master")
    git(dest, "add", "-A")
    git(dest, "commit", "-q", "-m", "istio stand-in")
    git(dest, "tag", tag)
    return dest
