"""Memory, runtime and GPU requests of the workflow's jobs, sized from the model file."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from quant_eval import resources
from quant_eval.base_model import resolve_source
from quant_eval.resources import ModelShape

REPO = Path(__file__).resolve().parents[1]

# Published shapes, and file sizes of Q4_K_M GGUFs of these models.
SMOLLM2_135M = ModelShape(layers=30, embedding=576, heads=9, kv_heads=3, vocab=49_152)
LLAMA2_7B = ModelShape(layers=32, embedding=4096, heads=32, kv_heads=32, vocab=32_000)
LLAMA2_70B = ModelShape(layers=80, embedding=8192, heads=64, kv_heads=8, vocab=32_000)
SIZE_135M = 105_000_000
SIZE_7B = 4_080_000_000
SIZE_70B = 41_420_000_000


def test_kv_cache_per_token():
    # 2 (keys, values) x layers x kv_heads x head_dim x 2 bytes (F16)
    assert SMOLLM2_135M.kv_bytes_per_token == 2 * 30 * 3 * 64 * 2
    assert LLAMA2_7B.kv_bytes_per_token == 2 * 32 * 32 * 128 * 2
    assert LLAMA2_70B.kv_bytes_per_token == 2 * 80 * 8 * 128 * 2


@pytest.mark.parametrize(("size", "shape", "expected"), [
    # model MB + KV cache MB at 2048 tokens + float32 logits MB at 2048 tokens + 1200
    (SIZE_135M, SMOLLM2_135M, 105 + 48 + 403 + 1200),
    (SIZE_7B, LLAMA2_7B, 4080 + 1074 + 263 + 1200),
    (SIZE_70B, LLAMA2_70B, 41_420 + 672 + 263 + 1200),
], ids=["135M", "7B", "70B"])
def test_evaluation_memory(size, shape, expected):
    assert resources.evaluation_memory_mb(size, 2048, shape) == expected


def test_memory_grows_with_model():
    sizes = [SIZE_135M, SIZE_7B, SIZE_70B]
    shapes = [SMOLLM2_135M, LLAMA2_7B, LLAMA2_70B]
    evaluation = [resources.evaluation_memory_mb(s, 2048, m) for s, m in zip(sizes, shapes)]
    imatrix = [resources.imatrix_memory_mb(s, 512, m) for s, m in zip(sizes, shapes)]
    quantize = [resources.quantize_memory_mb(s) for s in sizes]
    for requests in (evaluation, imatrix, quantize):
        assert requests == sorted(requests)
    # Each request holds the model file itself.
    for size, request in zip(sizes, evaluation + imatrix + quantize):
        assert request * resources.MB > size
    assert quantize[2] == 2 * 41_420 + 1200


def test_imatrix_memory_adds_statistics():
    assert resources.imatrix_memory_mb(SIZE_70B, 512, LLAMA2_70B) == (
        resources.evaluation_memory_mb(SIZE_70B, 512, LLAMA2_70B) + 415)


def test_unknown_shape_bounds_kv_cache():
    # Without metadata the KV cache is bounded from the size: 1/10,000 of the file per
    # token, more than Llama-2-7B's 524,288 bytes for its 13.5 GB F16 file.
    f16_7b = 13_500_000_000
    assert resources.fallback_kv_bytes_per_token(f16_7b) > LLAMA2_7B.kv_bytes_per_token
    assert resources.kv_cache_mb(f16_7b, 2048, None) == 2765
    # and the logits of the largest common vocabulary.
    assert resources.logits_mb(2048, None) == 2148


def test_runtime_estimates():
    # 7B Q4_K_M, 1319 GSM8K items: 0.816 s per generated token at 5 GB/s,
    # (256 + 2048 / 20) tokens per item, doubled, plus 10 minutes.
    seconds = 1319 * (256 + 2048 / 20) * SIZE_7B / 5e9
    assert resources.evaluation_runtime_minutes(SIZE_7B, 1319, 2048, 256) == 10 + -(-2 * seconds // 60)
    assert resources.evaluation_runtime_minutes(SIZE_7B, 1319, 2048, 256, gpu=True) < \
        resources.evaluation_runtime_minutes(SIZE_7B, 1319, 2048, 256) / 30
    assert resources.evaluation_runtime_minutes(SIZE_135M, 0, 2048, 256) == 10
    assert resources.quantize_runtime_minutes(SIZE_70B) == 10 + -(-2 * (SIZE_70B / 50e6) // 60)
    imatrix = [resources.imatrix_runtime_minutes(s, 512, 32) for s in (SIZE_135M, SIZE_7B, SIZE_70B)]
    assert imatrix == sorted(imatrix)
    assert imatrix[0] == 11


def test_base_model_memory():
    assert resources.base_model_memory_mb(SIZE_7B, dequantize=False) == 1200
    assert resources.base_model_memory_mb(SIZE_7B, dequantize=True) == 5 * 4080 + 1200


def test_shape_read_from_gguf():
    assert resources.read_model_shape(resolve_source("embedded:smollm2-135m-instruct")) == SMOLLM2_135M


def test_shape_of_tiny_model(tiny_model):
    # conftest's model: 2 layers, hidden 256, 4 heads, 2 KV heads.
    shape = resources.read_model_shape(tiny_model)
    assert (shape.layers, shape.embedding, shape.heads, shape.kv_heads) == (2, 256, 4, 2)


def test_shape_of_missing_or_bad_file(tmp_path):
    assert resources.read_model_shape(tmp_path / "missing.gguf") is None
    not_gguf = tmp_path / "model.gguf"
    not_gguf.write_bytes(b"not a gguf file at all")
    assert resources.read_model_shape(not_gguf) is None
    assert resources.file_size(tmp_path / "missing.gguf") == 0


def test_count_lines(tmp_path):
    path = tmp_path / "items.jsonl"
    path.write_text('{"a": 1}\n{"a": 2}\n{"a": 3}\n')
    assert resources.count_lines(path) == 3
    assert resources.count_lines(tmp_path / "missing.jsonl") == 0


def dry_run(tmp_path: Path, **changes) -> str:
    config = yaml.safe_load((REPO / "config" / "test" / "slurm.yaml").read_text())
    for key, value in changes.items():
        section, name = key.split(".")
        config[section][name] = value
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    command = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(tmp_path),
               "--configfile", str(path), "--cores", "2", "--dry-run", "--printshellcmds"]
    environment = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    result = subprocess.run(command, capture_output=True, text=True, env=environment, check=False)
    assert result.returncode == 0, result.stderr + result.stdout
    return result.stdout + result.stderr


def job_blocks(output: str, rule: str) -> list[str]:
    return re.findall(rf"^rule {rule}:\n(.*?)(?=^\S|\Z)", output, flags=re.S | re.M)


def test_gpu_requested_when_configured(tmp_path):
    output = dry_run(tmp_path, **{"evaluation.gpu": True, "imatrix.gpu": True})
    for rule in ("evaluate", "imatrix"):
        blocks = job_blocks(output, rule)
        assert blocks, rule
        for block in blocks:
            assert re.search(r"\bgpu=1\b", block), block
    assert "--gpu-layers -1" in output
    for block in job_blocks(output, "quantize"):
        assert not re.search(r"\bgpu=", block)


def test_no_gpu_by_default(tmp_path):
    output = dry_run(tmp_path)
    for block in job_blocks(output, "evaluate") + job_blocks(output, "imatrix"):
        assert re.search(r"\bgpu=0\b", block)
    assert "--gpu-layers -1" not in output
    assert "--gpu-layers 0" in output
