"""`invoke serve`, `python -m server` and server.background, run as a user would."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from server import background
from server.errors import ServerError
from tests.helpers.net import free_port
from tests.server.conftest import TOKEN

REPO = Path(__file__).resolve().parents[2]


def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def wait_healthy(base: str) -> None:
    # An HTTP probe rather than a bare connect: an idle accepted connection would hold up
    # gunicorn's graceful stop later.
    for _ in range(600):
        try:
            if requests.get(f"{base}/-/healthz", timeout=1).status_code == 200:
                return
        except requests.RequestException:  # not up yet, or slow on a loaded machine
            pass
        time.sleep(0.05)
    raise AssertionError(f"{base} never answered")


def last_line(text: str) -> str:
    return text.strip().splitlines()[-1]


def test_serve_refuses_a_file_as_root(tmp_path):
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    result = run("-m", "invoke", "serve", "--root", str(not_a_dir))
    assert result.returncode == 1
    assert (
        last_line(result.stderr)
        == f"error: server root {not_a_dir} is not a directory; give a directory"
    )


@pytest.mark.parametrize("program", [("invoke", "serve"), ("server",)], ids=["invoke", "server"])
@pytest.mark.parametrize(
    ("flag", "value", "problem"),
    [
        (
            "--max-upload-size",
            "lots",
            "is not a size: write bytes or a number with K, M, G or T, e.g. 2G",
        ),
        ("--connections", "0", "is out of range: give 1 or more"),
        ("--header-timeout", "0", "is out of range: give more than 0 seconds"),
        ("--front-cache", "-1", "is out of range: give 0 or more seconds (0: off)"),
    ],
)
def test_both_programs_refuse_a_bad_value_alike_and_create_nothing(
    tmp_path, program, flag, value, problem
):
    """One declaration (server/options.py), one check: `python -m server` passed these to
    gunicorn and nginx unchecked, or said it otherwise."""
    root = tmp_path / "root"
    result = run("-m", *program, "--root", str(root), flag, value)
    assert result.returncode == 1
    assert result.stderr == f"error: {flag} {value!r} {problem}\n"
    assert not root.exists()


def test_python_m_server_needs_a_root(tmp_path):
    result = run("-m", "server", env={"ARTIFACT_ROOT": ""})
    assert result.returncode == 1
    assert (
        last_line(result.stderr)
        == "error: no server root given; pass --root DIR or set ARTIFACT_ROOT"
    )


def test_python_m_server_prints_the_detail_then_the_message_with_a_stand_in_error(
    monkeypatch, capsys, tmp_path
):
    """No error on this path carries a detail today (background.start's do): a stand-in
    `serve` raises one, so the day one does, it is not dropped."""
    import server.__main__ as main_module

    def failing_serve(config, options):
        raise ServerError("the server could not start; see its log", detail="line one\nline two")

    monkeypatch.setattr(main_module, "serve", failing_serve)
    assert main_module.main(["--root", str(tmp_path / "root")]) == 1
    assert capsys.readouterr().err == (
        "line one\nline two\nerror: the server could not start; see its log\n"
    )


def test_invoke_serve_runs_in_the_foreground_and_stop_ends_it(tmp_path):
    root = tmp_path / "root"
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "invoke",
            "serve",
            "--root",
            str(root),
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "1",
        ],
        cwd=REPO,
        env={**os.environ, "ARTIFACT_TOKENS": TOKEN},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_healthy(base)
        stored = requests.put(
            f"{base}/x.bin", data=b"x", headers={"Authorization": f"Bearer {TOKEN}"}
        )
        assert stored.status_code == 201
        assert (root / ".server.pid").exists()
        again = run(
            "-m", "invoke", "serve", "--root", str(root), "--bind", f"127.0.0.1:{free_port()}"
        )
        assert again.returncode == 1
        assert "a server is already running from" in last_line(again.stderr)
        stopped = run("-m", "invoke", "serve", "--root", str(root), "--stop")
        assert stopped.returncode == 0
        assert stopped.stdout.strip().startswith(f"stopped the server from {root}")
        assert server.wait(timeout=30) == 0
        assert not (root / ".server.pid").exists()
        with pytest.raises(requests.ConnectionError):
            requests.get(f"{base}/-/healthz", timeout=2)
        assert run("-m", "invoke", "serve", "--root", str(root), "--stop").stdout.startswith(
            "no server was running"
        )
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
        server.stdout.close()


def test_background_start_and_stop(tmp_path):
    root = tmp_path / "root"
    port = free_port()
    pid = background.start(root, f"127.0.0.1:{port}", [TOKEN], workers=1)
    try:
        assert background.running(root) == pid
        assert requests.get(f"http://127.0.0.1:{port}/-/healthz").json()["status"] == "ok"
        assert TOKEN not in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        with pytest.raises(ServerError, match="already runs from"):
            background.start(root, f"127.0.0.1:{free_port()}", [TOKEN])
    finally:
        assert background.stop(root) == pid
    assert background.running(root) is None
    assert background.stop(root) is None


def test_background_start_reports_a_port_in_use(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ServerError, match="exited with code") as caught:
            background.start(tmp_path / "root", f"127.0.0.1:{port}", [TOKEN], timeout=60)
    assert "Address already in use" in caught.value.detail or "in use" in caught.value.detail


def test_gunicorn_settings_keep_sendfile_on_and_preload(tmp_path):
    """gunicorn reads any value of its sendfile setting as "off": the launcher must leave it unset."""
    from server.config import ServeOptions, build_config
    from server.serve import AccessLogger, _Gunicorn, gunicorn_options

    config = build_config(tmp_path, environ={})
    launcher = _Gunicorn(config, gunicorn_options(config, ServeOptions(workers=3)))
    assert launcher.cfg.sendfile is True
    assert launcher.cfg.preload_app is True
    assert launcher.cfg.workers == 3
    assert launcher.cfg.worker_class_str == "server.worker.HardenedWorker"
    assert launcher.cfg.forwarded_allow_ips == []
    assert launcher.cfg.logger_class is AccessLogger


def test_local_server_stop_stops_what_publish_started_and_is_safe_to_repeat(tmp_path):
    from ci.publish import local_server

    root = tmp_path / "root"
    port = free_port()
    pid = local_server.start(root, "127.0.0.1", port, TOKEN)
    assert requests.get(f"http://127.0.0.1:{port}/-/healthz", timeout=10).status_code == 200
    assert local_server.stop(root) == pid
    assert background.running(root) is None
    assert not local_server.answering("127.0.0.1", port)
    assert local_server.stop(root) is None


@pytest.mark.parametrize(
    ("bind", "message"),
    [
        ("127.0.0.1:99999", "error: --bind 127.0.0.1:99999: port 99999 is not 1-65535"),
        ("nonsense", "error: --bind 'nonsense' is not HOST:PORT"),
        ("no-such-host.invalid:8080", "error: --bind no-such-host.invalid:8080: host"),
        ("in-use", "the address is already in use"),
    ],
)
def test_a_bad_bind_is_one_error_line_before_anything_starts(tmp_path, bind, message):
    root = tmp_path / "root"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        if bind == "in-use":
            bind = f"127.0.0.1:{taken.getsockname()[1]}"
        started = time.monotonic()
        result = run("-m", "invoke", "serve", "--root", str(root), "--bind", bind)
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert result.stderr.startswith("error: ") and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert time.monotonic() - started < 15  # no rounds of gunicorn's bind retries
    assert not (root / ".server.pid").exists()


def test_foreground_serve_prints_the_url_and_root_users_need(tmp_path):
    from server.front import find_nginx

    fronts = ["none"] + (["nginx"] if find_nginx() else [])
    for front in fronts:
        root = tmp_path / front
        port = free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "invoke", "serve", "--root", str(root)]
            + ["--bind", f"127.0.0.1:{port}", "--workers", "1", "--front", front],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        try:
            first = server.stdout.readline()
            assert first.startswith(f"serving {root} at http://127.0.0.1:{port}/"), first
            wait_healthy(f"http://127.0.0.1:{port}")
        finally:
            run("-m", "invoke", "serve", "--root", str(root), "--stop")
            server.wait(timeout=30)
            server.stdout.close()
