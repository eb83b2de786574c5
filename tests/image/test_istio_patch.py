"""`--wasm patch` on the stand-in's excerpts of Istio 1.10's four build files."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from ci.errors import UserError
from ci.image import patch
from tests.helpers.image import ISTIO_STANDIN

FILES = (
    patch.INIT_SH,
    patch.DOCKERFILE,
    patch.DOCKER_MK,
    patch.CONSTANTS_GO,
)


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "istio"
    shutil.copytree(ISTIO_STANDIN, root)
    return root


def snapshot(root):
    return {name: (root / name).read_bytes() for name in FILES}


def live_lines(text: str) -> list[str]:
    return [
        line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")
    ]


def test_patch_edits_the_four_files_as_the_guide_does(tree):
    before = snapshot(tree)
    changed = patch.apply(tree)
    assert sorted(changed) == sorted(str(tree / name) for name in FILES)

    init_sh = (tree / patch.INIT_SH).read_text()
    assert "# for plugin in stats metadata_exchange\n# do\n" in init_sh
    assert "ISTIO_ENVOY_BASE_URL" not in "\n".join(live_lines(init_sh))
    # The rest of the script still runs: the sidecar download is untouched.
    assert 'curl -fLSs --retry 2 "${url}"' in "\n".join(live_lines(init_sh))
    subprocess.run(["bash", "-n", tree / patch.INIT_SH], check=True)
    assert (tree / patch.INIT_SH).stat().st_mode & 0o777 == 0o755

    dockerfile = (tree / patch.DOCKERFILE).read_text()
    assert not [line for line in live_lines(dockerfile) if ".wasm" in line]
    assert dockerfile.count("# COPY ") == 4
    assert "COPY $SIDECAR /usr/local/bin/$SIDECAR" in live_lines(dockerfile)

    makefile = (tree / patch.DOCKER_MK).read_text()
    assert not [line for line in live_lines(makefile) if ".wasm" in line]
    assert makefile.count("# $(ISTIO_ENVOY_LINUX_RELEASE_DIR)/") == 4
    assert makefile.count("# docker.proxyv2: $(ISTIO_ENVOY_LINUX_RELEASE_DIR)/") == 4

    constants = (tree / patch.CONSTANTS_GO).read_text()
    assert 'BinaryPathFilename = "/usr/local/bin/mosn"' in constants
    assert "/usr/local/bin/envoy" not in constants

    # Only those lines changed: same line count everywhere.
    for name in FILES:
        assert len((tree / name).read_bytes().splitlines()) == len(before[name].splitlines())


def test_patched_makefile_still_parses_and_no_longer_wants_wasm_files(tree):
    patch.apply(tree)
    plan = subprocess.run(
        ["make", "-n", "-p", "docker.proxyv2", "HUB=h", "TAG=t"],
        cwd=tree,
        capture_output=True,
        text=True,
    )
    deps = [line for line in plan.stdout.splitlines() if line.startswith("docker.proxyv2:")]
    assert deps and not [line for line in deps if ".wasm" in line]


def test_patch_twice_changes_nothing(tree):
    patch.apply(tree)
    after_first = snapshot(tree)
    assert patch.apply(tree) == []
    assert snapshot(tree) == after_first


@pytest.mark.parametrize(
    ("name", "old", "new", "says"),
    [
        (
            patch.DOCKERFILE,
            "COPY stats-filter.compiled.wasm /etc/istio/extensions/stats-filter.compiled.wasm\n",
            "",
            "not found: the four WASM COPY lines",
        ),
        (
            patch.DOCKERFILE,
            "COPY stats-filter.wasm /etc",
            "# COPY stats-filter.wasm /etc",
            "partly commented out already: the four WASM COPY lines",
        ),
        (
            patch.INIT_SH,
            "for plugin in stats metadata_exchange",
            "for plugin in stats",
            "not found: the WASM download loop",
        ),
        (
            patch.DOCKER_MK,
            "docker.proxyv2: $(ISTIO_ENVOY_LINUX_RELEASE_DIR)/stats-filter.wasm\n",
            "",
            "not found: the WASM rules and docker.proxyv2's WASM dependencies",
        ),
        (
            patch.CONSTANTS_GO,
            '"/usr/local/bin/envoy"',
            '"/opt/proxy"',
            "neither Envoy's nor MOSN's path",
        ),
    ],
)
def test_a_file_that_does_not_look_like_istio_1_10_is_refused_and_nothing_is_written(
    tree, name, old, new, says
):
    path = tree / name
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    before = snapshot(tree)
    with pytest.raises(UserError) as caught:
        patch.apply(tree)
    message = str(caught.value)
    assert message.startswith(f"{path} does not look like Istio 1.10's")
    assert says in message
    assert snapshot(tree) == before


def test_a_missing_file_is_named(tree):
    (tree / patch.DOCKER_MK).unlink()
    with pytest.raises(UserError, match=f"{tree / patch.DOCKER_MK} not found"):
        patch.apply(tree)
    assert "envoy" in (tree / patch.CONSTANTS_GO).read_text()
