"""ci.github outside a runner: which inputs it rejects and with what, what it reports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ci import extras, names
from ci import github as action
from ci.image.result import ImageResult
from ci.publish.record import PublishedFile, Record
from tests.helpers.publish import parse_github_output

ROOT = Path(__file__).resolve().parent.parent.parent


def inputs(**given: str) -> dict[str, str]:
    """The environment action.yml's pipeline step sets: every input, empty unless given."""
    env = {action.env_name(setting): "" for setting in action.INPUT_SETTINGS.values()}
    for name, value in given.items():
        env[action.env_name(action.INPUT_SETTINGS[name.replace("_", "-")])] = value
    env["GITHUB_ACTION_PATH"] = str(ROOT)
    return env


def test_defaults_are_valid(tmp_path):
    assert action.problems(inputs(), tmp_path) == []


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ({"store": "s3"}, "store: s3 needs s3-bucket; set `s3-bucket: <bucket>`"),
        ({"store": "ftp"}, "input `store`: 'ftp' is not one of server, s3; pick one"),
        ({"mode": "fast"}, "input `mode`: 'fast' is not one of quick, full; pick one"),
        ({"push": "true"}, "push: true needs image; set `image: <registry>/<repository>`"),
        ({"push": "yes please"}, "input `push`: 'yes please' is not one of true, false"),
        ({"in_docker": "maybe"}, "input `in-docker`: 'maybe' is not one of true, false"),
        ({"skip_smoke": "1"}, "input `skip-smoke`: '1' is not one of true, false"),
        ({"tags": "a,b"}, "tags are given but image is not"),
        ({"image": "127.0.0.1:5000/x"}, "mode: quick needs base-image"),
        ({"registry_username": "bot"}, "registry-username and registry-password go together"),
        ({"registry_password": "pw"}, "registry-username and registry-password go together"),
        (
            {"platforms": "linux/amd64,windows/386"},
            "input `platforms`: 'linux/amd64,windows/386' has unknown windows/386; choose from",
        ),
        (
            {"s3_prefix": "a/../b"},
            "input `s3-prefix`: 'a/../b' is not a folder name: each /-separated part",
        ),
        ({"wasm": "skip"}, "input `wasm`: 'skip' is not one of placeholder, patch; pick one"),
        (
            {"image": "proxyv2", "mode": "full"},
            "input `image`: image name 'proxyv2' has no registry or namespace",
        ),
        (
            {"image": "127.0.0.1:5000/p", "mode": "full", "tags": "ok,not ok"},
            "input `image`: 'not ok' is not a valid image tag (letters, digits, _ . -, up to 128);"
            " fix `image` or `tags`",
        ),
        ({"server_url": "127.0.0.1:8080"}, "server-url must start with http:// or https://"),
        ({"mosn_src": "no-such-dir"}, "mosn-src 'no-such-dir' is not a folder"),
    ],
)
def test_each_bad_input_gets_a_sentence_naming_the_input(tmp_path, given, expected):
    found = action.problems(inputs(**given), tmp_path)
    assert len(found) == 1, found
    assert found[0].startswith(expected), found[0]


def test_mesh_check_needs_the_runners_own_platform_built(tmp_path):
    # The check runs the built MOSN on the runner (docs/mesh.md).
    assert action.problems(inputs(mesh_check="true"), tmp_path) == []
    found = action.problems(inputs(mesh_check="true", platforms="darwin/amd64"), tmp_path)
    assert found == [
        "mesh-check: true runs the built MOSN on this runner, so platforms must include "
        "linux/amd64 (platforms: darwin/amd64)"
    ]
    assert action.problems(inputs(mesh_check="sure"), tmp_path) == [
        "input `mesh-check`: 'sure' is not one of true, false; pick one"
    ]


def test_all_problems_are_reported_at_once(tmp_path):
    found = action.problems(inputs(store="s3", mode="fast", push="true"), tmp_path)
    assert len(found) == 3


