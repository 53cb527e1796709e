"""Charts, methodology, analysis report and PDF scorecard, built from hand-written result files.

Every expected number below is written out by hand from the fixture values, so a wrong
scale, rounding or lookup makes a test fail. The PDF tests need pandoc, xelatex and
pdftotext (scripts/install_system_packages.sh) and are skipped without them, except in CI.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from quant_eval.reporting import formats
from quant_eval.reporting import scorecard as scorecard_module
from quant_eval.errors import InvalidDataError
from quant_eval.charts import draw_efficiency, draw_flips, draw_paired_differences, draw_performance
from quant_eval.reporting import (
    ScorecardError,
    write_analysis_report,
    write_methodology,
    write_scorecard,
)

GRID_MODEL = "smollm2-135m"
PLAIN_MODEL = "tiny-llama"

# (model, variant, benchmark): (mean, ci_low, ci_high, paired), with paired as
# (n_items, mean_difference, sd_difference, ci_low, ci_high, cohens_dz) or None.
RESULTS = {
    (GRID_MODEL, "base", "gsm8k"): (0.31, 0.1312, 0.4888, None),
    (GRID_MODEL, "base", "arc_challenge"): (0.42, 0.3267, 0.5196, None),
    (GRID_MODEL, "q8_0", "gsm8k"): (0.30, 0.1211, 0.4789, (20, -0.01, 0.11, -0.0615, 0.0415, -0.09)),
    (GRID_MODEL, "q8_0", "arc_challenge"): (0.43, 0.3356, 0.5298, (100, 0.01, 0.2, -0.0297, 0.0497, 0.05)),
    (GRID_MODEL, "q4_k_m", "gsm8k"): (0.22, 0.0642, 0.3757, (20, -0.09, 0.2, -0.1836, 0.0036, -0.45)),
    (GRID_MODEL, "q4_k_m", "arc_challenge"): (0.35, 0.2631, 0.4480, (100, -0.07, 0.25, -0.1196, -0.0204, -0.28)),
    (GRID_MODEL, "q4_k_m-no-imatrix", "gsm8k"): (0.18, 0.0411, 0.3189, (20, -0.13, 0.228, -0.2367, -0.0233, -0.57)),
    (GRID_MODEL, "q4_k_m-no-imatrix", "arc_challenge"): (0.33, 0.2443, 0.4282, (100, -0.09, 0.31, -0.1515, -0.0285, -0.29)),
    (PLAIN_MODEL, "base", "gsm8k"): (0.12, 0.0118, 0.2282, None),
    (PLAIN_MODEL, "base", "arc_challenge"): (0.27, 0.1917, 0.3656, None),
    (PLAIN_MODEL, "q8_0", "gsm8k"): (0.12, 0.0118, 0.2282, (20, 0.0, 0.0, 0.0, 0.0, None)),
    (PLAIN_MODEL, "q8_0", "arc_challenge"): (0.28, 0.2003, 0.3763, (100, 0.01, 0.1, -0.0098, 0.0298, 0.1)),
    (PLAIN_MODEL, "q4_k_m", "gsm8k"): (0.09, 0.0, 0.1867, (20, -0.03, 0.17, -0.1096, 0.0496, -0.18)),
    (PLAIN_MODEL, "q4_k_m", "arc_challenge"): (0.31, 0.2281, 0.4059, (100, 0.04, 0.22, -0.0037, 0.0837, 0.18)),
}

# (model, variant, benchmark): (p_value, p_value_holm, correct_to_wrong, wrong_to_correct,
# minimum detectable difference) of the paired comparison with base; all MDDs exceed 2 pp.
PAIRED_TESTS = {
    (GRID_MODEL, "q8_0", "gsm8k"): (1.0, 1.0, 1, 1, 0.0688),
    (GRID_MODEL, "q8_0", "arc_challenge"): (0.80, 1.0, 3, 4, 0.056),
    (GRID_MODEL, "q4_k_m", "gsm8k"): (0.0625, 0.5, 4, 0, 0.125),
    (GRID_MODEL, "q4_k_m", "arc_challenge"): (0.0127, 0.1143, 12, 5, 0.07),
    (GRID_MODEL, "q4_k_m-no-imatrix", "gsm8k"): (0.0313, 0.25, 5, 0, 0.143),
    (GRID_MODEL, "q4_k_m-no-imatrix", "arc_challenge"): (0.0044, 0.044, 15, 6, 0.087),
    (PLAIN_MODEL, "q8_0", "gsm8k"): (1.0, 1.0, 0, 0, 0.2),
    (PLAIN_MODEL, "q8_0", "arc_challenge"): (0.5, 1.0, 2, 3, 0.028),
    (PLAIN_MODEL, "q4_k_m", "gsm8k"): (0.375, 1.0, 2, 1, 0.106),
    (PLAIN_MODEL, "q4_k_m", "arc_challenge"): (0.0007, 0.0077, 3, 7, 0.0616),
}
# q4_k_m minus q4_k_m-no-imatrix of GRID_MODEL, per benchmark: (n_items, mean_difference,
# ci_low, ci_high, p_value, p_value_holm, correct_to_wrong, wrong_to_correct, MDD).
IMATRIX_EFFECT = {
    "gsm8k": (20, 0.04, -0.05, 0.13, 0.6875, 1.0, 1, 3, 0.15),
    "arc_challenge": (100, 0.02, -0.03, 0.07, 0.5488, 1.0, 4, 6, 0.06),
}
KL_CHANGE = {"value": -0.004, "uncertainty": 0.0005, "ci_low": -0.00498, "ci_high": -0.00302}
FIDELITY = [
    {"model": GRID_MODEL, "variant": "base", "text": "wiki", "context": 512, "n_chunks": 20, "n_tokens": 5100,
     "perplexity": {"value": 41.2, "uncertainty": 0.7, "ci_low": 39.828, "ci_high": 42.572},
     "ln_ppl_ratio": None, "kl_divergence": None, "same_top_p": None},
    {"model": GRID_MODEL, "variant": "q4_k_m", "text": "wiki", "context": 512, "n_chunks": 20, "n_tokens": 5100,
     "perplexity": {"value": 42.5, "uncertainty": 0.8, "ci_low": 40.932, "ci_high": 44.068},
     "ln_ppl_ratio": {"value": 0.0311, "uncertainty": 0.001, "ci_low": 0.02914, "ci_high": 0.03306},
     "kl_divergence": {"mean": 0.012, "uncertainty": 0.0004, "ci_low": 0.01122, "ci_high": 0.01278},
     "same_top_p": {"value": 0.9712, "uncertainty": 0.002, "ci_low": 0.9673, "ci_high": 0.9751}},
]


def paired_tests(p_value, p_value_holm, correct_to_wrong, wrong_to_correct, mdd, n_items) -> dict:
    """Return the test, flip and MDD fields of a binary paired comparison."""
    return {
        "primary_test": "mcnemar", "p_value": p_value, "p_value_holm": p_value_holm,
        "mcnemar": {"correct_to_wrong": correct_to_wrong, "wrong_to_correct": wrong_to_correct,
                    "n_discordant": correct_to_wrong + wrong_to_correct, "p_value": p_value},
        "t_test": {"statistic": -1.0, "df": n_items - 1, "p_value": 0.3},
        "wilcoxon": {"n_nonzero": correct_to_wrong + wrong_to_correct, "rank_sum_positive": 1.0,
                     "rank_sum_negative": 2.0, "method": "exact", "p_value": 0.4},
        "flips": {"rule": "majority of runs (more than half scored 1)", "n_items": n_items,
                  "correct_to_wrong": correct_to_wrong, "wrong_to_correct": wrong_to_correct,
                  "correct_to_wrong_rate": correct_to_wrong / n_items,
                  "wrong_to_correct_rate": wrong_to_correct / n_items},
        "minimum_detectable_difference": {"value": mdd, "sd": 0.2, "sd_source": "paired differences",
                                          "power": 0.8, "alpha": 0.05, "target_difference": 0.02,
                                          "detects_target": mdd <= 0.02},
    }


Q4_K_M_TENSOR_TYPES = {
    "Q4_K": {"n_tensors": 30, "n_parameters": 26_542_080},
    "Q5_0": {"n_tensors": 120, "n_parameters": 79_626_240},
    "Q6_K": {"n_tensors": 31, "n_parameters": 28_311_552},
    "F32": {"n_tensors": 91, "n_parameters": 35_136},
}
VARIANT_FILES = {
    # variant: (quantization_type, imatrix, file_size_bytes, bits_per_weight, tensor_types, fallback_tensors)
    "base": ("F16", False, 283_467_328, 16.86,
             {"F16": {"n_tensors": 211, "n_parameters": 134_479_872}, "F32": {"n_tensors": 61, "n_parameters": 35_136}}, 0),
    "q8_0": ("Q8_0", True, 144_967_936, 8.62,
             {"Q8_0": {"n_tensors": 211, "n_parameters": 134_479_872}, "F32": {"n_tensors": 61, "n_parameters": 35_136}}, 0),
    "q4_k_m": ("Q4_K_M", True, 105_467_904, 6.27, Q4_K_M_TENSOR_TYPES, 150),
    "q4_k_m-no-imatrix": ("Q4_K_M", False, 105_467_904, 6.27, Q4_K_M_TENSOR_TYPES, 150),
}

CONFIG = {
    "models": {GRID_MODEL: {"source": "embedded:smollm2-135m-instruct"}, PLAIN_MODEL: {"source": "models/tiny.gguf"}},
    "quantizations": ["q8_0", "q4_k_m"],
    "without_imatrix": ["q4_k_m"],
    "reference": "base",
    "imatrix": {
        "calibration": ["dataset-build:eng/eng.txt", "dataset-build:jpn/jpn.txt"],
        "context": 512,
        "chunks": 64,
        "batch_size": 512,
    },
    "benchmarks": {
        "gsm8k": {"limit": 20, "temperature": 0.6, "max_tokens": 256},
        "arc_challenge": {"limit": 100, "num_fewshot": 0},
    },
    "runs": 5,
    "seed": 1234,
    "evaluation": {"context": 2048, "threads": 2},
    "statistics": {"confidence_level": 0.95},
}

GRID_NOTE = (
    "dequantized from Q4_1 to F16: the base holds only values of the Q4_1 grid, so the quality "
    "loss measured from it understates what a genuinely trained F16 model loses"
)
CAVEAT_PHRASE = "understates what quantizing a genuinely trained F16 model loses"
BENCHMARKS = {
    "gsm8k": {"metric": "exact_match", "n_items": 20, "runs": 5, "score_kind": "binary"},
    "arc_challenge": {"metric": "acc_norm", "n_items": 100, "runs": 1, "score_kind": "binary"},
}


def _item_scores(benchmark: str, mean: float) -> dict[str, list[float]]:
    info = BENCHMARKS[benchmark]
    correct = round(mean * info["n_items"])
    return {
        f"{benchmark}-{i:04d}": [1.0 if i < correct else 0.0] * info["runs"]
        for i in range(info["n_items"])
    }


def build_results(models: dict[str, bool]) -> tuple[dict, dict]:
    """Return (comparison, analysis) for the given models, each mapped to its grid_limited flag."""
    comparison = {"reference": "base", "models": {}, "variants": [], "benchmarks": BENCHMARKS, "scores": {}}
    analysis = {"confidence_level": 0.95, "reference": "base", "results": [], "imatrix_effect": [],
                "power": {"power": 0.8, "alpha": 0.05, "target_difference": {"binary": 0.02}},
                "fidelity": [entry for entry in FIDELITY if entry["model"] in models]}
    for model, grid_limited in models.items():
        comparison["models"][model] = {
            "source": CONFIG["models"][model]["source"],
            "base_type": "F16",
            "grid_limited": grid_limited,
            "note": GRID_NOTE if grid_limited else "used as given (F16)",
        }
        comparison["scores"][model] = {}
        for (result_model, variant, benchmark), (mean, low, high, paired) in RESULTS.items():
            if result_model != model:
                continue
            if variant not in comparison["scores"][model]:
                quantization_type, imatrix, size, bpw, tensor_types, fallback = VARIANT_FILES[variant]
                comparison["variants"].append({
                    "model": model, "variant": variant, "quantization_type": quantization_type,
                    "imatrix": imatrix, "file_size_bytes": size, "n_parameters": 134_515_008,
                    "bits_per_weight": bpw, "tensor_types": tensor_types, "fallback_tensors": fallback,
                })
                comparison["scores"][model][variant] = {}
            comparison["scores"][model][variant][benchmark] = _item_scores(benchmark, mean)
            info = BENCHMARKS[benchmark]
            analysis["results"].append({
                "model": model, "variant": variant, "benchmark": benchmark, "metric": info["metric"],
                "n_items": info["n_items"], "n_runs": info["runs"], "mean": mean, "sd": 0.4, "se": 0.09,
                "ci_low": low, "ci_high": high,
                "interval_method": "wilson" if info["runs"] == 1 else "wilson, effective n",
                "within_item_variance": 0.1 if info["runs"] > 1 else None, "between_item_variance": 0.15,
                "score_kind": "binary", "group_by": None, "group": None,
                "paired": None if paired is None else dict(zip(
                    ("n_items", "mean_difference", "sd_difference", "ci_low", "ci_high", "cohens_dz"), paired,
                ), reference="base", se_difference=0.05,
                    **paired_tests(*PAIRED_TESTS[(model, variant, benchmark)], n_items=paired[0])),
            })
        if model == GRID_MODEL:
            for benchmark, (n, mean, low, high, p, holm, lost, gained, mdd) in IMATRIX_EFFECT.items():
                analysis["imatrix_effect"].append({
                    "model": model, "quantization_type": "Q4_K_M", "with_imatrix": "q4_k_m",
                    "without_imatrix": "q4_k_m-no-imatrix", "benchmark": benchmark,
                    "metric": BENCHMARKS[benchmark]["metric"], "score_kind": "binary",
                    "paired": {"reference": "q4_k_m-no-imatrix", "n_items": n, "mean_difference": mean,
                               "sd_difference": 0.2, "se_difference": 0.04, "ci_low": low, "ci_high": high,
                               "cohens_dz": 0.2, **paired_tests(p, holm, lost, gained, mdd, n_items=n)},
                    "kl_divergence_change": KL_CHANGE,
                })
    # A subject entry, which the tables leave out: they show whole benchmarks.
    grouped = {**analysis["results"][0], "group_by": "subject", "group": "algebra", "mean": 0.99}
    analysis["results"].insert(0, grouped)
    return comparison, analysis


@pytest.fixture
def results() -> tuple[dict, dict]:
    return build_results({GRID_MODEL: True, PLAIN_MODEL: False})


def _normalize(text: str) -> str:
    """Join words that LaTeX hyphenated at a line end, and collapse all whitespace to one space."""
    text = text.replace("\u00a0", " ")
    text = re.sub(r"(\w)-\n(\w)", r"\1\2", text)
    return re.sub(r"\s+", " ", text)


# -------------------------------------------------------------------- number formats


@pytest.mark.parametrize(("value", "kind", "signed", "expected"), [
    (0.31, "binary", False, "31.0"),
    (0.3267, "binary", False, "32.7"),
    (-0.0004, "binary", False, "0.0"),
    (-0.0004, "binary", True, "0.0"),
    (0.042, "binary", True, "+4.2"),
    (-0.13, "binary", True, "-13.0"),
    (0.4567, "graded", False, "0.457"),
    (-0.0123, "graded", True, "-0.012"),
    (None, "binary", False, "n/a"),
])
def test_format_value_cases(value, kind, signed, expected):
    assert formats.format_value(value, formats.SCORE_FORMATS[kind], signed) == expected


def test_format_estimate_graded():
    graded = formats.SCORE_FORMATS["graded"]

    assert formats.format_estimate(0.35, 0.2631, 0.448, graded) == "0.350 [0.263, 0.448]"
    assert formats.format_estimate(0.35, None, None, graded) == "0.350 [n/a]"


def test_unknown_score_kind_rejected(results, tmp_path):
    comparison, analysis = results
    comparison["benchmarks"] = {**BENCHMARKS, "gsm8k": {**BENCHMARKS["gsm8k"], "score_kind": "ordinal"}}

    with pytest.raises(InvalidDataError, match="'ordinal'"):
        write_analysis_report(CONFIG, comparison, analysis, tmp_path / "report.md")


# --------------------------------------------------------------------------- charts


@pytest.mark.parametrize("models", [{GRID_MODEL: True}, {GRID_MODEL: True, PLAIN_MODEL: False}],
                         ids=["one-model", "two-models"])
@pytest.mark.parametrize("draw", [draw_performance, draw_efficiency, draw_paired_differences, draw_flips])
def test_chart_is_valid_png(draw, models, tmp_path):
    comparison, analysis = build_results(models)
    output = tmp_path / "charts" / "chart.png"

    draw(comparison, analysis, output)

    assert output.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert output.stat().st_size > 20_000
    with Image.open(output) as image:
        image.verify()
    with Image.open(output) as image:
        width, height = image.size
    assert 800 <= width <= 6000
    assert 400 <= height <= 3000
    assert [p.name for p in output.parent.iterdir()] == ["chart.png"]


def test_chart_failure_leaves_no_file(results, tmp_path):
    comparison, analysis = results
    analysis["results"] = [r for r in analysis["results"] if r["variant"] != "q8_0"]
    output = tmp_path / "chart.png"

    with pytest.raises(InvalidDataError, match="q8_0"):
        draw_performance(comparison, analysis, output)

    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------- methodology


def test_methodology_states_run_settings(results, tmp_path):
    comparison, analysis = results
    output = tmp_path / "methodology" / "quantization_methodology.md"

    write_methodology(CONFIG, comparison, analysis, output)
    text = output.read_text(encoding="utf-8")

    assert "`embedded:smollm2-135m-instruct`" in text
    assert "- `dataset-build:eng/eng.txt`\n- `dataset-build:jpn/jpn.txt`" in text
    assert "64 chunks of 512 tokens" in text
    assert "32768 tokens of calibration text" in text
    assert "| `q4_k_m-no-imatrix` | `Q4_K_M` | no |" in text
    assert "| `q4_k_m` | `Q4_K_M` | yes |" in text
    assert "20 items, a random subset drawn with seed 1234 (`limit: 20`)" in text
    assert "5 runs, which differ by the sampling seed (temperature 0.6)" in text
    assert "1 run instead of 5" in text
    assert "temperature 0.6" in text
    assert "`exact_match` (binary)" in text
    assert "se = s/\\sqrt{n}" in text
    assert "95% interval \"Wilson\": Wilson's interval for the proportion" in text
    assert "95% interval \"Wilson at effective n\": Wilson's interval with n replaced by Kish's" in text
    assert "t over item means" not in text
    assert "z$ the 0.975 quantile" in text
    assert "d_z = \\bar{d} / s_d" in text
    assert "Seed 1234" in text
    assert "`<benchmark>:1234`" in text
    assert "Run k uses the seed 1234 + k - 1" in text
    assert "\\binom{b+c}{k} 2^{-(b+c)}" in text
    assert "(m-j+1)\\,p_{(j)}" in text
    assert "Minimum detectable difference at 80% power and $\\alpha = 0.05$" in text
    assert "The statistics draw no random numbers" in text


def test_methodology_caveat_only_when_grid_limited(tmp_path):
    grid = tmp_path / "grid.md"
    plain = tmp_path / "plain.md"

    write_methodology(CONFIG, *build_results({GRID_MODEL: True}), grid)
    write_methodology(CONFIG, *build_results({PLAIN_MODEL: False}), plain)

    grid_text = _normalize(grid.read_text(encoding="utf-8"))
    plain_text = _normalize(plain.read_text(encoding="utf-8"))
    assert CAVEAT_PHRASE in grid_text
    assert "was dequantized from a quantized GGUF" in grid_text
    assert "dequantized from Q4\\_1 to F16" in grid_text
    assert CAVEAT_PHRASE not in plain_text
    assert "dequantized" not in plain_text
    assert "used as given (F16)" in plain_text


# ------------------------------------------------------------------ analysis report


@pytest.fixture
def report_text(results, tmp_path) -> str:
    comparison, analysis = results
    output = tmp_path / "reports" / "quantization_analysis_report.md"
    write_analysis_report(CONFIG, comparison, analysis, output)
    return output.read_text(encoding="utf-8")


def test_report_score_table_rows(report_text):
    assert "| Variant | `gsm8k` (`exact_match`, %) | `arc_challenge` (`acc_norm`, %) |" in report_text
    assert "| `base` | 31.0 [13.1, 48.9] | 42.0 [32.7, 52.0] |" in report_text
    assert "| `q4_k_m` | 22.0 [6.4, 37.6] | 35.0 [26.3, 44.8] |" in report_text
    assert "| `q4_k_m-no-imatrix` | 18.0 [4.1, 31.9] | 33.0 [24.4, 42.8] |" in report_text
    assert "| `q4_k_m` | 9.0 [0.0, 18.7] | 31.0 [22.8, 40.6] |" in report_text
    assert ("`gsm8k`: n = 20 items, 5 runs, Wilson at effective n interval; "
            "`arc_challenge`: n = 100 items, 1 run, Wilson interval.") in report_text


def test_report_difference_rows(report_text):
    assert ("| `q8_0` | `gsm8k` | 20 | -1.0 [-6.2, +4.2] | pp | -0.09 | McNemar | 1.000 | 1.000 | 1 / 1 "
            "| 6.9 |") in report_text
    assert ("| `q4_k_m` | `arc_challenge` | 100 | -7.0 [-12.0, -2.0] | pp | -0.28 | McNemar | 0.013 | 0.114 "
            "| 12 / 5 | 7.0 |") in report_text
    assert ("| `q8_0` | `gsm8k` | 20 | 0.0 [0.0, 0.0] | pp | n/a | McNemar | 1.000 | 1.000 | 0 / 0 "
            "| 20.0 |") in report_text
    assert ("| `q4_k_m` | `arc_challenge` | 100 | +4.0 [-0.4, +8.4] | pp | +0.18 | McNemar | <0.001 | 0.008 "
            "| 3 / 7 | 6.2 |") in report_text


def test_report_power_warnings(report_text):
    # gsm8k MDDs 6.88, 12.5, 14.3, 20.0, 10.6 pp; arc_challenge 5.6, 7.0, 8.7, 2.8, 6.16 pp.
    text = _normalize(report_text)
    assert ("**Warning:** `gsm8k` uses `limit: 20`, and at 80% power its comparisons detect only "
            "differences of 6.9 to 20.0 pp, more than a drop of 2.0 pp.") in text
    assert "`arc_challenge` uses `limit: 100`, and at 80% power its comparisons detect only differences of 2.8 to 8.7 pp" in text


def test_report_no_warning_without_limit(results, tmp_path):
    comparison, analysis = results
    config = {**CONFIG, "benchmarks": {"gsm8k": {"limit": None}, "arc_challenge": {"limit": None}}}
    output = tmp_path / "report.md"
    write_analysis_report(config, comparison, analysis, output)

    assert "Warning" not in output.read_text(encoding="utf-8")


def test_report_findings_follow_intervals(report_text):
    text = _normalize(report_text)
    assert ("`q4_k_m` on `gsm8k`: the 95% CI of the difference from `base`, [-18.4, +0.4] pp, "
            "includes 0: no detectable change at n = 20.") in text
    assert ("`q4_k_m` on `arc_challenge`: scores lower than `base`, difference -7.0 pp "
            "(95% CI [-12.0, -2.0] pp, n = 100, d_z = -0.28); the CI excludes 0.") in text
    assert "`q8_0` on `gsm8k`: the same score as `base` on each of the 20 items." in text
    assert "scores higher" not in text


def test_report_imatrix_effect(report_text):
    # The paired comparison of q4_k_m with q4_k_m-no-imatrix, from IMATRIX_EFFECT.
    assert ("| `q4_k_m` | `gsm8k` | 22.0 [6.4, 37.6] | 18.0 [4.1, 31.9] | +4.0 [-5.0, +13.0] | pp | McNemar "
            "| 0.688 | 1.000 | 1 / 3 | 15.0 |") in report_text
    assert ("| `q4_k_m` | `arc_challenge` | 35.0 [26.3, 44.8] | 33.0 [24.4, 42.8] | +2.0 [-3.0, +7.0] | pp "
            "| McNemar | 0.549 | 1.000 | 4 / 6 | 6.0 |") in report_text
    assert ("- `q4_k_m`: mean KL divergence with minus without the imatrix -0.00400 nats per token, "
            "95% CI [-0.00498, -0.00302].") in report_text
    assert "No quantization type of `tiny-llama` was evaluated both with and without the imatrix." in report_text


def test_report_tensor_audit(report_text):
    assert ("| `q4_k_m` | `Q4_K_M` | yes | 100.6 | 6.27 | `Q5_0` 120 (59.2%), `Q6_K` 31 (21.0%), "
            "`Q4_K` 30 (19.7%), `F32` 91 (0.0%) | 150 |") in report_text
    assert "| `base` | `F16` | no | 270.3 | 16.86 |" in report_text
    assert "| `q8_0` | `Q8_0` | yes | 138.3 | 8.62 |" in report_text
    assert "row size is not a multiple of the target type's block size" in report_text


def test_report_caveat_per_model(report_text):
    grid_section, plain_section = report_text.split("## Model `tiny-llama`")
    assert CAVEAT_PHRASE in _normalize(grid_section)
    assert CAVEAT_PHRASE not in _normalize(plain_section)


def test_report_rejects_missing_result(results, tmp_path):
    comparison, analysis = results
    analysis["results"].pop()
    output = tmp_path / "report.md"

    with pytest.raises(InvalidDataError, match="'q4_k_m', benchmark 'arc_challenge'"):
        write_analysis_report(CONFIG, comparison, analysis, output)

    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------ scorecard

# CI installs the tools through `make test`, so there a missing tool is a failure, not a skip.
needs_latex = pytest.mark.skipif(
    any(shutil.which(tool) is None for tool in ("pandoc", "xelatex", "pdftotext")) and not os.environ.get("CI"),
    reason="pandoc, xelatex or pdftotext missing; run scripts/install_system_packages.sh",
)


def _draw_charts(comparison: dict, analysis: dict, charts_dir: Path) -> None:
    draw_performance(comparison, analysis, charts_dir / "quantization_performance.png")
    draw_efficiency(comparison, analysis, charts_dir / "quantization_efficiency.png")
    draw_paired_differences(comparison, analysis, charts_dir / "paired_differences.png")
    draw_flips(comparison, analysis, charts_dir / "flips.png")


@pytest.fixture(scope="module")
def scorecard(tmp_path_factory) -> tuple[Path, str]:
    """Build the scorecard once; return its PDF and the PDF's text from pdftotext."""
    root = tmp_path_factory.mktemp("workflow")
    comparison, analysis = build_results({GRID_MODEL: True, PLAIN_MODEL: False})
    _draw_charts(comparison, analysis, root / "charts")
    pdf = root / "scorecards" / "quantization_evaluation.pdf"
    write_scorecard(CONFIG, comparison, analysis, root / "charts", pdf)
    text = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    return pdf, text


