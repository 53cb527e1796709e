"""The workflow with recipes and the README's user benchmarks, on a tiny random-weight model.

One run goes from the model to the PDF scorecard. The re-run tests then change one recipe,
calibration set or scorer and ask Snakemake which jobs it would run (dry runs).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import write_tiny_llama
from test_workflow import planned_outputs, snakemake

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "user_benchmark"
MODEL = "tiny"
VARIANTS = ("base", "q4_k_m", "q4_k_m-high", "q4_0-math")

pytestmark = pytest.mark.workflow


def example_benchmarks() -> dict:
    """The README example's two benchmarks, with absolute paths."""
    benchmarks = yaml.safe_load((EXAMPLE / "config.yaml").read_text())["benchmarks"]
    for settings in benchmarks.values():
        for key in ("module", "data", "include_path"):
            if key in settings:
                settings[key] = str(REPO / settings[key])
    return benchmarks


def make_config(model: Path, **changes) -> dict:
    config = {
        "models": {MODEL: {"source": str(model)}},
        "quantizations": [
            "q4_k_m",
            {"name": "q4_k_m-high", "type": "q4_k_m", "protection": "high"},
            {"name": "q4_0-math", "type": "q4_0", "calibration": "math_heavy"},
        ],
        "imatrix": {
            "calibration": ["dataset-build:eng/eng.txt"],
            "calibration_sets": {"math_heavy": [{"source": "dataset-build:coding/math/math.txt", "weight": 3},
                                                {"source": "dataset-build:eng/eng.txt", "weight": 1}]},
            "context": 128, "chunks": 4, "batch_size": 128,
        },
        "benchmarks": example_benchmarks(),
        "runs": 2,
        "seed": 7,
        "evaluation": {"context": 512, "threads": 1},
    }
    config.update(changes)
    return config


def write(config: dict, path: Path) -> Path:
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return write_tiny_llama(tmp_path_factory.mktemp("model") / "tiny-untied.gguf", output_tensor=True)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, model) -> Path:
    folder = tmp_path_factory.mktemp("recipes-workflow")
    config = write(make_config(model), folder / "config.yaml")
    result = snakemake(folder, config, "scorecards/quantization_evaluation.pdf")
    assert result.returncode == 0, result.stderr[-5000:]
    return folder


def read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def test_recipe_audit_shows_overrides(workdir):
    comparison = read_json(workdir / "evaluation_results/quantization_comparison.json")
    by_name = {v["variant"]: v for v in comparison["variants"]}
    high = by_name["q4_k_m-high"]

    assert high["recipe"]["protection"] == "high"
    assert [c["applied"] for c in high["overrides"]] == [True, True, True]
    assert high["overrides"][0]["tensors"] == {"output.weight": "Q8_0"}
    assert high["overrides"][2]["tensors"] == {"blk.0.attn_v.weight": "Q8_0", "blk.1.attn_v.weight": "Q8_0"}
    assert high["tensor_types"]["Q8_0"]["n_tensors"] == 4
    assert "Q8_0" not in by_name["q4_k_m"]["tensor_types"]
    assert high["file_size_bytes"] > by_name["q4_k_m"]["file_size_bytes"]


def test_recipe_calibration_set_used(workdir):
    assert (workdir / f"imatrix_data/{MODEL}/math_heavy.imatrix").is_file()
    tokens = read_json(workdir / f"imatrix_data/{MODEL}/math_heavy.tokens.json")
    comparison = read_json(workdir / "evaluation_results/quantization_comparison.json")
    math = next(v for v in comparison["variants"] if v["variant"] == "q4_0-math")
    methodology = (workdir / "methodology/quantization_methodology.md").read_text()

    assert tokens["tokens_read"] == 4 * 128
    assert math["calibration"] == tokens
    assert "Calibration set `math_heavy`" in methodology
    for source in tokens["sources"]:
        assert f"| {source['n_tokens']} | {source['n_tokens_read']} |" in methodology


def test_user_benchmarks_in_statistics(workdir):
    analysis = read_json(workdir / "evaluation_results/statistical_analysis.json")
    for benchmark, n_items, metric in (("addition", 8, "score"), ("opposites", 6, "acc_norm")):
        for variant in VARIANTS:
            cell = next(r for r in analysis["results"] if r["variant"] == variant and r["benchmark"] == benchmark)
            run = read_json(workdir / f"evaluation_results/runs/{MODEL}/{variant}/{benchmark}/run1.json")
            assert run["metric"] == metric
            assert cell["n_items"] == n_items
            assert cell["mean"] == pytest.approx(sum(item["score"] for item in run["items"]) / n_items)
    # Greedy generation and 0-shot log-likelihoods: one run stands for the configured two.
    assert not list((workdir / "evaluation_results/runs").rglob("run2.json"))


