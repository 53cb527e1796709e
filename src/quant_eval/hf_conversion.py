"""Conversion of a Hugging Face model directory into a GGUF base model.

The conversion runs llama.cpp's own convert_hf_to_gguf.py (unpacked from the
llama-cpp-python source package by scripts/install_llama_cpp.sh) in a child process of
this Python environment, so the GGUF keeps the tokenizer and chat template exactly as
llama.cpp's converter writes them. The converter needs torch, transformers and
safetensors, from the `hf` extra; this module never imports them, so a workflow on GGUF
sources runs without them.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .errors import InvalidModelError, ToolError
from .files import atomic_output
from .gguf_files import open_gguf
from .llama_tools import find_converter

logger = logging.getLogger(__name__)

CONVERT_TYPES = ("f32", "f16", "bf16")
DEFAULT_CONVERT_TYPE = "f16"
CONVERTER_PACKAGES = ("torch", "transformers", "safetensors")

WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json")
# Files besides the weights that the converter reads, when present.
METADATA_FILES = (
    "config.json", "generation_config.json", "model.safetensors.index.json",
    "pytorch_model.bin.index.json", "tokenizer.json", "tokenizer_config.json", "tokenizer.model",
    "special_tokens_map.json", "added_tokens.json", "vocab.json", "merges.txt",
    "chat_template.jinja", "chat_template.json",
)
LAYOUT_HINT = (
    "a Hugging Face model directory contains config.json, the weights (*.safetensors) and the "
    "tokenizer files, as written by save_pretrained() of the model and of its tokenizer"
)


def weight_files(directory: Path) -> list[Path]:
    return sorted({path for pattern in WEIGHT_PATTERNS for path in Path(directory).glob(pattern)})


def model_files(directory: Path) -> list[Path]:
    """Return the files of a model directory that the conversion reads, for Snakemake to track."""
    directory = Path(directory)
    metadata = [directory / name for name in METADATA_FILES if (directory / name).is_file()]
    return sorted(metadata + weight_files(directory))


def check_model_dir(directory: Path) -> dict[str, Any]:
    """Return the parsed config.json of a model directory, or raise InvalidModelError naming what is missing."""
    directory = Path(directory)
    if not directory.is_dir():
        raise InvalidModelError(f"model directory not found: {directory}; check the path")

    config_path = directory / "config.json"
    if not config_path.is_file():
        raise InvalidModelError(f"{directory} has no config.json; {LAYOUT_HINT}")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InvalidModelError(f"{config_path} is not valid JSON ({error}); save the model again") from error
    if not isinstance(config, dict) or not config.get("architectures"):
        raise InvalidModelError(
            f"{config_path} has no 'architectures' list, so the converter cannot tell the model "
            "class; save the model again with save_pretrained()"
        )

    if not weight_files(directory):
        raise InvalidModelError(
            f"{directory} has no weight files (*.safetensors or pytorch_model*.bin); {LAYOUT_HINT}"
        )
    if not any((directory / name).is_file() for name in TOKENIZER_FILES):
        raise InvalidModelError(
            f"{directory} has no tokenizer files ({', '.join(TOKENIZER_FILES)}); {LAYOUT_HINT}"
        )
    return config


def check_converter_packages() -> None:
    """Raise ToolError if a package that convert_hf_to_gguf.py imports is not installed."""
    missing = [name for name in CONVERTER_PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        raise ToolError(
            f"converting a Hugging Face model needs {', '.join(missing)}, which is not installed; "
            "run `make setup`, which installs the `hf` extra (pip install -e '.[hf]')"
        )


def _conversion_error(directory: Path, converter: Path, output: str, returncode: int) -> InvalidModelError:
    unsupported = re.search(r"Model (\S+) is not supported", output)
    if unsupported:
        return InvalidModelError(
            f"{directory}: architecture {unsupported.group(1)} (config.json 'architectures') is not "
            f"supported by llama.cpp's converter {converter}; `python {converter} "
            "--print-supported-models` lists the supported ones. Convert the model with a newer "
            "llama.cpp and give the GGUF file as the source instead"
        )
    if "BPE pre-tokenizer was not recognized" in output:
        return InvalidModelError(
            f"{directory}: llama.cpp's converter does not recognize the tokenizer's pre-tokenizer, "
            "so llama.cpp would split text differently from the model's own tokenizer. Convert "
            "the model with a llama.cpp version that knows it and give the GGUF file as the source"
        )
    tail = "\n".join(output.splitlines()[-15:])
    return InvalidModelError(
        f"converting {directory} with {converter} failed with exit code {returncode}; "
        f"check that the directory is a complete model saved with save_pretrained():\n{tail}"
    )


def convert_model_dir(directory: Path, output: Path, convert_type: str = DEFAULT_CONVERT_TYPE) -> dict[str, Any]:
    """Convert a Hugging Face model directory into a GGUF file of type `convert_type`.

    Writes to a temporary name and renames it to `output` once the converter succeeded
    and the file opens as GGUF, so a failed conversion leaves no partial file. Returns a
    description of the source (architecture, dtype in config.json, converter, seconds).
    """
    if convert_type not in CONVERT_TYPES:
        raise InvalidModelError(
            f"unknown conversion type {convert_type!r}; choose one of: {', '.join(CONVERT_TYPES)}"
        )
    directory = Path(directory)
    config = check_model_dir(directory)
    converter = find_converter()
    check_converter_packages()

    # The converter puts its own gguf-py first on sys.path unless NO_LOCAL_GGUF is set,
    # and the PyPI gguf release is too old for it. Offline mode keeps transformers from
    # looking anything up on the Hugging Face hub.
    environment = {key: value for key, value in os.environ.items() if key != "NO_LOCAL_GGUF"}
    environment.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")

    started = time.monotonic()
    with atomic_output(Path(output)) as temporary:
        command = [sys.executable, str(converter), str(directory), "--outfile", str(temporary),
                   "--outtype", convert_type]
        logger.info("converting %s to %s with %s", directory, convert_type.upper(), converter)
        result = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                errors="replace", env=environment, check=False)
        logger.info("converter output:\n%s", result.stdout.rstrip())
        if result.returncode != 0:
            raise _conversion_error(directory, converter, result.stdout, result.returncode)
        open_gguf(temporary)
    seconds = round(time.monotonic() - started, 1)
    logger.info("converted %s in %.1f s: %s", directory, seconds, output)

    return {
        "architecture": config["architectures"][0],
        # transformers 5 writes `dtype`, older releases `torch_dtype`.
        "dtype": config.get("dtype") or config.get("torch_dtype"),
        "convert_type": convert_type,
        "converter": str(converter),
        "conversion_seconds": seconds,
    }
