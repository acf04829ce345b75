"""Statistics of the gate: Wilson score intervals and the exact McNemar test.

Plain functions over counts, standard library only (``math.comb``, ``statistics``), so
the numbers in the report can be checked by hand. Sources of the reference values used by
tests/test_stats.py are named there.

- Wilson score interval (Wilson 1927; Newcombe 1998, method 3): the confidence interval
  for a binomial proportion that keeps its coverage near 95 % for small n and for
  proportions near 0 or 1, where the textbook normal interval fails.
- Exact McNemar test: for two runs on the same tasks, only the discordant tasks carry
  information (b = passed before and fails now, c = failed before and passes now). Under
  "no change" each discordant task is a fair coin, so b ~ Binomial(b + c, 1/2); the
  two-sided p-value doubles the smaller tail (capped at 1).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from statistics import NormalDist

#: two-sided 95 %: the 97.5 % quantile of the standard normal, 1.959963984540054
Z95 = NormalDist().inv_cdf(0.975)


@dataclass(frozen=True)
class Interval:
    """A proportion's confidence interval, as fractions in [0, 1]."""

    low: float
    high: float

    def percent(self) -> tuple[float, float]:
        return 100.0 * self.low, 100.0 * self.high


def wilson_interval(successes: int, n: int, z: float = Z95) -> Interval:
    """Wilson score interval of ``successes`` out of ``n`` (default: 95 %)."""
    if n < 0 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n, got {successes}/{n}")
    if n == 0:
        return Interval(0.0, 1.0)
    p = successes / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    # at 0 or n the interval touches the bound exactly; keep rounding from leaving [0, 1]
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return Interval(low, high)


def binomial_cdf_half(k: int, n: int) -> float:
    """P(X <= k) for X ~ Binomial(n, 1/2), exactly (integer sums, one division)."""
    if k < 0:
        return 0.0
    if k >= n:
        return 1.0
    return sum(math.comb(n, i) for i in range(k + 1)) / (1 << n)


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value for b and c discordant pairs (conditional test).

    ``p = min(1, 2 * P(X <= min(b, c)))`` with X ~ Binomial(b + c, 1/2); 1.0 when
    there are no discordant pairs.
    """
    if b < 0 or c < 0:
        raise ValueError(f"discordant counts must be >= 0, got b={b}, c={c}")
    n = b + c
    if n == 0:
        return 1.0
    return min(1.0, 2.0 * binomial_cdf_half(min(b, c), n))


def mcnemar_mid_p(b: int, c: int) -> float:
    """Mid-p variant (Fagerland et al. 2013): the exact p minus P(X = min(b, c)).

    Less conservative than :func:`mcnemar_exact`; reported for reference only, the gate
    uses the exact test.
    """
    n = b + c
    if n == 0:
        return 1.0
    point = math.comb(n, min(b, c)) / (1 << n)
    return min(1.0, 2.0 * binomial_cdf_half(min(b, c), n) - point)


@dataclass(frozen=True)
class Paired:
    """Per-task comparison of a run with its baseline on the tasks both judged."""

    n_common: int
    regressed: tuple[str, ...]  # passed in the baseline, fail now (b)
    fixed: tuple[str, ...]  # failed in the baseline, pass now (c)
    p_value: float
    p_mid: float

    @property
    def b(self) -> int:
        return len(self.regressed)

    @property
    def c(self) -> int:
        return len(self.fixed)


def task_sort_key(task_id: str) -> tuple[str, int, str]:
    """HumanEval/9 before HumanEval/10; ids without a number sort by text."""
    prefix, _, number = task_id.rpartition("/")
    return (prefix, int(number), "") if number.isdigit() else (task_id, -1, task_id)


def paired_compare(baseline: Mapping[str, bool], current: Mapping[str, bool]) -> Paired:
    """McNemar comparison of two pass/fail maps over their common tasks."""
    common = sorted(set(baseline) & set(current), key=task_sort_key)
    regressed = tuple(t for t in common if baseline[t] and not current[t])
    fixed = tuple(t for t in common if not baseline[t] and current[t])
    return Paired(n_common=len(common), regressed=regressed, fixed=fixed,
                  p_value=mcnemar_exact(len(regressed), len(fixed)),
                  p_mid=mcnemar_mid_p(len(regressed), len(fixed)))


def min_significant_flips(alpha: float, limit: int = 1000) -> int:
    """Smallest b with c = 0 whose exact p-value is below ``alpha`` (6 for 0.05)."""
    for b in range(1, limit):
        if mcnemar_exact(b, 0) < alpha:
            return b
    raise ValueError(f"alpha {alpha} needs more than {limit} one-sided flips")