def test_user_benchmark_scores_recomputed(workdir):
    """The Python scorer's verdicts in the run file agree with the data and the completions."""
    import re

    items = {json.loads(line)["id"]: json.loads(line) for line in (EXAMPLE / "addition.jsonl").read_text().splitlines()}
    run = read_json(workdir / f"evaluation_results/runs/{MODEL}/base/addition/run1.json")
    for record in run["items"]:
        item = items[record["id"]]
        match = re.search(r"-?\d+", record["output"])
        expected = 1.0 if match and int(match.group()) == item["a"] + item["b"] else 0.0
        assert record["score"] == expected
        assert record["prompt"].endswith(f"What is {item['a']} plus {item['b']}?\nA:")


def test_user_benchmarks_in_scorecard(workdir):
    text = subprocess.run(["pdftotext", "-layout", str(workdir / "scorecards/quantization_evaluation.pdf"), "-"],
                          capture_output=True, text=True, check=True).stdout
    methodology = (workdir / "methodology/quantization_methodology.md").read_text()

    for name in ("addition", "opposites", "q4_k_m-high", "q4_0-math"):
        assert name in text
    assert "Two-number addition" in methodology
    assert "protection high" in methodology


def test_changed_recipe_reruns_only_it(workdir, model, tmp_path):
    config = make_config(model)
    config["quantizations"][1]["tensor_types"] = {"ffn_down": "q8_0"}
    outputs = planned_outputs(workdir, write(config, tmp_path / "changed.yaml"))
    quantized = sorted(o for o in outputs if o.startswith("quantized_models/"))
    evaluated = sorted(o for o in outputs if o.startswith("evaluation_results/runs/"))

    assert quantized == [f"quantized_models/{MODEL}/q4_k_m-high.audit.json",
                         f"quantized_models/{MODEL}/q4_k_m-high.gguf"]
    assert evaluated == [f"evaluation_results/runs/{MODEL}/q4_k_m-high/{b}/run1.json"
                         for b in ("addition", "opposites")]
    assert "evaluation_results/quantization_comparison.json" in outputs
    assert not any(o.startswith(("imatrix_data/", "calibration/", "base_models/", "benchmark_data/"))
                   for o in outputs)


def test_changed_calibration_set_reruns_only_its_recipe(workdir, model, tmp_path):
    config = make_config(model)
    config["imatrix"]["calibration_sets"]["math_heavy"][0]["weight"] = 1
    outputs = planned_outputs(workdir, write(config, tmp_path / "changed.yaml"))
    quantized = sorted(o for o in outputs if o.startswith("quantized_models/"))

    assert "calibration/sets/math_heavy.txt" in outputs
    assert f"imatrix_data/{MODEL}/math_heavy.imatrix" in outputs
    assert f"imatrix_data/{MODEL}.imatrix" not in outputs
    assert quantized == [f"quantized_models/{MODEL}/q4_0-math.audit.json",
                         f"quantized_models/{MODEL}/q4_0-math.gguf"]
    assert all("/q4_0-math/" in o for o in outputs if o.startswith("evaluation_results/runs/"))


def test_changed_user_scorer_reruns_its_benchmark(workdir, model, tmp_path):
    scorer = tmp_path / "scorer.py"
    scorer.write_text((EXAMPLE / "scorer.py").read_text() + "\n# edited\n")
    config = make_config(model)
    config["benchmarks"]["addition"]["module"] = str(scorer)
    outputs = planned_outputs(workdir, write(config, tmp_path / "changed.yaml"))
    evaluated = sorted(o for o in outputs if o.startswith("evaluation_results/runs/"))

    assert evaluated == sorted(f"evaluation_results/runs/{MODEL}/{v}/addition/run1.json" for v in VARIANTS)
    assert not any(o.startswith(("quantized_models/", "imatrix_data/")) for o in outputs)


def test_rerun_has_nothing_to_do(workdir, model):
    config = write(make_config(model), workdir / "config.yaml")
    result = snakemake(workdir, config, "scorecards/quantization_evaluation.pdf", "--dry-run")

    assert result.returncode == 0
    assert "Nothing to be done" in result.stdout + result.stderr
