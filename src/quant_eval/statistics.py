"""Scores with uncertainty over items, and paired differences against a reference variant.

Items are the unit of analysis. When an item has several runs, its mean over runs is the
item's observation, so run-to-run repeats never count as extra items (the standard error
of the mean of item means is the cluster-robust standard error with items as clusters).
The schema of the file that `analyze` builds is described in docs/statistics.md.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Mapping, Sequence

import numpy as np
from scipy import stats

from .errors import InvalidDataError
from .significance import (
    holm_adjust,
    mcnemar_exact,
    minimum_detectable_difference,
    paired_t_test,
    wilcoxon_signed_rank,
)


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


def item_differences(
    variant: Mapping[str, Sequence[float]], reference: Mapping[str, Sequence[float]]
) -> tuple[list[str], np.ndarray]:
    """Return the shared item ids, sorted, and d_i = variant's item mean - reference's."""
    shared = sorted(set(variant) & set(reference))
    differences = np.array([np.mean(variant[i]) - np.mean(reference[i]) for i in shared])
    return shared, differences


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
    shared, differences = item_differences(variant, reference)
    if not shared:
        return None
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


# A binary item counts as correct when more than half of its runs scored 1 (majority vote).
# A tie, possible with an even number of runs, counts as wrong. With one run the run's
# score decides. Flips and McNemar's test use this correctness, but the t-test and
# Wilcoxon's test use item means.
FLIP_RULE = "majority of runs (more than half scored 1)"
# The drop that a benchmark with a configured `limit` should be able to detect: 2
# percentage points of a binary score. Graded scores have no such target.
TARGET_DIFFERENCE = {"binary": 0.02}
PRIMARY_TEST = {"binary": "mcnemar", "graded": "t_test"}
DEFAULT_POWER = 0.8


def alpha_level(confidence: float) -> float:
    """Return the significance level 1 - confidence, without the float noise of 1 - 0.95."""
    return round(1 - confidence, 12)


@dataclass(frozen=True)
class Flips:
    """Items whose majority-vote correctness differs between the reference and the variant."""

    rule: str
    n_items: int
    correct_to_wrong: int  # correct in the reference, wrong in the variant
    wrong_to_correct: int
    correct_to_wrong_rate: float  # share of the n_items shared items, 0..1
    wrong_to_correct_rate: float


def is_correct(runs: Sequence[float]) -> bool:
    """Return the majority-vote correctness of a binary item (see FLIP_RULE)."""
    return float(np.mean(runs)) > 0.5


def count_flips(variant: Mapping[str, Sequence[float]], reference: Mapping[str, Sequence[float]]) -> Flips:
    """Count the shared items that are correct in one of the two variants only."""
    shared = sorted(set(variant) & set(reference))
    to_wrong = sum(1 for i in shared if is_correct(reference[i]) and not is_correct(variant[i]))
    to_correct = sum(1 for i in shared if is_correct(variant[i]) and not is_correct(reference[i]))
    n = len(shared)
    return Flips(FLIP_RULE, n, to_wrong, to_correct, to_wrong / n if n else 0.0, to_correct / n if n else 0.0)


def _detectable_difference(
    differences: np.ndarray,
    reference: Mapping[str, Sequence[float]],
    shared: list[str],
    score_kind: str,
    alpha: float,
    power: float,
) -> dict[str, Any]:
    """Return the minimum detectable difference, with the spread it assumes and where that came from.

    The spread is the sd of the paired differences. When that is 0 (the variant matched
    the reference on every item), it gives no estimate for other samples, so the sd of a
    difference of two independent variants with the reference's spread, sqrt(2) times the
    sd of the reference's item means, takes its place. That over-states the spread of
    correlated pairs, so the MDD is an upper bound. If the reference has no spread either,
    binary scores use sqrt(2 * 0.5 * 0.5), the largest spread of a 0/1 difference.
    """
    n = len(differences)
    sd = float(differences.std(ddof=1)) if n > 1 else 0.0
    reference_means = np.array([np.mean(reference[i]) for i in shared])
    reference_sd = float(reference_means.std(ddof=1)) if n > 1 else 0.0
    if n < 2:
        used, source = None, "none (fewer than 2 items)"
    elif sd > ZERO_TOLERANCE:
        used, source = sd, "paired differences"
    elif reference_sd > ZERO_TOLERANCE:
        used, source = math.sqrt(2) * reference_sd, "reference item means (sqrt(2) x sd)"
    elif score_kind == "binary":
        used, source = math.sqrt(0.5), "binary maximum (sqrt(2 x 0.25))"
    else:
        used, source = None, "none (no spread in the differences or the reference)"

    value = None if used is None else minimum_detectable_difference(used, n, alpha, power)
    target = TARGET_DIFFERENCE.get(score_kind)
    detects = None if value is None or target is None else value <= target
    return {"value": value, "sd": used, "sd_source": source, "power": power, "alpha": alpha,
            "target_difference": target, "detects_target": detects}


def paired_comparison(
    variant: Mapping[str, Sequence[float]],
    reference: Mapping[str, Sequence[float]],
    reference_name: str,
    score_kind: str,
    confidence: float = 0.95,
    power: float = DEFAULT_POWER,
) -> dict[str, Any] | None:
    """Compare a variant with a reference on the items both have: interval, tests, flips, MDD.

    The primary test is McNemar's exact test on majority-vote correctness for binary scores
    and the paired t-test on item means for graded ones, and `p_value` is its p-value. The
    t-test and Wilcoxon's test are reported for both kinds. `p_value_holm` is filled in
    by `analyze`, which knows the family. Returns None when no item is shared.
    """
    if score_kind not in PRIMARY_TEST:
        raise ValueError(f"score_kind must be one of {sorted(PRIMARY_TEST)}, got {score_kind!r}")
    difference = paired_difference(variant, reference, reference_name, confidence)
    if difference is None:
        return None
    shared, differences = item_differences(variant, reference)

    t_test = paired_t_test(differences)
    wilcoxon = wilcoxon_signed_rank(differences)
    flips = mcnemar = None
    if score_kind == "binary":
        flips = count_flips(variant, reference)
        mcnemar = mcnemar_exact(flips.correct_to_wrong, flips.wrong_to_correct)
    primary = PRIMARY_TEST[score_kind]
    p_value = mcnemar.p_value if mcnemar is not None else t_test.p_value

    return {
        **asdict(difference),
        "primary_test": primary,
        "p_value": p_value,
        "p_value_holm": None,
        "mcnemar": asdict(mcnemar) if mcnemar else None,
        "t_test": asdict(t_test),
        "wilcoxon": asdict(wilcoxon),
        "flips": asdict(flips) if flips else None,
        "minimum_detectable_difference": _detectable_difference(
            differences, reference, shared, score_kind, alpha_level(confidence), power),
    }


def _check_scores(model: str, variant: str, benchmark: str, items: Mapping[str, Sequence[float]],
                  score_kind: str) -> None:
    if score_kind not in PRIMARY_TEST:
        raise InvalidDataError(
            f"benchmark {benchmark!r} has score_kind {score_kind!r} in the comparison file; "
            f"expected one of {sorted(PRIMARY_TEST)}; rerun the compare stage"
        )
    if score_kind == "binary":
        for item_id, runs in items.items():
            if any(score not in (0, 1) for score in runs):
                raise InvalidDataError(
                    f"{model}/{variant}/{benchmark} item {item_id!r} has scores {list(runs)}, but the "
                    "benchmark's score_kind is binary (0 or 1); fix the benchmark's score_kind or its scoring"
                )


def _group_subsets(items: Mapping[str, Sequence[float]], item_groups: Mapping[str, Mapping[str, str]]):
    """Yield (group_by, group, items): the whole benchmark first, then each group value in sorted order."""
    yield None, None, items
    for group_by, membership in item_groups.items():
        for group in sorted(set(membership.values())):
            subset = {i: runs for i, runs in items.items() if membership.get(i) == group}
            if subset:
                yield group_by, group, subset


def _apply_holm(entries: list[dict[str, Any]], family_key) -> None:
    """Fill `paired.p_value_holm` of each entry, one Holm family per value of family_key(entry)."""
    families: dict[Any, list[dict[str, Any]]] = {}
    for entry in entries:
        if entry["paired"] is not None:
            families.setdefault(family_key(entry), []).append(entry["paired"])
    for members in families.values():
        adjusted = holm_adjust([paired["p_value"] for paired in members])
        for paired, value in zip(members, adjusted):
            paired["p_value_holm"] = value


def _with_interval(estimate: Mapping[str, Any], key: str, z: float, low: float | None = None,
                   high: float | None = None) -> dict[str, Any]:
    """Return the estimate with ci_low, ci_high = value -/+ z * uncertainty, clipped to [low, high]."""
    value, uncertainty = estimate[key], estimate["uncertainty"]
    ci_low, ci_high = value - z * uncertainty, value + z * uncertainty
    if low is not None:
        ci_low = max(low, ci_low)
    if high is not None:
        ci_high = min(high, ci_high)
    return {**estimate, "ci_low": ci_low, "ci_high": ci_high}


FIDELITY_FIELDS = {
    # field: (key of the point estimate, lowest possible value, highest possible value)
    "perplexity": ("value", 1.0, None),
    "ln_ppl_ratio": ("value", None, None),
    "kl_divergence": ("mean", 0.0, None),
    "same_top_p": ("value", 0.0, 1.0),
}


def fidelity_entries(fidelity: Mapping[str, Mapping[str, Mapping[str, Any]]], confidence: float) -> list[dict]:
    """Return the fidelity records with normal-approximation intervals: estimate -/+ z * uncertainty.

    llama-perplexity's uncertainty is one standard error over the evaluated chunks or
    tokens, so the interval is estimate -/+ z_{(1+level)/2} * uncertainty, clipped to the
    range the quantity can take (perplexity >= 1, KL divergence >= 0, same_top_p in [0, 1]).
    """
    z = float(stats.norm.ppf(0.5 + confidence / 2))
    entries = []
    for model, variants in fidelity.items():
        for variant, record in variants.items():
            entry = {"model": model, "variant": variant}
            entry.update({key: record.get(key) for key in ("text", "context", "n_chunks", "n_tokens")})
            for field, (key, low, high) in FIDELITY_FIELDS.items():
                estimate = record.get(field)
                if estimate is not None and (key not in estimate or "uncertainty" not in estimate):
                    raise InvalidDataError(
                        f"fidelity record of {model}/{variant}: field {field!r} needs {key!r} and "
                        f"'uncertainty', got {sorted(estimate)}; rerun the fidelity stage"
                    )
                entry[field] = None if estimate is None else _with_interval(estimate, key, z, low, high)
            entries.append(entry)
    return entries


def kl_divergence_change(fidelity: Mapping[str, Mapping[str, Mapping[str, Any]]], model: str,
                         with_imatrix: str, without_imatrix: str, confidence: float) -> dict | None:
    """Return the mean KL divergence with the imatrix minus without it, with a combined uncertainty.

    uncertainty = sqrt(u_with^2 + u_without^2), which treats the two means as independent.
    Both are measured on the same tokens and are positively correlated, so this over-states
    the uncertainty and the interval is conservative. None when either KL divergence is missing.
    """
    records = fidelity.get(model, {})
    with_kl = (records.get(with_imatrix) or {}).get("kl_divergence")
    without_kl = (records.get(without_imatrix) or {}).get("kl_divergence")
    if not with_kl or not without_kl:
        return None
    z = float(stats.norm.ppf(0.5 + confidence / 2))
    value = with_kl["mean"] - without_kl["mean"]
    uncertainty = math.hypot(with_kl["uncertainty"], without_kl["uncertainty"])
    return {"value": value, "uncertainty": uncertainty, "ci_low": value - z * uncertainty,
            "ci_high": value + z * uncertainty}


def _score_results(comparison: dict[str, Any], confidence: float, power: float) -> list[dict[str, Any]]:
    reference = comparison["reference"]
    results = []
    for model, variants in comparison["scores"].items():
        for variant_name, benchmarks in variants.items():
            for benchmark, items in benchmarks.items():
                info = comparison["benchmarks"][benchmark]
                kind = info.get("score_kind", "binary")
                _check_scores(model, variant_name, benchmark, items, kind)
                reference_items = variants.get(reference, {}).get(benchmark)
                for group_by, group, subset in _group_subsets(items, info.get("item_groups") or {}):
                    summary = summarize_scores([subset[i] for i in sorted(subset)], confidence)
                    paired = None
                    if variant_name != reference and reference_items:
                        paired = paired_comparison(subset, reference_items, reference, kind, confidence, power)
                    results.append({
                        "model": model,
                        "variant": variant_name,
                        "benchmark": benchmark,
                        "metric": info["metric"],
                        "score_kind": kind,
                        "group_by": group_by,
                        "group": group,
                        **asdict(summary),
                        "paired": paired,
                        "status": "complete",
                        "reason": None,
                    })
    return results


def _imatrix_results(comparison: dict[str, Any], pairs: Sequence[tuple[str, str]], confidence: float,
                     power: float) -> list[dict[str, Any]]:
    """Compare each (with, without imatrix) pair per benchmark; `paired` is None where a side has no scores."""
    types = {(v["model"], v["variant"]): v["quantization_type"] for v in comparison.get("variants", [])}
    fidelity = comparison.get("fidelity") or {}
    # A variant whose evaluations all failed has no scores but is still in the variant list.
    known = set(types) | {(model, variant) for model, variants in comparison["scores"].items() for variant in variants}
    results = []
    for model in dict.fromkeys(model for model, _ in known):
        variants = comparison["scores"].get(model, {})
        for with_imatrix, without_imatrix in pairs:
            if (model, with_imatrix) not in known or (model, without_imatrix) not in known:
                continue
            kl_change = kl_divergence_change(fidelity, model, with_imatrix, without_imatrix, confidence)
            for benchmark, info in comparison["benchmarks"].items():
                items = variants.get(with_imatrix, {}).get(benchmark)
                without_items = variants.get(without_imatrix, {}).get(benchmark)
                kind = info.get("score_kind", "binary")
                paired = None
                if items and without_items:
                    paired = paired_comparison(items, without_items, without_imatrix, kind, confidence, power)
                results.append({
                    "model": model,
                    "quantization_type": types.get((model, with_imatrix)),
                    "with_imatrix": with_imatrix,
                    "without_imatrix": without_imatrix,
                    "benchmark": benchmark,
                    "metric": info["metric"],
                    "score_kind": kind,
                    "paired": paired,
                    "kl_divergence_change": kl_change,
                })
    return results


def analyze(
    comparison: dict[str, Any],
    confidence: float = 0.95,
    power: float = DEFAULT_POWER,
    imatrix_pairs: Sequence[tuple[str, str]] = (),
) -> dict[str, Any]:
    """Build statistical_analysis.json's content from quantization_comparison.json's.

    `imatrix_pairs` lists (with imatrix, without imatrix) variant names, as returned by
    quant_eval.config.imatrix_pairs. Holm families: all whole-benchmark comparisons with
    the reference; the group entries of one model, benchmark and grouping; all imatrix pairs.
    """
    results = _score_results(comparison, confidence, power)
    whole = [r for r in results if r["group_by"] is None]
    _apply_holm(whole, lambda r: "whole")
    _apply_holm([r for r in results if r["group_by"] is not None],
                lambda r: (r["model"], r["benchmark"], r["group_by"]))

    imatrix_effect = _imatrix_results(comparison, imatrix_pairs, confidence, power)
    _apply_holm(imatrix_effect, lambda r: "imatrix")

    results += failed_results(comparison)

    return {
        "confidence_level": confidence,
        "reference": comparison["reference"],
        "power": {"power": power, "alpha": alpha_level(confidence), "target_difference": TARGET_DIFFERENCE},
        "results": results,
        "imatrix_effect": imatrix_effect,
        "fidelity": fidelity_entries(comparison.get("fidelity") or {}, confidence),
    }


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
            "score_kind": comparison["benchmarks"][benchmark].get("score_kind", "binary"),
            "group_by": None, "group": None,
            "n_items": 0, "n_runs": 0, "mean": None, "sd": None, "se": None, "ci_low": None, "ci_high": None,
            "interval_method": "none (failed)", "within_item_variance": None, "between_item_variance": None,
            "paired": None, "status": "failed", "reason": reason,
        }
        for (model, variant, benchmark), reason in reasons.items()
    ]
