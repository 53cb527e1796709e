"""Imatrix, quantization and the tensor audit on tiny random-weight models."""

from __future__ import annotations

import hashlib

import pytest
from gguf import GGMLQuantizationType

from quant_eval.calibration import build_calibration_text
from quant_eval.gguf_files import audit_tensors, dequantize_to_f16, open_gguf
from quant_eval.imatrix import compute_imatrix
from quant_eval.quantize import main_tensor_type, quantize_model


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def imatrix_file(tiny_model, tmp_path_factory):
    folder = tmp_path_factory.mktemp("imatrix")
    calibration = folder / "calibration.txt"
    build_calibration_text(["dataset-build:eng/eng.txt"], calibration)
    output = folder / "tiny.imatrix"
    compute_imatrix(tiny_model, calibration, output, context=128, chunks=4, batch_size=128, threads=2)
    return output


@pytest.mark.parametrize("name, expected", [
    ("Q4_K_M", GGMLQuantizationType.Q4_K),
    ("q8_0", GGMLQuantizationType.Q8_0),
    ("BF16", GGMLQuantizationType.BF16),
    ("IQ4_XS", GGMLQuantizationType.IQ4_XS),
    ("IQ3_M", GGMLQuantizationType.IQ3_S),
    ("Q3_K_L", GGMLQuantizationType.Q3_K),
    ("COPY", None),
])
def test_main_tensor_type(name, expected):
    assert main_tensor_type(name) == expected


def test_imatrix_is_gguf(imatrix_file):
    assert imatrix_file.read_bytes()[:4] == b"GGUF"
    assert not imatrix_file.with_name("tiny.tmp.imatrix").exists()


def test_q4_k_m_audit_on_aligned_rows(tiny_model, imatrix_file, tmp_path):
    audit = quantize_model(tiny_model, "q4_k_m", tmp_path / "q4.gguf", tmp_path / "q4.audit.json",
                           imatrix_file, threads=2)
    types = audit["tensor_types"]
    assert audit["fallback_tensors"] == []
    assert audit["llama_quantize_fallbacks"] == 0
    assert types["Q4_K"]["n_tensors"] > 0
    assert set(types) <= {"Q4_K", "Q6_K", "Q5_K", "F32"}
    assert audit["requested_type"] == "Q4_K"
    assert audit["imatrix"] is True
    assert audit["file_size_bytes"] == (tmp_path / "q4.gguf").stat().st_size
    assert 4.5 < audit["bits_per_weight"] < 7.0


def test_fallback_reported_on_odd_rows(tiny_model_odd_rows, tmp_path):
    audit = quantize_model(tiny_model_odd_rows, "Q4_K_M", tmp_path / "q4.gguf", tmp_path / "q4.audit.json",
                           None, threads=2)
    reader = open_gguf(tmp_path / "q4.gguf")
    odd_rows = [t.name for t in reader.tensors if len(t.shape) == 2 and int(t.shape[0]) % 256 != 0]
    flagged = [entry["name"] for entry in audit["fallback_tensors"]]
    assert odd_rows
    assert sorted(flagged) == sorted(odd_rows)
    assert all(entry["row_size"] == 320 for entry in audit["fallback_tensors"])
    assert audit["llama_quantize_fallbacks"] > 0
    assert "Q4_K" not in {entry["type"] for entry in audit["fallback_tensors"]}


def test_imatrix_changes_quantization(tiny_model, imatrix_file, tmp_path):
    quantize_model(tiny_model, "Q4_K_M", tmp_path / "with.gguf", tmp_path / "with.json", imatrix_file, threads=2)
    quantize_model(tiny_model, "Q4_K_M", tmp_path / "without.gguf", tmp_path / "without.json", None, threads=2)
    assert digest(tmp_path / "with.gguf") != digest(tmp_path / "without.gguf")


def test_q8_0_every_matrix_quantized(tiny_model, tmp_path):
    audit = quantize_model(tiny_model, "q8_0", tmp_path / "q8.gguf", tmp_path / "q8.json", None, threads=2)
    n_matrices = sum(1 for t in open_gguf(tiny_model).tensors if len(t.shape) == 2)
    assert audit["tensor_types"]["Q8_0"]["n_tensors"] == n_matrices
    assert audit["bits_per_weight"] == pytest.approx(8.5, abs=0.05)


def test_dequantize_round_trip(tiny_model, tmp_path):
    """Q8_0 -> F16 with the gguf package gives the values llama.cpp's grid holds."""
    import numpy as np
    from gguf.quants import dequantize

    quantize_model(tiny_model, "q8_0", tmp_path / "q8.gguf", tmp_path / "q8.json", None, threads=2)
    dequantize_to_f16(tmp_path / "q8.gguf", tmp_path / "f16.gguf")
    quantized = {t.name: t for t in open_gguf(tmp_path / "q8.gguf").tensors}
    restored = {t.name: t for t in open_gguf(tmp_path / "f16.gguf").tensors}
    assert restored.keys() == quantized.keys()
    name = "blk.0.attn_q.weight"
    expected = dequantize(quantized[name].data, quantized[name].tensor_type).astype(np.float16)
    assert restored[name].tensor_type == GGMLQuantizationType.F16
    np.testing.assert_array_equal(np.asarray(restored[name].data).reshape(expected.shape), expected)
    assert audit_tensors(tmp_path / "f16.gguf", None)["tensor_types"].keys() == {"F16", "F32"}
