"""A variant whose model file is corrupt: a failed run file, then marked cells in the reports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import write_tiny_llama
from quant_eval.charts import draw_efficiency, draw_performance
from quant_eval.comparison import build_comparison
from quant_eval.evaluation.runner import evaluate
from quant_eval.files import write_json
from quant_eval.reporting.analysis import analysis_markdown
from quant_eval.reporting.formats import FAILED
from quant_eval.reporting.results import ResultIndex
from quant_eval.statistics import analyze

CONFIG = {
    "models": {"tiny": {"source": "tiny.gguf"}},
    "quantizations": ["q8_0"],
    "without_imatrix": ["q8_0"],
    "reference": "base",
    "benchmarks": {"arc_challenge": {"limit": 4, "num_fewshot": 0}},
    "runs": 1,
    "seed": 1,
}
REASON = "quantized_models/tiny/q8_0.gguf is truncated: its tensors need 100 bytes but the file has 50"


@pytest.mark.parametrize("damage, expected", [
    ("truncate", "truncated"),
    ("text", "is not a GGUF file"),
])
def test_evaluate_records_corrupt_model(tmp_path, damage, expected):
    model = write_tiny_llama(tmp_path / "model.gguf")
    if damage == "truncate":
        with model.open("r+b") as handle:
            handle.truncate(model.stat().st_size - 1000)
    else:
        model.write_text("not a model")
    output = tmp_path / "run1.json"

    # The benchmark data are never read: the model is checked first.
    record = evaluate(model, "arc_challenge", {"limit": 4}, tmp_path / "absent.jsonl", tmp_path / "absent.jsonl",
                      run=2, seed=10, context=512, threads=1, output=output,
                      labels={"model": "tiny", "variant": "q8_0"})

    written = json.loads(output.read_text())
    assert written == record
    assert written["status"] == "failed"
    assert expected in written["reason"]
    assert str(model) in written["reason"]
    assert (written["model"], written["variant"], written["run"], written["seed"]) == ("tiny", "q8_0", 2, 11)
    assert written["items"] == []
    assert written["mean_score"] is None


def write_inputs(folder: Path) -> tuple[dict, dict, list[Path]]:
    """Write base-model records, audits and run files: q8_0's run failed, the others scored."""
    audit = {"file_size_bytes": 1000, "n_parameters": 500, "bits_per_weight": 16.0,
             "tensor_types": {"F16": {"n_tensors": 3, "n_parameters": 500}}, "fallback_tensors": []}
    base_info = folder / "base.json"
    write_json({"source": "tiny.gguf", "base_type": "F16", "grid_limited": False, "note": "used as given"}, base_info)
    audits = {}
    for variant in ("base", "q8_0", "q8_0-no-imatrix"):
        audits[("tiny", variant)] = folder / f"{variant}.audit.json"
        write_json(audit, audits[("tiny", variant)])

    runs = []
    scores = {"base": [1.0, 1.0, 0.0, 1.0], "q8_0-no-imatrix": [1.0, 0.0, 0.0, 1.0]}
    for variant in ("base", "q8_0", "q8_0-no-imatrix"):
        record = {"model": "tiny", "variant": variant, "benchmark": "arc_challenge", "metric": "acc_norm", "run": 1}
        if variant == "q8_0":
            record.update({"status": "failed", "reason": REASON, "n_items": 0, "items": []})
        else:
            items = [{"id": f"item-{i}", "score": score} for i, score in enumerate(scores[variant])]
            record.update({"status": "complete", "reason": None, "n_items": 4, "items": items})
        runs.append(folder / f"{variant}.run1.json")
        write_json(record, runs[-1])
    return {"tiny": base_info}, audits, runs


@pytest.fixture
def results(tmp_path) -> tuple[dict, dict]:
    comparison = build_comparison(CONFIG, *write_inputs(tmp_path))
    return comparison, analyze(comparison, imatrix_pairs=[("q8_0", "q8_0-no-imatrix")])


def test_comparison_lists_failed_runs(results):
    comparison, _ = results
    assert comparison["failures"] == [
        {"model": "tiny", "variant": "q8_0", "benchmark": "arc_challenge", "run": 1, "reason": REASON}
    ]
    assert set(comparison["scores"]["tiny"]) == {"base", "q8_0-no-imatrix"}
    assert comparison["benchmarks"]["arc_challenge"]["n_items"] == 4


def test_analysis_marks_failed_cell(results):
    _, analysis = results
    cells = {r["variant"]: r for r in analysis["results"]}
    assert set(cells) == {"base", "q8_0", "q8_0-no-imatrix"}
    failed = cells["q8_0"]
    assert (failed["status"], failed["reason"]) == ("failed", REASON)
    assert failed["mean"] is None
    assert failed["ci_low"] is None
    assert failed["paired"] is None
    assert failed["n_items"] == 0
    scored = cells["q8_0-no-imatrix"]
    assert (scored["status"], scored["reason"]) == ("complete", None)
    assert scored["mean"] == pytest.approx(0.5)
    assert scored["paired"]["mean_difference"] == pytest.approx(-0.25)


def test_report_marks_missing_cells_with_reason(results):
    text = analysis_markdown(ResultIndex.build(*results))
    assert f"| `q8_0` | {FAILED} |" in text
    assert "| `q8_0-no-imatrix` | 50.0 [" in text
    assert "- `q8_0` on `arc_challenge`: quantized\\_models/tiny/q8\\_0.gguf is truncated" in text
    assert "`q8_0` on `arc_challenge`: no comparison, because the evaluation of `q8_0` failed" in text
    # The imatrix effect has no difference without the q8_0 score.
    imatrix_row = f"| `q8_0` | `arc_challenge` | {FAILED} | 50.0 [15.0, 85.0] | n/a | pp | n/a | n/a | n/a | n/a | n/a |"
    assert imatrix_row in text


def test_charts_drawn_without_failed_cell(results, tmp_path):
    comparison, analysis = results
    draw_performance(comparison, analysis, tmp_path / "performance.png")
    draw_efficiency(comparison, analysis, tmp_path / "efficiency.png")
    for name in ("performance.png", "efficiency.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
