"""`-h` and `--help` for every task, through the real `invoke`: a new task is covered by
being in tasks.py."""

from __future__ import annotations

import re

import pytest
from invoke import Collection

import tasks
from tests.helpers.cli import run_invoke

TASK_NAMES = sorted(Collection.from_module(tasks).task_names)
# `-x STRING, --long=STRING`: a short flag in invoke's help listing.
SHORT_FLAG = re.compile(r"^\s+-[A-Za-z0-9][ ,]", re.M)


def test_the_task_list_is_read_from_tasks_py():
    assert {"build", "publish", "image", "e2e", "serve", "test"} <= set(TASK_NAMES)


@pytest.mark.parametrize("argv", [("{}", "-h"), ("--help", "{}")], ids=["TASK -h", "--help TASK"])
@pytest.mark.parametrize("name", TASK_NAMES)
def test_help_shows_every_long_flag_and_no_short_ones(name, argv):
    result = run_invoke(*(part.format(name) for part in argv), timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"Usage: inv[oke] [--core-opts] {name} ")
    for flag in getattr(tasks, name).help:
        assert re.search(rf"^\s+--{flag}\b", result.stdout, re.M), f"--{flag} missing"
    assert "--=" not in result.stdout
    assert SHORT_FLAG.findall(result.stdout) == []
