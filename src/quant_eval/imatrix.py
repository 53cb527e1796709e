"""Importance matrix computation with llama-imatrix."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from .errors import InvalidDataError
from .files import write_json
from .llama_tools import run_tool

logger = logging.getLogger(__name__)


def _load_vocabulary(model: Path) -> Any:
    from llama_cpp import Llama

    return Llama(model_path=str(model), vocab_only=True, verbose=False)


def count_tokens(model: Path, text: str) -> int:
    """Count the tokens of `text` with the model's own tokenizer (vocabulary only, no weights)."""
    vocab = _load_vocabulary(model)
    return len(vocab.tokenize(text.encode("utf-8"), add_bos=False, special=False))


def count_mix_tokens(model: Path, calibration: Path, manifest: Path, context: int, chunks: int) -> dict[str, Any]:
    """Return the tokens each source of a calibration mix holds, in the whole text and in the part read.

    llama-imatrix reads the first `context` x `chunks` tokens. Each paragraph of the
    manifest is tokenized on its own, so the counts can differ from the tokenization of
    the joined text by a token or so per paragraph.
    """
    vocab = _load_vocabulary(model)
    text = calibration.read_text(encoding="utf-8")
    record = json.loads(manifest.read_text(encoding="utf-8"))
    sources = record["sources"]
    total = [0] * len(sources)
    read = [0] * len(sources)
    budget = context * chunks
    consumed = 0
    for index, start, end in record["segments"]:
        n_tokens = len(vocab.tokenize(text[start:end].encode("utf-8"), add_bos=False, special=False))
        total[index] += n_tokens
        read[index] += min(n_tokens, max(budget - consumed, 0))
        consumed += n_tokens
    n_read = sum(read)
    return {
        "set": record["set"],
        "weights_mean": record["weights_mean"],
        "tokens_read": n_read,
        "tokens_total": sum(total),
        "sources": [
            {
                "source": source["source"],
                "weight": source["weight"],
                "target_share": source["target_share"],
                "n_characters": source["n_characters"],
                "n_tokens": total[i],
                "n_tokens_read": read[i],
                "token_share_read": read[i] / n_read if n_read else 0.0,
            }
            for i, source in enumerate(sources)
        ],
    }


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
    manifest: Path | None = None,
    token_report: Path | None = None,
) -> None:
    """Run llama-imatrix over `chunks` chunks of `context` tokens of the calibration text.

    `gpu_layers` layers go to a GPU (-1: all of them); 0 keeps llama-imatrix's default.
    With the `manifest` of a calibration mix, the tokens per source go to `token_report`.
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
    if manifest is not None and token_report is not None:
        write_json(count_mix_tokens(model, calibration, manifest, context, chunks), token_report)
    os.replace(temporary, output)
    logger.info("imatrix from %d of %d calibration tokens: %s", context * chunks, n_tokens, output)
