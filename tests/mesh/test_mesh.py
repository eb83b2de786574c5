"""`invoke mesh` end to end: real MOSN, real istiod and pilot-agent (Istio 1.10.6 built from
source once per session), Bookinfo's own rule files, the kind job's verdicts.

What is real: every program (invoke in a subprocess, pilot-discovery, pilot-agent, MOSN built
from the Go module proxy), the HTTP through the gateway MOSN and the sidecar MOSN, the rule
files read in place from ../shared/upstream. What is a stand-in: Bookinfo's productpage and
reviews (ci/mesh/bookinfo.py, matched to the real ones), because their images cannot run here.

Cost in CI: the session's istiod build (tests/mesh/conftest.py, minutes from an empty module
cache, shared with test_binaries.py), the MOSN builds shared with the build tests
(tests/conftest.py's real_mosn), and about ten checks of 10-20 s each.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from ci.e2e import stats
from server.unit import alive
from tests.e2e.conftest import UPSTREAM_ISTIO
from tests.helpers import tools
from tests.helpers.build import GOROOT_115, GOROOT_119
from tests.helpers.cli import REPO_ROOT, clean_environ, run_invoke

# Real MOSN builds and an Istio build behind every check (`-m 'not slow'` leaves them out).
pytestmark = pytest.mark.slow

SCENARIOS = ["no rules", "all v1", "50/50 v1/v3", "test-v2: jason", "test-v2: anonymous"]
STEPS_AFTER_START = [
    "ingress gateway",
    "no rules: v1, v2, v3",
    "all v1",
    "reviews 50/50 v1/v3",
    "jason sees v2",
    "rules without a MOSN restart",
    "stop everything",
]


@pytest.fixture(scope="module")
def samples() -> Path:
    if UPSTREAM_ISTIO is None:
        tools.need("istio upstream", "../shared/upstream/istio-1.10.6 not found")
    return UPSTREAM_ISTIO / "samples"


@pytest.fixture(scope="module")
def mesh(istio_build, samples, tmp_path_factory):
    """Run `invoke mesh` on a dist; (the run, its artifacts folder)."""

    def run(dist: Path, *args: str, rules: Path | None = None, artifacts: Path | None = None):
        artifacts = artifacts or tmp_path_factory.mktemp("mesh-artifacts")
        result = run_invoke(
            "mesh",
            "--dist",
            dist,
            "--istio-src",
            istio_build.istio_src,
            "--cache-dir",
            istio_build.cache_dir,
            "--istio-samples",
            rules or samples,
            "--artifacts",
            artifacts,
            *args,
        )
        return result, artifacts

    return run


def built(real_mosn, *args) -> Path:
    result, dist = real_mosn.build(*args)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return dist


@pytest.fixture(scope="module")
def v100_go115(real_mosn) -> Path:
    return built(real_mosn, "v1.0.0", GOROOT_115)


@pytest.fixture(scope="module")
def v161(real_mosn) -> Path:
    return built(real_mosn, "v1.6.1")


def outcome(artifacts: Path) -> dict:
    return json.loads((artifacts / "result.json").read_text())


def checks(artifacts: Path) -> dict[str, ET.Element]:
    suite = ET.parse(artifacts / "junit.xml").getroot()  # noqa: S314 - our own file
    return {case.get("name"): case for case in suite.iter("testcase")}


def assert_every_scenario_passed(result, artifacts: Path) -> dict:
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    found = outcome(artifacts)
    assert found["passed"] and found["failed_check"] == ""
    cases = checks(artifacts)
    assert [name for name in STEPS_AFTER_START if name not in cases] == []
    assert not any(case.find("failure") is not None for case in cases.values())
    counts = found["counts"]
    assert list(counts) == SCENARIOS
    assert {v for v, n in counts["no rules"].items() if n} == {"v1", "v2", "v3"}
    assert counts["all v1"] == {"v1": 30}
    fifty = counts["50/50 v1/v3"]
    design = stats.choose_n()
    assert set(fifty) <= {"v1", "v3"} and sum(fifty.values()) == design.n
    assert design.lo <= fifty.get("v3", 0) <= design.hi
    assert counts["test-v2: jason"] == {"v2": 30}
    assert counts["test-v2: anonymous"] == {"v1": 30}
    report = (artifacts / "report.md").read_text()
    assert "limit: no mTLS" in report and "timings: istiod ready" in report
    # Nothing of a passing run is kept but the report.
    assert not (artifacts / "diagnostics").exists()
    return found


# ---- real MOSN passes every scenario ---------------------------------------------------------


@pytest.mark.parametrize("how", ["pilot-agent", "direct"])
def test_mosn_v1_0_0_built_with_go_1_15_routes_every_scenario(mesh, v100_go115, how):
    result, artifacts = mesh(v100_go115, *(["--direct"] if how == "direct" else []))
    found = assert_every_scenario_passed(result, artifacts)
    assert found["mosn_version"] == "mosn version v1.0.0(v1.0.0)"
    through = "pilot-agent" if how == "pilot-agent" else "MOSN directly on our bootstrap"
    report = (artifacts / "report.md").read_text()
    assert f"- sidecar: sidecar productpage-v1-0.default through {through}" in report
    assert f"- gateway: router istio-ingressgateway-0.istio-system through {through}" in report


def test_mosn_v1_0_0_with_fix_deps_built_with_the_machines_go_routes_every_scenario(
    mesh, real_mosn
):
    # reflect2 v1.0.2 and json-iterator v1.1.12 (issue 21): the same build as the build tests'.
    dist = built(real_mosn, "v1.0.0", None, "--fix-deps")
    result, artifacts = mesh(dist)
    found = assert_every_scenario_passed(result, artifacts)
    assert found["mosn_version"] == "mosn version v1.0.0(v1.0.0-fix-deps)"


def test_mosn_v1_6_1_routes_every_scenario_through_pilot_agent_on_a_shared_loopback(mesh, v161):
    result, artifacts = mesh(v161, "--network", "shared")
    found = assert_every_scenario_passed(result, artifacts)
    assert found["mosn_version"].startswith("mosn version v1.6.1")
    report = (artifacts / "report.md").read_text()
    assert "- network: the machine's loopback, shared" in report
    assert "the Gateway's port 80 moved to " in report


def test_mosn_v1_6_1_directly_keeps_its_rules_and_subscribes_again_after_an_istiod_restart(
    mesh, v161
):
    result, artifacts = mesh(
        v161, "--direct", "--restart-istiod", "--xds-refresh-delay", "1", "--network", "private"
    )
    assert_every_scenario_passed(result, artifacts)
    restart = checks(artifacts)["istiod restart"]
    assert restart.find("failure") is None
    said = restart.find("system-out").text
    assert "while istiod was down MOSN kept the last rule (jason v2=10)" in said
    assert "both proxies subscribed again" in said
    assert "virtual-service-reviews-v3.yaml in MOSN after" in said


@pytest.mark.docker
def test_mosn_taken_from_an_image_routes_every_scenario(mesh, v161, docker_client):
    # An image holding nothing but the dist's usr/local/bin/mosn: what the check copies out.
    reference = f"mosn-proxyv2-test/mesh-mosn:{os.getpid()}"
    repository, tag = reference.rsplit(":", 1)
    docker_client.api.import_image_from_file(
        str(v161 / "mosn.tar.gz"), repository=repository, tag=tag
    )
    try:
        result, artifacts = mesh(Path("no-dist-needed"), "--image", reference)
    finally:
        docker_client.images.remove(reference, force=True)
    found = assert_every_scenario_passed(result, artifacts)
    assert found["image"] == reference
    assert (
        f"- MOSN: image {reference}: /usr/local/bin/mosn" in (artifacts / "report.md").read_text()
    )


# ---- a broken MOSN and a wrong split fail at a named scenario ---------------------------------


@pytest.mark.parametrize(
    ("how", "where"),
    [
        # pilot-agent's bootstrap has static listeners: MOSN crashes converting them, at the
        # sidecar, the first MOSN started.
        ("pilot-agent", r"exited before it bound listener 127\.0\.0\.1_9080"),
        # Our bootstrap has none: MOSN takes CDS, then panics on the LDS pushes and lives on.
        # Whether the sidecar's 127.0.0.1_9080 is converted before the panic depends on the
        # order of istiod's listeners (the CI run of b1b824a bound it, and the gateway's one
        # listener failed): the check fails at the first MOSN that binds nothing.
        ("direct", r"took \d+ clusters from CDS but bound no listener \S+ from LDS"),
    ],
    ids=["pilot-agent", "direct"],
)
def test_mosn_v1_0_0_built_with_go_1_19_fails_at_a_proxy_quoting_the_reflect2_panic(
    mesh, real_mosn, how, where
):
    dist = built(real_mosn, "v1.0.0", GOROOT_119, "--skip-toolchain-check", "--skip-smoke")
    result, artifacts = mesh(dist, *(["--direct"] if how == "direct" else []))
    assert result.returncode == 1
    line = result.stderr.strip().splitlines()[-1]
    failed = re.match(r"error: mesh check '(sidecar|gateway) runs MOSN' failed: ", line)
    assert failed, line
    if how == "pilot-agent":
        assert failed.group(1) == "sidecar"
    assert re.search(where, line), line
    assert "panic: runtime error: invalid memory address or nil pointer dereference" in line
    assert "reflect2.(*frozenConfig).Type2 (github.com/modern-go/reflect2@v1.0.1)" in line
    assert ("loadStaticResources" if how == "pilot-agent" else "handleLds") in line
    assert outcome(artifacts)["failed_check"] == f"{failed.group(1)} runs MOSN"
    diagnostics = artifacts / "diagnostics"
    workload = "productpage-v1" if failed.group(1) == "sidecar" else "istio-ingressgateway"
    log = f"{workload}-pilot-agent.log" if how == "pilot-agent" else f"{workload}-mosn.log"
    assert "reflect2" in (diagnostics / log).read_text()
    assert (diagnostics / "istiod.log").is_file()
    assert (diagnostics / f"{workload}-istiod-config-dump.json").is_file()


def test_an_80_20_rule_judged_as_50_50_fails_the_weighted_scenario(mesh, v161, samples, tmp_path):
    # The kind job's verdict must be able to fail: the same files, with the weights of
    # virtual-service-reviews-50-v3.yaml made 20 (v1) / 80 (v3).
    rules = tmp_path / "samples"
    shutil.copytree(samples, rules)
    fifty = rules / "bookinfo" / "networking" / "virtual-service-reviews-50-v3.yaml"
    rule = yaml.safe_load(fifty.read_text())
    for destination in rule["spec"]["http"][0]["route"]:
        destination["weight"] = 20 if destination["destination"]["subset"] == "v1" else 80
    fifty.write_text(yaml.safe_dump(rule))

    result, artifacts = mesh(v161, rules=rules)
    assert result.returncode == 1
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("error: mesh check 'reviews 50/50 v1/v3' failed: ")
    assert "the split is not 50/50" in line
    found = outcome(artifacts)
    assert found["failed_check"] == "reviews 50/50 v1/v3"
    fifty_counts = found["counts"]["50/50 v1/v3"]
    assert fifty_counts["v3"] > stats.choose_n().hi
    # The scenarios before it passed; nothing after it ran, and everything was stopped.
    cases = checks(artifacts)
    assert cases["all v1"].find("failure") is None
    assert "jason sees v2" not in cases
    assert cases["stop everything"].find("failure") is None
    assert (artifacts / "diagnostics" / "productpage-v1-mosn-config-dump.json").is_file()


# ---- Ctrl-C ----------------------------------------------------------------------------------


def _descendants(pid: int) -> set[int]:
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _program(pid: int) -> str:
    """The file name of the program `pid` runs; "" once it has ended (it may between any two
    reads of /proc)."""
    try:
        return Path(os.readlink(f"/proc/{pid}/exe")).name
    except OSError:
        return ""


def _listening_ports(pids: set[int]) -> set[tuple[str, int]]:
    """(address, port) of every TCP socket these processes listen on (from /proc)."""
    inodes = set()
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").glob("*"):
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    found = set()
    for table in ("/proc/net/tcp",):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # LISTEN
                address, port = fields[1].split(":")
                host = socket.inet_ntoa(bytes.fromhex(address)[::-1])
                found.add((host, int(port, 16)))
    return found


def _free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def test_ctrl_c_in_the_middle_stops_every_process_and_frees_every_port(
    istio_build, samples, v100_go115, tmp_path
):
    artifacts = tmp_path / "artifacts"
    argv = [sys.executable, "-m", "invoke", "mesh", "--network", "shared"]
    argv += ["--dist", str(v100_go115), "--istio-src", istio_build.istio_src]
    argv += ["--cache-dir", istio_build.cache_dir, "--istio-samples", str(samples)]
    argv += ["--artifacts", str(artifacts)]
    # Its own session, as a shell's job: the Ctrl-C goes to the whole group, as a terminal's.
    runner = subprocess.Popen(
        argv,
        cwd=REPO_ROOT,
        env=clean_environ(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        # The middle: the gateway MOSN runs and the scenarios have begun.
        deadline = time.monotonic() + 300
        started: set[int] = set()
        while time.monotonic() < deadline and runner.poll() is None:
            started = _descendants(runner.pid)
            programs = {p: _program(p) for p in started}
            names = set(programs.values())
            if {"mosn", "pilot-agent", "pilot-discovery"} <= names and len(
                [p for p in started if programs[p] == "mosn"]
            ) == 2:
                break
            time.sleep(0.2)
        assert runner.poll() is None, runner.communicate()
        ports = _listening_ports(started)
        assert ("127.0.0.1", 9080) in ports
        os.killpg(runner.pid, signal.SIGINT)
        stdout, stderr = runner.communicate(timeout=120)
    finally:
        if runner.poll() is None:
            os.killpg(runner.pid, signal.SIGKILL)
            runner.wait()
    assert runner.returncode == 130, stdout[-2000:] + stderr[-2000:]
    assert stderr.strip().splitlines()[-1] == "error: interrupted; nothing half-written was kept"
    assert [p for p in started if alive(p)] == []
    assert [port for port in ports if not _free(*port)] == []
    found = outcome(artifacts)
    assert not found["passed"] and "interrupted (Ctrl-C)" in found["failure"]
    assert checks(artifacts)["stop everything"].find("failure") is None


# ---- what the check refuses --------------------------------------------------------------


def test_an_istio_version_it_does_not_know_is_refused_with_the_known_ones(tmp_path):
    result = run_invoke("mesh", "--istio-version", "1.11.0", "--artifacts", tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "error: the mesh check knows Istio 1.10.6, not '1.11.0'; pass --istio-version 1.10.6"
    )


def test_a_dist_without_mosn_tar_gz_is_refused_before_anything_starts(mesh, tmp_path):
    result, artifacts = mesh(tmp_path / "no-dist")
    assert result.returncode == 1
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("error: mesh check 'mosn' failed: ")
    assert "run `invoke build --out" in line
    assert outcome(artifacts)["failed_check"] == "mosn"
