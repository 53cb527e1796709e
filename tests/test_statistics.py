"""Intervals, clustered standard errors, paired tests and flips in quant_eval.statistics.

Reference values come from statsmodels (Wilson intervals, McNemar, Holm, power, clustered
standard errors) and scipy (t intervals, paired t-tests, Wilcoxon), or are worked out by
hand from small tables and written as literals, so a wrong formula, ddof or quantile makes
a test fail.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
import statsmodels.api as sm
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.proportion import proportion_confint

from quant_eval.config import imatrix_pairs
from quant_eval.errors import InvalidDataError
from quant_eval.files import write_json
from quant_eval.significance import (
    WILCOXON_EXACT_MAX_N,
    holm_adjust,
    mcnemar_exact,
    minimum_detectable_difference,
    paired_t_test,
    wilcoxon_signed_rank,
)
from quant_eval.statistics import (
    FLIP_RULE,
    analyze,
    count_flips,
    effective_sample_size,
    fidelity_entries,
    paired_comparison,
    paired_difference,
    summarize_scores,
    t_interval,
    wilson_interval,
)

# Student t quantile t_{0.975, 3} from standard tables, used by the 4-item worked examples.
T_975_DF3 = 3.1824463

# 4 items x 2 runs of graded scores. Item means 0.3, 0.6, 0.9, 0.2 with mean 0.5, so the
# deviations are -0.2, 0.1, 0.4, -0.3 and var(item means) = 0.30 / 3 = 0.1.
# Per-item run variances (ddof=1) are 0.02, 0.02, 0.02, 0.08, with mean 0.035.
GRADED_TWO_RUNS = [[0.2, 0.4], [0.5, 0.7], [0.8, 1.0], [0.0, 0.4]]


def wilson_reference(successes: float, n: float, confidence: float) -> tuple[float, float]:
    return proportion_confint(successes, n, alpha=1 - confidence, method="wilson")


def scipy_t_interval(observations: np.ndarray, confidence: float) -> tuple[float, float]:
    sem = stats.sem(observations)
    return stats.t.interval(confidence, len(observations) - 1, loc=observations.mean(), scale=sem)


@pytest.mark.parametrize(
    ("successes", "n", "confidence"),
    [
        (0, 1, 0.95),
        (1, 1, 0.95),
        (0, 7, 0.95),
        (7, 7, 0.95),
        (3, 10, 0.95),
        (42, 100, 0.95),
        (1, 20, 0.90),
        (19, 20, 0.99),
        (500, 1000, 0.80),
    ],
)
def test_wilson_matches_statsmodels(successes, n, confidence):
    low, high = wilson_interval(successes, n, confidence)
    expected_low, expected_high = wilson_reference(successes, n, confidence)

    assert low == pytest.approx(expected_low, abs=1e-12)
    assert high == pytest.approx(expected_high, abs=1e-12)
    assert 0.0 <= low
    assert high <= 1.0


def test_wilson_zero_successes_starts_at_zero():
    # At 0 successes the lower bound is 0 exactly. Computed as centre - half_width it can
    # come out one rounding error above 0, which would exclude the observed proportion.
    for n in range(1, 200):
        low, _ = wilson_interval(0, n, 0.95)
        assert low == 0.0, f"n={n}"


def test_wilson_all_successes_ends_at_one():
    for n in range(1, 200):
        _, high = wilson_interval(n, n, 0.95)
        assert high == 1.0, f"n={n}"


def test_t_interval_matches_scipy():
    low, high = t_interval(0.5, 0.2, 6, 0.90)
    expected_low, expected_high = stats.t.interval(0.90, 5, loc=0.5, scale=0.2)

    assert low == pytest.approx(expected_low, rel=1e-12)
    assert high == pytest.approx(expected_high, rel=1e-12)


def test_graded_one_run_matches_scipy():
    scores = [0.12, 0.55, 0.9, 0.31, 0.47, 0.05, 0.76]
    summary = summarize_scores([[score] for score in scores], confidence=0.95)
    observations = np.array(scores)
    expected_interval = stats.ttest_1samp(observations, 0.0).confidence_interval(0.95)

    assert summary.n_items == 7
    assert summary.n_runs == 1
    assert summary.interval_method == "t over item means"
    assert summary.mean == pytest.approx(observations.mean(), rel=1e-12)
    assert summary.sd == pytest.approx(np.std(observations, ddof=1), rel=1e-12)
    assert summary.se == pytest.approx(stats.sem(observations), rel=1e-12)
    assert summary.ci_low == pytest.approx(expected_interval.low, rel=1e-12)
    assert summary.ci_high == pytest.approx(expected_interval.high, rel=1e-12)
    assert summary.within_item_variance is None
    assert summary.between_item_variance == pytest.approx(np.var(observations, ddof=1), rel=1e-12)


def test_graded_runs_use_item_means():
    scores = [[0.1, 0.3, 0.2], [0.9, 0.7, 0.8], [0.5, 0.5, 0.4], [0.0, 0.2, 0.1], [0.6, 0.9, 0.6]]
    summary = summarize_scores(scores, confidence=0.90)
    item_means = np.mean(scores, axis=1)
    expected_low, expected_high = scipy_t_interval(item_means, 0.90)

    assert summary.n_items == 5
    assert summary.n_runs == 3
    assert summary.interval_method == "t over item means"
    assert summary.mean == pytest.approx(item_means.mean(), rel=1e-12)
    assert summary.sd == pytest.approx(np.std(item_means, ddof=1), rel=1e-12)
    assert summary.se == pytest.approx(stats.sem(item_means), rel=1e-12)
    assert summary.ci_low == pytest.approx(expected_low, rel=1e-12)
    assert summary.ci_high == pytest.approx(expected_high, rel=1e-12)


def test_clustered_worked_example():
    summary = summarize_scores(GRADED_TWO_RUNS, confidence=0.95)

    assert summary.n_items == 4
    assert summary.n_runs == 2
    assert summary.mean == pytest.approx(0.5, rel=1e-12)
    assert summary.sd == pytest.approx(math.sqrt(0.1), rel=1e-12)
    # sd of item means / sqrt(n_items) = sqrt(0.1) / 2 = sqrt(0.025)
    assert summary.se == pytest.approx(math.sqrt(0.025), rel=1e-12)
    assert summary.within_item_variance == pytest.approx(0.035, rel=1e-12)
    # var(item means) - within / n_runs = 0.1 - 0.035 / 2
    assert summary.between_item_variance == pytest.approx(0.0825, rel=1e-12)
    # 0.5 -/+ 3.1824463 * 0.1581139 = 0.5 -/+ 0.5031889
    assert summary.ci_low == pytest.approx(-0.0031889, abs=1e-6)
    assert summary.ci_high == pytest.approx(1.0031889, abs=1e-6)


def test_clustered_se_ignores_run_count():
    # Repeating every run a second time leaves the item means, and so the se, unchanged.
    doubled = [runs + runs for runs in GRADED_TWO_RUNS]
    summary = summarize_scores(doubled)

    assert summary.n_runs == 4
    assert summary.se == pytest.approx(math.sqrt(0.025), rel=1e-12)


def test_between_variance_clamped_at_zero():
    # Item means 0.3 and 0.3 have variance 0, less than within / n_runs = 0.18 / 2.
    summary = summarize_scores([[0.0, 0.6], [0.6, 0.0]])

    assert summary.within_item_variance == pytest.approx(0.18, rel=1e-12)
    assert summary.between_item_variance == 0.0
    assert summary.ci_low == pytest.approx(0.3, rel=1e-12)
    assert summary.ci_high == pytest.approx(0.3, rel=1e-12)


def test_graded_one_item_has_no_interval():
    summary = summarize_scores([[0.4, 0.6]])

    assert summary.mean == pytest.approx(0.5)
    assert summary.sd is None
    assert summary.se is None
    assert summary.ci_low is None
    assert summary.ci_high is None
    assert summary.interval_method == "none (one item)"
    assert summary.between_item_variance is None
    assert summary.within_item_variance == pytest.approx(0.02, rel=1e-12)


def test_binary_one_run_uses_wilson():
    scores = [[1.0]] * 3 + [[0.0]] * 7
    summary = summarize_scores(scores, confidence=0.95)
    expected_low, expected_high = wilson_reference(3, 10, 0.95)

    assert summary.interval_method == "wilson"
    assert summary.mean == pytest.approx(0.3, rel=1e-12)
    assert summary.ci_low == pytest.approx(expected_low, abs=1e-12)
    assert summary.ci_high == pytest.approx(expected_high, abs=1e-12)


def test_binary_runs_use_effective_n():
    # Item means 1, 0.5, 0, 0.5: p = 0.5, var(item means) = 0.5 / 3, se² = 1/24, so
    # Kish's effective n = 0.25 / (1/24) = 6, between 4 items and 8 item-runs.
    scores = [[1.0, 1.0], [1.0, 0.0], [0.0, 0.0], [0.0, 1.0]]
    summary = summarize_scores(scores, confidence=0.95)
    expected_low, expected_high = wilson_reference(3, 6, 0.95)

    assert summary.interval_method == "wilson, effective n"
    assert summary.mean == pytest.approx(0.5, rel=1e-12)
    assert summary.se == pytest.approx(math.sqrt(1 / 24), rel=1e-12)
    assert effective_sample_size(summary.mean, summary.se, 4, 2) == pytest.approx(6.0, rel=1e-12)
    assert summary.ci_low == pytest.approx(expected_low, abs=1e-12)
    assert summary.ci_high == pytest.approx(expected_high, abs=1e-12)
    # Per-item run variances 0, 0.5, 0, 0.5, and between = 1/6 - 0.25 / 2.
    assert summary.within_item_variance == pytest.approx(0.25, rel=1e-12)
    assert summary.between_item_variance == pytest.approx(1 / 24, rel=1e-12)


def test_binary_runs_non_integer_effective_n():
    # Item means 2/3, 0, 1/3, 0: p = 0.25, se² = (11/108) / 4 = 11/432, so the effective
    # n is 0.1875 * 432 / 11 = 81/11 (about 7.36) and successes are 81/44.
    scores = [[1.0, 1.0, 0.0], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]
    summary = summarize_scores(scores, confidence=0.95)
    expected_low, expected_high = wilson_reference(81 / 44, 81 / 11, 0.95)

    assert effective_sample_size(0.25, math.sqrt(11 / 432), 4, 3) == pytest.approx(81 / 11, rel=1e-12)
    assert summary.ci_low == pytest.approx(expected_low, abs=1e-12)
    assert summary.ci_high == pytest.approx(expected_high, abs=1e-12)


def test_effective_n_clamped_to_items():
    # Runs agree within every item: p = 0.5, se² = (1/3) / 4, so p(1-p)/se² = 3 < 4 items.
    scores = [[1.0, 1.0], [0.0, 0.0], [1.0, 1.0], [0.0, 0.0]]
    summary = summarize_scores(scores)
    expected_low, expected_high = wilson_reference(2, 4, 0.95)

    assert effective_sample_size(0.5, math.sqrt(1 / 12), 4, 2) == 4.0
    assert summary.ci_low == pytest.approx(expected_low, abs=1e-12)
    assert summary.ci_high == pytest.approx(expected_high, abs=1e-12)


def test_effective_n_clamped_to_item_runs():
    # Item means 0.5, 0.5, 0.5, 1: p = 0.625, se² = 0.0625 / 4, so p(1-p)/se² = 15 > 8.
    scores = [[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]]
    summary = summarize_scores(scores)
    expected_low, expected_high = wilson_reference(0.625 * 8, 8, 0.95)

    assert effective_sample_size(0.625, 0.125, 4, 2) == 8.0
    assert summary.ci_low == pytest.approx(expected_low, abs=1e-12)
    assert summary.ci_high == pytest.approx(expected_high, abs=1e-12)


@pytest.mark.parametrize(
    ("mean", "se", "n_runs"),
    [
        (0.0, 0.1, 3),
        (1.0, 0.1, 3),
        (0.5, None, 3),
        (0.4, 0.01, 1),
    ],
)
def test_effective_n_falls_back_to_items(mean, se, n_runs):
    assert effective_sample_size(mean, se, 5, n_runs) == 5.0


def test_binary_all_zero_runs():
    summary = summarize_scores([[0.0, 0.0, 0.0]] * 6)
    expected_low, expected_high = wilson_reference(0, 6, 0.95)

    assert summary.mean == 0.0
    assert summary.se == 0.0
    assert summary.ci_low == 0.0
    assert summary.ci_high == pytest.approx(expected_high, abs=1e-12)


@pytest.mark.parametrize("item_runs", [[], [[0.1, 0.2], [0.3]], [0.1, 0.2]])
def test_summarize_rejects_bad_shape(item_runs):
    with pytest.raises(ValueError):
        summarize_scores(item_runs)


def test_paired_matches_ttest_rel():
    variant = {"a": [0.5, 0.7], "b": [0.8, 0.8], "c": [0.3, 0.1], "d": [0.9, 1.0], "only-variant": [1.0, 1.0]}
    reference = {"a": [0.4, 0.4], "b": [0.4, 0.3], "c": [0.5, 0.6], "d": [0.5, 0.2], "only-reference": [0.0, 0.0]}
    result = paired_difference(variant, reference, "base", confidence=0.90)

    shared = ["a", "b", "c", "d"]
    variant_means = np.array([np.mean(variant[i]) for i in shared])
    reference_means = np.array([np.mean(reference[i]) for i in shared])
    differences = variant_means - reference_means
    ttest = stats.ttest_rel(variant_means, reference_means)
    expected_interval = ttest.confidence_interval(0.90)

    assert result.reference == "base"
    assert result.n_items == 4
    assert result.mean_difference == pytest.approx(differences.mean(), rel=1e-12)
    assert result.sd_difference == pytest.approx(np.std(differences, ddof=1), rel=1e-12)
    assert result.se_difference == pytest.approx(stats.sem(differences), rel=1e-12)
    assert result.ci_low == pytest.approx(expected_interval.low, rel=1e-12)
    assert result.ci_high == pytest.approx(expected_interval.high, rel=1e-12)
    assert result.cohens_dz == pytest.approx(differences.mean() / np.std(differences, ddof=1), rel=1e-12)


def test_paired_worked_example():
    # Differences of item means -1/3, 0, -1/3, -1/3: mean -0.25, sd 1/6, se 1/12.
    variant = {"i1": [1, 1, 0], "i2": [0, 0, 0], "i3": [1, 0, 0], "i4": [0, 0, 0]}
    reference = {"i1": [1, 1, 1], "i2": [0, 0, 0], "i3": [1, 0, 1], "i4": [0, 1, 0]}
    result = paired_difference(variant, reference, "base")

    assert result.mean_difference == pytest.approx(-0.25, rel=1e-12)
    assert result.sd_difference == pytest.approx(1 / 6, rel=1e-12)
    assert result.se_difference == pytest.approx(1 / 12, rel=1e-12)
    assert result.cohens_dz == pytest.approx(-1.5, rel=1e-12)
    # -0.25 -/+ 3.1824463 / 12
    assert result.ci_low == pytest.approx(-0.5152039, abs=1e-6)
    assert result.ci_high == pytest.approx(0.0152039, abs=1e-6)


def test_paired_no_shared_items():
    assert paired_difference({"a": [1.0]}, {"b": [1.0]}, "base") is None


def test_paired_one_shared_item():
    result = paired_difference({"a": [1.0], "x": [0.0]}, {"a": [0.0], "y": [1.0]}, "base")

    assert result.n_items == 1
    assert result.mean_difference == 1.0
    assert result.sd_difference is None
    assert result.se_difference is None
    assert result.ci_low is None
    assert result.ci_high is None
    assert result.cohens_dz is None


def test_paired_constant_difference():
    variant = {"a": [1.0], "b": [1.0], "c": [0.5]}
    reference = {"a": [0.5], "b": [0.5], "c": [0.0]}
    result = paired_difference(variant, reference, "base")

    assert result.sd_difference == 0.0
    assert result.ci_low == 0.5
    assert result.ci_high == 0.5
    assert result.cohens_dz is None


def item_tables(min_items: int = 2, binary: bool = False):
    """Draw an item id -> per-run scores mapping with the same run count for every item."""
    score = st.sampled_from([0.0, 1.0]) if binary else st.floats(0.0, 1.0, allow_nan=False)

    def table(n_runs: int):
        return st.dictionaries(
            st.text("abcdefgh", min_size=1, max_size=3),
            st.lists(score, min_size=n_runs, max_size=n_runs),
            min_size=min_items,
            max_size=12,
        )

    return st.integers(1, 4).flatmap(table)


@st.composite
def paired_tables(draw):
    """Draw a variant and a reference over the same item ids."""
    variant = draw(item_tables())
    n_runs = len(next(iter(variant.values())))
    reference_runs = st.lists(st.floats(0.0, 1.0, allow_nan=False), min_size=n_runs, max_size=n_runs)
    reference = {item: draw(reference_runs) for item in variant}
    return variant, reference


@given(item_tables())
def test_paired_identical_is_zero(table):
    result = paired_difference(table, table, "base")

    assert result.mean_difference == 0.0
    assert result.ci_low == 0.0
    assert result.ci_high == 0.0
    assert result.cohens_dz is None


@given(paired_tables())
def test_paired_swap_flips_sign(tables):
    variant, reference = tables
    forward = paired_difference(variant, reference, "base")
    backward = paired_difference(reference, variant, "base")

    assert backward.mean_difference == pytest.approx(-forward.mean_difference, abs=1e-12)
    assert backward.ci_low == pytest.approx(-forward.ci_high, abs=1e-12)
    assert backward.ci_high == pytest.approx(-forward.ci_low, abs=1e-12)
    if forward.cohens_dz is None:
        assert backward.cohens_dz is None
    else:
        assert backward.cohens_dz == pytest.approx(-forward.cohens_dz, rel=1e-9)


@given(paired_tables())
def test_paired_interval_contains_mean(tables):
    variant, reference = tables
    result = paired_difference(variant, reference, "base")

    assert result.ci_low <= result.mean_difference
    assert result.mean_difference <= result.ci_high


@given(
    st.floats(0.0, 1.0, allow_nan=False),
    st.floats(1.0, 1e4, allow_nan=False),
    st.floats(1.1, 100.0, allow_nan=False),
    st.sampled_from([0.8, 0.9, 0.95, 0.99]),
)
def test_wilson_narrows_with_n(proportion, n, growth, confidence):
    small_low, small_high = wilson_interval(proportion * n, n, confidence)
    large_n = n * growth
    large_low, large_high = wilson_interval(proportion * large_n, large_n, confidence)

    assert large_high - large_low < small_high - small_low


@given(st.integers(1, 5000), st.data(), st.sampled_from([0.8, 0.9, 0.95, 0.99]))
def test_wilson_contains_proportion(n, data, confidence):
    successes = data.draw(st.integers(0, n))
    low, high = wilson_interval(successes, n, confidence)

    assert 0.0 <= low
    assert low <= successes / n
    assert successes / n <= high
    assert high <= 1.0


@given(item_tables(min_items=1, binary=True))
def test_binary_interval_in_unit_range(table):
    summary = summarize_scores(list(table.values()))

    assert 0.0 <= summary.ci_low
    assert summary.ci_low <= summary.mean
    assert summary.mean <= summary.ci_high
    assert summary.ci_high <= 1.0


@given(item_tables())
def test_graded_interval_contains_mean(table):
    summary = summarize_scores(list(table.values()))

    assert summary.ci_low <= summary.mean
    assert summary.mean <= summary.ci_high


def make_comparison():
    # gsm8k has 4 items x 3 runs and arc_challenge 5 items x 1 run. q4_k_m lacks arc item
    # e5, so its paired arc difference uses 4 items.
    return {
        "reference": "base",
        "benchmarks": {
            "gsm8k": {"metric": "exact_match", "n_items": 4, "runs": 3, "score_kind": "binary"},
            "arc_challenge": {"metric": "acc_norm", "n_items": 5, "runs": 1, "score_kind": "binary"},
        },
        "scores": {
            "tiny-llama": {
                "base": {
                    "gsm8k": {"i1": [1, 1, 1], "i2": [0, 0, 0], "i3": [1, 0, 1], "i4": [0, 1, 0]},
                    "arc_challenge": {"e1": [1], "e2": [0], "e3": [1], "e4": [1], "e5": [0]},
                },
                "q4_k_m": {
                    "gsm8k": {"i1": [1, 1, 0], "i2": [0, 0, 0], "i3": [1, 0, 0], "i4": [0, 0, 0]},
                    "arc_challenge": {"e1": [1], "e2": [1], "e3": [0], "e4": [1]},
                },
            },
        },
    }


def find_result(analysis, variant, benchmark):
    matches = [r for r in analysis["results"] if r["variant"] == variant and r["benchmark"] == benchmark]
    assert len(matches) == 1, f"{variant} x {benchmark}: {len(matches)} results"
    return matches[0]


def test_analyze_one_result_per_cell():
    analysis = analyze(make_comparison())
    cells = {(r["model"], r["variant"], r["benchmark"]) for r in analysis["results"]}

    assert analysis["confidence_level"] == 0.95
    assert analysis["reference"] == "base"
    assert len(analysis["results"]) == 4
    assert cells == {
        ("tiny-llama", "base", "gsm8k"),
        ("tiny-llama", "base", "arc_challenge"),
        ("tiny-llama", "q4_k_m", "gsm8k"),
        ("tiny-llama", "q4_k_m", "arc_challenge"),
    }


def test_analyze_reference_unpaired():
    analysis = analyze(make_comparison())

    assert find_result(analysis, "base", "gsm8k")["paired"] is None
    assert find_result(analysis, "base", "arc_challenge")["paired"] is None
    assert find_result(analysis, "q4_k_m", "arc_challenge")["paired"]["n_items"] == 4


def test_analyze_cell_by_hand():
    # q4_k_m on gsm8k: item means 2/3, 0, 1/3, 0, so mean 0.25 and var(item means) =
    # (25 + 9 + 1 + 9) / 144 / 3 = 11/108. Run variances 1/3, 0, 1/3, 0 average to 1/6,
    # so between = 11/108 - (1/6) / 3 = 5/108. Effective n = 0.1875 / (11/432) = 81/11.
    cell = find_result(analyze(make_comparison()), "q4_k_m", "gsm8k")
    expected_low, expected_high = wilson_reference(81 / 44, 81 / 11, 0.95)

    assert cell["metric"] == "exact_match"
    assert cell["n_items"] == 4
    assert cell["n_runs"] == 3
    assert cell["mean"] == pytest.approx(0.25, rel=1e-12)
    assert cell["sd"] == pytest.approx(math.sqrt(11 / 108), rel=1e-12)
    assert cell["se"] == pytest.approx(math.sqrt(11 / 432), rel=1e-12)
    assert cell["interval_method"] == "wilson, effective n"
    assert cell["ci_low"] == pytest.approx(expected_low, abs=1e-12)
    assert cell["ci_high"] == pytest.approx(expected_high, abs=1e-12)
    assert cell["within_item_variance"] == pytest.approx(1 / 6, rel=1e-12)
    assert cell["between_item_variance"] == pytest.approx(5 / 108, rel=1e-12)


def test_analyze_paired_by_hand():
    # Differences from base: -1/3, 0, -1/3, -1/3, the worked example of paired_difference.
    paired = find_result(analyze(make_comparison()), "q4_k_m", "gsm8k")["paired"]

    assert paired["reference"] == "base"
    assert paired["n_items"] == 4
    assert paired["mean_difference"] == pytest.approx(-0.25, rel=1e-12)
    assert paired["sd_difference"] == pytest.approx(1 / 6, rel=1e-12)
    assert paired["se_difference"] == pytest.approx(1 / 12, rel=1e-12)
    assert paired["ci_low"] == pytest.approx(-0.25 - T_975_DF3 / 12, abs=1e-6)
    assert paired["ci_high"] == pytest.approx(-0.25 + T_975_DF3 / 12, abs=1e-6)
    assert paired["cohens_dz"] == pytest.approx(-1.5, rel=1e-12)


def test_analyze_reference_lacks_benchmark():
    comparison = make_comparison()
    del comparison["scores"]["tiny-llama"]["base"]["arc_challenge"]
    analysis = analyze(comparison)

    assert find_result(analysis, "q4_k_m", "arc_challenge")["paired"] is None


def test_analyze_output_is_json(tmp_path):
    analysis = analyze(make_comparison(), confidence=0.9)
    output = tmp_path / "statistical_analysis.json"
    write_json(analysis, output)

    assert json.loads(output.read_text(encoding="utf-8")) == analysis
    assert sorted(path.name for path in tmp_path.iterdir()) == ["statistical_analysis.json"]


def test_effective_n_zero_se_uses_all_runs():
    """Equal item means between 0 and 1: runs vary within items only, like new items."""
    assert effective_sample_size(0.5, 0.0, 5, 3) == 15.0
    assert effective_sample_size(0.5, 1e-9, 5, 3) == 15.0


def test_paired_equal_differences_have_no_spread():
    variant = {"a": [0.4], "b": [0.3], "c": [0.9]}
    reference = {"a": [0.3], "b": [0.2], "c": [0.8]}
    result = paired_difference(variant, reference, "base")
    assert result.cohens_dz is None
    assert result.ci_low == result.ci_high == result.mean_difference


# ------------------------------------------------------------- clustered standard error

def test_clustered_se_matches_statsmodels_ols():
    # The se of the mean with items as clusters, from statsmodels' cluster-robust OLS on an
    # intercept. With one regressor its small-sample factor is G/(G-1) x (N-1)/(N-1).
    scores = np.array([[0.2, 0.4, 0.9], [0.5, 0.7, 0.6], [0.8, 1.0, 0.1], [0.0, 0.4, 0.3], [0.3, 0.3, 0.9]])
    n_items, n_runs = scores.shape
    observations = scores.ravel()
    clusters = np.repeat(np.arange(n_items), n_runs)
    fit = sm.OLS(observations, np.ones_like(observations)).fit(cov_type="cluster", cov_kwds={"groups": clusters})

    assert summarize_scores(scores.tolist()).se == pytest.approx(fit.bse[0], rel=1e-10)


def test_clustered_se_matches_sandwich_formula():
    # V = G/(G-1) * sum_g (sum_{r in g} (y_gr - ybar))^2 / N^2, written out directly.
    scores = np.array([[1, 0, 1, 1], [0, 0, 0, 1], [1, 1, 1, 1], [0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]], float)
    n_items, n_runs = scores.shape
    grand_mean = scores.mean()
    cluster_sums = ((scores - grand_mean).sum(axis=1) ** 2).sum()
    variance = n_items / (n_items - 1) * cluster_sums / (n_items * n_runs) ** 2

    assert summarize_scores(scores.tolist()).se == pytest.approx(math.sqrt(variance), rel=1e-12)


# --------------------------------------------------------------------------- McNemar

@pytest.mark.parametrize(
    ("correct_to_wrong", "wrong_to_correct"),
    [(0, 0), (3, 0), (0, 1), (5, 12), (7, 7), (40, 61), (300, 280), (1, 1500)],
)
def test_mcnemar_matches_statsmodels(correct_to_wrong, wrong_to_correct):
    # Concordant cells do not enter the exact test; 9 and 4 are arbitrary.
    table = [[9, correct_to_wrong], [wrong_to_correct, 4]]
    expected = mcnemar(table, exact=True).pvalue
    result = mcnemar_exact(correct_to_wrong, wrong_to_correct)

    assert result.p_value == pytest.approx(expected, rel=1e-10, abs=1e-300)
    assert result.n_discordant == correct_to_wrong + wrong_to_correct


def test_mcnemar_rejects_negative_count():
    with pytest.raises(ValueError, match="-1"):
        mcnemar_exact(-1, 3)


# ------------------------------------------------------------------------ paired t-test

@pytest.mark.parametrize("seed", [0, 1, 2])
def test_paired_t_matches_scipy(seed):
    generator = np.random.default_rng(seed)
    reference = generator.uniform(1, 5, size=15)
    variant = reference + generator.normal(-0.2, 0.5, size=15)
    expected = stats.ttest_rel(variant, reference)
    result = paired_t_test(variant - reference)

    assert result.statistic == pytest.approx(expected.statistic, rel=1e-10)
    assert result.df == expected.df
    assert result.p_value == pytest.approx(expected.pvalue, rel=1e-10)


def test_paired_t_constant_differences():
    assert paired_t_test([0.0, 0.0, 0.0]).p_value == 1.0
    assert paired_t_test([0.5, 0.5, 0.5]).p_value == 0.0
    assert paired_t_test([0.5, 0.5, 0.5]).statistic is None
    assert paired_t_test([0.5]).p_value is None


# ------------------------------------------------------------------------------ Wilcoxon

def test_wilcoxon_exact_matches_scipy():
    generator = np.random.default_rng(7)
    differences = generator.normal(0.3, 1.0, size=25)
    expected = stats.wilcoxon(differences, method="exact")
    result = wilcoxon_signed_rank(differences)

    assert result.method == "exact"
    assert min(result.rank_sum_positive, result.rank_sum_negative) == expected.statistic
    assert result.p_value == pytest.approx(expected.pvalue, rel=1e-10)


@pytest.mark.parametrize("differences", [
    [1.0, 1.0, -1.0, 1.0, 1.0, 0.0, 1.0, 0.0],
    [0.5, -0.25, 0.5, 0.75, 0.25, -0.25, 1.0, 0.5, 0.0, 0.25],
    [2.0, 1.0, 3.0, 1.0, -1.0, 2.0, 4.0, 2.0, 1.0, 3.0, -2.0, 1.0, 2.0],
])
def test_wilcoxon_ties_match_scipy_permutation(differences):
    # With ties or zeros and at most 13 pairs, scipy's default is the exact permutation
    # test over all sign assignments, which is what the exact conditional null here is.
    expected = stats.wilcoxon(differences, zero_method="wilcox")
    result = wilcoxon_signed_rank(differences)

    assert result.method == "exact"
    assert result.p_value == pytest.approx(expected.pvalue, rel=1e-9)


def test_wilcoxon_large_n_matches_scipy_asymptotic():
    generator = np.random.default_rng(3)
    differences = generator.choice([-1.0, -0.5, 0.0, 0.5, 1.0], size=WILCOXON_EXACT_MAX_N + 60,
                                   p=[0.25, 0.2, 0.1, 0.2, 0.25])
    expected = stats.wilcoxon(differences, zero_method="wilcox", correction=False, method="asymptotic")
    result = wilcoxon_signed_rank(differences)

    assert result.method == "normal approximation"
    assert result.n_nonzero == int(np.sum(differences != 0))
    assert result.p_value == pytest.approx(expected.pvalue, rel=1e-9)


def test_wilcoxon_worked_example():
    # |d| ranks: 0.1 -> 1, 0.2 -> 2, 0.3 -> 3, 0.5 -> 4, so W+ = 4 + 3 + 1 = 8 and W- = 2.
    # Of the 16 sign assignments of ranks 1..4, W+ >= 8 for {1,3,4}, {2,3,4}, {1,2,3,4}:
    # P(W+ >= 8) = 3/16 and P(W+ <= 8) = 14/16, so p = 2 * 3/16 = 0.375.
    result = wilcoxon_signed_rank([0.5, -0.2, 0.3, 0.1])

    assert result.rank_sum_positive == 8.0
    assert result.rank_sum_negative == 2.0
    assert result.p_value == pytest.approx(0.375, rel=1e-12)


def test_wilcoxon_all_zero_is_one():
    result = wilcoxon_signed_rank([0.0, 0.0, 1e-15])

    assert result.n_nonzero == 0
    assert result.p_value == 1.0


# ---------------------------------------------------------------------------------- Holm

def test_holm_matches_statsmodels():
    p_values = [0.01, 0.04, 0.03, 0.005, 0.5, 0.049, 1.0, 0.2]
    expected = multipletests(p_values, method="holm")[1]

    assert holm_adjust(p_values) == pytest.approx(list(expected), rel=1e-12)


def test_holm_skips_missing():
    adjusted = holm_adjust([0.02, None, 0.01])
    expected = multipletests([0.02, 0.01], method="holm")[1]

    assert adjusted[1] is None
    assert [adjusted[0], adjusted[2]] == pytest.approx(list(expected), rel=1e-12)


def test_holm_worked_example():
    # Sorted 0.01, 0.03, 0.04 times 3, 2, 1: 0.03, 0.06, 0.04, and the running maximum
    # turns the last into 0.06.
    assert holm_adjust([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06], rel=1e-12)


@given(st.lists(st.one_of(st.none(), st.floats(0.0, 1.0, allow_nan=False)), max_size=30))
def test_holm_never_below_raw(p_values):
    adjusted = holm_adjust(p_values)

    for raw, value in zip(p_values, adjusted):
        if raw is None:
            assert value is None
        else:
            assert raw <= value <= 1.0


# ----------------------------------------------------------- minimum detectable difference

@pytest.mark.parametrize(("sd", "n", "alpha", "power"), [(0.4, 20, 0.05, 0.8), (1.3, 100, 0.01, 0.9)])
def test_mdd_matches_statsmodels_power(sd, n, alpha, power):
    # NormalIndPower with ratio=0 is the one-sample normal test; it solves for d = MDD / sd.
    # It also counts the far tail, worth less than 1e-5 of power here, hence rel=1e-4.
    effect = NormalIndPower().solve_power(effect_size=None, nobs1=n, alpha=alpha, power=power, ratio=0)

    assert minimum_detectable_difference(sd, n, alpha, power) == pytest.approx(effect * sd, rel=1e-4)


def test_mdd_reaches_stated_power():
    # At the MDD, a two-sided z-test of mean(d) has the requested power (up to the far tail).
    sd, n, alpha = 0.3, 50, 0.05
    mdd = minimum_detectable_difference(sd, n, alpha, 0.8)
    z = stats.norm.ppf(1 - alpha / 2)
    shift = mdd / (sd / math.sqrt(n))

    assert stats.norm.sf(z - shift) + stats.norm.cdf(-z - shift) == pytest.approx(0.8, abs=1e-5)


# ------------------------------------------------------------------------------- flips

def test_flips_majority_vote():
    # Item means: ref 2/3, 1/2, 1, 0; variant 1/3, 1, 0, 1/2. Majority-vote correctness:
    # ref T, F (tie), T, F; variant F, T, F, F. So a and c go to wrong, b goes to correct.
    reference = {"a": [1, 1, 0], "b": [1, 0], "c": [1, 1], "d": [0, 0]}
    variant = {"a": [1, 0, 0], "b": [1, 1], "c": [0, 0], "d": [1, 0]}
    flips = count_flips(variant, reference)

    assert flips.rule == FLIP_RULE
    assert flips.n_items == 4
    assert flips.correct_to_wrong == 2
    assert flips.wrong_to_correct == 1
    assert flips.correct_to_wrong_rate == 0.5
    assert flips.wrong_to_correct_rate == 0.25


# ------------------------------------------------------- worked example by hand, binary

# 12 items, one run. Reference correct on items 1-8; the variant loses items 1-5 and
# gains item 9: 5 flips to wrong, 1 to correct, 6 pairs unchanged.
WORKED_REFERENCE = {f"i{k:02d}": [1.0 if k <= 8 else 0.0] for k in range(1, 13)}
WORKED_VARIANT = {f"i{k:02d}": [1.0 if 6 <= k <= 9 else 0.0] for k in range(1, 13)}


def test_worked_example_binary_comparison():
    paired = paired_comparison(WORKED_VARIANT, WORKED_REFERENCE, "base", "binary")

    # Differences: five -1, one +1, six 0. Mean -4/12 = -1/3.
    assert paired["n_items"] == 12
    assert paired["mean_difference"] == pytest.approx(-1 / 3, rel=1e-12)
    # sum d^2 = 6, so var = (6 - 12/9) / 11 = 14/33 and sd = 0.6513389.
    assert paired["sd_difference"] == pytest.approx(0.6513389, abs=1e-7)
    # d_z = (-1/3) / sqrt(14/33) = -sqrt(11/42) = -0.5117663
    assert paired["cohens_dz"] == pytest.approx(-0.5117663, abs=1e-7)
    # McNemar: b = 5, c = 1, p = 2 * (C(6,0) + C(6,1)) / 2^6 = 14/64 = 0.21875.
    assert paired["flips"]["correct_to_wrong"] == 5
    assert paired["flips"]["wrong_to_correct"] == 1
    assert paired["flips"]["correct_to_wrong_rate"] == pytest.approx(5 / 12, rel=1e-12)
    assert paired["flips"]["wrong_to_correct_rate"] == pytest.approx(1 / 12, rel=1e-12)
    assert paired["primary_test"] == "mcnemar"
    assert paired["mcnemar"]["p_value"] == pytest.approx(0.21875, rel=1e-12)
    assert paired["p_value"] == pytest.approx(0.21875, rel=1e-12)
    # t = (-1/3) / (sqrt(14/33) / sqrt(12)) = -sqrt(22/7) = -1.7728105 with 11 df.
    assert paired["t_test"]["statistic"] == pytest.approx(-1.7728105, abs=1e-7)
    assert paired["t_test"]["df"] == 11
    # Wilcoxon: the 6 nonzero |d| tie at rank 3.5, so W+ = 3.5 and, with W+ = 3.5 K for
    # K ~ Bin(6, 1/2), p = 2 P(K <= 1) = 14/64, the sign test.
    assert paired["wilcoxon"]["rank_sum_positive"] == 3.5
    assert paired["wilcoxon"]["rank_sum_negative"] == 17.5
    assert paired["wilcoxon"]["p_value"] == pytest.approx(0.21875, rel=1e-12)
    # MDD = (1.959964 + 0.841621) * sqrt(14/33) / sqrt(12) = 0.5267700 at alpha 0.05, power 0.8.
    mdd = paired["minimum_detectable_difference"]
    assert mdd["value"] == pytest.approx(0.5267700, abs=1e-6)
    assert mdd["sd_source"] == "paired differences"
    assert mdd["alpha"] == 0.05
    assert mdd["power"] == 0.8
    assert mdd["detects_target"] is False


def test_graded_comparison_uses_t_test():
    variant = {"a": [3.0, 4.0], "b": [2.0, 2.0], "c": [5.0, 4.0], "d": [1.0, 2.0]}
    reference = {"a": [4.0, 4.0], "b": [3.0, 2.0], "c": [5.0, 5.0], "d": [2.0, 3.0]}
    paired = paired_comparison(variant, reference, "base", "graded")
    means = {i: (np.mean(variant[i]), np.mean(reference[i])) for i in sorted(variant)}
    expected = stats.ttest_rel([v for v, _ in means.values()], [r for _, r in means.values()])

    assert paired["primary_test"] == "t_test"
    assert paired["p_value"] == pytest.approx(expected.pvalue, rel=1e-10)
    assert paired["flips"] is None
    assert paired["mcnemar"] is None
    assert paired["minimum_detectable_difference"]["detects_target"] is None


def test_mdd_falls_back_to_reference_spread():
    # Identical variant: sd of differences 0, so sqrt(2) x sd of the reference item means.
    reference = {"a": [1.0], "b": [0.0], "c": [1.0], "d": [0.0]}
    mdd = paired_comparison(reference, reference, "base", "binary")["minimum_detectable_difference"]
    reference_sd = np.std([1.0, 0.0, 1.0, 0.0], ddof=1)

    assert mdd["sd_source"] == "reference item means (sqrt(2) x sd)"
    assert mdd["sd"] == pytest.approx(math.sqrt(2) * reference_sd, rel=1e-12)
    assert mdd["value"] == pytest.approx(minimum_detectable_difference(mdd["sd"], 4, 0.05, 0.8), rel=1e-12)


def test_mdd_falls_back_to_binary_maximum():
    reference = {"a": [1.0], "b": [1.0], "c": [1.0]}
    mdd = paired_comparison(reference, reference, "base", "binary")["minimum_detectable_difference"]

    assert mdd["sd_source"] == "binary maximum (sqrt(2 x 0.25))"
    assert mdd["sd"] == pytest.approx(math.sqrt(0.5), rel=1e-12)


# ------------------------------------------------------------------ properties of tests

@given(item_tables(binary=True))
def test_identical_variant_has_no_effect(table):
    paired = paired_comparison(table, table, "base", "binary")

    assert paired["mean_difference"] == 0.0
    assert paired["flips"]["correct_to_wrong"] == 0
    assert paired["flips"]["wrong_to_correct"] == 0
    assert paired["p_value"] == 1.0
    assert paired["t_test"]["p_value"] == 1.0
    assert paired["wilcoxon"]["p_value"] == 1.0


@given(item_tables())
def test_identical_graded_variant_has_p_one(table):
    paired = paired_comparison(table, table, "base", "graded")

    assert paired["mean_difference"] == 0.0
    assert paired["p_value"] == 1.0
    assert paired["wilcoxon"]["p_value"] == 1.0


@st.composite
def binary_paired_tables(draw):
    variant = draw(item_tables(binary=True))
    n_runs = len(next(iter(variant.values())))
    runs = st.lists(st.sampled_from([0.0, 1.0]), min_size=n_runs, max_size=n_runs)
    return variant, {item: draw(runs) for item in variant}


@given(binary_paired_tables())
def test_swap_mirrors_comparison(tables):
    variant, reference = tables
    forward = paired_comparison(variant, reference, "base", "binary")
    backward = paired_comparison(reference, variant, "base", "binary")

    assert backward["mean_difference"] == pytest.approx(-forward["mean_difference"], abs=1e-12)
    assert backward["flips"]["correct_to_wrong"] == forward["flips"]["wrong_to_correct"]
    assert backward["flips"]["wrong_to_correct"] == forward["flips"]["correct_to_wrong"]
    assert backward["p_value"] == pytest.approx(forward["p_value"], rel=1e-9)
    assert backward["wilcoxon"]["p_value"] == pytest.approx(forward["wilcoxon"]["p_value"], rel=1e-9)
    if forward["t_test"]["p_value"] is not None:
        assert backward["t_test"]["p_value"] == pytest.approx(forward["t_test"]["p_value"], rel=1e-9)


@settings(max_examples=50)
@given(paired_tables(), st.integers(2, 4))
def test_paired_interval_narrows_with_items(tables, copies):
    # The same items repeated under new ids: same mean and sd, more items, narrower CI.
    variant, reference = tables
    small = paired_difference(variant, reference, "base")
    grown_variant = {f"{item}-{k}": runs for item, runs in variant.items() for k in range(copies)}
    grown_reference = {f"{item}-{k}": runs for item, runs in reference.items() for k in range(copies)}
    large = paired_difference(grown_variant, grown_reference, "base")

    if small.ci_high - small.ci_low > 1e-9:
        assert large.ci_high - large.ci_low < small.ci_high - small.ci_low
    else:
        assert large.ci_high - large.ci_low <= 1e-9


@settings(max_examples=50)
@given(item_tables(), st.integers(2, 4))
def test_graded_interval_narrows_with_items(table, copies):
    small = summarize_scores(list(table.values()))
    large = summarize_scores([runs for runs in table.values() for _ in range(copies)])

    if small.ci_high - small.ci_low > 1e-9:
        assert large.ci_high - large.ci_low < small.ci_high - small.ci_low


# ------------------------------------------------------------- analysis file: new parts

def test_analyze_mcnemar_and_flips_by_hand():
    # q4_k_m on arc (items e1-e4 shared): base 1, 0, 1, 1; variant 1, 1, 0, 1.
    # e3 goes to wrong, e2 to correct: b = c = 1, p = 2 * (1 + 2) / 4 capped at 1.
    paired = find_result(analyze(make_comparison()), "q4_k_m", "arc_challenge")["paired"]

    assert paired["flips"]["correct_to_wrong"] == 1
    assert paired["flips"]["wrong_to_correct"] == 1
    assert paired["p_value"] == 1.0


def test_analyze_holm_over_whole_benchmarks():
    # gsm8k by majority vote: base T, F, T, F; q4_k_m T, F, F, F. b = 1, c = 0, so
    # McNemar p = 2 * 1/2 = 1. arc p = 1 too. Holm over the two gives 1 and 1.
    analysis = analyze(make_comparison())
    compared = [r for r in analysis["results"] if r["paired"] is not None]
    expected = multipletests([r["paired"]["p_value"] for r in compared], method="holm")[1]

    assert len(compared) == 2
    assert [r["paired"]["p_value_holm"] for r in compared] == pytest.approx(list(expected), rel=1e-12)


def grouped_comparison():
    """Two variants, 8 graded items in subjects A and B, and a variant without two items."""
    scores_base = {f"x{k}": [float(k % 5), float((k + 1) % 5)] for k in range(8)}
    scores_q8 = {f"x{k}": [float(k % 5), float(k % 5)] for k in range(8)}
    scores_q4 = {f"x{k}": [float((k + 2) % 5), float(k % 4)] for k in range(6)}
    subjects = {f"x{k}": "A" if k < 4 else "B" for k in range(8)}
    return {
        "reference": "base",
        "variants": [
            {"model": "m", "variant": "base", "quantization_type": "F16", "imatrix": False},
            {"model": "m", "variant": "q4_k_m", "quantization_type": "Q4_K_M", "imatrix": True},
            {"model": "m", "variant": "q4_k_m-no-imatrix", "quantization_type": "Q4_K_M", "imatrix": False},
        ],
        "benchmarks": {"judge": {"metric": "rating", "n_items": 8, "runs": 2, "score_kind": "graded",
                                 "item_groups": {"subject": subjects}}},
        "scores": {"m": {"base": {"judge": scores_base}, "q4_k_m": {"judge": scores_q8},
                         "q4_k_m-no-imatrix": {"judge": scores_q4}}},
    }


def test_analyze_group_entries():
    analysis = analyze(grouped_comparison())
    entries = [r for r in analysis["results"] if r["variant"] == "q4_k_m"]
    by_group = {(r["group_by"], r["group"]): r for r in entries}

    assert list(by_group) == [(None, None), ("subject", "A"), ("subject", "B")]
    assert by_group[("subject", "A")]["n_items"] == 4
    assert by_group[("subject", "B")]["n_items"] == 4
    expected_a = np.mean([np.mean([k % 5, k % 5]) for k in range(4)])
    assert by_group[("subject", "A")]["mean"] == pytest.approx(expected_a, rel=1e-12)
    assert by_group[(None, None)]["score_kind"] == "graded"
    assert by_group[(None, None)]["paired"]["primary_test"] == "t_test"


def test_analyze_group_holm_family():
    # Groups of subject for both compared variants form one family of 4 comparisons.
    analysis = analyze(grouped_comparison())
    grouped = [r for r in analysis["results"] if r["group_by"] == "subject" and r["paired"]]
    expected = multipletests([r["paired"]["p_value"] for r in grouped], method="holm")[1]

    assert len(grouped) == 4
    assert [r["paired"]["p_value_holm"] for r in grouped] == pytest.approx(list(expected), rel=1e-12)


def test_analyze_imatrix_effect():
    comparison = grouped_comparison()
    comparison["fidelity"] = {"m": {
        "q4_k_m": {"kl_divergence": {"mean": 0.010, "uncertainty": 0.0003}},
        "q4_k_m-no-imatrix": {"kl_divergence": {"mean": 0.014, "uncertainty": 0.0004}},
    }}
    analysis = analyze(comparison, imatrix_pairs=[("q4_k_m", "q4_k_m-no-imatrix")])
    [effect] = analysis["imatrix_effect"]
    scores = comparison["scores"]["m"]
    expected = paired_difference(scores["q4_k_m"]["judge"], scores["q4_k_m-no-imatrix"]["judge"], "x")

    assert effect["quantization_type"] == "Q4_K_M"
    assert effect["paired"]["reference"] == "q4_k_m-no-imatrix"
    assert effect["paired"]["n_items"] == 6
    assert effect["paired"]["mean_difference"] == pytest.approx(expected.mean_difference, rel=1e-12)
    assert effect["paired"]["p_value_holm"] == effect["paired"]["p_value"]
    # -0.004 with uncertainty sqrt(0.0003^2 + 0.0004^2) = 0.0005, so -0.004 -/+ 1.959964 * 0.0005.
    change = effect["kl_divergence_change"]
    assert change["value"] == pytest.approx(-0.004, rel=1e-9)
    assert change["uncertainty"] == pytest.approx(0.0005, rel=1e-9)
    assert change["ci_low"] == pytest.approx(-0.004979982, abs=1e-8)
    assert change["ci_high"] == pytest.approx(-0.003020018, abs=1e-8)


def test_analyze_imatrix_effect_without_fidelity():
    analysis = analyze(grouped_comparison(), imatrix_pairs=[("q4_k_m", "q4_k_m-no-imatrix")])

    assert analysis["imatrix_effect"][0]["kl_divergence_change"] is None
    assert analysis["fidelity"] == []


FIDELITY_RECORD = {
    "model": "m", "variant": "q4_k_m", "text": "wiki", "context": 512, "n_chunks": 20, "n_tokens": 5100,
    "perplexity": {"value": 42.5, "uncertainty": 0.8},
    "ln_ppl_ratio": {"value": 0.003, "uncertainty": 0.001},
    "kl_divergence": {"mean": 0.012, "uncertainty": 0.0004, "median": 0.005, "p90": 0.03, "p95": 0.04,
                      "p99": 0.08, "p99_9": 0.2, "max": 0.9, "min": 0.0},
    "same_top_p": {"value": 0.999, "uncertainty": 0.002},
}


def test_fidelity_intervals_by_hand():
    base = {**FIDELITY_RECORD, "variant": "base", "ln_ppl_ratio": None, "kl_divergence": None, "same_top_p": None}
    entries = fidelity_entries({"m": {"base": base, "q4_k_m": FIDELITY_RECORD}}, 0.95)
    by_variant = {e["variant"]: e for e in entries}
    z = 1.959963985

    quantized = by_variant["q4_k_m"]
    assert quantized["n_tokens"] == 5100
    assert quantized["perplexity"]["ci_low"] == pytest.approx(42.5 - z * 0.8, rel=1e-9)
    assert quantized["perplexity"]["ci_high"] == pytest.approx(42.5 + z * 0.8, rel=1e-9)
    assert quantized["kl_divergence"]["ci_low"] == pytest.approx(0.012 - z * 0.0004, rel=1e-9)
    assert quantized["kl_divergence"]["p99"] == 0.08
    assert quantized["ln_ppl_ratio"]["ci_high"] == pytest.approx(0.003 + z * 0.001, rel=1e-9)
    # 0.999 + 1.96 * 0.002 exceeds 1, so the interval is clipped to the possible range.
    assert quantized["same_top_p"]["ci_high"] == 1.0
    assert quantized["same_top_p"]["ci_low"] == pytest.approx(0.999 - z * 0.002, rel=1e-9)
    assert by_variant["base"]["kl_divergence"] is None
    assert by_variant["base"]["perplexity"]["value"] == 42.5


def test_fidelity_record_missing_uncertainty():
    record = {**FIDELITY_RECORD, "kl_divergence": {"mean": 0.01}}

    with pytest.raises(InvalidDataError, match="m/q4_k_m.*kl_divergence"):
        fidelity_entries({"m": {"q4_k_m": record}}, 0.95)


def test_analyze_rejects_non_binary_scores():
    comparison = make_comparison()
    comparison["scores"]["tiny-llama"]["q4_k_m"]["arc_challenge"]["e1"] = [0.5]

    with pytest.raises(InvalidDataError, match="e1.*score_kind is binary"):
        analyze(comparison)


def test_imatrix_pairs_from_config():
    config = {"quantizations": ["q4_k_m", "q8_0", "IQ4_XS"], "without_imatrix": ["q4_k_m", "iq4_xs", "q6_k"]}

    assert imatrix_pairs(config) == [("q4_k_m", "q4_k_m-no-imatrix"), ("iq4_xs", "iq4_xs-no-imatrix")]
