"""Quantization with llama-quantize, followed by an audit of the types really written."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any, Callable

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


# Tensor names that llama-quantize's --output-tensor-type and --token-embedding-type apply to
# (exact names, as llama.cpp compares them).
OUTPUT_TENSOR = "output.weight"
TOKEN_EMBEDDING_TENSOR = "token_embd.weight"


def override_arguments(recipe: dict[str, Any]) -> list[str]:
    """Return the llama-quantize flags of a recipe's per-tensor overrides (Variant.recipe() keys)."""
    arguments = []
    if recipe.get("output_tensor_type"):
        arguments += ["--output-tensor-type", recipe["output_tensor_type"].lower()]
    if recipe.get("token_embedding_type"):
        arguments += ["--token-embedding-type", recipe["token_embedding_type"].lower()]
    for pattern, tensor_type in (recipe.get("tensor_types") or {}).items():
        arguments += ["--tensor-type", f"{pattern}={tensor_type.lower()}"]
    if recipe.get("leave_output_tensor"):
        arguments.append("--leave-output-tensor")
    return arguments


def _requested_overrides(recipe: dict[str, Any]) -> list[tuple[str, str, Callable[[str], bool], str | None]]:
    """Return (flag, value, tensor-name test, requested type) for each override of a recipe.

    The requested type of --leave-output-tensor is None: the tensor keeps the base model's type.
    """
    overrides = []
    if recipe.get("output_tensor_type"):
        overrides.append(("--output-tensor-type", recipe["output_tensor_type"],
                          lambda name: name == OUTPUT_TENSOR, recipe["output_tensor_type"].upper()))
    if recipe.get("token_embedding_type"):
        overrides.append(("--token-embedding-type", recipe["token_embedding_type"],
                          lambda name: name == TOKEN_EMBEDDING_TENSOR, recipe["token_embedding_type"].upper()))
    for pattern, tensor_type in (recipe.get("tensor_types") or {}).items():
        # llama-quantize searches each tensor name for the pattern (std::regex_search).
        overrides.append(("--tensor-type", f"{pattern}={tensor_type}",
                          lambda name, regex=re.compile(pattern): regex.search(name) is not None,
                          tensor_type.upper()))
    if recipe.get("leave_output_tensor"):
        overrides.append(("--leave-output-tensor", "", lambda name: name == OUTPUT_TENSOR, None))
    return overrides


def check_overrides(quantized: Path, base_model: Path, recipe: dict[str, Any]) -> list[dict[str, Any]]:
    """Return, per override of the recipe, the tensors it matched and the types they really have.

    `applied` is true when at least one tensor matched and every matched tensor has the
    requested type (for --leave-output-tensor: the base model's type).
    """
    types = {t.name: t.tensor_type.name for t in open_gguf(quantized).tensors}
    base_types = {t.name: t.tensor_type.name for t in open_gguf(base_model).tensors}
    checks = []
    for flag, value, matches, requested in _requested_overrides(recipe):
        tensors = {name: kind for name, kind in types.items() if matches(name)}
        expected = {name: requested or base_types.get(name) for name in tensors}
        wrong = sorted(name for name in tensors if tensors[name] != expected[name])
        checks.append({
            "flag": flag,
            "value": value,
            "requested_type": requested,
            "tensors": tensors,
            "mismatched": wrong,
            "applied": bool(tensors) and not wrong,
        })
        if not tensors:
            logger.warning("%s %s matched no tensor of %s", flag, value, quantized.name)
        elif wrong:
            logger.warning("%s %s: %d tensors do not have the requested type: %s", flag, value,
                           len(wrong), ", ".join(wrong))
    return checks


def quantize_model(
    base_model: Path,
    quantization_type: str,
    output: Path,
    audit_output: Path,
    imatrix: Path | None,
    threads: int,
    log_path: Path | None = None,
    recipe: dict[str, Any] | None = None,
    calibration_report: Path | None = None,
) -> dict[str, Any]:
    """Quantize `base_model` to `quantization_type` and write the tensor audit beside it.

    `recipe` (Variant.recipe()) adds its per-tensor overrides as llama-quantize flags; the
    audit then records, per override, whether the written tensors have the requested types.
    llama-quantize leaves a partial file behind when it fails, so it writes to a
    temporary name that is renamed only after the audit succeeded.
    """
    open_gguf(base_model)  # a missing or truncated file gets a clear message, not the tool's
    recipe = recipe or {}
    arguments: list[Any] = override_arguments(recipe)
    if imatrix is not None:
        arguments += ["--imatrix", imatrix]
    with atomic_output(output) as temporary:
        arguments += [base_model, temporary, quantization_type.upper(), threads]
        tool_output = run_tool("llama-quantize", arguments, log_path)
        audit = audit_tensors(temporary, main_tensor_type(quantization_type))
        overrides = check_overrides(temporary, base_model, recipe)

    # A tensor given its type by an override is not a fallback, whatever its row size.
    overridden = {name for check in overrides if check["applied"] for name in check["tensors"]}
    audit["fallback_tensors"] = [t for t in audit["fallback_tensors"] if t["name"] not in overridden]

    # llama-quantize's own count, e.g. "WARNING: 180 of 272 tensor(s) required fallback
    # quantization"; it can differ by a tensor or two from ours, which also counts tensors
    # that the type's mixture rules had given another type anyway.
    reported = re.search(r"(\d+) of \d+ tensor\(s\) required fallback quantization", tool_output)
    audit["llama_quantize_fallbacks"] = int(reported.group(1)) if reported else 0
    audit["quantization_type"] = quantization_type.upper()
    audit["imatrix"] = imatrix is not None
    audit["recipe"] = {**recipe, "type": quantization_type.upper(), "imatrix": imatrix is not None}
    audit["overrides"] = overrides
    # Tokens per source of the recipe's own calibration set (imatrix --token-report).
    audit["calibration"] = json.loads(calibration_report.read_text(encoding="utf-8")) if calibration_report else None
    if audit["fallback_tensors"]:
        logger.warning(
            "%d tensors of %s are not %s: their row size is not a multiple of its block size, "
            "so llama-quantize used another type (see %s)",
            len(audit["fallback_tensors"]), output.name, audit["requested_type"], audit_output,
        )

    write_json(audit, audit_output)
    return audit
