"""ELYZA-tasks-100 in the Snakemake workflow: which jobs are planned, and what a judge change re-runs.

The dry runs take seconds. The last test runs the ELYZA jobs of one variant on the tiny
random-weight model, then asks Snakemake what a changed judge would re-run.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
RUN = "evaluation_results/runs/tiny/base/elyza_tasks_100/run1.json"
ANSWERS = "evaluation_results/answers/tiny/base/elyza_tasks_100/run1.json"


def write_config(folder: Path, model: Path, elyza: dict) -> Path:
    config = {
        "models": {"tiny": {"source": str(model)}},
        "quantizations": ["q8_0"],
        "benchmarks": {"gsm8k": {"limit": 2, "temperature": 0.0, "max_tokens": 8}, "elyza_tasks_100": elyza},
        "runs": 2,
        "seed": 1,
        "imatrix": {"context": 64, "chunks": 1, "batch_size": 64},
        "evaluation": {"context": 2048, "threads": 1},
    }
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True))
    return path


def snakemake(workdir: Path, config: Path, *arguments: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    command = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(workdir),
               "--configfile", str(config), "--cores", "1", *arguments]
    return subprocess.run(command, capture_output=True, text=True, env=environment, check=False)


def planned_jobs(workdir: Path, config: Path, target: str) -> dict[str, list[str]]:
    """Return {rule: [outputs]} of the jobs a dry run for `target` would execute."""
    result = snakemake(workdir, config, "--dry-run", target)
    assert result.returncode == 0, result.stderr + result.stdout
    jobs: dict[str, list[str]] = {}
    rule = None
    for line in (result.stdout + result.stderr).splitlines():
        match = re.match(r"^(?:local)?rule (\w+):$", line.strip())
        if match:
            rule = match.group(1)
            continue
        match = re.match(r"^\s+output: (.*)$", line)
        if match and rule:
            jobs.setdefault(rule, []).extend(part.strip() for part in match.group(1).split(","))
    return jobs


def judge(model: Path, **changes) -> dict:
    return {"name": "tiny-local", "backend": "llama_cpp", "model": str(model), "temperature": 0.0,
            "max_tokens": 8, "attempts": 1, "context": 4096, **changes}


def test_optional_without_data_not_planned(tiny_model, tmp_path):
    config = write_config(tmp_path, tiny_model, {"optional": True, "limit": 2, "judge": judge(tiny_model)})
    jobs = planned_jobs(tmp_path, config, "evaluation_results/quantization_comparison.json")
    outputs = [output for files in jobs.values() for output in files]
    assert "compare" in jobs
    assert "generate_answers" not in jobs
    assert "judge_answers" not in jobs
    assert not [output for output in outputs if "elyza" in output]


def test_required_without_data_stops(tiny_model, tmp_path):
    config = write_config(tmp_path, tiny_model, {"limit": 2, "judge": judge(tiny_model)})
    result = snakemake(tmp_path, config, "--dry-run")
    assert result.returncode != 0
    assert "benchmark elyza_tasks_100 cannot run: data not available" in result.stderr + result.stdout


def test_judged_runs_planned_by_own_rules(tiny_model, elyza_data, tmp_path):
    config = write_config(tmp_path, tiny_model, {"data": str(elyza_data), "limit": 2, "judge": judge(tiny_model)})
    jobs = planned_jobs(tmp_path, config, "evaluation_results/quantization_comparison.json")
    # Greedy answers (temperature 0) are the same in every run, so one run per variant.
    assert sorted(jobs["judge_answers"]) == [
        "evaluation_results/runs/tiny/base/elyza_tasks_100/run1.json",
        "evaluation_results/runs/tiny/q8_0/elyza_tasks_100/run1.json",
    ]
    assert sorted(jobs["generate_answers"]) == [
        "evaluation_results/answers/tiny/base/elyza_tasks_100/run1.json",
        "evaluation_results/answers/tiny/q8_0/elyza_tasks_100/run1.json",
    ]
    assert not [output for output in jobs["evaluate"] if "elyza" in output]


@pytest.mark.workflow
def test_judge_change_reruns_only_judging(tiny_model, elyza_data, tmp_path):
    elyza = {"data": str(elyza_data), "limit": 2, "max_tokens": 8, "judge": judge(tiny_model)}
    config = write_config(tmp_path, tiny_model, elyza)
    result = snakemake(tmp_path, config, RUN)
    assert result.returncode == 0, result.stderr[-5000:]
    run = json.loads((tmp_path / RUN).read_text(encoding="utf-8"))
    assert run["n_items"] == 2
    assert run["judge"]["name"] == "tiny-local"
    assert (tmp_path / "logs/judge_answers/tiny/base/elyza_tasks_100/run1.log").is_file()

    changed = write_config(tmp_path, tiny_model, {**elyza, "judge": judge(tiny_model, name="another", attempts=2)})
    assert planned_jobs(tmp_path, changed, RUN) == {"judge_answers": [RUN]}

    more_tokens = write_config(tmp_path, tiny_model, {**elyza, "max_tokens": 9})
    assert set(planned_jobs(tmp_path, more_tokens, RUN)) == {"generate_answers", "judge_answers"}
