"""Statistics of the gate against values published elsewhere or derived by hand.

Sources:
- Wilson intervals: R package ``binom``, ``binom.confint(x, n, tol = 1e-8)``, method
  "wilson" (z = qnorm(0.975)), as recorded in statsmodels'
  ``statsmodels/stats/tests/results/results_proportion.py`` (last entry of each array).
- Exact McNemar: Fagerland, Lydersen, Laake (2013), "The McNemar test for binary
  matched-pairs data: mid-p and asymptotic are better than exact conditional", BMC Medical
  Research Methodology 13:91, worked example with 1 and 7 discordant pairs: exact
  conditional p = 0.070, mid-p = 0.039. Other values by hand: with n = b + c discordant
  pairs, p = 2 * sum_{i <= min(b, c)} C(n, i) / 2^n, capped at 1.
"""

from __future__ import annotations

from fractions import Fraction
from math import comb

import pytest

from plugin.gate.stats import (
    Z95,
    binomial_cdf_half,
    mcnemar_exact,
    mcnemar_mid_p,
    min_significant_flips,
    paired_compare,
    wilson_interval,
)

# (successes, n, low, high) from R binom.confint(method = "wilson")
R_BINOM_WILSON = [
    (18, 20, 0.6989663547715128, 0.972133518786232),
    (4, 20, 0.0806576625797981, 0.4160174322518935),
    (4, 200, 0.00780442641634947, 0.05028708690582643),
    (190, 200, 0.910421851861224, 0.972617354399236),
    (1, 30, 5.908590e-03, 0.16670391),
    (0, 30, 0.0, 0.11351339),
    (30, 30, 0.8864866, 1.0),
]


@pytest.mark.parametrize(("k", "n", "low", "high"), R_BINOM_WILSON)
def test_wilson_matches_r_binom(k: int, n: int, low: float, high: float) -> None:
    interval = wilson_interval(k, n)
    assert interval.low == pytest.approx(low, abs=1e-7)
    assert interval.high == pytest.approx(high, abs=1e-7)


def test_z95_is_the_normal_quantile() -> None:
    assert pytest.approx(1.959963984540054, abs=1e-12) == Z95


def test_wilson_on_humaneval_sizes() -> None:
    # the canary's 132/164: one task is 0.61 pp, the interval spans about 12 pp
    low, high = wilson_interval(132, 164).percent()
    assert (round(low, 2), round(high, 2)) == (73.75, 85.83)
    assert 100 / 164 == pytest.approx(0.61, abs=0.01)


def test_wilson_edges_and_errors() -> None:
    assert wilson_interval(0, 0).low == 0.0
    assert wilson_interval(0, 0).high == 1.0
    assert wilson_interval(0, 10).low == 0.0
    assert wilson_interval(10, 10).high == 1.0
    with pytest.raises(ValueError, match="successes"):
        wilson_interval(11, 10)
    with pytest.raises(ValueError, match="successes"):
        wilson_interval(-1, 10)


def _by_hand(b: int, c: int) -> Fraction:
    n = b + c
    tail = sum(comb(n, i) for i in range(min(b, c) + 1))
    return min(Fraction(1), Fraction(2 * tail, 2**n))


def test_mcnemar_published_example() -> None:
    assert round(mcnemar_exact(1, 7), 3) == 0.070
    assert round(mcnemar_mid_p(1, 7), 3) == 0.039
    assert mcnemar_exact(1, 7) == float(Fraction(18, 256))


@pytest.mark.parametrize(("b", "c", "expected"), [
    (0, 0, Fraction(1)),
    (5, 0, Fraction(1, 16)),  # 2 / 2^5: five one-sided flips are not enough at 0.05
    (6, 0, Fraction(1, 32)),  # six are
    (1, 9, Fraction(22, 1024)),
    (2, 8, Fraction(112, 1024)),
    (3, 3, Fraction(1)),  # capped
    (10, 2, Fraction(158, 4096)),
    (32, 0, Fraction(2, 2**32)),  # the canary's 32 designed-to-pass tasks all flipping
])
def test_mcnemar_by_hand(b: int, c: int, expected: Fraction) -> None:
    assert mcnemar_exact(b, c) == float(expected)
    assert mcnemar_exact(c, b) == float(expected)  # two-sided: symmetric


def test_mcnemar_agrees_with_the_formula_on_a_grid() -> None:
    for b in range(0, 25):
        for c in range(0, 25):
            assert mcnemar_exact(b, c) == pytest.approx(float(_by_hand(b, c)), rel=1e-12)


def test_mcnemar_rejects_negative_counts() -> None:
    with pytest.raises(ValueError, match="discordant"):
        mcnemar_exact(-1, 3)


def test_binomial_cdf_half() -> None:
    assert binomial_cdf_half(-1, 4) == 0.0
    assert binomial_cdf_half(4, 4) == 1.0
    assert binomial_cdf_half(1, 4) == 5 / 16


def test_min_significant_flips() -> None:
    assert min_significant_flips(0.05) == 6
    assert min_significant_flips(0.01) == 8  # 2/2^8 = 0.0078


def test_paired_compare_lists_flips_over_common_tasks() -> None:
    base = {"T/1": True, "T/2": True, "T/3": False, "T/10": True, "T/4": True}
    now = {"T/1": False, "T/2": True, "T/3": True, "T/10": False, "T/5": False}
    paired = paired_compare(base, now)
    assert paired.n_common == 4  # T/4 and T/5 are not in both
    assert paired.regressed == ("T/1", "T/10")  # numeric order
    assert paired.fixed == ("T/3",)
    assert paired.p_value == mcnemar_exact(2, 1) == 1.0