def test_mosn_src_is_read_relative_to_the_working_directory(tmp_path):
    (tmp_path / "mosn").mkdir()
    assert action.problems(inputs(mosn_src="mosn"), tmp_path) == []
    assert action.problems(inputs(mosn_src="mosn"), tmp_path / "elsewhere") != []


def test_s3_with_a_bucket_and_a_pushed_image_are_valid(tmp_path):
    given = inputs(
        store="s3",
        s3_bucket="b",
        image="127.0.0.1:5000/x",
        push="true",
        base_image="busybox",
        registry_username="u",
        registry_password="p",
        mode="full",
    )
    assert action.problems(given, tmp_path) == []


def test_validate_prints_error_annotations_and_fails(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "ci.github", "validate"],
        env={**inputs(store="s3", push="true"), "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    errors = [line for line in proc.stdout.splitlines() if line.startswith("::error ")]
    assert [e.split("::", 2)[2].split(";")[0] for e in errors] == [
        "store: s3 needs s3-bucket",
        "push: true needs image",
    ]
    assert "Traceback" not in proc.stderr


def test_usage_on_an_unknown_command():
    proc = subprocess.run(
        [sys.executable, "-m", "ci.github", "deploy"],
        env={"PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert (
        proc.stderr.strip()
        == "usage: python -m ci.github extras|validate|report|server-state|stop-server"
    )


def write_published(dist) -> None:
    """The published.json a publish to a server on 127.0.0.1:1 would have written."""
    files = tuple(
        PublishedFile(f.name, f"http://127.0.0.1:1/mosn/{f.name}", f.sha256, f.size)
        for f in dist.files
    )
    istio_env = str(dist.root / names.ISTIO_ENV)
    Record("server", "the artifact server at http://127.0.0.1:1", files, istio_env).write(dist.root)


@pytest.fixture
def stage_records(built_dist):
    """The session's dist with published.json (and image.json, once a test writes it)."""
    write_published(built_dist)
    yield built_dist
    for name in (names.PUBLISHED_JSON, names.IMAGE_JSON):
        (built_dist.root / name).unlink(missing_ok=True)


def test_report_writes_outputs_and_a_summary_table(stage_records, tmp_path):
    built_dist = stage_records
    dist_dir = built_dist.root
    repo = "127.0.0.1:5000/mp/proxyv2"
    ImageResult(repo, ["t1", "t2"], "sha256:1d", {}, digest="sha256:ab").write(dist_dir)
    outputs, summary = tmp_path / "outputs", tmp_path / "summary.md"
    env = {
        **inputs(image="127.0.0.1:5000/mp/proxyv2"),
        "MOSN_PROXYV2_DIST": str(dist_dir),
        "GITHUB_OUTPUT": str(outputs),
        "GITHUB_STEP_SUMMARY": str(summary),
    }
    assert action.report(env, tmp_path) == 0
    # Every output of the action comes from this one step, read from the stages' records.
    tarballs = [
        {"file": f.name, "url": f"http://127.0.0.1:1/mosn/{f.name}", "sha256": f.sha256}
        for f in built_dist.files
    ]
    assert parse_github_output(outputs) == {
        "mosn-version": built_dist.mosn_version,
        "tarballs": json.dumps(tarballs),
        "env-file": str(dist_dir / names.ISTIO_ENV),
        "image": "127.0.0.1:5000/mp/proxyv2:t1",
        "digest": "sha256:ab",
    }
    text = summary.read_text()
    for f in built_dist.files:
        row = next(line for line in text.splitlines() if f"`{f.name}`" in line)
        assert f.sha256 in row and f"http://127.0.0.1:1/mosn/{f.name}" in row
    assert f"Istio build variables: `{dist_dir / names.ISTIO_ENV}`" in text
    assert f"| `{repo}:t1` | `sha256:ab` |" in text
    assert f"| `{repo}:t2` | `sha256:ab` |" in text
    assert f"`{repo}@sha256:ab`" in text


def report_in_a_subprocess(env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ci.github", "report"],
        env={**env, "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("record", [names.PUBLISHED_JSON, names.IMAGE_JSON])
@pytest.mark.parametrize(
    "content", ['{"files": [', "[1, 2]", '{"image": "r.example/p"}', "\xff\xfe", None]
)
def test_a_corrupt_or_missing_record_is_one_line(stage_records, tmp_path, record, content):
    dist_dir = stage_records.root
    ImageResult("r.example/p", ["t"], "sha256:1d", {}).write(dist_dir)
    path = dist_dir / record
    if content is None:
        path.unlink()
    else:
        path.write_bytes(content.encode("latin-1"))
    env = {**inputs(image="r.example/p:t"), "MOSN_PROXYV2_DIST": str(dist_dir)}
    proc = report_in_a_subprocess(env, tmp_path)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stdout + proc.stderr
    (line,) = proc.stdout.strip().splitlines()
    assert line.startswith(f"::error title=mosn-proxyv2::{path} ")
    corrupt = {names.PUBLISHED_JSON: "a published.json", names.IMAGE_JSON: "an image.json"}
    says = "is missing: the" if content is None else f"is not {corrupt[record]} this tool wrote"
    rerun = {names.PUBLISHED_JSON: "run `invoke publish`", names.IMAGE_JSON: "run `invoke image`"}
    assert says in line and rerun[record] in line


def test_report_without_a_build_says_what_to_run(tmp_path):
    env = {**inputs(), "MOSN_PROXYV2_DIST": str(tmp_path / "nothing")}
    proc = report_in_a_subprocess(env, tmp_path)
    assert proc.returncode == 1
    assert proc.stdout.strip().startswith("::error title=mosn-proxyv2::")
    assert "run `invoke build" in proc.stdout


def test_multiline_output_uses_a_delimiter(tmp_path):
    out = tmp_path / "out"
    action.write_outputs({"one": "a", "two": "b\nc"}, out)
    lines = out.read_text().splitlines()
    assert lines[0] == "one=a"
    assert lines[1].startswith("two<<") and lines[2:4] == ["b", "c"]
    assert lines[4] == lines[1].removeprefix("two<<")


def hide_modules(monkeypatch, *hidden: str) -> None:
    """As on a runner (system-site-packages: true) that lacks the packages of `hidden`."""
    real = extras.find_spec
    monkeypatch.setattr(extras, "find_spec", lambda m: None if m in hidden else real(m))


def test_a_missing_dependency_is_named(tmp_path, monkeypatch):
    hide_modules(monkeypatch, "yaml")
    assert action.problems(inputs(), tmp_path) == [
        "Python package(s) pyyaml missing on the runner; install them (python3 -m pip install "
        "...) or use `system-site-packages: false`"
    ]


@pytest.mark.parametrize(
    ("given", "hidden", "extra"),
    [
        ({"store": "s3", "s3-bucket": "b"}, "boto3", "s3"),
        ({}, "gevent", "server"),
        ({"in-docker": "true"}, "docker", "image"),
        ({"image": "r.example/p", "base-image": "b"}, "docker", "image"),
    ],
)
def test_a_missing_extra_is_named_with_the_input_that_needs_it(
    tmp_path, monkeypatch, given, hidden, extra
):
    hide_modules(monkeypatch, hidden)
    found = action.problems(inputs(**given), tmp_path)
    assert len(found) == 1, found
    assert found[0].startswith("input `")
    assert (
        f"needs the [{extra}] extra, which is not installed on the runner; pip install '"
        in (found[0])
    )
    assert found[0].endswith(f"[{extra}]', or use `system-site-packages: false`")


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ({}, "server"),
        ({"server-url": "https://artifacts.example.com"}, ""),
        ({"store": "s3", "s3-bucket": "b"}, "s3"),
        ({"store": "s3", "s3-bucket": "b", "in-docker": "true"}, "s3,image"),
        ({"image": "r.example/p", "base-image": "b"}, "server,image"),
    ],
)
def test_the_install_step_gets_only_the_extras_the_inputs_need(tmp_path, capsys, given, expected):
    assert action.extras_for(inputs(**given), tmp_path) == 0
    assert capsys.readouterr().out == expected + "\n"


def test_annotation_data_is_escaped():
    # A raw newline would end the command; % starts the runner's escapes.
    assert action.error_annotation("t", "100% of\nit") == "::error title=t::100%25 of%0Ait"


def test_report_of_an_image_not_pushed(stage_records, tmp_path):
    # push: false (as in e2e.yml): the image output names the local image, digest is empty.
    built_dist = stage_records
    repo = "localhost/mosn-proxyv2/proxyv2"
    ImageResult(repo, ["e2e"], "sha256:1d", {}).write(built_dist.root)
    outputs, summary = tmp_path / "outputs", tmp_path / "summary.md"
    env = {
        **inputs(image=f"{repo}:e2e"),
        "MOSN_PROXYV2_DIST": str(built_dist.root),
        "GITHUB_OUTPUT": str(outputs),
        "GITHUB_STEP_SUMMARY": str(summary),
    }
    assert action.report(env, tmp_path) == 0
    got = parse_github_output(outputs)
    assert (got["image"], got["digest"]) == (f"{repo}:e2e", "")
    assert f"| `{repo}:e2e` | `not pushed` |" in summary.read_text()


def test_keep_server_must_be_a_boolean(tmp_path):
    env = {**inputs(), action.KEEP_SERVER_ENV: "sometimes"}
    assert action.problems(env, tmp_path) == [
        "input `keep-server`: 'sometimes' is not one of true, false; pick one"
    ]


@pytest.fixture
def bundled(tmp_path):
    """A real bundled server started from server-root the way publish starts it."""
    from server import background
    from tests.helpers.net import free_port

    root = tmp_path / "artifacts"
    url = f"http://127.0.0.1:{free_port()}"
    pid = background.start(root, url.removeprefix("http://"), tokens=["t0ken-for-tests"])
    env = {**inputs(server_url=url), "MOSN_PROXYV2_SERVER_ROOT": str(root)}
    yield env, root, pid
    background.stop(root)


def test_stop_server_stops_the_server_this_step_started(bundled, tmp_path, capsys):
    from server import background

    env, root, pid = bundled
    assert action.stop_server(env, tmp_path) == 0
    assert background.running(root) is None
    assert f"stopped the artifact server this step started (pid {pid}" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("extra", "said"),
    [
        ({action.KEEP_SERVER_ENV: "true"}, "keep-server: true, so the artifact server"),
        ({action.RUNNING_BEFORE_ENV: "4242"}, "ran before this step: left running"),
    ],
)
def test_stop_server_leaves_a_kept_or_earlier_server(bundled, tmp_path, capsys, extra, said):
    from server import background

    env, root, pid = bundled
    assert action.stop_server({**env, **extra}, tmp_path) == 0
    assert background.running(root) == pid
    assert said in capsys.readouterr().out


def test_server_state_records_a_server_already_up(bundled, tmp_path):
    env, _root, pid = bundled
    out = tmp_path / "github-output"
    assert action.server_state({**env, "GITHUB_OUTPUT": str(out)}, tmp_path) == 0
    assert f"running-before={pid}" in out.read_text()
    # Another store, or a server elsewhere: nothing of ours to look for.
    elsewhere = {**env, "MOSN_PROXYV2_SERVER_URL": "https://artifacts.example.com"}
    assert action.bundled_server_root(action.load_settings(elsewhere), tmp_path) is None


def test_server_steps_leave_bad_inputs_to_validate(tmp_path, capsys):
    # They run before (and after) validate: a refused store is validate's to report, once.
    out = tmp_path / "github-output"
    env = {**inputs(store="ftp"), "GITHUB_OUTPUT": str(out)}
    assert action.server_state(env, tmp_path) == 0
    assert out.read_text() == "running-before=\n"
    assert action.stop_server(env, tmp_path) == 0
    assert capsys.readouterr().out == ""
