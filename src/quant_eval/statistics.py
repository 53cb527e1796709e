"""Scores with uncertainty over items, and paired differences against a reference variant.

Items are the unit of analysis. When an item has several runs, its mean over runs is the
item's observation, so run-to-run repeats never count as extra items (the standard error
of the mean of item means is the cluster-robust standard error with items as clusters).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Mapping, Sequence

import numpy as np
from scipy import stats


# Standard deviations below this are rounding noise of sums of equal values.
ZERO_TOLERANCE = 1e-12


@dataclass(frozen=True)
class ScoreSummary:
    """Mean score over items with its spread and confidence interval."""

    n_items: int
    n_runs: int
    mean: float
    sd: float | None
    se: float | None
    ci_low: float | None
    ci_high: float | None
    interval_method: str
    within_item_variance: float | None
    between_item_variance: float | None


@dataclass(frozen=True)
class PairedDifference:
    """Variant minus reference over the items both answered."""

    reference: str
    n_items: int
    mean_difference: float
    sd_difference: float | None
    se_difference: float | None
    ci_low: float | None
    ci_high: float | None
    cohens_dz: float | None


def wilson_interval(successes: float, n: float, confidence: float) -> tuple[float, float]:
    """Wilson score interval for a proportion; it stays inside [0, 1] even at 0 or n successes.

    Wilson (1927): centre (p + z²/2n) / (1 + z²/n), half-width
    z / (1 + z²/n) * sqrt(p(1-p)/n + z²/4n²).
    """
    z = stats.norm.ppf(0.5 + confidence / 2)
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half_width = z / denominator * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    # The interval always contains p, but at p = 0 or 1 the bound that should equal p
    # can come out one rounding error past it (2.8e-17 for 0 of 7 at 95%), so clamp it to p.
    return max(0.0, min(p, centre - half_width)), min(1.0, max(p, centre + half_width))


def t_interval(mean: float, se: float, n: int, confidence: float) -> tuple[float, float]:
    """Student t interval mean ± t_{n-1} * se."""
    t = stats.t.ppf(0.5 + confidence / 2, df=n - 1)
    return mean - t * se, mean + t * se


def effective_sample_size(mean: float, se: float | None, n_items: int, n_runs: int) -> float:
    """Kish's effective sample size of a clustered proportion: p(1-p) / se².

    se is the standard error over item means, so runs that repeat an item's answer count
    less than new items. The result is kept between n_items (every run of an item alike)
    and n_items x n_runs (runs as independent as new items). With one run, or where p is 0
    or 1 and the ratio is undefined, it is n_items. Where every item has the same mean
    (se 0) and 0 < p < 1, the ratio is unbounded and the upper limit applies.
    """
    if n_runs == 1 or se is None or mean in (0.0, 1.0):
        return float(n_items)
    if se <= ZERO_TOLERANCE:
        return float(n_items * n_runs)
    return min(max(mean * (1 - mean) / (se * se), n_items), n_items * n_runs)


def _is_binary(values: np.ndarray) -> bool:
    return bool(np.all((values == 0) | (values == 1)))


def summarize_scores(item_runs: Sequence[Sequence[float]], confidence: float = 0.95) -> ScoreSummary:
    """Summarize a benchmark's scores, one list of per-run scores per item.

    Every item must have the same number of runs. With 0/1 scores the mean is a proportion
    and the interval is Wilson's, which stays inside [0, 1]; with several runs per item it
    uses the effective sample size. Graded scores get a t interval over item means.
    """
    scores = np.asarray(item_runs, dtype=float)
    if scores.ndim != 2 or scores.shape[0] == 0:
        raise ValueError("item_runs must be a non-empty list of equal-length score lists")
    n_items, n_runs = scores.shape
    item_means = scores.mean(axis=1)
    mean = float(item_means.mean())

    sd = float(item_means.std(ddof=1)) if n_items > 1 else None
    se = sd / math.sqrt(n_items) if sd is not None else None

    within = float(scores.var(axis=1, ddof=1).mean()) if n_runs > 1 else None
    if sd is None:
        between = None
    else:
        # var(item means) = between-item variance + within-item variance / runs
        between = max(0.0, sd * sd - (within or 0.0) / n_runs)

    if _is_binary(scores):
        n_effective = effective_sample_size(mean, se, n_items, n_runs)
        ci_low, ci_high = wilson_interval(mean * n_effective, n_effective, confidence)
        method = "wilson" if n_runs == 1 else "wilson, effective n"
    elif se is not None:
        ci_low, ci_high = t_interval(mean, se, n_items, confidence)
        method = "t over item means"
    else:
        ci_low = ci_high = None
        method = "none (one item)"
    return ScoreSummary(n_items, n_runs, mean, sd, se, ci_low, ci_high, method, within, between)


def paired_difference(
    variant: Mapping[str, Sequence[float]],
    reference: Mapping[str, Sequence[float]],
    reference_name: str,
    confidence: float = 0.95,
) -> PairedDifference | None:
    """Compare item means of a variant with a reference on the items both have.

    d_i = mean over runs of the variant on item i - the same for the reference; the mean
    of d_i gets a t interval with n-1 degrees of freedom, and Cohen's d_z = mean(d) / sd(d).
    Returns None when no item is shared.
    """
    shared = sorted(set(variant) & set(reference))
    if not shared:
        return None
    differences = np.array([np.mean(variant[i]) - np.mean(reference[i]) for i in shared])
    n = len(shared)
    mean = float(differences.mean())
    if n < 2:
        return PairedDifference(reference_name, n, mean, None, None, None, None, None)

    sd = float(differences.std(ddof=1))
    se = sd / math.sqrt(n)
    if sd <= ZERO_TOLERANCE * max(1.0, abs(mean)):
        # Equal differences on every item; rounding can leave sd at 1e-17 instead of 0.
        ci_low = ci_high = mean
        dz = None
    else:
        ci_low, ci_high = t_interval(mean, se, n, confidence)
        dz = mean / sd
    return PairedDifference(reference_name, n, mean, sd, se, ci_low, ci_high, dz)


def analyze(comparison: dict[str, Any], confidence: float = 0.95) -> dict[str, Any]:
    """Build statistical_analysis.json's content from quantization_comparison.json's."""
    reference = comparison["reference"]
    results = []
    for model, variants in comparison["scores"].items():
        for variant_name, benchmarks in variants.items():
            for benchmark, items in benchmarks.items():
                summary = summarize_scores([items[i] for i in sorted(items)], confidence)
                paired = None
                reference_items = variants.get(reference, {}).get(benchmark)
                if variant_name != reference and reference_items:
                    paired = paired_difference(items, reference_items, reference, confidence)
                results.append({
                    "model": model,
                    "variant": variant_name,
                    "benchmark": benchmark,
                    "metric": comparison["benchmarks"][benchmark]["metric"],
                    **asdict(summary),
                    "paired": asdict(paired) if paired else None,
                    "status": "complete",
                    "reason": None,
                })
    results += failed_results(comparison)
    return {"confidence_level": confidence, "reference": reference, "results": results}


def failed_results(comparison: dict[str, Any]) -> list[dict[str, Any]]:
    """Return a result with status "failed", no numbers and the reason for each cell whose runs all failed."""
    reasons: dict[tuple[str, str, str], str] = {}
    for failure in comparison.get("failures", []):
        key = (failure["model"], failure["variant"], failure["benchmark"])
        if not comparison["scores"].get(key[0], {}).get(key[1], {}).get(key[2]):
            reasons.setdefault(key, failure["reason"])
    return [
        {
            "model": model, "variant": variant, "benchmark": benchmark,
            "metric": comparison["benchmarks"][benchmark]["metric"],
            "n_items": 0, "n_runs": 0, "mean": None, "sd": None, "se": None, "ci_low": None, "ci_high": None,
            "interval_method": "none (failed)", "within_item_variance": None, "between_item_variance": None,
            "paired": None, "status": "failed", "reason": reason,
        }
        for (model, variant, benchmark), reason in reasons.items()
    ]
