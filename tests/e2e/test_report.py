"""The report: JUnit XML, Markdown with every check and count, an SVG chart."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from ci.e2e.report import FAILED, SKIPPED, Check, Report


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


def test_step_summary_gets_the_markdown_with_text_bars(tmp_path, monkeypatch):
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    _report().write(tmp_path / "out")
    text = summary.read_text()
    assert text.startswith("earlier step\n## MOSN proxyv2 on kind: FAILED")
    assert "routing.svg" not in text
    assert "  v3      " + "#" * 40 + " 80" in text


def test_an_empty_report_still_writes_valid_files(tmp_path):
    paths = Report("i", "1.10.6", "n", "k").write(tmp_path)
    ET.parse(paths["chart"])  # noqa: S314 - our own file
    assert "passed" in paths["markdown"].read_text()
