"""ci.proc.run(separate_stderr=True): what the kind job parses is stdout alone."""

from __future__ import annotations

import pytest

from ci import proc
from ci.errors import UserError


def test_stdout_is_returned_without_stderr_warnings():
    out = proc.run(
        ["sh", "-c", "echo '{\"items\": []}'; echo 'Warning: x' >&2"],
        stream=False,
        separate_stderr=True,
    )
    assert out == '{"items": []}\n'


def test_merged_stays_the_default():
    out = proc.run(["sh", "-c", "echo out; echo err >&2"], stream=False)
    assert sorted(out.split()) == ["err", "out"]


def test_a_failure_still_shows_stderr_in_its_detail():
    with pytest.raises(UserError) as failure:
        proc.run(
            ["sh", "-c", "echo partial; echo 'boom: no such pod' >&2; exit 3"],
            stream=False,
            separate_stderr=True,
        )
    assert "failed with exit code 3" in str(failure.value)
    # The line that says why is quoted in the message, the rest is the detail; the two pipes
    # are read side by side, so which line comes last is not fixed.
    shown = f"{failure.value}\n{failure.value.detail}"
    assert "boom: no such pod" in shown and "partial" in shown


def test_a_flood_on_stderr_does_not_block_the_child():
    script = "head -c 300000 /dev/zero | tr '\\000' x >&2; echo done"
    assert proc.run(["sh", "-c", script], stream=False, separate_stderr=True) == "done\n"
