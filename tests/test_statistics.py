"""Intervals, clustered standard errors and paired differences in quant_eval.statistics.

Reference values come from statsmodels (Wilson intervals) and scipy (t intervals, paired
t-tests), or are worked out by hand from small tables and written as literals, so a wrong
formula, ddof or quantile makes a test fail.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from statsmodels.stats.proportion import proportion_confint

from quant_eval.files import write_json
from quant_eval.statistics import (
    analyze,
    effective_sample_size,
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
