"""Importance matrix computation with llama-imatrix."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from .errors import InvalidDataError
from .llama_tools import run_tool

logger = logging.getLogger(__name__)


def count_tokens(model: Path, text: str) -> int:
    """Count the tokens of `text` with the model's own tokenizer (vocabulary only, no weights)."""
    from llama_cpp import Llama

    vocab = Llama(model_path=str(model), vocab_only=True, verbose=False)
    return len(vocab.tokenize(text.encode("utf-8"), add_bos=False, special=False))


def compute_imatrix(
    model: Path,
    calibration: Path,
    output: Path,
    context: int,
    chunks: int,
    batch_size: int,
    threads: int,
    log_path: Path | None = None,
    gpu_layers: int = 0,
) -> None:
    """Run llama-imatrix over `chunks` chunks of `context` tokens of the calibration text.

    `gpu_layers` layers go to a GPU (-1: all of them); 0 keeps llama-imatrix's default.
    """
    n_tokens = count_tokens(model, calibration.read_text(encoding="utf-8"))
    # llama-imatrix itself rejects a text shorter than two contexts.
    needed = context * max(chunks, 2)
    if n_tokens < needed:
        raise InvalidDataError(
            f"calibration text {calibration} has {n_tokens} tokens, fewer than "
            f"imatrix.context x max(imatrix.chunks, 2) = {context} x {max(chunks, 2)} = {needed}; "
            "add text to 'imatrix.calibration' or lower 'imatrix.chunks'"
        )

    # llama-imatrix picks its output format from the file name, so the temporary name
    # keeps the extension.
    temporary = output.with_name(output.stem + ".tmp" + output.suffix)
    temporary.unlink(missing_ok=True)
    arguments = ["-m", model, "-f", calibration, "-o", temporary, "-c", context, "--chunks", chunks,
                 "-b", batch_size, "-t", threads, "--no-ppl"]
    if gpu_layers:
        arguments += ["--n-gpu-layers", gpu_layers]
    run_tool("llama-imatrix", arguments, log_path)
    if not temporary.is_file():
        raise InvalidDataError(f"llama-imatrix finished but wrote no {temporary}; see {log_path}")
    os.replace(temporary, output)
    logger.info("imatrix from %d of %d calibration tokens: %s", context * chunks, n_tokens, output)
