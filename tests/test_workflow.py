"""The real Snakemake workflow on the small test configuration, from the embedded model to the PDF.

The first run takes a few minutes; later tests reuse its outputs and mostly ask Snakemake
what it would re-run (dry runs), which is how re-run behaviour is specified.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from quant_eval.reporting import SCORE_FORMATS, format_estimate

REPO = Path(__file__).resolve().parents[1]
TEST_CONFIG = REPO / "config" / "test" / "config.yaml"

pytestmark = pytest.mark.workflow


def snakemake_command(workdir: Path, config: Path, *arguments: str) -> list[str]:
    return [
        sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(workdir),
        "--configfile", str(config), "--cores", "2", *arguments,
    ]


def snakemake(workdir: Path, config: Path, *arguments: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    return subprocess.run(snakemake_command(workdir, config, *arguments), capture_output=True, text=True,
                          env=environment, check=False)


def planned_outputs(workdir: Path, config: Path) -> list[str]:
    """Return the output files of the jobs a dry run would execute."""
    result = snakemake(workdir, config, "--dry-run")
    assert result.returncode == 0, result.stderr + result.stdout
    outputs = []
    for line in (result.stdout + result.stderr).splitlines():
        match = re.match(r"^\s+output: (.*)$", line)
        if match:
            outputs.extend(part.strip() for part in match.group(1).split(","))
    return outputs


def write_config(folder: Path, **changes) -> Path:
    config = yaml.safe_load(TEST_CONFIG.read_text())
    for key, value in changes.items():
        target = config
        *parents, last = key.split(".")
        for parent in parents:
            target = target[parent]
        target[last] = value
    path = folder / "changed.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("workflow")
    result = snakemake(folder, TEST_CONFIG, "scorecards/quantization_evaluation.pdf")
    assert result.returncode == 0, result.stderr[-5000:]
    return folder


DOWNSTREAM_OF_RUNS = (
    "evaluation_results/quantization_comparison.json",
    "evaluation_results/statistical_analysis.json",
    "charts/quantization_performance.png",
    "charts/quantization_efficiency.png",
    "methodology/quantization_methodology.md",
    "reports/quantization_analysis_report.md",
    "scorecards/quantization_evaluation.pdf",
    "scorecards/quantization_evaluation.tex",
)


def run_files(workdir: Path) -> list[Path]:
    return sorted((workdir / "evaluation_results" / "runs").rglob("run*.json"))


def test_all_outputs_written(workdir):
    for name in (
        "base_models/smollm2-135m.gguf",
        "imatrix_data/smollm2-135m.imatrix",
        "quantized_models/smollm2-135m/q8_0.gguf",
        "quantized_models/smollm2-135m/q4_k_m.gguf",
        "quantized_models/smollm2-135m/q4_k_m-no-imatrix.gguf",
        *[f"fidelity/smollm2-135m/{variant}.json" for variant in ("base", "q8_0", "q4_k_m", "q4_k_m-no-imatrix")],
        *DOWNSTREAM_OF_RUNS,
    ):
        assert (workdir / name).is_file(), name
    assert not list(workdir.rglob("*.tmp"))
    # The base log-probs are temporary, and the comparison carries every variant's fidelity.
    assert not (workdir / "fidelity/smollm2-135m/base_logprobs.bin").exists()
    comparison = json.loads((workdir / "evaluation_results/quantization_comparison.json").read_text())
    assert sorted(comparison["fidelity"]["smollm2-135m"]) == ["base", "q4_k_m", "q4_k_m-no-imatrix", "q8_0"]


def test_identical_runs_computed_once(workdir):
    names = {str(path.relative_to(workdir / "evaluation_results" / "runs")) for path in run_files(workdir)}
    # gsm8k samples at temperature 0.6, so its 2 runs differ; arc_challenge is 0-shot
    # log-likelihood, so one run stands for all.
    for variant in ("base", "q8_0", "q4_k_m", "q4_k_m-no-imatrix"):
        assert f"smollm2-135m/{variant}/gsm8k/run1.json" in names
        assert f"smollm2-135m/{variant}/gsm8k/run2.json" in names
        assert f"smollm2-135m/{variant}/arc_challenge/run1.json" in names
    assert len(names) == 12


def test_statistics_match_run_files(workdir):
    """Recompute one cell's mean from the per-run files and compare with the analysis."""
    analysis = json.loads((workdir / "evaluation_results/statistical_analysis.json").read_text())
    cell = next(r for r in analysis["results"] if r["variant"] == "q4_k_m" and r["benchmark"] == "arc_challenge")
    run = json.loads((workdir / "evaluation_results/runs/smollm2-135m/q4_k_m/arc_challenge/run1.json").read_text())
    assert cell["n_items"] == 12
    assert cell["mean"] == pytest.approx(sum(item["acc_norm"] for item in run["items"]) / 12)

    gsm8k = next(r for r in analysis["results"] if r["variant"] == "base" and r["benchmark"] == "gsm8k")
    scores = [json.loads((workdir / f"evaluation_results/runs/smollm2-135m/base/gsm8k/run{k}.json").read_text())
              for k in (1, 2)]
    assert gsm8k["n_runs"] == 2
    assert gsm8k["mean"] == pytest.approx(sum(i["score"] for s in scores for i in s["items"]) / 6)