@needs_latex
def test_scorecard_files(scorecard):
    pdf, _ = scorecard
    tex = pdf.with_suffix(".tex")

    assert pdf.read_bytes()[:5] == b"%PDF-"
    assert sorted(p.name for p in pdf.parent.iterdir()) == ["quantization_evaluation.pdf", "quantization_evaluation.tex"]
    tex_text = tex.read_text(encoding="utf-8")
    assert "\\toprule" in tex_text
    assert "../charts/quantization_performance.png" in tex_text
    assert "../charts/quantization_efficiency.png" in tex_text
    assert "../charts/paired_differences.png" in tex_text
    assert "../charts/flips.png" in tex_text


@needs_latex
def test_scorecard_numbers_in_pdf(scorecard):
    text = _normalize(scorecard[1])

    assert "22.0 [6.4, 37.6]" in text
    assert "35.0 [26.3, 44.8]" in text
    assert "42.0 [32.7, 52.0]" in text
    assert "-7.0 [-12.0, -2.0]" in text
    assert "-1.0 [-6.2, +4.2]" in text
    assert "Quantization evaluation of smollm2-135m, tiny-llama" in text
    # Holm-adjusted p below 0.05: only q4_k_m-no-imatrix on arc_challenge (0.044) and
    # q4_k_m of tiny-llama on arc_challenge (0.008).
    assert "After the Holm adjustment over all 10 comparisons, 2 have a p-value below 0.05." in text
    assert "12 / 5" in text


