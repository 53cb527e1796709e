"""Paired significance tests, the Holm adjustment and the minimum detectable difference.

Each test works on the paired observations of the items two variants both answered and
returns a result object with named fields. The formulas are written out here, rather than
called from scipy or statsmodels, so that the tests can check them against those packages.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import stats

# Differences and spreads below this are rounding noise of sums of equal values.
ZERO_TOLERANCE = 1e-12
# Absolute differences are rounded to this many decimals before ranking, so that values
# equal up to rounding (0.1 + 0.2 and 0.3) are tied.
RANK_DECIMALS = 12
# Up to this many nonzero differences the Wilcoxon p-value comes from the exact null
# distribution of W+ (all 2^n sign assignments). Above it, the normal approximation is
# used: its error is far below the rounding of a reported p-value at that n.
WILCOXON_EXACT_MAX_N = 200


@dataclass(frozen=True)
class McNemarResult:
    """McNemar's exact test on the discordant pairs of 0/1 outcomes."""

    correct_to_wrong: int  # correct in the reference, wrong in the variant
    wrong_to_correct: int  # wrong in the reference, correct in the variant
    n_discordant: int
    p_value: float


@dataclass(frozen=True)
class TTestResult:
    """Paired t-test of the mean difference against 0."""

    statistic: float | None  # None when every difference is equal, so t is 0/0 or infinite
    df: int
    p_value: float | None  # None with fewer than 2 pairs


@dataclass(frozen=True)
class WilcoxonResult:
    """Wilcoxon signed-rank test of the differences against a distribution symmetric about 0."""

    n_nonzero: int  # pairs with a nonzero difference; zero differences are dropped
    rank_sum_positive: float  # W+, the sum of the ranks of positive differences
    rank_sum_negative: float  # W-
    method: str  # "exact", "normal approximation" or "none (no nonzero difference)"
    p_value: float


def mcnemar_exact(correct_to_wrong: int, wrong_to_correct: int) -> McNemarResult:
    """Run McNemar's exact test: a two-sided binomial test of b against Bin(b + c, 1/2).

    b and c are the discordant pairs. p = min(1, 2 * sum_{k <= min(b, c)} C(b+c, k) / 2^(b+c)),
    and p = 1 without discordant pairs. Integer arithmetic keeps the sum exact for any n.
    Reference: McNemar (1947), Psychometrika 12(2); the exact form is the sign test.
    """
    if correct_to_wrong < 0 or wrong_to_correct < 0:
        raise ValueError(f"discordant counts must be >= 0, got {correct_to_wrong} and {wrong_to_correct}")
    n = correct_to_wrong + wrong_to_correct
    if n == 0:
        return McNemarResult(correct_to_wrong, wrong_to_correct, 0, 1.0)
    smaller = min(correct_to_wrong, wrong_to_correct)
    tail = sum(math.comb(n, k) for k in range(smaller + 1))
    p_value = min(1.0, 2 * tail / 2**n)
    return McNemarResult(correct_to_wrong, wrong_to_correct, n, p_value)


def paired_t_test(differences: Sequence[float]) -> TTestResult:
    """Run the two-sided paired t-test: t = mean(d) / (sd(d) / sqrt(n)) with n - 1 df.

    When every difference is equal, sd(d) = 0: p = 1 if they are all 0 and p = 0 otherwise,
    because no spread leaves no doubt about the sign.
    """
    d = np.asarray(differences, dtype=float)
    n = len(d)
    if n < 2:
        return TTestResult(None, max(n - 1, 0), None)
    mean = float(d.mean())
    sd = float(d.std(ddof=1))
    if sd <= ZERO_TOLERANCE * max(1.0, abs(mean)):
        return TTestResult(None, n - 1, 1.0 if abs(mean) <= ZERO_TOLERANCE else 0.0)
    statistic = mean / (sd / math.sqrt(n))
    p_value = float(2 * stats.t.sf(abs(statistic), df=n - 1))
    return TTestResult(statistic, n - 1, min(1.0, p_value))


