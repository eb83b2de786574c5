"""The weighted-routing verdict and its stated error rates."""

from __future__ import annotations

from fractions import Fraction

import pytest

from ci.e2e import stats
from tests.helpers import tools


def test_chosen_n_keeps_both_error_rates_under_one_in_a_million():
    design = stats.choose_n()
    assert (design.n, design.lo, design.hi) == (224, 76, 148)
    assert design.false_fail <= Fraction(1, 10**6)
    assert design.false_pass <= Fraction(1, 10**6)


def test_one_fewer_request_would_miss_the_false_pass_target():
    assert stats.design(223).false_pass > Fraction(1, 10**6)


def test_exact_rates_agree_with_scipy():
    binom = tools.module("scipy", "scipy.stats").binom
    design = stats.choose_n()
    inside_half = binom.cdf(design.hi, design.n, 0.5) - binom.cdf(design.lo - 1, design.n, 0.5)
    inside_broken = binom.cdf(design.hi, design.n, 0.8) - binom.cdf(design.lo - 1, design.n, 0.8)
    assert float(design.false_fail) == pytest.approx(1 - inside_half, rel=1e-9)
    assert float(design.false_pass) == pytest.approx(inside_broken, rel=1e-9)


def test_twenty_eighty_is_as_unlikely_to_pass_as_eighty_twenty():
    design = stats.choose_n()
    mirrored = stats.probability_between(design.n, design.lo, design.hi, Fraction(1, 5))
    assert mirrored == design.false_pass


@pytest.mark.parametrize(
    ("counts", "passed", "reason"),
    [
        ({"v1": 112, "v3": 112}, True, "v3 112/224 inside [76, 148]"),
        ({"v1": 148, "v3": 76}, True, "inside"),
        ({"v1": 149, "v3": 75}, False, "outside [76, 148]: the split is not 50/50"),
        ({"v1": 45, "v3": 179}, False, "not 50/50"),
        ({"v1": 111, "v3": 112, "v2": 1}, False, "responses other than v1/v3 seen (v2=1)"),
        ({"v1": 111, "v3": 112, "error": 1}, False, "error=1"),
        ({"v1": 80, "v3": 80}, False, "160 v1/v3 responses, expected 224"),
    ],
)
def test_verdict(counts, passed, reason):
    verdict = stats.weighted_verdict(counts, stats.choose_n())
    assert verdict.passed is passed
    assert reason in verdict.reason


def test_clopper_pearson_interval_contains_the_share_and_is_exact_at_the_edges():
    low, high = stats.clopper_pearson(50, 100)
    assert low < 0.5 < high
    assert stats.clopper_pearson(0, 10)[0] == 0.0
    assert stats.clopper_pearson(10, 10)[1] == 1.0
    # At the lower bound, seeing >= k has exactly the tail probability.
    k, n = 34, 100
    low, _ = stats.clopper_pearson(k, n)
    tail = stats.probability_between(n, k, n, Fraction(low))
    assert float(tail) == pytest.approx(0.0005, rel=1e-6)


def test_clopper_pearson_holds_for_a_large_sample():
    # --samples 4000 overflowed a float in math.comb before (found by the mesh check).
    binom = tools.module("scipy", "scipy.stats").binom
    k, n = 1996, 4000
    low, high = stats.clopper_pearson(k, n)
    assert 0.47 < low < 0.5 < high < 0.53
    # At each bound the tail beyond the observed count is what the 99.9% interval leaves.
    assert binom.sf(k - 1, n, low) == pytest.approx(0.0005, rel=1e-6)
    assert binom.cdf(k, n, high) == pytest.approx(0.0005, rel=1e-6)


def test_describe_states_n_and_both_rates():
    text = stats.choose_n().describe()
    assert text.startswith("N=224: pass when v3 count is in [76, 148]")
    assert "8.63e-07" in text and "7.56e-07" in text