@needs_latex
def test_scorecard_caveat_in_pdf(scorecard):
    text = _normalize(scorecard[1])

    assert CAVEAT_PHRASE in text
    assert "base model of smollm2-135m was dequantized from a quantized GGUF" in text


@needs_latex
def test_scorecard_renders_japanese(results, tmp_path):
    comparison, analysis = results
    japanese_model = "日本語モデル"
    comparison["models"][japanese_model] = comparison["models"].pop(PLAIN_MODEL)
    for variant in comparison["variants"]:
        if variant["model"] == PLAIN_MODEL:
            variant["model"] = japanese_model
    for result in analysis["results"]:
        if result["model"] == PLAIN_MODEL:
            result["model"] = japanese_model
    _draw_charts(comparison, analysis, tmp_path / "charts")
    pdf = tmp_path / "scorecard.pdf"

    write_scorecard(CONFIG, comparison, analysis, tmp_path / "charts", pdf)

    fonts = subprocess.run(["pdffonts", str(pdf)], capture_output=True, text=True, check=True).stdout
    text = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    assert "NotoSerifCJK" in fonts
    assert japanese_model in text


@needs_latex
def test_scorecard_missing_engine(results, tmp_path):
    comparison, analysis = results
    _draw_charts(comparison, analysis, tmp_path / "charts")
    pdf = tmp_path / "scorecards" / "scorecard.pdf"

    with pytest.raises(ScorecardError, match="no-such-latex-engine") as error:
        write_scorecard(CONFIG, comparison, analysis, tmp_path / "charts", pdf, engine="no-such-latex-engine")

    assert "scorecard.tex" in str(error.value)
    assert not pdf.exists()


