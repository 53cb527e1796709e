"""Bad input through the real command line: exit code 1, one error message, no output.

Every command runs as `python -m quant_eval` in a subprocess, so these tests see what a
user or a Snakemake rule sees: the exit code and the log on stderr. Each command
writes into its own empty folder, which must still be empty after a rejected input
(no final file and no temporary file). The tests need the llama.cpp tools (make setup).
They took 77-95 s on a 2-core machine, mostly spent by the gguf package reading the
tokenizer metadata of the GGUF files.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ERROR_MARKER = " ERROR quant_eval: "

# Parameter counts of the tiny model of conftest.py, worked out by hand: 49152 tokens x 256
# for token_embd, and per layer q 256x256, k and v 128x256, output 256x256, gate, up and
# down 512x256, in two layers. The F32 tensors are the norms: one of 256, then two per layer.
TINY_F16_PARAMETERS = 49152 * 256 + 2 * (256 * 256 + 2 * 128 * 256 + 256 * 256 + 3 * 512 * 256)
TINY_F32_PARAMETERS = 256 + 2 * 2 * 256


def run_cli(*arguments: object, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "quant_eval", *map(str, arguments)],
        cwd=cwd, capture_output=True, text=True, check=False,
    )


def error_message(result: subprocess.CompletedProcess) -> str:
    """Return the text logged after the one ERROR marker, failing unless there is exactly one."""
    assert result.stderr.count(ERROR_MARKER) == 1, result.stderr
    return result.stderr.split(ERROR_MARKER, 1)[1]


def assert_rejected(result: subprocess.CompletedProcess, output_dir: Path) -> str:
    """Check the exit code, the absence of a traceback and of any file, and return the message."""
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in output_dir.iterdir()) == []
    return error_message(result)


def base_model_arguments(source: object, output_dir: Path) -> list[object]:
    return [
        "base-model", "--source", source,
        "--output", output_dir / "base.gguf",
        "--info", output_dir / "base.json",
        "--audit", output_dir / "base-audit.json",
    ]


@pytest.fixture
def output_dir(tmp_path) -> Path:
    folder = tmp_path / "out"
    folder.mkdir()
    return folder


@pytest.fixture(scope="module")
def truncated_model(tiny_model, tmp_path_factory) -> Path:
    """The tiny model cut in half, inside its tensor data."""
    data = tiny_model.read_bytes()
    path = tmp_path_factory.mktemp("truncated") / "tiny-half.gguf"
    path.write_bytes(data[: len(data) // 2])
    return path


@pytest.fixture(scope="module")
def q8_model(tiny_model, tmp_path_factory) -> Path:
    """The tiny model quantized to Q8_0 by `quant-eval quantize`."""
    folder = tmp_path_factory.mktemp("q8")
    path = folder / "tiny-q8_0.gguf"
    result = run_cli(
        "quantize", "--model", tiny_model, "--type", "q8_0",
        "--output", path, "--audit", folder / "tiny-q8_0-audit.json", cwd=folder,
    )
    assert result.returncode == 0, result.stderr
    return path


# ----------------------------------------------------------------------- base-model

def test_base_model_missing_file(output_dir, tmp_path):
    result = run_cli(*base_model_arguments("/nonexistent.gguf", output_dir), cwd=tmp_path)

    message = assert_rejected(result, output_dir)
    assert "model file not found: /nonexistent.gguf" in message
    assert "check the path" in message


def test_base_model_not_gguf(output_dir, tmp_path):
    source = tmp_path / "model.safetensors"
    source.write_text("this is not a model\n")

    result = run_cli(*base_model_arguments(source, output_dir), cwd=tmp_path)

    message = assert_rejected(result, output_dir)
    assert f"{source} is not a GGUF file" in message
    assert "starts with b'this'" in message
    assert "convert the model to GGUF first" in message


def test_base_model_empty_file(output_dir, tmp_path):
    source = tmp_path / "empty.gguf"
    source.write_bytes(b"")

    result = run_cli(*base_model_arguments(source, output_dir), cwd=tmp_path)

    message = assert_rejected(result, output_dir)
    assert f"{source} is empty" in message


def test_base_model_truncated(output_dir, tmp_path, truncated_model):
    result = run_cli(*base_model_arguments(truncated_model, output_dir), cwd=tmp_path)

    message = assert_rejected(result, output_dir)
    assert f"{truncated_model} is not a readable GGUF file" in message
    assert "it may be truncated: copy or download it again" in message


def test_base_model_quantized_rejected(output_dir, tmp_path, q8_model):
    result = run_cli(*base_model_arguments(q8_model, output_dir), cwd=tmp_path)

    message = assert_rejected(result, output_dir)
    assert f"{q8_model} is quantized (Q8_0)" in message
    assert "a base model must be F16, BF16 or F32" in message
    assert "`dequantize: true`" in message
    assert "--dequantize" in message


def test_base_model_f16_accepted(output_dir, tmp_path, tiny_model):
    result = run_cli(*base_model_arguments(tiny_model, output_dir), cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in output_dir.iterdir()) == ["base-audit.json", "base.gguf", "base.json"]
    assert (output_dir / "base.gguf").stat().st_size == tiny_model.stat().st_size

    info = json.loads((output_dir / "base.json").read_text())
    assert info["source"] == str(tiny_model)
    assert info["source_type"] == "F16"
    assert info["base_type"] == "F16"
    assert info["grid_limited"] is False

    audit = json.loads((output_dir / "base-audit.json").read_text())
    assert audit["tensor_types"] == {
        "F16": {"n_tensors": 15, "n_parameters": TINY_F16_PARAMETERS},
        "F32": {"n_tensors": 5, "n_parameters": TINY_F32_PARAMETERS},
    }
    assert audit["n_parameters"] == TINY_F16_PARAMETERS + TINY_F32_PARAMETERS
    assert audit["requested_type"] is None
    assert audit["fallback_tensors"] == []


def test_base_model_dequantize_accepted(output_dir, tmp_path, q8_model):
    result = run_cli(*base_model_arguments(q8_model, output_dir), "--dequantize", cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    info = json.loads((output_dir / "base.json").read_text())
    assert info["source_type"] == "Q8_0"
    assert info["base_type"] == "F16"
    assert info["grid_limited"] is True


# ----------------------------------------------------------------------- calibration and imatrix

def test_imatrix_short_calibration(output_dir, tmp_path, tiny_model):
    calibration = tmp_path / "calibration.txt"
    calibration.write_text("A short text.\n")

    result = run_cli(
        "imatrix", "--model", tiny_model, "--calibration", calibration,
        "--output", output_dir / "imatrix.gguf",
        "--context", 64, "--chunks", 2, "--batch-size", 64, cwd=tmp_path,
    )

    message = assert_rejected(result, output_dir)
    assert f"calibration text {calibration} has" in message
    assert "imatrix.context x max(imatrix.chunks, 2) = 64 x 2 = 128" in message
    assert "add text to 'imatrix.calibration' or lower 'imatrix.chunks'" in message


def test_calibration_missing_entry(output_dir, tmp_path):
    present = tmp_path / "present.txt"
    present.write_text("Some calibration text.\n")
    missing = tmp_path / "missing.txt"

    result = run_cli(
        "calibration", "--sources", present, missing,
        "--output", output_dir / "calibration.txt", cwd=tmp_path,
    )

    message = assert_rejected(result, output_dir)
    assert f"calibration text not found: {missing}" in message
    assert "config key 'imatrix.calibration'" in message
    assert "correct the path or remove the entry" in message


def test_calibration_missing_packaged_entry(output_dir, tmp_path):
    result = run_cli(
        "calibration", "--sources", "dataset-build:eng/missing.txt",
        "--output", output_dir / "calibration.txt", cwd=tmp_path,
    )

    message = assert_rejected(result, output_dir)
    assert "dataset_build/data/eng/missing.txt" in message
    assert "entry 'dataset-build:eng/missing.txt'" in message


def test_calibration_joins_entries(output_dir, tmp_path):
    first = tmp_path / "first.txt"
    first.write_text("First text.\n\n")
    second = tmp_path / "second.txt"
    second.write_text("  Second text.")

    result = run_cli(
        "calibration", "--sources", first, second,
        "--output", output_dir / "calibration.txt", cwd=tmp_path,
    )

    assert result.returncode == 0, result.stderr
    assert (output_dir / "calibration.txt").read_text() == "First text.\n\nSecond text.\n"
    assert sorted(p.name for p in output_dir.iterdir()) == ["calibration.txt"]


# ----------------------------------------------------------------------- quantize

def test_quantize_truncated_model(output_dir, tmp_path, truncated_model):
    result = run_cli(
        "quantize", "--model", truncated_model, "--type", "q8_0",
        "--output", output_dir / "q8_0.gguf", "--audit", output_dir / "q8_0-audit.json",
        cwd=tmp_path,
    )

    message = assert_rejected(result, output_dir)
    assert str(truncated_model) in message
    assert "truncated" in message


def test_quantize_tool_failure_leaves_nothing(output_dir, tmp_path, q8_model):
    """llama-quantize refuses to requantize a Q8_0 file; its partial output must not stay."""
    log = tmp_path / "quantize.log"

    result = run_cli(
        "quantize", "--model", q8_model, "--type", "q4_k_m",
        "--output", output_dir / "q4.gguf", "--audit", output_dir / "q4-audit.json",
        "--log", log, cwd=tmp_path,
    )

    message = assert_rejected(result, output_dir)
    assert "llama-quantize failed with exit code" in message
    assert "llama-quantize" in log.read_text()


def test_quantize_q8_audit(q8_model):
    audit = json.loads(q8_model.with_name("tiny-q8_0-audit.json").read_text())

    assert audit["quantization_type"] == "Q8_0"
    assert audit["requested_type"] == "Q8_0"
    assert audit["imatrix"] is False
    assert audit["fallback_tensors"] == []
    assert audit["tensor_types"] == {
        "F32": {"n_tensors": 5, "n_parameters": TINY_F32_PARAMETERS},
        "Q8_0": {"n_tensors": 15, "n_parameters": TINY_F16_PARAMETERS},
    }
    # Q8_0 stores 34 bytes per block of 32 weights (8.5 bits), and the F32 norms add a little.
    expected_bits = 8 * (TINY_F16_PARAMETERS * 34 / 32 + TINY_F32_PARAMETERS * 4) / (
        TINY_F16_PARAMETERS + TINY_F32_PARAMETERS)
    assert audit["bits_per_weight"] == round(expected_bits, 4)


def test_quantize_leaves_no_temporary(q8_model):
    names = sorted(p.name for p in q8_model.parent.iterdir())

    assert names == ["tiny-q8_0-audit.json", "tiny-q8_0.gguf"]

