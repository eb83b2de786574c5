"""The toolchain table and probe: which Go may compile which checkout (no compiling here)."""

from __future__ import annotations

import pytest

from ci.builder import makefile_build_image, toolchain
from ci.builder.source import Checkout
from ci.errors import UserError

# The reflect2 lines of MOSN v1.0.0's go.sum (mosn.io/mosn@v1.0.0, module proxy).
V100_SUM = """\
github.com/modern-go/reflect2 v0.0.0-20180701023420-4b7aa43c6742/go.mod h1:bx2lNnkwVCuqBIxFjflWJWanXIb3RllmbCylyMrvgv0=
github.com/modern-go/reflect2 v1.0.1 h1:9f412s+6RmYXLWZSEzVVgPGK7C2PphHj5RJrvfx9AWI=
github.com/modern-go/reflect2 v1.0.1/go.mod h1:bx2lNnkwVCuqBIxFjflWJWanXIb3RllmbCylyMrvgv0=
"""
# ...and of v1.6.1's: v1.0.1 only as a go.mod hash, the code is v1.0.2.
V161_SUM = """\
github.com/modern-go/reflect2 v1.0.1/go.mod h1:bx2lNnkwVCuqBIxFjflWJWanXIb3RllmbCylyMrvgv0=
github.com/modern-go/reflect2 v1.0.2 h1:xBagoLtFs94CBntxluKeaWgTMpvLxC4ur3nMaC9Gz0M=
github.com/modern-go/reflect2 v1.0.2/go.mod h1:yWuevngMOJpCy52FWWMvUC8ws7m/LJsjYzDa0/r8luk=
"""


@pytest.mark.parametrize(
    "out, label, minor",
    [
        ("go version go1.15.15 linux/amd64\n", "go1.15.15", (1, 15)),
        ("go version go1.26.8 linux/amd64", "go1.26.8", (1, 26)),
        ("go version go1.21rc2 darwin/arm64", "go1.21rc2", (1, 21)),
        # A container's output may start with something else (an entrypoint's banner).
        ("hello\ngo version go1.14.13 linux/amd64\n", "go1.14.13", (1, 14)),
    ],
)
def test_go_version_output_is_parsed_for_every_release(out, label, minor):
    assert toolchain.parse_go_version(out) == (label, minor)


def test_unreadable_go_version_is_one_line():
    with pytest.raises(UserError, match=r"could not read the Go version from 'go: not found'"):
        toolchain.parse_go_version("go: not found\n")


def test_only_code_hashes_count_as_pinned():
    assert toolchain.pinned_modules(V100_SUM) == {"github.com/modern-go/reflect2": {"v1.0.1"}}
    assert toolchain.pinned_modules(V161_SUM) == {"github.com/modern-go/reflect2": {"v1.0.2"}}


def test_reflect2_v1_0_1_is_refused_from_go_1_18_with_the_working_range_and_the_fixes(tmp_path):
    (tmp_path / "go.sum").write_text(V100_SUM)
    toolchain.check(tmp_path, (1, 14), "go1.17.13", (1, 17), "the host's go")
    with pytest.raises(UserError) as caught:
        toolchain.check(tmp_path, (1, 14), "go1.18.0", (1, 18), "the host's go")
    assert str(caught.value) == (
        "go1.18.0 (the host's go) breaks github.com/modern-go/reflect2 v1.0.1 pinned in go.sum"
        " (it crashes at run time); it works with Go 1.14 to 1.17: build with --in-docker"
        " (the golang image the checkout's Makefile names) or a Go from 1.14 to 1.17,"
        " or pass --skip-toolchain-check"
    )


def test_reflect2_v1_0_2_passes_with_the_newest_go(tmp_path):
    (tmp_path / "go.sum").write_text(V161_SUM)
    toolchain.check(tmp_path, (1, 18), "go1.26.8", (1, 26), "the host's go")


def test_every_rule_carries_its_evidence():
    for rule in toolchain.RULES:
        assert len(rule.evidence) > 80 and "measured" in rule.evidence.lower()


def test_go_older_than_go_mod_offers_gotoolchain_from_go_1_21(tmp_path):
    with pytest.raises(UserError, match=r"install a newer Go, GOTOOLCHAIN=go1.23.0 or use"):
        toolchain.check(tmp_path, (1, 23), "go1.21.13", (1, 21), "the host's go")
    with pytest.raises(UserError, match=r"install a newer Go or use --in-docker"):
        toolchain.check(tmp_path, (1, 18), "go1.15.15", (1, 15), "the host's go")


def checkout(path, directive=(1, 14)) -> Checkout:
    return Checkout(path, "v1.0.0", directive, "", "", 0, False, True)


@pytest.mark.parametrize(
    "makefile, image",
    [
        ("SHELL = /bin/bash\nBUILD_IMAGE     = golang:1.14.13\n", "golang:1.14.13"),  # v1.0.0
        ("BUILD_IMAGE     ?= golang:1.18\n", "golang:1.18"),  # v1.6.1
        ("all:\n\techo no image\n", "golang:1.14"),  # none named: go.mod's release
    ],
)
def test_in_docker_image_comes_from_the_makefile(tmp_path, makefile, image):
    (tmp_path / "Makefile").write_text(makefile)
    assert makefile_build_image(checkout(tmp_path)) == image


def test_skipping_the_check_warns_about_the_rule_but_not_about_go_mod(tmp_path, capsys):
    (tmp_path / "go.sum").write_text(V100_SUM)
    toolchain.check(tmp_path, (1, 14), "go1.19.8", (1, 19), "the host's go", skip_rules=True)
    assert "go1.19.8 breaks github.com/modern-go/reflect2 v1.0.1" in capsys.readouterr().err
    with pytest.raises(UserError, match="older than go 1.20 that go.mod asks for"):
        toolchain.check(tmp_path, (1, 20), "go1.19.8", (1, 19), "the host's go", skip_rules=True)


@pytest.mark.parametrize("go_sum, newest", [(V100_SUM, (1, 17)), (V161_SUM, None), ("", None)])
def test_newest_working_go_comes_from_the_table(tmp_path, go_sum, newest):
    """What `invoke image --host-build` allows Istio's checkout: the same table as MOSN's."""
    (tmp_path / "go.sum").write_text(go_sum)
    assert toolchain.newest_working(tmp_path) == newest
