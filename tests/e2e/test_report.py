"""The report: JUnit XML, Markdown with every check and count, an SVG chart."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from ci.e2e.report import FAILED, SKIPPED, Check, Report
from tests.helpers.cli import clean_environ, run_invoke

REPO = Path(__file__).resolve().parents[2]


def _report() -> Report:
    report = Report(
        image="docker.io/mosnio/proxyv2:v1.0.0-1.10.6",
        istio_version="1.10.6",
        node_image="kindest/node:v1.24.7@sha256:" + "5" * 64,
        kind_release="v0.17.0",
    )
    report.checks += [
        Check("istio", seconds=61.25, detail="held after 3 tries"),
        Check("reviews 50/50 v1/v3", FAILED, 12.5, "v3 80/100 outside [34, 66] <&> | pipe"),
        Check("delete cluster", SKIPPED, 0.0, "the cluster was not created by this run"),
    ]
    report.counts = {
        "no rules": {"v1": 4, "v2": 3, "v3": 5},
        "50/50 v1/v3": {"v1": 20, "v3": 80},
    }
    report.bands["50/50 v1/v3"] = (34, 66)
    report.notes.append("weighted routing: N=100")
    return report


def test_junit_parses_with_one_case_per_check(tmp_path):
    paths = _report().write(tmp_path)
    suite = ET.parse(paths["junit"]).getroot()  # noqa: S314 - our own file
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("3", "1", "1")
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == ["istio", "reviews 50/50 v1/v3", "delete cluster"]
    assert cases[1].find("failure").get("message") == "v3 80/100 outside [34, 66] <&> | pipe"
    assert cases[0].get("time") == "61.250"
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert props["image"] == "docker.io/mosnio/proxyv2:v1.0.0-1.10.6"


def test_markdown_lists_checks_counts_durations_and_links_the_chart(tmp_path):
    text = _report().write(tmp_path)["markdown"].read_text()
    assert text.startswith("## MOSN proxyv2 on kind: FAILED\n")
    assert "| istio | passed | 61.2 | held after 3 tries |" in text
    assert (
        "| reviews 50/50 v1/v3 | failed | 12.5 | v3 80/100 outside [34, 66] <&> \\| pipe |" in text
    )
    assert "| no rules | 4 | 3 | 5 | 0 | 0 |" in text
    assert "| 50/50 v1/v3 | 20 | 0 | 80 | 0 | 0 |" in text
    assert "![reviews versions per scenario](routing.svg)" in text


def test_svg_parses_and_draws_one_bar_per_version_and_scenario(tmp_path):
    svg = ET.parse(_report().write(tmp_path)["chart"]).getroot()  # noqa: S314 - our own file
    ns = {"s": "http://www.w3.org/2000/svg"}
    titled = [r for r in svg.findall("s:rect", ns) if r.find("s:title", ns) is not None]
    bars = [r for r in titled if "passes with" not in r.find("s:title", ns).text]
    band = next(r for r in titled if "passes with" in r.find("s:title", ns).text)
    assert band.find("s:title", ns).text == "50/50 v1/v3: passes with 34..66"
    # The band spans counts 34..66 on the same scale as the bars (80 is the tallest).
    assert float(band.get("height")) == pytest.approx(220 * (66 - 34) / 80, abs=0.1)
    titles = [r.find("s:title", ns).text for r in bars]
    assert len(bars) == 2 * 5
    assert "50/50 v1/v3: v3 80" in titles and "no rules: v2 3" in titles
    tallest = max(bars, key=lambda r: float(r.get("height")))
    assert tallest.find("s:title", ns).text == "50/50 v1/v3: v3 80"


def test_the_summary_markdown_has_text_bars_and_writing_files_leaves_the_runner_alone(
    tmp_path, monkeypatch
):
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    _report().write(tmp_path / "out")
    # Only ci/github.py writes to the runner (tasks.py hands it the report).
    assert not summary.exists()
    text = _report().summary_markdown()
    assert text.startswith("## MOSN proxyv2 on kind: FAILED")
    assert "routing.svg" not in text
    assert "  v3      " + "#" * 40 + " 80" in text


def test_an_empty_report_still_writes_valid_files(tmp_path):
    paths = Report("i", "1.10.6", "n", "k").write(tmp_path)
    ET.parse(paths["chart"])  # noqa: S314 - our own file
    assert "passed" in paths["markdown"].read_text()


def _cell(root, name: str, mosn: str, report: Report | None, istio: str = "1.10.6") -> None:
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "cell.json").write_text(json.dumps({"istio_version": istio, "mosn": mosn}))
    if report is not None:
        report.write(folder)


def _summarize(folder, **env):
    base = {k: v for k, v in clean_environ().items() if k != "GITHUB_STEP_SUMMARY"}
    return run_invoke("e2e", "--summarize", str(folder), env={**base, **env}, cwd=REPO, timeout=60)


def test_each_matrix_cell_is_a_row_of_the_report_and_of_the_summary_table(tmp_path, monkeypatch):
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    passing = Report("localhost/mp/proxyv2:e2e-v1.6.1", "1.10.6", "node", "v0.17.0")
    passing.checks.append(Check("istio", seconds=3.0))
    passing.mosn_version = "mosn version v1.6.1(4f9c2d1)"
    cells = tmp_path / "cells"
    _cell(cells, "kind-e2e-istio-1.10.6-mosn-v1.0.0-1", "v1.0.0", _report())
    _cell(cells, "kind-e2e-istio-1.10.6-mosn-v1.6.1-1", "v1.6.1", passing)
    _cell(cells, "kind-e2e-istio-1.10.7-mosn-v1.0.0-1", "v1.0.0", None, istio="1.10.7")
    # The cell's own report (and its job summary) opens with its row.
    own = (cells / "kind-e2e-istio-1.10.6-mosn-v1.6.1-1" / "report.md").read_text()
    assert "| 1.10.6 | v1.6.1(4f9c2d1) | `localhost/mp/proxyv2:e2e-v1.6.1` | passed |" in own

    summary.write_text("")
    result = _summarize(cells, GITHUB_STEP_SUMMARY=str(summary))
    assert result.returncode == 1, result.stderr
    rows = [line for line in result.stdout.splitlines() if line.startswith("| 1.10.")]
    assert len(rows) == 3
    assert rows[0].startswith(
        "| 1.10.6 | v1.0.0 | `docker.io/mosnio/proxyv2:v1.0.0-1.10.6` | **FAILED** | reviews 50/50 v1/v3: v3 80/100"
    )
    assert rows[1].startswith("| 1.10.6 | v1.6.1(4f9c2d1) |") and "| passed |" in rows[1]
    assert rows[2].startswith("| 1.10.7 | v1.0.0 | | **no result** |")
    assert summary.read_text().strip() == result.stdout.strip()


def test_summarize_passes_only_when_every_cell_passed(tmp_path):
    passing = Report("localhost/mp/proxyv2:e2e", "1.10.6", "node", "v0.17.0")
    passing.checks.append(Check("istio"))
    _cell(tmp_path / "cells", "one", "v1.0.0", passing)
    result = _summarize(tmp_path / "cells")
    assert result.returncode == 0, result.stderr
    empty = _summarize(tmp_path / "none")
    assert empty.returncode == 1 and "no cell uploaded its artifacts" in empty.stdout
