"""/-/openapi.json stays true: it describes every route, and live responses match it."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
import requests

from server import create_app, paths
from server.openapi import document
from tests.helpers import tools
from tests.helpers.artifact_server import running_server
from tests.server.conftest import TOKEN
from tests.server.test_paths import REFUSED


def _spec_path(rule: str) -> str:
    return re.sub(r"<anypath:\w+>", "{path}", rule)


def test_every_route_and_method_is_described(tmp_path):
    app = create_app({"root": tmp_path, "tokens": ["t"]})
    spec = document()["paths"]
    for rule in app.url_map.iter_rules():
        if rule.endpoint in ("static", "server.internal.internal_unknown"):
            continue
        described = spec.get(_spec_path(rule.rule))
        assert described is not None, f"{rule.rule} is not in the OpenAPI document"
        for method in rule.methods - {"OPTIONS"}:
            if rule.rule == "/" and method in ("PUT", "DELETE"):
                continue  # answered with 405: the root cannot be written
            if method == "HEAD" and "get" in described and rule.rule != "/<anypath:path>":
                continue  # HTTP gives every GET a HEAD; only the artifact's is spelled out
            assert method.lower() in described, (
                f"{method} {rule.rule} is not in the OpenAPI document"
            )


def test_path_pattern_agrees_with_the_path_rules():
    pattern = re.compile(paths.PATTERN)
    samples = [s.format(p="x") for s in REFUSED.values() if "%" not in s] + [
        "a",
        "a/b.tar.gz",
        "x/-/y",
        "-x",
        "ü/ß",
    ]
    for sample in samples:
        if len(sample.encode()) > paths.MAX_PATH_BYTES or any(
            len(seg.encode()) > paths.MAX_SEGMENT_BYTES for seg in sample.split("/")
        ):
            continue
        try:
            paths.check(sample)
            accepted = True
        except paths.BadPath:
            accepted = False
        assert bool(pattern.match(sample)) == accepted, sample


def test_served_document_is_valid_openapi(live_server):
    served = requests.get(f"{live_server}/-/openapi.json").json()
    assert served["openapi"].startswith("3.")
    assert served["servers"] == [{"url": live_server}]
    from openapi_spec_validator import validate

    validate(served)


@pytest.mark.slow
def test_schemathesis_all_checks_find_no_conformance_failure(tmp_path):
    cli = shutil.which("schemathesis") or tools.which("schemathesis", "st")
    with running_server(tmp_path / "root", tokens=[TOKEN], max_upload_size="1M") as url:
        result = subprocess.run(
            [
                cli,
                "run",
                f"{url}/-/openapi.json",
                # Every check but the two that judge whether the schema alone predicts
                # acceptance: JSON Schema counts characters, the path rules count UTF-8 bytes
                # (255 a segment), and a Range outside the file is a legitimate 416; both
                # are described in the document, which the conformance checks hold it to.
                "--checks",
                "all",
                "--exclude-checks",
                "positive_data_acceptance,negative_data_rejection",
                "--header",
                f"Authorization: Bearer {TOKEN}",
                "--max-examples",
                "25",
                "--seed",
                "20261127",
                "--request-timeout",
                "10",
                "--workers",
                "2",
                "--no-color",
                "--generation-database",
                "none",
            ],
            capture_output=True,
            text=True,
            timeout=240,
            cwd=tmp_path,
        )
        log = url.log.read_text()
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "passed" in result.stdout
    assert " 500 " not in log and "Traceback" not in log, log[-3000:]
    assert TOKEN not in result.stdout


def test_document_lists_the_security_scheme():
    doc = document()
    assert doc["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
    }
    assert doc["paths"]["/{path}"]["put"]["security"] == [{"bearerAuth": []}]
