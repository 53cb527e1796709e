"""Reading, checking, auditing and dequantizing GGUF files with the `gguf` package."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from gguf import GGMLQuantizationType, GGUFReader, GGUFValueType, GGUFWriter, LlamaFileType
from gguf.constants import GGML_QUANT_SIZES
from gguf.quants import dequantize

from .errors import InvalidModelError
from .files import atomic_output

logger = logging.getLogger(__name__)

UNQUANTIZED_TYPES = {GGMLQuantizationType.F32, GGMLQuantizationType.F16, GGMLQuantizationType.BF16}
GGUF_MAGIC = b"GGUF"


def open_gguf(path: Path) -> GGUFReader:
    """Open a GGUF file, raising InvalidModelError if it is missing, not GGUF or truncated."""
    path = Path(path)
    if not path.is_file():
        raise InvalidModelError(f"model file not found: {path}; check the path")
    with path.open("rb") as handle:
        magic = handle.read(4)
    if not magic:
        raise InvalidModelError(f"{path} is empty; copy or download the model again")
    if magic != GGUF_MAGIC:
        raise InvalidModelError(
            f"{path} is not a GGUF file (it starts with {magic!r}, expected {GGUF_MAGIC!r}); "
            "convert the model to GGUF first"
        )
    try:
        reader = GGUFReader(path)
    except (ValueError, IndexError, OSError) as error:
        raise InvalidModelError(
            f"{path} is not a readable GGUF file ({error}); it may be truncated: copy or download it again"
        ) from error

    # The reader maps tensor data lazily, so a file cut short inside the tensor data
    # opens without error. Comparing the end of the last tensor with the file size finds it.
    file_size = path.stat().st_size
    data_end = max((t.data_offset + int(t.n_bytes) for t in reader.tensors), default=0)
    if data_end > file_size:
        raise InvalidModelError(
            f"{path} is truncated: its tensors need {data_end} bytes but the file has {file_size}; "
            "copy or download it again"
        )
    return reader


def tensor_parameters(tensor: Any) -> int:
    return int(np.prod([int(d) for d in tensor.shape]))


def file_type_name(reader: GGUFReader) -> str:
    """Return the dominant tensor type of a model, weighted by parameters (e.g. "F16")."""
    weights = Counter()
    for tensor in reader.tensors:
        weights[tensor.tensor_type.name] += tensor_parameters(tensor)
    return weights.most_common(1)[0][0] if weights else "none"


def is_unquantized(reader: GGUFReader) -> bool:
    return all(t.tensor_type in UNQUANTIZED_TYPES for t in reader.tensors)


def audit_tensors(path: Path, requested_type: GGMLQuantizationType | None) -> dict[str, Any]:
    """Summarize which types a GGUF's tensors really have.

    A tensor counts as a fallback when the requested type could not be used because the
    tensor's row size is not a multiple of that type's block size. llama-quantize then
    picks another type and still exits 0, as seen with K-quants (block size 256) on
    SmolLM2-135M, whose hidden size is 576.
    """
    reader = open_gguf(path)
    by_type: dict[str, dict[str, int]] = {}
    fallback_tensors = []
    n_parameters = 0
    tensor_bytes = 0
    for tensor in reader.tensors:
        params = tensor_parameters(tensor)
        n_parameters += params
        tensor_bytes += int(tensor.n_bytes)
        entry = by_type.setdefault(tensor.tensor_type.name, {"n_tensors": 0, "n_parameters": 0})
        entry["n_tensors"] += 1
        entry["n_parameters"] += params

        if requested_type is None or len(tensor.shape) < 2 or tensor.tensor_type == requested_type:
            continue
        block_size = GGML_QUANT_SIZES[requested_type][0]
        row_size = int(tensor.shape[0])
        if row_size % block_size != 0:
            fallback_tensors.append(
                {"name": tensor.name, "row_size": row_size, "block_size": block_size,
                 "type": tensor.tensor_type.name}
            )

    file_size = Path(path).stat().st_size
    return {
        "file_size_bytes": file_size,
        "n_parameters": n_parameters,
        # Bits per weight over all tensor data, as llama-quantize reports it (metadata excluded).
        "bits_per_weight": round(8 * tensor_bytes / n_parameters, 4) if n_parameters else None,
        "tensor_types": dict(sorted(by_type.items())),
        "requested_type": requested_type.name if requested_type is not None else None,
        "fallback_tensors": fallback_tensors,
    }


def _copy_field(writer: GGUFWriter, field: Any) -> None:
    value_type = field.types[0]
    if value_type == GGUFValueType.ARRAY:
        writer.add_key_value(field.name, field.contents(), value_type, sub_type=field.types[-1])
    else:
        writer.add_key_value(field.name, field.contents(), value_type)


def dequantize_to_f16(source: Path, output: Path) -> None:
    """Write a copy of a GGUF model with every quantized tensor dequantized to F16.

    F32 tensors (norms) stay F32, as llama.cpp's converter keeps them. Metadata is copied
    unchanged except `general.file_type`. Writes to a temporary name, then renames.
    """
    reader = open_gguf(source)
    architecture = reader.get_field("general.architecture").contents()
    with atomic_output(output) as temporary:
        writer = GGUFWriter(temporary, architecture)
        try:
            for field in reader.fields.values():
                if field.name.startswith("GGUF.") or field.name in ("general.architecture", "general.file_type"):
                    continue
                _copy_field(writer, field)
            writer.add_file_type(LlamaFileType.MOSTLY_F16)

            for tensor in reader.tensors:
                if tensor.tensor_type == GGMLQuantizationType.F32:
                    data = np.asarray(tensor.data)
                else:
                    data = dequantize(tensor.data, tensor.tensor_type).astype(np.float16)
                # gguf lists shapes innermost first; numpy arrays are outermost first.
                shape = tuple(int(d) for d in reversed(tensor.shape))
                writer.add_tensor(tensor.name, data.reshape(shape))

            writer.write_header_to_file()
            writer.write_kv_data_to_file()
            writer.write_tensors_to_file()
        finally:
            writer.close()
    logger.info("dequantized %s (%s) to F16: %s", source, file_type_name(reader), output)
