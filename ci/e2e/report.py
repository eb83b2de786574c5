"""What the kind job (or the mesh check) proved: JUnit XML for CI, Markdown for people, an SVG
chart of the routing.

Every check is listed with its outcome, duration and detail; every routing scenario with the
reviews versions observed. The SVG is written as text (no plotting library), one group of
bars per scenario. `summary_markdown` is the Markdown for a page that cannot show the chart file
(the job summary, written by ci/github.py).
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import escape

from ci.errors import UserError
from ci.fsutil import atomic_write
from ci.markdown import cell as table_cell

PASSED, FAILED, SKIPPED = "passed", "failed", "skipped"
SERIES = ("v1", "v2", "v3", "error", "unknown")
COLORS = {
    "v1": "#4c78a8",
    "v2": "#222222",
    "v3": "#e45756",
    "error": "#f58518",
    "unknown": "#9d9d9d",
}
JUNIT = "junit.xml"
MARKDOWN = "report.md"
CHART = "routing.svg"
# One matrix cell's outcome, for the summary job that makes one table of all cells.
RESULT = "result.json"
# What the workflow names the cell before anything runs (.github/workflows/e2e.yml).
CELL = "cell.json"
CELL_HEADER = (
    "| Istio | MOSN | image | result | first failed check | seconds |",
    "| --- | --- | --- | --- | --- | ---: |",
)


@dataclass
class Check:
    name: str
    status: str = PASSED
    seconds: float = 0.0
    detail: str = ""


class ChecksFailed(UserError):
    """A check of the run failed (the message names the first); `report` is the whole run's."""

    def __init__(self, message: str, report: Report) -> None:
        super().__init__(message)
        self.report = report


@dataclass
class Report:
    # What the report is about; the mesh check's report (ci/mesh) says its own.
    TITLE = "MOSN proxyv2 on kind"
    SUITE = "mosn-proxyv2 kind e2e"

    image: str
    istio_version: str
    node_image: str
    kind_release: str
    checks: list[Check] = field(default_factory=list)
    # scenario -> reviews version -> responses observed
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    # scenario -> (lowest, highest) count of the checked version that passes
    bands: dict[str, tuple[int, int]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    # What `mosn --version` printed in the first sidecar that answered it.
    mosn_version: str = ""
    # One sentence per pod whose istio-proxy is not Ready (diagnostics only).
    sidecars: list[str] = field(default_factory=list)

    def about(self) -> list[str]:
        """The report's lines about what was proven where."""
        return [
            f"- image: `{self.image}`",
            f"- Istio {self.istio_version}, kind {self.kind_release}, node `{self.node_image}`",
        ]

    def keep_mosn_version(self, output: str) -> None:
        self.mosn_version = self.mosn_version or output

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if c.status == FAILED]

    def result(self) -> dict:
        first = self.failed[0] if self.failed else None
        return {
            "istio_version": self.istio_version,
            "mosn_version": self.mosn_version,
            "image": self.image,
            "passed": first is None,
            "failed_check": first.name if first else "",
            "failure": first.detail if first else "",
            "seconds": round(sum(c.seconds for c in self.checks), 1),
            "sidecars_not_ready": self.sidecars,
            # scenario -> reviews version -> responses, for a machine to read
            "counts": self.counts,
        }

    def write(self, folder: Path) -> dict[str, Path]:
        folder.mkdir(parents=True, exist_ok=True)
        paths = {
            "junit": folder / JUNIT,
            "markdown": folder / MARKDOWN,
            "chart": folder / CHART,
        }
        atomic_write(paths["junit"], junit_xml(self))
        atomic_write(paths["markdown"], markdown(self, chart_name=CHART))
        atomic_write(paths["chart"], svg_chart(self.counts, self.bands))
        paths["result"] = folder / RESULT
        atomic_write(paths["result"], json.dumps(self.result(), indent=2) + "\n")
        return paths

    def summary_markdown(self) -> str:
        """The report for a page that cannot show a file beside it: the chart as text bars."""
        return markdown(self, chart_name=None) + "\n"


