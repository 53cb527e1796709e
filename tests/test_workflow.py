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
from datetime import datetime
from pathlib import Path

import pytest
import yaml

from quant_eval.calibration import resolve_calibration_source
from quant_eval.progress import LOG_SUFFIX, parse_log, pipeline_ids, read_progress
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


def planned_outputs(workdir: Path, config: Path, *arguments: str) -> list[str]:
    """Return the output files of the jobs a dry run would execute."""
    result = snakemake(workdir, config, "--dry-run", *arguments)
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
    "charts/paired_differences.png",
    "charts/flips.png",
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


def test_flips_match_run_files(workdir):
    """Recount one comparison's flips from the per-run files; check the imatrix pair is analysed."""
    analysis = json.loads((workdir / "evaluation_results/statistical_analysis.json").read_text())
    runs = "evaluation_results/runs/smollm2-135m/{}/arc_challenge/run1.json"
    base = {i["id"]: i["score"] for i in json.loads((workdir / runs.format("base")).read_text())["items"]}
    q4 = {i["id"]: i["score"] for i in json.loads((workdir / runs.format("q4_k_m")).read_text())["items"]}
    cell = next(r for r in analysis["results"] if r["variant"] == "q4_k_m" and r["benchmark"] == "arc_challenge")
    paired = cell["paired"]

    assert paired["flips"]["correct_to_wrong"] == sum(1 for i in base if base[i] == 1 and q4[i] == 0)
    assert paired["flips"]["wrong_to_correct"] == sum(1 for i in base if base[i] == 0 and q4[i] == 1)
    assert paired["primary_test"] == "mcnemar"
    assert paired["p_value"] <= paired["p_value_holm"] <= 1.0
    pairs = {(e["with_imatrix"], e["without_imatrix"], e["benchmark"]) for e in analysis["imatrix_effect"]}
    assert pairs == {("q4_k_m", "q4_k_m-no-imatrix", "gsm8k"), ("q4_k_m", "q4_k_m-no-imatrix", "arc_challenge")}


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
        if result["group_by"] is not None:
            continue  # the scorecard's tables show whole benchmarks only
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


VARIANTS = ("base", "q8_0", "q4_k_m", "q4_k_m-no-imatrix")
# Jobs of the test config's full run: base model, 2 benchmark subsets, calibration text,
# imatrix, 3 quantizations, 12 evaluations, the base log-probs and 4 fidelity records,
# then compare, statistics, charts, methodology, report and scorecard.
N_JOBS = 1 + 2 + 1 + 1 + 3 + 12 + 1 + 4 + 6


def test_progress_of_completed_run(workdir):
    """The log of the fixture's full run: every job done, each with its own log file."""
    pipeline_id = pipeline_ids(workdir)[0]
    log = workdir / ".snakemake" / "log" / f"{pipeline_id}{LOG_SUFFIX}"
    assert f"Pipeline id: {pipeline_id}" in log.read_text()

    snapshot = read_progress(workdir, pipeline_id)
    assert snapshot.state == "finished"
    assert snapshot.done_jobs == snapshot.total_jobs == N_JOBS
    assert snapshot.percent == 100.0
    assert snapshot.name == "quantization evaluation of smollm2-135m"
    assert snapshot.phase == "scorecard"
    assert snapshot.rules["evaluate"].finished == 12
    assert snapshot.rules["quantize"].finished == 3
    assert snapshot.rules["fidelity"].finished == 4
    for rule, times in snapshot.rules.items():
        assert times.remaining == 0, rule
        assert times.finished == times.planned, rule

    with log.open() as handle:
        jobs = parse_log(handle, pipeline_id, log).jobs.values()
    job_logs = [job.log for job in jobs]
    assert len(set(job_logs)) == len(job_logs) == N_JOBS
    for job_log in job_logs:
        assert (workdir / job_log).is_file(), job_log


def test_progress_midway_through_real_log(workdir, tmp_path):
    """Cut the full run's log just before its 9th job finished: the snapshot of a run in progress."""
    pipeline_id = pipeline_ids(workdir)[0]
    lines = (workdir / ".snakemake" / "log" / f"{pipeline_id}{LOG_SUFFIX}").read_text().splitlines()
    finished = [i for i, line in enumerate(lines) if line.startswith("Finished jobid")]
    cut = finished[8] - 1  # the 9th job's timestamp line and what follows are dropped
    folder = tmp_path / ".snakemake" / "log"
    folder.mkdir(parents=True)
    (folder / f"{pipeline_id}{LOG_SUFFIX}").write_text("\n".join(lines[:cut]) + "\n")

    def timestamp(line: str) -> datetime:
        return datetime.strptime(" ".join(line.strip("[]").split()), "%a %b %d %H:%M:%S %Y")

    cut_time = timestamp(lines[cut])
    end_time = timestamp(next(line for line in reversed(lines) if line.startswith("[")))

    snapshot = read_progress(tmp_path, pipeline_id, now=cut_time, process_check=lambda _: True)

    assert snapshot.state == "running"
    assert (snapshot.done_jobs, snapshot.total_jobs) == (8, N_JOBS)
    assert snapshot.phase in ("imatrix", "quantization", "evaluation")
    assert snapshot.running
    assert snapshot.eta_seconds is not None and snapshot.eta_seconds > 0
    # The estimate is rough, but it must be of the order of the time the run really took.
    actual = (end_time - cut_time).total_seconds()
    assert actual / 4 < snapshot.eta_seconds < actual * 4, (snapshot.eta_seconds, actual)


