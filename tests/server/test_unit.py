"""The server is one unit: kill -9 of any one of its processes ends in recovery or in a clean,
complete shutdown that frees the port; `--stop` finds every process, orphans included, and
signals nothing that is not the server's.

    process killed      default mode           --front nginx
    gunicorn worker     replaced (arbiter)     replaced (arbiter)
    gunicorn master     all stop, port free    all stop, port free (nginx gets SIGTERM)
    nginx worker        -                      replaced (nginx's master)
    nginx master        -                      nginx restarted with the same config

Real gunicorn, real nginx, on loopback; every server runs in its own session.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from server import front, unit
from tests.helpers import tools
from tests.helpers.artifact_server import running_server
from tests.server.conftest import AUTH, TOKEN
from tests.server.test_faults import wait_until

REPO = Path(__file__).resolve().parents[2]
MODES = [
    "app",
    pytest.param(
        "nginx",
        marks=tools.skip_unless("nginx", front.find_nginx() is not None, "nginx is not installed"),
    ),
]
needs_nginx = tools.skip_unless("nginx", front.find_nginx() is not None, "nginx is not installed")


def children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def nginx_master(root: Path) -> int:
    return int((front.front_dir(root) / "nginx.pid").read_text())


def healthy(url: str) -> bool:
    try:
        return requests.get(f"{url}/-/healthz", timeout=2).status_code == 200
    except requests.RequestException:
        return False


def port_free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def invoke_serve(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "invoke", "serve", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )


def serving(url, mode: str):
    return running_server(
        url, tokens=[TOKEN], front=None if mode == "app" else mode, overwrite="allow"
    )


@pytest.mark.parametrize("mode", MODES)
def test_kill_9_of_a_gunicorn_worker_is_replaced(tmp_path, mode):
    with serving(tmp_path / "root", mode) as url:
        victim = url.workers()[0]
        os.kill(victim, signal.SIGKILL)
        wait_until(lambda: victim not in url.workers() and len(url.workers()) == 2, "new worker")
        assert "was sent SIGKILL" in url.log.read_text()
        assert requests.put(f"{url}/a.bin", data=b"after", headers=AUTH).status_code == 201
        assert requests.get(f"{url}/a.bin").content == b"after"


@pytest.mark.parametrize("mode", MODES)
def test_kill_9_of_the_gunicorn_master_stops_every_process_and_frees_the_port(tmp_path, mode):
    """Nothing above the master restarts it inside the server: that is the service manager's
    job, and it needs the port free and no orphans. So the whole unit goes."""
    with serving(tmp_path / "root", mode) as url:
        everyone = [url.pid, *url.workers()]
        if mode == "nginx":
            nginx = nginx_master(url.root)
            everyone += [nginx, *children(nginx)]
        os.kill(url.pid, signal.SIGKILL)
        wait_until(lambda: not unit.held(url.root), "the server's lock free")
        wait_until(lambda: not any(unit.alive(pid) for pid in everyone), "all its processes gone")
        wait_until(lambda: port_free(url.port), "the port free")
        stopped = invoke_serve("--root", str(url.root), "--stop")
        assert stopped.stdout.startswith("no server was running"), stopped.stdout
        # A fresh server on the same root and port works at once.
        restarted = subprocess.Popen(
            [sys.executable, "-m", "invoke", "serve", "--root", str(url.root)]
            + ["--bind", f"127.0.0.1:{url.port}", "--workers", "1"]
            + ([] if mode == "app" else ["--front", mode]),
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            wait_until(lambda: healthy(url), "the new server answering")
            assert requests.get(f"{url}/-/api/artifacts").json() == []
        finally:
            assert invoke_serve("--root", str(url.root), "--stop").returncode == 0
            restarted.wait(timeout=30)


@needs_nginx
def test_kill_9_of_an_nginx_worker_is_replaced_by_nginx(tmp_path):
    with serving(tmp_path / "root", "nginx") as url:
        master = nginx_master(url.root)
        before = children(master)
        os.kill(before[0], signal.SIGKILL)
        wait_until(lambda: len(set(children(master)) - set(before)) == 1, "a new nginx worker")
        assert healthy(url)
        assert nginx_master(url.root) == master


@needs_nginx
def test_kill_9_of_the_nginx_master_restarts_nginx_with_the_same_config(tmp_path):
    """Its workers outlive it holding the port (they answered 502 for ever): the gunicorn
    master stops them and starts nginx again, and says how nginx died."""
    with serving(tmp_path / "root", "nginx") as url:
        assert requests.put(f"{url}/kept.bin", data=b"kept", headers=AUTH).status_code == 201
        conf = (front.front_dir(url.root) / "nginx.conf").read_text()
        old = nginx_master(url.root)
        old_workers = children(old)
        os.kill(old, signal.SIGKILL)
        wait_until(
            lambda: (
                (front.front_dir(url.root) / "nginx.pid").exists()
                and nginx_master(url.root) != old
                and healthy(url)
            ),
            "nginx restarted",
        )
        assert not any(unit.alive(pid) for pid in old_workers)
        assert requests.get(f"{url}/kept.bin").content == b"kept"
        assert (front.front_dir(url.root) / "nginx.conf").read_text() == conf
        # The master logs the restart once nginx has written its pid file, which may be just
        # after nginx answers.
        wait_until(lambda: "nginx front restarted" in url.log.read_text(), "the restart logged")
        log = url.log.read_text()
        assert f"the nginx front (pid {old}) was killed by signal 9 (SIGKILL)" in log
        assert unit.master(url.root) == url.pid


@needs_nginx
def test_stop_finds_the_orphans_of_a_server_whose_masters_all_died(tmp_path):
    """Both masters killed at once (an OOM kill of the two): nginx's workers are orphans that
    hold the port. --stop finds them by the lock they hold, says so, and frees the port."""
    with serving(tmp_path / "root", "nginx") as url:
        nginx = nginx_master(url.root)
        orphans = children(nginx)
        os.kill(nginx, signal.SIGKILL)
        os.kill(url.pid, signal.SIGKILL)
        wait_until(lambda: unit.master(url.root) is None, "masters gone")
        assert all(unit.alive(pid) for pid in orphans)
        stopped = invoke_serve("--root", str(url.root), "--stop")
        assert stopped.returncode == 0, stopped.stderr
        assert stopped.stdout.startswith("stopped what remained of the server from"), stopped.stdout
        for pid in orphans:
            assert str(pid) in stopped.stdout
        assert not any(unit.alive(pid) for pid in orphans)
        assert not unit.held(url.root)
        wait_until(lambda: port_free(url.port), "the port free")


def test_stop_never_signals_a_recycled_pid(tmp_path):
    """A pid file naming a process that is not the server (its pid was reused) is ignored."""
    root = tmp_path / "root"
    root.mkdir()
    stranger = subprocess.Popen(["sleep", "60"])
    try:
        (root / ".server.pid").write_text(f"{stranger.pid}\n")
        stopped = invoke_serve("--root", str(root), "--stop")
        assert stopped.returncode == 0
        assert stopped.stdout.startswith("no server was running"), stopped.stdout
        time.sleep(0.3)
        assert stranger.poll() is None
    finally:
        stranger.kill()
        stranger.wait()


def test_stop_finds_a_running_server_whose_pid_file_names_another_process(tmp_path):
    with serving(tmp_path / "root", "app") as url:
        stranger = subprocess.Popen(["sleep", "60"])
        try:
            (url.root / ".server.pid").write_text(f"{stranger.pid}\n")
            stopped = invoke_serve("--root", str(url.root), "--stop")
            assert stopped.returncode == 0
            assert str(url.pid) in stopped.stdout
            wait_until(lambda: not unit.held(url.root), "the server gone")
            assert stranger.poll() is None
        finally:
            stranger.kill()
            stranger.wait()