@needs_latex
def test_scorecard_latex_error(results, tmp_path, monkeypatch):
    comparison, analysis = results
    _draw_charts(comparison, analysis, tmp_path / "charts")
    pdf = tmp_path / "scorecards" / "scorecard.pdf"
    pdf.parent.mkdir()
    pdf.write_bytes(b"%PDF- previous scorecard")
    monkeypatch.setattr(scorecard_module, "XELATEX_HEADER", scorecard_module.XELATEX_HEADER + "\\undefinedscorecardmacro\n")

    with pytest.raises(ScorecardError) as error:
        write_scorecard(CONFIG, comparison, analysis, tmp_path / "charts", pdf)

    message = str(error.value)
    assert "xelatex failed" in message
    assert str(pdf.with_suffix(".tex")) in message
    assert "Undefined control sequence" in message
    assert pdf.read_bytes() == b"%PDF- previous scorecard"
    assert sorted(p.name for p in pdf.parent.iterdir()) == ["scorecard.pdf", "scorecard.tex"]


@needs_latex
def test_scorecard_corrupt_chart(results, tmp_path):
    comparison, analysis = results
    _draw_charts(comparison, analysis, tmp_path / "charts")
    (tmp_path / "charts" / "quantization_efficiency.png").write_bytes(b"not a png")
    pdf = tmp_path / "scorecards" / "scorecard.pdf"

    with pytest.raises(ScorecardError, match="xelatex failed"):
        write_scorecard(CONFIG, comparison, analysis, tmp_path / "charts", pdf)

    assert not pdf.exists()
