"""The docs: the reference pages are what the code makes now, the site builds strictly, and
the README stays a front page."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import yaml

from ci import docs
from tests.helpers import tools
from tests.helpers.cli import run_invoke

ROOT = Path(__file__).resolve().parents[2]


def test_the_generated_pages_are_up_to_date():
    stale = docs.stale()
    assert not stale, f"stale: {', '.join(map(str, stale))}; run `invoke docs`"


def test_a_new_action_input_makes_its_page_stale(tmp_path):
    for name in ("tasks.py", "action.yml"):
        shutil.copy2(ROOT / name, tmp_path / name)
    shutil.copytree(ROOT / "docs", tmp_path / "docs")
    assert docs.stale(tmp_path) == {}
    action = yaml.safe_load((tmp_path / "action.yml").read_text())
    action["inputs"]["new-input"] = {"description": "added by another change", "default": ""}
    (tmp_path / "action.yml").write_text(yaml.safe_dump(action, sort_keys=False))
    assert list(docs.stale(tmp_path)) == [docs.REFERENCE / "action.md"]
    assert docs.write(tmp_path) == [docs.REFERENCE / "action.md"]
    assert (
        "| `new-input` |  | the action | added by another change |"
        in (tmp_path / docs.REFERENCE / "action.md").read_text()
    )
    assert docs.stale(tmp_path) == {}


def test_every_flag_of_every_task_is_in_the_settings_reference():
    page = (ROOT / docs.REFERENCE / "settings.md").read_text()
    for name in docs.TASKS:
        section = page.split(f"## `invoke {name}`", 1)[1].split("\n## ", 1)[0]
        shown = run_invoke("--help", name, timeout=60).stdout.split("Options:", 1)[1]
        flags = set(re.findall(r"^  (?:-\S+(?: STRING)?, )?(--[a-z][\w-]*)", shown, re.M))
        assert len(flags) > 5, shown
        for flag in flags:
            assert f"`{flag}`" in section, (name, flag)


def test_invoke_docs_check_passes_on_the_tree():
    result = run_invoke("docs", "--check", timeout=120)
    assert result.returncode == 0, result.stderr


def test_the_site_builds_strictly(tmp_path):
    mkdocs = tools.which("mkdocs")
    result = subprocess.run(
        [mkdocs, "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**__import__("os").environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "site" / "reference" / "http-api" / "index.html").is_file()


def test_the_readme_is_a_front_page():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 200
    assert "- uses: org/mosn-proxyv2-action@v1" in lines
