"""The weighted-routing verdict: is a 50/50 split what the mesh really does?

The check sends N requests and counts how many reached reviews v3 (the rest must be v1, never
v2). It passes when that count lies in an acceptance region around N/2: the central binomial
region that a true 50/50 split leaves with probability at most ALPHA. The same region is then
scored against a broken 80/20 (or 20/80) split: the chance that 80/20 still lands inside is
the false-pass rate. N is the smallest count that keeps both rates under their targets. Every
probability here is computed exactly (math.comb over Fractions), not approximated.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from fractions import Fraction

# Targets: a working 50/50 mesh fails the check at most 1 run in a million, and a mesh that
# routes 80/20 passes it at most 1 run in a million. At 1 in 1000 (N=100) a CI that runs the
# check a few times per commit failed about 1 commit in 150 for nothing (a CI run on
# 2026-12-04 saw v3 32/100); 124 more requests cost about a second.
ALPHA = Fraction(1, 10**6)
BETA = Fraction(1, 10**6)
BROKEN_SHARE = Fraction(4, 5)
EXPECTED_SHARE = Fraction(1, 2)


def pmf(n: int, k: int, p: Fraction) -> Fraction:
    return math.comb(n, k) * p**k * (1 - p) ** (n - k)


def probability_between(n: int, lo: int, hi: int, p: Fraction) -> Fraction:
    """P(lo <= X <= hi) for X ~ Binomial(n, p), exactly."""
    return sum((pmf(n, k, p) for k in range(max(lo, 0), min(hi, n) + 1)), Fraction(0))


def acceptance_region(n: int, alpha: Fraction = ALPHA) -> tuple[int, int]:
    """The narrowest symmetric [lo, n - lo] that a true 50/50 leaves with probability <= alpha."""
    lo = 0
    # A fair split is symmetric: leaving [lo + 1, n - lo - 1] is P(X <= lo) on each side, so
    # the tail is summed once, term by term, instead of the region afresh for every lo.
    tail = Fraction(0)
    while lo + 1 <= n - (lo + 1):
        tail += pmf(n, lo, EXPECTED_SHARE)
        if 2 * tail > alpha:
            break
        lo += 1
    return lo, n - lo


@dataclass(frozen=True)
class Design:
    n: int
    lo: int
    hi: int
    # The chance that a correct 50/50 mesh fails the check.
    false_fail: Fraction
    # The chance that an 80/20 mesh passes it (80/20 and 20/80 are symmetric here).
    false_pass: Fraction

    def describe(self) -> str:
        return (
            f"N={self.n}: pass when v3 count is in [{self.lo}, {self.hi}]; "
            f"a true 50/50 fails with probability {float(self.false_fail):.2e}, "
            f"an 80/20 split passes with probability {float(self.false_pass):.2e}"
        )


def design(n: int, alpha: Fraction = ALPHA) -> Design:
    lo, hi = acceptance_region(n, alpha)
    return Design(
        n=n,
        lo=lo,
        hi=hi,
        false_fail=1 - probability_between(n, lo, hi, EXPECTED_SHARE),
        false_pass=probability_between(n, lo, hi, BROKEN_SHARE),
    )


@functools.lru_cache(maxsize=8)
def choose_n(alpha: Fraction = ALPHA, beta: Fraction = BETA, limit: int = 2000) -> Design:
    """The smallest N whose acceptance region meets both targets."""
    for n in range(2, limit + 1):
        candidate = design(n, alpha)
        if candidate.false_pass <= beta:
            return candidate
    raise ValueError(f"no N up to {limit} meets alpha={alpha} and beta={beta}")


def clopper_pearson(k: int, n: int, confidence: float = 0.999) -> tuple[float, float]:
    """Exact (Clopper-Pearson) confidence interval for a binomial share, for the report."""
    tail = (1 - confidence) / 2

    def term(i: int, p: float) -> float:
        # In logarithms: math.comb(n, i) overflows a float from n of about a thousand.
        log_comb = math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1)
        return math.exp(log_comb + i * math.log(p) + (n - i) * math.log1p(-p))

    def upper_tail(p: float) -> float:  # P(X >= k)
        return sum(term(i, p) for i in range(k, n + 1))

    def lower_tail(p: float) -> float:  # P(X <= k)
        return sum(term(i, p) for i in range(0, k + 1))

    def bisect(fn, target: float, increasing: bool) -> float:
        lo, hi = 0.0, 1.0
        for _ in range(60):
            mid = (lo + hi) / 2
            if (fn(mid) < target) == increasing:
                lo = mid
            else:
                hi = mid
        return (lo + hi) / 2

    lower = 0.0 if k == 0 else bisect(upper_tail, tail, increasing=True)
    upper = 1.0 if k == n else bisect(lower_tail, tail, increasing=False)
    return lower, upper


@dataclass(frozen=True)
class Verdict:
    passed: bool
    reason: str
    design: Design
    counts: dict[str, int]
    interval: tuple[float, float]


def weighted_verdict(counts: dict[str, int], chosen: Design) -> Verdict:
    """Judge the observed versions of a 50/50 v1/v3 rule."""
    v1, v3 = counts.get("v1", 0), counts.get("v3", 0)
    others = {k: c for k, c in counts.items() if k not in ("v1", "v3") and c}
    n = v1 + v3
    interval = clopper_pearson(v3, n) if n else (0.0, 1.0)
    if others:
        seen = ", ".join(f"{k}={c}" for k, c in sorted(others.items()))
        return Verdict(False, f"responses other than v1/v3 seen ({seen})", chosen, counts, interval)
    if n != chosen.n:
        return Verdict(False, f"{n} v1/v3 responses, expected {chosen.n}", chosen, counts, interval)
    if chosen.lo <= v3 <= chosen.hi:
        reason = f"v3 {v3}/{n} inside [{chosen.lo}, {chosen.hi}]"
        return Verdict(True, reason, chosen, counts, interval)
    reason = f"v3 {v3}/{n} outside [{chosen.lo}, {chosen.hi}]: the split is not 50/50"
    return Verdict(False, reason, chosen, counts, interval)
