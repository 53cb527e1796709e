"""Reports with a third benchmark, MATH, and its counts of how answers were judged.

The result files are written here by hand; each expected number follows from them.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from quant_eval.charts import draw_efficiency, draw_flips, draw_paired_differences, draw_performance
from quant_eval.reporting import write_analysis_report, write_methodology, write_scorecard
from quant_eval.reporting.analysis import analysis_markdown
from quant_eval.reporting.results import ResultIndex
from quant_eval.reporting.scorecard import scorecard_markdown
from quant_eval.statistics import paired_comparison

MODEL = "tiny"
CONFIG = {
    "models": {MODEL: {"source": "models/tiny.gguf"}},
    "quantizations": ["q4_k_m"],
    "without_imatrix": [],
    "reference": "base",
    "imatrix": {"calibration": ["dataset-build:eng/eng.txt"], "context": 512, "chunks": 8, "batch_size": 512},
    "benchmarks": {
        "gsm8k": {"limit": 10, "temperature": 0.6, "max_tokens": 256},
        "arc_challenge": {"limit": 10, "num_fewshot": 0},
        "math": {"limit": 10, "subset": "math500", "temperature": 0, "max_tokens": 384},
    },
    "runs": 2,
    "seed": 1234,
    "evaluation": {"context": 2048, "threads": 2},
    "statistics": {"confidence_level": 0.95},
}
BENCHMARKS = {
    "gsm8k": {"metric": "exact_match", "n_items": 10, "runs": 2, "score_kind": "binary", "item_groups": {}},
    "arc_challenge": {"metric": "acc_norm", "n_items": 10, "runs": 1, "score_kind": "binary", "item_groups": {}},
    "math": {
        "metric": "exact_match", "n_items": 10, "runs": 1, "score_kind": "binary",
        "item_groups": {"subject": {f"math-{i}": "Algebra" for i in range(10)},
                        "level": {f"math-{i}": "Level 2" for i in range(10)}},
        "decided_by": {MODEL: {"base": {"identical": 2, "sympy": 3, "string": 1, "no_answer": 4},
                               "q4_k_m": {"identical": 1, "sympy": 2, "string": 2, "no_answer": 5}}},
    },
}
# (variant, benchmark): (mean, ci_low, ci_high)
MEANS = {
    ("base", "gsm8k"): (0.2, 0.057, 0.51),
    ("base", "arc_challenge"): (0.3, 0.108, 0.603),
    ("base", "math"): (0.5, 0.237, 0.763),
    ("q4_k_m", "gsm8k"): (0.1, 0.018, 0.404),
    ("q4_k_m", "arc_challenge"): (0.3, 0.108, 0.603),
    ("q4_k_m", "math"): (0.3, 0.108, 0.603),
}


def build_results() -> tuple[dict, dict]:
    variants = [
        {"model": MODEL, "variant": variant, "quantization_type": quantization_type, "imatrix": variant != "base",
         "file_size_bytes": size, "n_parameters": 1_000_000, "bits_per_weight": bits,
         "tensor_types": {quantization_type: {"n_tensors": 10, "n_parameters": 1_000_000}}, "fallback_tensors": 0}
        for variant, quantization_type, size, bits in (("base", "F16", 2_000_000, 16.0), ("q4_k_m", "Q4_K_M", 600_000, 4.8))
    ]
    scores: dict = {MODEL: {"base": {}, "q4_k_m": {}}}
    results = []
    for (variant, benchmark), (mean, low, high) in MEANS.items():
        info = BENCHMARKS[benchmark]
        correct = round(mean * info["n_items"])
        scores[MODEL][variant][benchmark] = {
            f"{benchmark}-{i}": [float(i < correct)] * info["runs"] for i in range(info["n_items"])
        }
        results.append({
            "model": MODEL, "variant": variant, "benchmark": benchmark, "metric": info["metric"],
            "score_kind": "binary", "group_by": None, "group": None,
            "n_items": 10, "n_runs": info["runs"], "mean": mean, "sd": 0.5, "se": 0.16,
            "ci_low": low, "ci_high": high, "interval_method": "wilson" if info["runs"] == 1 else "wilson, effective n",
            "within_item_variance": None, "between_item_variance": 0.25, "paired": None,
            "status": "complete", "reason": None,
        })
    # The paired comparisons come from the statistics module; these tests check the MATH parts.
    for result in results:
        if result["variant"] != "base":
            benchmark = result["benchmark"]
            paired = paired_comparison(scores[MODEL]["q4_k_m"][benchmark], scores[MODEL]["base"][benchmark],
                                       "base", "binary", 0.95, 0.8)
            paired["p_value_holm"] = paired["p_value"]
            result["paired"] = paired
    comparison = {"reference": "base", "models": {MODEL: {"source": "models/tiny.gguf", "base_type": "F16",
                                                          "grid_limited": False, "note": "used as given (F16)"}},
                  "variants": variants, "benchmarks": BENCHMARKS, "scores": scores}
    analysis = {"confidence_level": 0.95, "reference": "base", "results": results, "imatrix_effect": [],
                "power": {"power": 0.8, "alpha": 0.05, "target_difference": {"binary": 0.02}}}
    return comparison, analysis


def squeeze(text: str) -> str:
    return re.sub(r"\s+", " ", text.replace("\u00a0", " "))


def test_analysis_score_table_has_math_column():
    markdown = analysis_markdown(ResultIndex.build(*build_results()))

    assert "| Variant | `gsm8k` (`exact_match`, %) | `arc_challenge` (`acc_norm`, %) | `math` (`exact_match`, %) |" in markdown
    assert "| `base` | 20.0 [5.7, 51.0] | 30.0 [10.8, 60.3] | 50.0 [23.7, 76.3] |" in markdown


def test_analysis_answer_comparison_table(tmp_path):
    output = tmp_path / "report.md"
    write_analysis_report(CONFIG, *build_results(), output)
    markdown = output.read_text()

    assert "### Answer comparison" in markdown
    assert "Answers of `math`:" in markdown
    assert "| `base` | 10 | 2 | 3 | 1 | 4 |" in markdown
    assert "| `q4_k_m` | 10 | 1 | 2 | 2 | 5 |" in markdown
    assert "string fallback" in markdown


def test_analysis_without_math_has_no_answer_comparison():
    comparison, analysis = build_results()
    comparison["benchmarks"] = {name: info for name, info in BENCHMARKS.items() if name != "math"}
    analysis["results"] = [result for result in analysis["results"] if result["benchmark"] != "math"]

    assert "Answer comparison" not in analysis_markdown(ResultIndex.build(comparison, analysis))


def test_methodology_counts_string_fallbacks(tmp_path):
    output = tmp_path / "methodology.md"
    write_methodology(CONFIG, *build_results(), output)
    text = squeeze(output.read_text())

    assert "- `math`: Competition math (MATH)" in text
    assert ("Answer comparison: of 20 answers (one per item, run, variant and model), 3 equalled the reference "
            "after normalization, 5 were compared by sympy, 3 fell back to string comparison") in text
    assert "and 9 had no final answer." in text
    assert "Settings: item set `math500`; greedy decoding, temperature 0; at most 384 generated tokens." in text


def test_scorecard_markdown_lists_math():
    markdown = scorecard_markdown(CONFIG, ResultIndex.build(*build_results()), "../charts")

    assert "`math` (`exact_match`, %)" in markdown
    assert "3 fell back to string comparison" in squeeze(markdown)


needs_latex = pytest.mark.skipif(
    any(shutil.which(tool) is None for tool in ("pandoc", "xelatex", "pdftotext")) and not os.environ.get("CI"),
    reason="pandoc, xelatex or pdftotext missing; run scripts/install_system_packages.sh",
)


@needs_latex
def test_scorecard_pdf_with_three_benchmarks(tmp_path):
    comparison, analysis = build_results()
    draw_performance(comparison, analysis, tmp_path / "charts" / "quantization_performance.png")
    draw_efficiency(comparison, analysis, tmp_path / "charts" / "quantization_efficiency.png")
    draw_paired_differences(comparison, analysis, tmp_path / "charts" / "paired_differences.png")
    draw_flips(comparison, analysis, tmp_path / "charts" / "flips.png")
    pdf = tmp_path / "scorecards" / "quantization_evaluation.pdf"

    write_scorecard(CONFIG, comparison, analysis, tmp_path / "charts", pdf)
    text = squeeze(subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True, check=True).stdout)

    assert "50.0 [23.7, 76.3]" in text
    assert "30.0 [10.8, 60.3]" in text
    assert "3 fell back to string comparison" in text