def _signed_rank_null(doubled_ranks: np.ndarray) -> np.ndarray:
    """Return P(2 W+ = s) for s = 0..sum, each rank's sign being + or - with probability 1/2.

    Ranks are doubled so that average ranks of ties (multiples of 1/2) become integers.
    """
    distribution = np.zeros(int(doubled_ranks.sum()) + 1)
    distribution[0] = 1.0
    for rank in doubled_ranks.astype(int):
        shifted = np.zeros_like(distribution)
        shifted[rank:] = distribution[:-rank]
        distribution = 0.5 * (distribution + shifted)
    return distribution


def wilcoxon_signed_rank(differences: Sequence[float]) -> WilcoxonResult:
    """Run the two-sided Wilcoxon signed-rank test, dropping zero differences.

    The nonzero |d_i| get average ranks, and W+ sums the ranks of positive d_i. Up to
    WILCOXON_EXACT_MAX_N pairs, p = 2 min(P(W+ <= w), P(W+ >= w)) under the exact null
    distribution of W+ given these ranks, which is exact with ties too. Above it,
    z = (W+ - n(n+1)/4) / sqrt(n(n+1)(2n+1)/24 - sum(t^3 - t)/48) without continuity
    correction, t running over the sizes of tied groups. Without a nonzero difference
    there is nothing to test and p = 1. Reference: Wilcoxon (1945), Biometrics Bulletin 1(6).
    """
    d = np.asarray(differences, dtype=float)
    d = d[np.abs(d) > ZERO_TOLERANCE]
    n = len(d)
    if n == 0:
        return WilcoxonResult(0, 0.0, 0.0, "none (no nonzero difference)", 1.0)

    ranks = stats.rankdata(np.round(np.abs(d), RANK_DECIMALS))
    positive = float(ranks[d > 0].sum())
    negative = float(ranks[d < 0].sum())

    if n <= WILCOXON_EXACT_MAX_N:
        doubled = np.rint(2 * ranks)
        null = _signed_rank_null(doubled)
        observed = int(round(2 * positive))
        lower = float(null[: observed + 1].sum())
        upper = float(null[observed:].sum())
        return WilcoxonResult(n, positive, negative, "exact", min(1.0, 2 * min(lower, upper)))

    _, tie_sizes = np.unique(ranks, return_counts=True)
    variance = n * (n + 1) * (2 * n + 1) / 24 - float(np.sum(tie_sizes**3 - tie_sizes)) / 48
    z = (positive - n * (n + 1) / 4) / math.sqrt(variance)
    p_value = float(2 * stats.norm.sf(abs(z)))
    return WilcoxonResult(n, positive, negative, "normal approximation", min(1.0, p_value))


def holm_adjust(p_values: Sequence[float | None]) -> list[float | None]:
    """Return Holm's step-down adjusted p-values, in the input order; None entries stay None.

    With the m non-None p-values sorted, p_(1) <= ... <= p_(m), the adjusted value is
    max_{j <= i} min(1, (m - j + 1) p_(j)). It controls the family-wise error rate at alpha
    under any dependence. Reference: Holm (1979), Scandinavian Journal of Statistics 6(2).
    """
    present = [(value, position) for position, value in enumerate(p_values) if value is not None]
    m = len(present)
    adjusted: list[float | None] = [None] * len(p_values)
    running_max = 0.0
    for rank, (value, position) in enumerate(sorted(present)):
        running_max = max(running_max, min(1.0, (m - rank) * value))
        adjusted[position] = running_max
    return adjusted


def minimum_detectable_difference(sd: float, n: int, alpha: float, power: float) -> float:
    """Return the smallest true mean difference a two-sided paired test detects with `power`.

    Normal approximation: MDD = (z_{1-alpha/2} + z_{power}) * sd / sqrt(n), with sd the
    standard deviation of the paired differences and n the number of items. The t-based
    value is larger by a factor near t_{1-alpha/2, n-1} / z_{1-alpha/2} (1.04 at n = 50).
    """
    z_alpha = stats.norm.ppf(1 - alpha / 2)
    z_power = stats.norm.ppf(power)
    return float((z_alpha + z_power) * sd / math.sqrt(n))
