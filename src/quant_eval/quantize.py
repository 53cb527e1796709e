"""Quantization with llama-quantize, followed by an audit of the types really written."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

from gguf import GGMLQuantizationType

from .files import atomic_output, write_json
from .gguf_files import audit_tensors, open_gguf
from .llama_tools import run_tool

logger = logging.getLogger(__name__)

# Quantization types (llama-quantize's names) whose main tensor type is not the type name
# with its size suffix removed.
MAIN_TENSOR_TYPES = {
    "IQ2_M": GGMLQuantizationType.IQ2_S,
    "IQ3_M": GGMLQuantizationType.IQ3_S,
    "IQ3_XS": GGMLQuantizationType.IQ3_S,
    "MXFP4_MOE": GGMLQuantizationType.MXFP4,
}


def main_tensor_type(quantization_type: str) -> GGMLQuantizationType | None:
    """Return the tensor type most weights get under a quantization type (Q4_K_M -> Q4_K).

    Returns None where no single type dominates (COPY, for example); the audit then
    reports the type mix without naming fallbacks.
    """
    name = quantization_type.upper()
    if name in MAIN_TENSOR_TYPES:
        return MAIN_TENSOR_TYPES[name]
    for candidate in (name, name.rsplit("_", 1)[0]):
        if candidate in GGMLQuantizationType.__members__:
            return GGMLQuantizationType[candidate]
    return None


def quantize_model(
    base_model: Path,
    quantization_type: str,
    output: Path,
    audit_output: Path,
    imatrix: Path | None,
    threads: int,
    log_path: Path | None = None,
) -> dict[str, Any]:
    """Quantize `base_model` to `quantization_type` and write the tensor audit beside it.

    llama-quantize leaves a partial file behind when it fails, so it writes to a
    temporary name that is renamed only after the audit succeeded.
    """
    open_gguf(base_model)  # a missing or truncated file gets a clear message, not the tool's
    arguments: list[Any] = []
    if imatrix is not None:
        arguments += ["--imatrix", imatrix]
    with atomic_output(output) as temporary:
        arguments += [base_model, temporary, quantization_type.upper(), threads]
        tool_output = run_tool("llama-quantize", arguments, log_path)
        audit = audit_tensors(temporary, main_tensor_type(quantization_type))

    # llama-quantize's own count, e.g. "WARNING: 180 of 272 tensor(s) required fallback
    # quantization"; it can differ by a tensor or two from ours, which also counts tensors
    # that the type's mixture rules had given another type anyway.
    reported = re.search(r"(\d+) of \d+ tensor\(s\) required fallback quantization", tool_output)
    audit["llama_quantize_fallbacks"] = int(reported.group(1)) if reported else 0
    audit["quantization_type"] = quantization_type.upper()
    audit["imatrix"] = imatrix is not None
    if audit["fallback_tensors"]:
        logger.warning(
            "%d tensors of %s are not %s: their row size is not a multiple of its block size, "
            "so llama-quantize used another type (see %s)",
            len(audit["fallback_tensors"]), output.name, audit["requested_type"], audit_output,
        )

    write_json(audit, audit_output)
    return audit