def cell_texts(result: dict) -> list[str]:
    """The score and the paired difference of one result, formatted as the scorecard writes them."""
    binary = SCORE_FORMATS["binary"]
    texts = [format_estimate(result["mean"], result["ci_low"], result["ci_high"], binary)]
    paired = result["paired"]
    if paired is not None:
        texts.append(format_estimate(paired["mean_difference"], paired["ci_low"], paired["ci_high"],
                                     binary, signed=True))
    return texts


def test_pdf_shows_statistics(workdir):
    analysis = json.loads((workdir / "evaluation_results/statistical_analysis.json").read_text())
    text = subprocess.run(["pdftotext", "-layout", str(workdir / "scorecards/quantization_evaluation.pdf"), "-"],
                          capture_output=True, text=True, check=True).stdout
    flat = " ".join(text.split())
    for result in analysis["results"]:
        for expected in cell_texts(result):
            assert expected in flat, (result["variant"], result["benchmark"], expected)
    assert "understates" in flat


def test_rerun_has_nothing_to_do(workdir):
    result = snakemake(workdir, TEST_CONFIG, "scorecards/quantization_evaluation.pdf", "--dry-run")
    assert result.returncode == 0
    assert "Nothing to be done" in result.stdout + result.stderr


def test_changed_type_reruns_only_that_variant(workdir, tmp_path):
    config = write_config(tmp_path, quantizations=["q6_k", "q4_k_m"])
    outputs = planned_outputs(workdir, config)
    quantized = [o for o in outputs if o.startswith("quantized_models/")]
    evaluated = [o for o in outputs if o.startswith("evaluation_results/runs/")]
    assert sorted(quantized) == ["quantized_models/smollm2-135m/q6_k.audit.json",
                                 "quantized_models/smollm2-135m/q6_k.gguf"]
    assert evaluated
    assert all("/q6_k/" in o for o in evaluated)
    assert "evaluation_results/quantization_comparison.json" in outputs
    assert not any(o.startswith(("imatrix_data/", "base_models/", "benchmark_data/")) for o in outputs)


def test_more_runs_compute_only_new_runs(workdir, tmp_path):
    outputs = planned_outputs(workdir, write_config(tmp_path, runs=3))
    evaluated = sorted(o for o in outputs if o.startswith("evaluation_results/runs/"))
    assert evaluated == sorted(f"evaluation_results/runs/smollm2-135m/{v}/gsm8k/run3.json"
                               for v in ("base", "q8_0", "q4_k_m", "q4_k_m-no-imatrix"))


def test_changed_limit_reruns_only_that_benchmark(workdir, tmp_path):
    outputs = planned_outputs(workdir, write_config(tmp_path, **{"benchmarks.arc_challenge.limit": 10}))
    evaluated = [o for o in outputs if o.startswith("evaluation_results/runs/")]
    assert "benchmark_data/arc_challenge.test.jsonl" in outputs
    assert "benchmark_data/gsm8k.test.jsonl" not in outputs
    assert len(evaluated) == 4
    assert all("/arc_challenge/" in o for o in evaluated)
    assert not any(o.startswith(("quantized_models/", "imatrix_data/")) for o in outputs)


def test_killed_run_resumes_without_redoing(workdir):
    """Kill Snakemake after one of two missing runs finished; the restart does only the other."""
    first = workdir / "evaluation_results/runs/smollm2-135m/q8_0/arc_challenge/run1.json"
    second = workdir / "evaluation_results/runs/smollm2-135m/q4_k_m/arc_challenge/run1.json"
    # As in a first run killed during evaluation: two runs missing, and nothing after them.
    # (Snakemake does not re-create a missing intermediate file while the files made from
    # it are present.)
    first.unlink()
    second.unlink()
    for name in DOWNSTREAM_OF_RUNS:
        (workdir / name).unlink()

    # Kill once the second job has started: Snakemake starts it (one core) only after it
    # has recorded the first as complete.
    logs = [workdir / f"logs/evaluate/smollm2-135m/{v}/arc_challenge/run1.log" for v in ("q8_0", "q4_k_m")]
    for log in logs:
        log.unlink()

    environment = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    command = snakemake_command(workdir, TEST_CONFIG, "scorecards/quantization_evaluation.pdf")
    command[command.index("--cores") + 1] = "1"  # one job at a time, so one finishes before the other
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env=environment, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while not all(log.exists() for log in logs) and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    finished = first if first.exists() else second
    missing = second if finished is first else first
    assert finished.exists()
    assert not missing.exists()
    finished_mtime = finished.stat().st_mtime

    # A killed Snakemake cannot release its lock on the working directory.
    assert snakemake(workdir, TEST_CONFIG, "--unlock").returncode == 0
    outputs = planned_outputs(workdir, TEST_CONFIG)
    evaluated = [o for o in outputs if o.startswith("evaluation_results/runs/")]
    assert evaluated == [str(missing.relative_to(workdir))]

    result = snakemake(workdir, TEST_CONFIG, "scorecards/quantization_evaluation.pdf")
    assert result.returncode == 0, result.stderr[-3000:]
    assert missing.exists()
    assert finished.stat().st_mtime == finished_mtime
