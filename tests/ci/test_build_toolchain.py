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


def test_only_code_hashes_count_as_pinned_for_istio_s_checkout():
    assert toolchain.pinned_modules(V100_SUM) == {"github.com/modern-go/reflect2": {"v1.0.1"}}
    assert toolchain.pinned_modules(V161_SUM) == {"github.com/modern-go/reflect2": {"v1.0.2"}}


# `go list -m all` of MOSN v1.0.0, and after `go get` moved json-iterator and reflect2 (a part).
V100_LIST = """mosn.io/mosn
github.com/json-iterator/go v1.1.10
github.com/modern-go/reflect2 v1.0.1
"""
FIXED_LIST = """mosn.io/mosn
github.com/json-iterator/go v1.1.12
github.com/modern-go/reflect2 v1.0.2
"""
V100 = toolchain.parse_build_list(V100_LIST)


def test_build_list_reads_go_list_and_vendor_modules_txt_and_replacements():
    assert V100 == {
        "github.com/json-iterator/go": "v1.1.10",
        "github.com/modern-go/reflect2": "v1.0.1",
    }
    vendored = (
        "# github.com/modern-go/reflect2 v1.0.1\n## explicit\ngithub.com/modern-go/reflect2\n"
    )
    assert toolchain.parse_build_list(vendored) == {"github.com/modern-go/reflect2": "v1.0.1"}
    replaced = (
        "github.com/modern-go/reflect2 v1.0.1 => github.com/modern-go/reflect2 v1.0.2\n"
        "github.com/json-iterator/go v1.1.10 => ./jsoniter\n"
    )
    assert toolchain.parse_build_list(replaced) == {
        "github.com/modern-go/reflect2": "v1.0.2",
        "github.com/json-iterator/go": "=> ./jsoniter",
    }


def test_reflect2_v1_0_1_is_refused_from_go_1_18_with_the_working_range_and_the_fixes():
    toolchain.check(V100, (1, 14), "go1.17.13", (1, 17), "go1.17.13 (the host's go)")
    with pytest.raises(UserError) as caught:
        toolchain.check(V100, (1, 14), "go1.18.0", (1, 18), "go1.18.0 (the host's go)")
    assert str(caught.value) == (
        "go1.18.0 (the host's go) breaks github.com/modern-go/reflect2 v1.0.1 in the build list"
        " (it crashes at run time); it works with Go 1.14 to 1.17: build with --in-docker"
        " (the golang image the checkout's Makefile names) or a Go from 1.14 to 1.17"
        f" or --fix-deps ({toolchain.FIXES[0].describe()}), or pass --skip-toolchain-check"
    )
    assert (
        toolchain.FIXES[0]
        .describe()
        .startswith(
            "github.com/json-iterator/go v1.1.12 with github.com/modern-go/reflect2 v1.0.2, measured"
        )
    )


def test_the_build_list_decides_not_a_stale_go_sum_line():
    # After `go get`, go.sum still holds reflect2 v1.0.1's hash (V100_SUM's line); only the
    # build list says what is compiled.
    toolchain.check(toolchain.parse_build_list(FIXED_LIST), (1, 14), "go1.26.8", (1, 26), "x")


def test_reflect2_v1_0_2_passes_with_the_newest_go():
    toolchain.check({"github.com/modern-go/reflect2": "v1.0.2"}, (1, 18), "go1.26.8", (1, 26), "x")


def test_every_rule_and_fix_carries_its_evidence():
    for entry in (*toolchain.RULES, *toolchain.FIXES):
        assert len(entry.evidence) > 80 and "measured" in entry.evidence.lower()


def test_each_fix_replaces_a_rule_and_covers_releases_the_rule_breaks():
    for fix in toolchain.FIXES:
        (rule,) = [r for r in toolchain.RULES if (r.module, r.version) == (fix.module, fix.version)]
        assert max(fix.works) >= rule.first_bad
        assert fix.module in dict(fix.to) and dict(fix.to)[fix.module] != fix.version
    assert toolchain.fixes_for(V100) == [toolchain.FIXES[0]]
    assert toolchain.fixes_for(toolchain.parse_build_list(FIXED_LIST)) == []


def test_go_older_than_go_mod_offers_gotoolchain_from_go_1_21():
    with pytest.raises(UserError, match=r"install a newer Go, GOTOOLCHAIN=go1.23.0 or use"):
        toolchain.check({}, (1, 23), "go1.21.13", (1, 21), "go1.21.13 (the host's go)")
    with pytest.raises(UserError, match=r"install a newer Go or use --in-docker"):
        toolchain.check({}, (1, 18), "go1.15.15", (1, 15), "go1.15.15 (the host's go)")


TOOLCHAINS = [
    "v0.0.1-go1.21.0.linux-amd64",
    "v0.0.1-go1.26.8.linux-amd64",
    "v0.0.1-go1.27rc1.linux-amd64",
    "v0.0.1-go1.25.3.darwin-arm64",
    "v0.0.1-go1.27.4.windows-amd64",
    "v0.0.1-go1.28rc2.linux-amd64",
]


def test_supported_releases_are_the_two_newest_in_the_toolchain_list():
    assert toolchain.supported_releases(TOOLCHAINS) == ((1, 27), (1, 26))
    assert toolchain.supported_releases([]) == ()


def test_an_unsupported_go_is_warned_about_naming_fix_deps(capsys):
    toolchain.warn_unsupported("go1.26.8", (1, 26), ((1, 27), (1, 26)), "the list")
    assert capsys.readouterr().err == ""
    toolchain.warn_unsupported("go1.25.3", (1, 25), ((1, 27), (1, 26)), "the list")
    err = capsys.readouterr().err
    assert err.startswith("warning: go1.25.3 gets no security fixes any more")
    assert "1.27 and 1.26, per the list" in err and "--fix-deps" in err


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


def test_skipping_the_check_warns_about_the_rule_but_not_about_go_mod(capsys):
    toolchain.check(V100, (1, 14), "go1.19.8", (1, 19), "x", skip_rules=True)
    assert "go1.19.8 breaks github.com/modern-go/reflect2 v1.0.1" in capsys.readouterr().err
    with pytest.raises(UserError, match="older than go 1.20 that go.mod asks for"):
        toolchain.check(V100, (1, 20), "go1.19.8", (1, 19), "x", skip_rules=True)


@pytest.mark.parametrize("go_sum, newest", [(V100_SUM, (1, 17)), (V161_SUM, None), ("", None)])
def test_newest_working_go_comes_from_the_table(tmp_path, go_sum, newest):
    """What `invoke image --host-build` allows Istio's checkout: the same table as MOSN's."""
    (tmp_path / "go.sum").write_text(go_sum)
    assert toolchain.newest_working(tmp_path) == newest