def test_runs_five_to_six_compute_only_run_six(workdir, tmp_path):
    """With runs 3 to 5 present (copies of run 2 here), raising runs to 6 adds run 6 and the aggregation."""
    copies = []
    try:
        for variant in VARIANTS:
            folder = workdir / "evaluation_results/runs/smollm2-135m" / variant / "gsm8k"
            record = json.loads((folder / "run2.json").read_text())
            for run in (3, 4, 5):
                (folder / f"run{run}.json").write_text(json.dumps({**record, "run": run}))
                copies.append(folder / f"run{run}.json")
        five = planned_outputs(workdir, write_config(tmp_path, runs=5))
        assert not [o for o in five if o.startswith("evaluation_results/runs/")]

        outputs = planned_outputs(workdir, write_config(tmp_path, runs=6))
        evaluated = sorted(o for o in outputs if o.startswith("evaluation_results/runs/"))
        assert evaluated == sorted(f"evaluation_results/runs/smollm2-135m/{v}/gsm8k/run6.json" for v in VARIANTS)
        assert set(outputs) - set(evaluated) == set(DOWNSTREAM_OF_RUNS)
    finally:
        for path in copies:
            path.unlink()


def test_edited_calibration_reruns_imatrix_chain(workdir, tmp_path):
    """Editing a calibration file re-runs the imatrix and what is made from it, nothing else."""
    calibration = tmp_path / "eng.txt"
    calibration.write_text(resolve_calibration_source("dataset-build:eng/eng.txt").read_text())
    written = (workdir / "calibration/calibration.txt").stat().st_mtime
    os.utime(calibration, (written - 60, written - 60))
    config = write_config(tmp_path, **{"imatrix.calibration": [str(calibration), "dataset-build:jpn/jpn.txt"]})
    # Only modification times decide here: the configuration's new file name alone would
    # re-run the calibration text through its changed parameters.
    mtime_only = ("--rerun-triggers", "mtime")
    assert planned_outputs(workdir, config, *mtime_only) == []

    with calibration.open("a") as handle:
        handle.write("\nOne more sentence of calibration text.\n")
    outputs = planned_outputs(workdir, config, *mtime_only)

    assert "calibration/calibration.txt" in outputs
    assert "imatrix_data/smollm2-135m.imatrix" in outputs
    quantized = sorted(o for o in outputs if o.startswith("quantized_models/"))
    assert quantized == [f"quantized_models/smollm2-135m/{v}.{ext}" for v in ("q4_k_m", "q8_0")
                         for ext in ("audit.json", "gguf")]
    evaluated = [o for o in outputs if o.startswith("evaluation_results/runs/")]
    assert sorted(evaluated) == sorted(
        f"evaluation_results/runs/smollm2-135m/{v}/{b}"
        for v in ("q8_0", "q4_k_m") for b in ("gsm8k/run1.json", "gsm8k/run2.json", "arc_challenge/run1.json")
    )
    assert set(DOWNSTREAM_OF_RUNS) <= set(outputs)
    assert not any(o.startswith(("base_models/", "benchmark_data/")) for o in outputs)


def test_corrupt_variant_marked_in_scorecard(workdir):
    """A truncated q8_0 file: its evaluations fail, the others stay, the scorecard gives the reason.

    Runs last: it leaves the q8_0 results marked failed.
    """
    model = workdir / "quantized_models/smollm2-135m/q8_0.gguf"
    others = [path for path in run_files(workdir) if "/q8_0/" not in str(path)]
    others_mtimes = [path.stat().st_mtime for path in others]
    with model.open("r+b") as handle:
        handle.truncate(model.stat().st_size // 2)

    result = snakemake(workdir, TEST_CONFIG, "--keep-going", "scorecards/quantization_evaluation.pdf")
    assert result.returncode == 0, result.stderr[-3000:]

    failed_runs = sorted((workdir / "evaluation_results/runs/smollm2-135m/q8_0").rglob("run*.json"))
    assert len(failed_runs) == 3
    for path in failed_runs:
        record = json.loads(path.read_text())
        assert record["status"] == "failed"
        assert "truncated" in record["reason"]
        assert record["items"] == []
    assert [path.stat().st_mtime for path in others] == others_mtimes

    analysis = json.loads((workdir / "evaluation_results/statistical_analysis.json").read_text())
    for cell in analysis["results"]:
        if cell["variant"] == "q8_0":
            assert cell["status"] == "failed"
            assert cell["mean"] is None
            assert "truncated" in cell["reason"]
        else:
            assert cell["status"] == "complete"
            assert cell["mean"] is not None
    assert len(analysis["results"]) == 8

    text = subprocess.run(["pdftotext", "-layout", str(workdir / "scorecards/quantization_evaluation.pdf"), "-"],
                          capture_output=True, text=True, check=True).stdout
    flat = " ".join(text.split())
    assert "n/a (failed)" in flat
    assert "Missing results" in flat
    assert "truncated" in flat.split("Missing results")[1]
    for cell in analysis["results"]:
        if cell["variant"] != "q8_0":
            for expected in cell_texts(cell):
                assert expected in flat, (cell["variant"], cell["benchmark"], expected)