def junit_xml(report: Report) -> str:
    suite = ET.Element(
        "testsuite",
        name=report.SUITE,
        tests=str(len(report.checks)),
        failures=str(len(report.failed)),
        skipped=str(sum(1 for c in report.checks if c.status == SKIPPED)),
        time=f"{sum(c.seconds for c in report.checks):.3f}",
    )
    properties = ET.SubElement(suite, "properties")
    for key, value in (
        ("image", report.image),
        ("istio_version", report.istio_version),
        ("node_image", report.node_image),
        ("kind_release", report.kind_release),
    ):
        if value:
            ET.SubElement(properties, "property", name=key, value=value)
    for check in report.checks:
        case = ET.SubElement(
            suite, "testcase", classname="e2e", name=check.name, time=f"{check.seconds:.3f}"
        )
        if check.status == FAILED:
            ET.SubElement(case, "failure", message=check.detail[:500]).text = check.detail
        elif check.status == SKIPPED:
            ET.SubElement(case, "skipped", message=check.detail[:500])
        elif check.detail:
            ET.SubElement(case, "system-out").text = check.detail
    ET.indent(suite)
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suite, encoding="unicode") + "\n"
    )


def _text_bars(counts: dict[str, dict[str, int]]) -> list[str]:
    widest = max((v for c in counts.values() for v in c.values()), default=0) or 1
    lines = ["```"]
    for scenario, by_version in counts.items():
        lines.append(scenario)
        for version in SERIES:
            value = by_version.get(version, 0)
            if value:
                bar = "#" * max(1, round(40 * value / widest))
                lines.append(f"  {version:<8}{bar} {value}")
    lines.append("```")
    return lines


def cell_row(result: dict, label: str = "") -> str:
    """A matrix cell as one table row (CELL_HEADER's columns)."""
    mosn = result.get("mosn_version", "").removeprefix("mosn version ") or label or "?"
    verdict = "passed" if result.get("passed") else "**FAILED**"
    failed = result.get("failed_check", "")
    if result.get("failure"):
        failed += f": {result['failure'][:300]}"
    return (
        f"| {table_cell(str(result.get('istio_version', '?')))} | {table_cell(mosn)} | "
        f"`{table_cell(str(result.get('image', '')))}` | {verdict} | {table_cell(failed)} | "
        f"{result.get('seconds', 0)} |"
    )


