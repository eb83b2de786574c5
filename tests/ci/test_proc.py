"""ci.proc.run's one-line error quotes the line that says why, not the trailer of the program."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from ci import proc
from server.unit import alive


def test_a_failing_make_is_named_with_its_recipe_s_error_not_make_s_trailer(tmp_path):
    # A real make whose recipe fails as Istio's bin/init.sh does when the tarball is missing:
    # the reason is the recipe's own line; make's "*** [Makefile:2: init] Error 1" only repeats
    # the exit code, and the lines after the reason are fallout.
    (tmp_path / "Makefile").write_text(
        "init:\n\tcp missing.tar.gz out/ && tar -xzf out/missing.tar.gz\n"
    )
    with pytest.raises(proc.CommandFailed) as failure:
        proc.run(["make", "init"], cwd=tmp_path, stream=False, what="make init")
    assert failure.value.code == 2
    assert failure.value.reason.startswith("cp: cannot stat 'missing.tar.gz'")
    assert str(failure.value).startswith("make init failed with exit code 2: cp: cannot stat")


def test_curl_s_error_line_is_the_reason_over_the_lines_that_follow_it():
    lines = [
        "Downloading mosn: http://127.0.0.1:1/missing/mosn.tar.gz",
        "curl: (22) The requested URL returned error: 404",
        "",
        "gzip: stdin: unexpected end of file",
        "tar: Error is not recoverable: exiting now",
        "make: *** [Makefile:42: init] Error 2",
    ]
    assert proc.reason_index(lines) == 1


def test_make_s_trailer_is_quoted_when_it_is_all_there_is():
    assert proc.reason_index(["make: *** No rule to make target 'x'.  Stop."]) == 0


def _started_with_a_child(tmp_path: Path, child_on_term: str) -> tuple[subprocess.Popen, int]:
    """A leader that ends on SIGTERM at once (as pilot-agent does) and a child in its session
    that runs `child_on_term` when it gets SIGTERM (as the MOSN it started shuts down)."""
    pid_file = tmp_path / "child.pid"
    script = tmp_path / "child.sh"
    script.write_text(
        f"echo $$ > {pid_file}; trap '{child_on_term}' TERM; while :; do sleep 0.1; done\n"
    )
    leader = proc.start(["sh", "-c", f"sh {script} & exec sleep 60"], log_path=tmp_path / "log")
    deadline = time.monotonic() + 10
    while not pid_file.exists() or not pid_file.read_text().strip():
        assert time.monotonic() < deadline
        time.sleep(0.02)
    return leader, int(pid_file.read_text())


def test_stop_returns_once_the_leader_s_children_have_ended_too(tmp_path):
    leader, child = _started_with_a_child(tmp_path, "sleep 1; exit 0")
    proc.stop(leader, timeout=10)
    assert leader.returncode is not None
    assert not alive(child)


def test_stop_kills_a_child_that_ignores_sigterm(tmp_path):
    leader, child = _started_with_a_child(tmp_path, "")
    proc.stop(leader, timeout=1)
    assert not alive(child)
