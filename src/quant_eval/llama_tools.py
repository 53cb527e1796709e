"""Locating and running llama.cpp's command-line tools."""

from __future__ import annotations

import functools
import logging
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Sequence

from .errors import ToolError

logger = logging.getLogger(__name__)

TOOLS_DIR_VARIABLE = "LLAMA_CPP_TOOLS_DIR"
CONVERTER_VARIABLE = "LLAMA_CPP_CONVERTER"
CONVERTER_NAME = "convert_hf_to_gguf.py"


def find_tool(name: str) -> Path:
    """Return the path of a llama.cpp tool such as `llama-quantize`.

    Looks in $LLAMA_CPP_TOOLS_DIR, then in the `bin/` folder that the llama-cpp-python
    build of scripts/install_llama_cpp.sh installs into site-packages, then on PATH.
    """
    candidates = []
    if os.environ.get(TOOLS_DIR_VARIABLE):
        candidates.append(Path(os.environ[TOOLS_DIR_VARIABLE]) / name)
    candidates.append(Path(sysconfig.get_path("purelib")) / "bin" / name)
    on_path = shutil.which(name)
    if on_path:
        candidates.append(Path(on_path))
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise ToolError(
        f"llama.cpp tool {name!r} not found in ${TOOLS_DIR_VARIABLE}, site-packages/bin or PATH; "
        "run `make setup`, or set LLAMA_CPP_TOOLS_DIR to the folder that holds it"
    )


def find_converter() -> Path:
    """Return the path of llama.cpp's convert_hf_to_gguf.py.

    Looks at $LLAMA_CPP_CONVERTER, then in share/quant-eval/llama.cpp/ of the running
    Python environment, where scripts/install_llama_cpp.sh unpacks it together with its
    `conversion` package and gguf-py from the llama-cpp-python source package.
    """
    if os.environ.get(CONVERTER_VARIABLE):
        candidate = Path(os.environ[CONVERTER_VARIABLE])
        if candidate.is_file():
            return candidate
        raise ToolError(
            f"${CONVERTER_VARIABLE} is {candidate}, which is not a file; point it at llama.cpp's "
            f"{CONVERTER_NAME}, or unset it to use the one that `make setup` installs"
        )
    candidate = Path(sys.prefix) / "share" / "quant-eval" / "llama.cpp" / CONVERTER_NAME
    if candidate.is_file():
        return candidate
    raise ToolError(
        f"llama.cpp's {CONVERTER_NAME} not found at {candidate}; run `make setup` (it unpacks the "
        f"converter from the llama-cpp-python source package), or set {CONVERTER_VARIABLE} to its path"
    )


def run_tool(name: str, arguments: Sequence[str], log_path: Path | None = None) -> str:
    """Run a llama.cpp tool, append its output to `log_path`, and return the output.

    Raises ToolError with the last lines of the output when the tool exits non-zero.
    """
    command = [str(find_tool(name)), *map(str, arguments)]
    logger.info("running %s", " ".join(command))
    result = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            errors="replace", check=False)
    if log_path is not None:
        with Path(log_path).open("a") as log:
            log.write("$ " + " ".join(command) + "\n" + result.stdout + "\n")
    if result.returncode != 0:
        tail = "\n".join(result.stdout.splitlines()[-15:])
        raise ToolError(f"{name} failed with exit code {result.returncode}:\n{tail}")
    return result.stdout


@functools.cache
def quantization_types() -> dict[str, str]:
    """Return the quantization types llama-quantize accepts, mapped to their descriptions.

    Read from `llama-quantize --help`, which lists lines such as
    `   15  or  Q4_K_M  :  4.58G, +0.1754 ppl @ Llama-3-8B` (and exits 1 by design).
    """
    result = subprocess.run([str(find_tool("llama-quantize")), "--help"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, errors="replace", check=False)
    types = {}
    _, header, listing = result.stdout.partition("allowed quantization types")
    for line in listing.splitlines() if header else []:
        # COPY has no number: "          COPY    : only copy tensors, no quantizing"
        match = re.match(r"^\s*(?:\d+\s+or\s+)?([A-Z][A-Z0-9_]*)\s*:\s*(.*)$", line)
        if match:
            types[match.group(1)] = match.group(2).strip()
    if not types:
        raise ToolError("could not read the list of quantization types from `llama-quantize --help`")
    return types