def _read_json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def matrix_markdown(folder: Path) -> tuple[str, bool]:
    """One row per matrix cell found under `folder` (each cell's artifacts in a subfolder).

    A cell whose job stopped before the kind run wrote no result.json: it is a row too,
    with the cell's name (the subfolder) and no result. Returns the table and whether
    every cell passed.
    """
    lines = ["## MOSN proxyv2 on kind: every matrix cell", "", *CELL_HEADER]
    all_passed = True
    cells = sorted(p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []
    for cell in cells:
        named = _read_json(cell / CELL)
        result = _read_json(cell / RESULT)
        if result:
            all_passed &= bool(result.get("passed"))
            lines.append(cell_row(result, label=named.get("mosn", "")))
        else:
            all_passed = False
            lines.append(
                f"| {table_cell(named.get('istio_version', '?'))} | "
                f"{table_cell(named.get('mosn', cell.name))} | | **no result** | the job stopped "
                "before the kind run wrote its report (see its log) | |"
            )
    if not cells:
        all_passed = False
        lines.append("| | | | **no result** | no cell uploaded its artifacts | |")
    return "\n".join(lines) + "\n", all_passed


def markdown(report: Report, chart_name: str | None) -> str:
    verdict = "FAILED" if report.failed else "passed"
    lines = [
        f"## {report.TITLE}: {verdict}",
        "",
        *CELL_HEADER,
        cell_row(report.result()),
        "",
        *report.about(),
        "",
        "| check | result | seconds | detail |",
        "| --- | --- | ---: | --- |",
    ]
    for check in report.checks:
        lines.append(
            f"| {table_cell(check.name)} | {check.status} | {check.seconds:.1f} | {table_cell(check.detail)} |"
        )
    if report.sidecars:
        lines += [
            "",
            "### Sidecars not Ready",
            "",
            *[f"- {table_cell(s)}" for s in report.sidecars],
        ]
    if report.counts:
        lines += [
            "",
            "### Reviews versions observed",
            "",
            "| scenario | " + " | ".join(SERIES) + " |",
        ]
        lines.append("| --- |" + " ---: |" * len(SERIES))
        for scenario, by_version in report.counts.items():
            row = " | ".join(str(by_version.get(v, 0)) for v in SERIES)
            lines.append(f"| {table_cell(scenario)} | {row} |")
        lines.append("")
        if chart_name:
            lines.append(f"![reviews versions per scenario]({chart_name})")
        else:
            lines += _text_bars(report.counts)
    if report.notes:
        lines += ["", *[f"- {note}" for note in report.notes]]
    return "\n".join(lines) + "\n"


def svg_chart(
    counts: dict[str, dict[str, int]], bands: dict[str, tuple[int, int]] | None = None
) -> str:
    """Grouped bars: one group per scenario, one bar per reviews version (SVG 1.1 text).

    `bands` shades, per scenario, the range of counts that passes (the 50/50 acceptance region).
    """
    bar, gap, group_gap, height, top, left, bottom = 18, 4, 28, 220, 30, 50, 70
    groups = list(counts.items())
    series_width = len(SERIES) * (bar + gap)
    width = left + max(1, len(groups)) * (series_width + group_gap) + 140
    bands = bands or {}
    values = [v for _, c in groups for v in c.values()] + [hi for _, hi in bands.values()]
    peak = max(values, default=0) or 1
    total_height = top + height + bottom
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{total_height}" '
        f'viewBox="0 0 {width} {total_height}" font-family="sans-serif" font-size="11">',
        "<title>Reviews versions observed per routing scenario</title>",
        f'<rect x="0" y="0" width="{width}" height="{total_height}" fill="#ffffff"/>',
        f'<line x1="{left}" y1="{top + height}" x2="{width - 130}" y2="{top + height}" '
        'stroke="#333333"/>',
        f'<text x="{left}" y="{top - 12}" font-size="13">responses per reviews version</text>',
    ]
    for index, (scenario, by_version) in enumerate(groups):
        x0 = left + index * (series_width + group_gap)
        if scenario in bands:
            lo, hi = bands[scenario]
            y_hi, y_lo = top + height - height * hi / peak, top + height - height * lo / peak
            parts.append(
                f'<rect x="{x0 - 2}" y="{y_hi:.1f}" width="{series_width}" '
                f'height="{y_lo - y_hi:.1f}" fill="#2ca02c" fill-opacity="0.15">'
                f"<title>{escape(scenario)}: passes with {lo}..{hi}</title></rect>"
            )
        for offset, version in enumerate(SERIES):
            value = by_version.get(version, 0)
            h = round(height * value / peak)
            x = x0 + offset * (bar + gap)
            y = top + height - h
            parts.append(
                f'<rect x="{x}" y="{y}" width="{bar}" height="{h}" fill="{COLORS[version]}">'
                f"<title>{escape(scenario)}: {version} {value}</title></rect>"
            )
            if value:
                parts.append(
                    f'<text x="{x + bar / 2}" y="{y - 3}" text-anchor="middle">{value}</text>'
                )
        label_x = x0 + series_width / 2
        parts.append(
            f'<text x="{label_x}" y="{top + height + 16}" text-anchor="middle">'
            f"{escape(scenario[:28])}</text>"
        )
    legend_x = width - 120
    for offset, version in enumerate(SERIES):
        y = top + offset * 18
        parts.append(
            f'<rect x="{legend_x}" y="{y}" width="12" height="12" fill="{COLORS[version]}"/>'
        )
        parts.append(f'<text x="{legend_x + 18}" y="{y + 10}">{version}</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"
