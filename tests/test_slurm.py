"""The workflow through profiles/slurm on a real single-node Slurm cluster.

scripts/start_test_slurm.sh starts munged, MariaDB, slurmdbd, slurmctld and slurmd on
this machine inside a private network namespace. The workflow then runs the small
config/test/slurm.yaml to the scorecard with Snakemake's Slurm executor, one sbatch job
per rule instance. The tests look the jobs up in Slurm's accounting records (sacct).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest
import yaml

from quant_eval import resources

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "config" / "test" / "slurm.yaml"
CLIENT = REPO / "scripts" / "slurm_test_env.sh"

pytestmark = [pytest.mark.slurm, pytest.mark.workflow]

DAEMONS = ("munged", "mariadbd", "slurmdbd", "slurmctld", "slurmd", "sacct", "sbatch")

# One Slurm job per rule instance of config/test/slurm.yaml.
EXPECTED_JOBS = {
    "base_model": 1, "calibration_text": 1, "benchmark_data": 1, "imatrix": 1, "quantize": 1,
    "evaluate": 2, "compare": 1, "statistics": 1, "charts": 1, "methodology": 1,
    "analysis_report": 1, "scorecard": 1,
}


def client(*command: str, **kwargs) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    return subprocess.run([str(CLIENT), *command], capture_output=True, text=True, env=environment,
                          check=False, **kwargs)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("the test Slurm cluster runs its daemons as root")
    missing = [name for name in DAEMONS if shutil.which(name) is None]
    if missing:
        pytest.fail(f"{', '.join(missing)} not found: run scripts/install_system_packages.sh (make setup)")

    state = tmp_path_factory.mktemp("slurm")
    os.environ["QUANT_EVAL_SLURM_DIR"] = str(state)
    started = subprocess.run([str(REPO / "scripts" / "start_test_slurm.sh")], capture_output=True, text=True,
                             check=False)
    try:
        assert started.returncode == 0, started.stderr + started.stdout
        yield state
    finally:
        subprocess.run([str(REPO / "scripts" / "stop_test_slurm.sh")], check=False)
        os.environ.pop("QUANT_EVAL_SLURM_DIR", None)


@pytest.fixture(scope="module")
def workflow_run(cluster, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("slurm-workflow")
    threads = min(2, os.cpu_count() or 1)
    start = datetime.now().replace(microsecond=0)
    began = time.monotonic()
    result = client(
        sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(workdir),
        "--configfile", str(CONFIG), "--profile", str(REPO / "profiles" / "slurm"),
        "--set-threads", f"imatrix={threads}", f"quantize={threads}",
        # Poll every few seconds, not the 40 s a busy site cluster needs.
        "--slurm-init-seconds-before-status-checks", "2", "--latency-wait", "5",
        "scorecards/quantization_evaluation.pdf",
    )
    elapsed = time.monotonic() - began
    assert result.returncode == 0, result.stderr[-6000:]
    print(f"workflow through Slurm took {elapsed:.0f} s")
    return workdir, start, threads


def accounting_records(workdir: Path, start: datetime) -> list[dict[str, str]]:
    """The main record of every Slurm job started in `workdir` since `start`, from sacct."""
    fields = ["JobIDRaw", "JobName", "State", "ExitCode", "Comment", "WorkDir", "ReqMem", "Timelimit",
              "AllocCPUS"]
    result = client("sacct", "-X", "--parsable2", "--noheader", "--allusers",
                    f"--starttime={start:%Y-%m-%dT%H:%M:%S}", f"--format={','.join(fields)}")
    assert result.returncode == 0, result.stderr
    records = [dict(zip(fields, line.split("|"))) for line in result.stdout.splitlines() if line]
    return [r for r in records if Path(r["WorkDir"]) == workdir]


def rule_of(record: dict[str, str]) -> str:
    # The executor stores "rule_<rule>" or "rule_<rule>_wildcards_<values>" as the comment.
    match = re.fullmatch(r"rule_(.+?)(?:_wildcards_.*)?", record["Comment"])
    assert match, record
    return match.group(1)


def megabytes(text: str) -> int:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([KMGT])n?c?", text)
    assert match, text
    factor = {"K": 1 / 1024, "M": 1, "G": 1024, "T": 1024 * 1024}[match.group(2)]
    return round(float(match.group(1)) * factor)


def minutes(text: str) -> int:
    days, _, clock = text.rpartition("-")
    hours, mins, seconds = (int(part) for part in clock.split(":"))
    return (int(days) if days else 0) * 1440 + hours * 60 + mins + (seconds > 0)


def test_scorecard_written(workflow_run):
    workdir, _, _ = workflow_run
    for name in ("scorecards/quantization_evaluation.pdf", "evaluation_results/statistical_analysis.json",
                 "quantized_models/smollm2-135m/q8_0.gguf", "imatrix_data/smollm2-135m.imatrix",
                 "evaluation_results/runs/smollm2-135m/q8_0/arc_challenge/run1.json"):
        assert (workdir / name).is_file(), name


def test_jobs_recorded_by_slurm(workflow_run):
    workdir, start, _ = workflow_run
    records = accounting_records(workdir, start)
    counts: dict[str, int] = {}
    for record in records:
        counts[rule_of(record)] = counts.get(rule_of(record), 0) + 1
        assert record["State"] == "COMPLETED", record
        assert record["ExitCode"] == "0:0", record
    assert counts == EXPECTED_JOBS


def test_requests_reach_slurm(workflow_run):
    """Memory, runtime and CPUs in Slurm's records are the ones sized from the model files."""
    workdir, start, threads = workflow_run
    config = yaml.safe_load(CONFIG.read_text())
    records = {}
    for record in accounting_records(workdir, start):
        records.setdefault(rule_of(record), []).append(record)

    base = workdir / "base_models" / "smollm2-135m.gguf"
    (imatrix,) = records["imatrix"]
    assert megabytes(imatrix["ReqMem"]) == resources.imatrix_memory_mb(
        base.stat().st_size, config["imatrix"]["context"], resources.read_model_shape(base))
    assert minutes(imatrix["Timelimit"]) == resources.imatrix_runtime_minutes(
        base.stat().st_size, config["imatrix"]["context"], config["imatrix"]["chunks"])
    assert int(imatrix["AllocCPUS"]) == threads

    (quantize,) = records["quantize"]
    assert megabytes(quantize["ReqMem"]) == resources.quantize_memory_mb(base.stat().st_size)
    assert int(quantize["AllocCPUS"]) == threads

    requested = sorted(megabytes(r["ReqMem"]) for r in records["evaluate"])
    expected = sorted(
        resources.evaluation_memory_mb(model.stat().st_size, config["evaluation"]["context"],
                                       resources.read_model_shape(model))
        for model in (base, workdir / "quantized_models" / "smollm2-135m" / "q8_0.gguf")
    )
    assert requested == expected
    for record in records["evaluate"]:
        assert int(record["AllocCPUS"]) == config["evaluation"]["threads"]

    # Rules that size nothing get the profile's default-resources.
    profile = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())
    (statistics,) = records["statistics"]
    assert megabytes(statistics["ReqMem"]) == profile["default-resources"]["mem_mb"]
    assert minutes(statistics["Timelimit"]) == profile["default-resources"]["runtime"]
