"""README.md's Quick start as a new user on Debian's or Ubuntu's own Python reads and runs it:
two commands, both in a virtual environment (PEP 668), and a route for each kind of machine
naming only flags `invoke build` has."""

from __future__ import annotations

import re
import shlex
import subprocess
import sysconfig
from pathlib import Path

import pytest

import tasks
from tests.helpers.cli import REPO_ROOT, clean_environ, run_invoke

VENV_BIN = ".venv/bin/"


def quick_start() -> str:
    text = (REPO_ROOT / "README.md").read_text()
    return text.split("## Quick start\n", 1)[1].split("\n## ", 1)[0].split("\n### ", 1)[0]


def commands() -> list[list[str]]:
    """The first sh block's commands, each split at `&&` into argument lists, comments cut."""
    block = re.search(r"```sh\n(.*?)```", quick_start(), re.S).group(1)
    found = []
    for line in block.replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        if words:
            found.append(words)
    return found


def steps(words: list[str]) -> list[list[str]]:
    out, current = [], []
    for word in words:
        if word == "&&":
            out.append(current)
            current = []
        else:
            current.append(word)
    return [*out, current]


def rest_of_first_command() -> list[list[str]]:
    """The steps of the first command after the venv is made."""
    return steps(commands()[0])[1:]


def test_two_commands_the_first_makes_the_venv_and_runs_build_publish_the_second_the_tests():
    first, second = commands()
    make_venv, *rest = steps(first)
    assert make_venv == ["python3", "-m", "venv", ".venv"]
    # Everything after it runs from the venv, without relying on `activate`.
    assert all(step[0].startswith(VENV_BIN) for step in rest + steps(second))
    assert rest[0][:2] == [VENV_BIN + "pip", "install"]
    # The main job with no cloud account (the bundled artifact server), on the Go a fresh
    # machine has (a current one: --fix-deps), with the versions the tests pass with.
    assert rest[0][2:4] == ["-c", "constraints.txt"]
    assert rest[-1] == [VENV_BIN + "invoke", "build", "--fix-deps", "publish"]
    assert steps(second) == [[VENV_BIN + "invoke", "test"]]
    assert "PEP 668" in quick_start() and "virtual environment" in quick_start()


def route_commands() -> list[list[str]]:
    found = re.findall(r"`((?:\.venv/bin/)?invoke build [^`]*)`", quick_start())
    return [shlex.split(command) for command in found]


def test_each_kind_of_machine_has_its_route_under_the_commands():
    text = quick_start()
    for route in ("with Docker", "with an old Go", "with neither", "without GitHub"):
        assert f"**{route}" in text, route
    named = route_commands() + commands()
    flags = {word for command in named for word in command if word.startswith("--")}
    assert {"--in-docker", "--fix-deps"} <= flags
    assert "--mosn-module v1.0.0" in text
    assert "1.14 to 1.17" in text


@pytest.mark.parametrize(
    "flag",
    sorted(
        {"--mosn-module"}
        | {w for command in route_commands() for w in command if w.startswith("--")}
    ),
)
def test_every_flag_the_quick_start_names_is_a_flag_of_invoke_build(flag):
    assert flag.removeprefix("--") in tasks.build.help


def test_invoke_test_finds_the_tools_installed_with_its_python_without_an_activated_venv():
    # `.venv/bin/invoke test` with PATH as a shell has it when the venv was never activated:
    # ruff is only where pip put the scripts of this Python.
    scripts = Path(sysconfig.get_path("scripts"))
    assert (scripts / "ruff").is_file(), f"ruff is not in {scripts}"
    result = run_invoke("test", "--lint-only", env={**clean_environ(), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "All checks passed!" in result.stdout


DEBIAN_PYTHON = Path("/usr/bin/python3")


@pytest.mark.slow
@pytest.mark.skipif(not DEBIAN_PYTHON.is_file(), reason="no /usr/bin/python3 (Debian's own)")
def test_the_install_line_resolves_on_the_distribution_s_own_python(tmp_path):
    # constraints.txt was recorded on a newer 3.11 than Debian 12's 3.11.2, and a pin that
    # needs more (pymdown-extensions 13 wants >=3.11.5) failed the Quick start's first command
    # there. pip resolves against the Python of the venv, as a user's would.
    venv = tmp_path / "venv"
    subprocess.run([DEBIAN_PYTHON, "-m", "venv", venv], check=True)
    install = rest_of_first_command()[0]
    assert install[:2] == [VENV_BIN + "pip", "install"]
    result = subprocess.run(
        [venv / "bin" / "pip", "install", "--dry-run", "--quiet", *install[2:]],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
