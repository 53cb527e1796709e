"""Memory and runtime requests of the workflow's jobs, sized from the model file.

A cluster scheduler kills a job that outgrows its memory or runtime request. So the
rules ask for what the model in hand needs, without edits to the workflow: about 2 GB
for a 135M model, tens of GB for a 70B one. The figures
are estimates with headroom, not measurements of each model; a site that knows better
overrides them with Snakemake's `--set-resources`.
"""

from __future__ import annotations

import functools
import logging
import math
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

MB = 1_000_000

# llama.cpp keeps its KV cache in F16 by default: 2 bytes per element.
KV_CACHE_BYTES_PER_ELEMENT = 2

# Estimate for llama.cpp's compute buffers, the Python interpreter, lm-evaluation-harness
# and the tokenizer, with headroom.
PROCESS_OVERHEAD_MB = 1200

# Throughputs assumed for runtime requests. They are conservative estimates, not
# measurements: token generation reads the whole model once per token, so it is bound
# by memory bandwidth (assumed 5 GB/s on a few CPU cores, 200 GB/s on a GPU); prompt
# processing runs in batches (assumed 20x faster per token); writing a quantized file
# runs at disk speed (assumed 50 MB/s).
GENERATION_BYTES_PER_SECOND = 5e9
GPU_GENERATION_BYTES_PER_SECOND = 200e9
PROMPT_SPEEDUP = 20
QUANTIZE_BYTES_PER_SECOND = 50e6

# Scheduling, model loading and start-up, added to every runtime request.
RUNTIME_OVERHEAD_MINUTES = 10

# Safety factor on runtime estimates: a job killed at its limit costs more than a
# request that is too long.
RUNTIME_SAFETY_FACTOR = 2


@dataclass(frozen=True)
class ModelShape:
    """The dimensions of a transformer that set the size of its KV cache and logits."""

    layers: int
    embedding: int
    heads: int
    kv_heads: int
    vocab: int

    @property
    def kv_bytes_per_token(self) -> int:
        """Bytes of KV cache per token of context: keys and values of every layer."""
        head_dim = self.embedding // self.heads
        return 2 * self.layers * self.kv_heads * head_dim * KV_CACHE_BYTES_PER_ELEMENT


def fallback_kv_bytes_per_token(model_bytes: int) -> int:
    """Bound the KV cache per token from the file size alone, for models of unknown shape.

    A dense model without grouped-query attention has about 12 * layers * d^2 weights
    and 4 * layers * d bytes of F16 KV cache per token. Dividing the file size by 10,000
    covers that for every model of 135M parameters or more in F16 (Llama-2-7B needs
    13.5 GB / 25,700 per token), and over-asks for quantized files and GQA models.
    """
    return model_bytes // 10_000


@functools.lru_cache(maxsize=256)
def _read_shape(path: str, size: int, mtime_ns: int) -> ModelShape | None:
    from gguf import GGUFReader

    try:
        reader = GGUFReader(path)
    except (ValueError, IndexError, OSError) as error:
        logger.debug("cannot read GGUF metadata of %s: %s", path, error)
        return None

    def value(key: str) -> int | None:
        field = reader.get_field(key)
        return None if field is None else int(field.contents())

    architecture_field = reader.get_field("general.architecture")
    tokens_field = reader.get_field("tokenizer.ggml.tokens")
    if architecture_field is None or tokens_field is None:
        return None
    architecture = architecture_field.contents()
    layers = value(f"{architecture}.block_count")
    embedding = value(f"{architecture}.embedding_length")
    heads = value(f"{architecture}.attention.head_count")
    kv_heads = value(f"{architecture}.attention.head_count_kv") or heads
    if not (layers and embedding and heads):
        return None
    return ModelShape(layers, embedding, heads, kv_heads, len(tokens_field.data))


def read_model_shape(path: Path | str) -> ModelShape | None:
    """Read a GGUF model's shape from its metadata; None if the file is missing or lacks it.

    Snakemake re-evaluates resources on every scheduling pass, so results are cached
    per file version (size and modification time).
    """
    path = Path(path)
    try:
        status = path.stat()
    except FileNotFoundError:
        return None
    return _read_shape(str(path), status.st_size, status.st_mtime_ns)


def file_size(path: Path | str) -> int:
    """Size of a file in bytes, 0 if it does not exist yet (as in a dry run)."""
    try:
        return Path(path).stat().st_size
    except FileNotFoundError:
        return 0


def kv_cache_mb(model_bytes: int, context: int, shape: ModelShape | None) -> int:
    per_token = shape.kv_bytes_per_token if shape else fallback_kv_bytes_per_token(model_bytes)
    return math.ceil(per_token * context / MB)


def logits_mb(context: int, shape: ModelShape | None) -> int:
    """Logits of every position as float32, which log-likelihood scoring and llama-imatrix keep."""
    vocab = shape.vocab if shape else 262_144  # the largest common vocabulary (Gemma 3)
    return math.ceil(4 * vocab * context / MB)


def evaluation_memory_mb(model_bytes: int, context: int, shape: ModelShape | None) -> int:
    """Memory for `quant-eval evaluate`: the model, its KV cache, all-position logits and the process."""
    return (math.ceil(model_bytes / MB) + kv_cache_mb(model_bytes, context, shape)
            + logits_mb(context, shape) + PROCESS_OVERHEAD_MB)


def imatrix_memory_mb(model_bytes: int, context: int, shape: ModelShape | None) -> int:
    """Memory for llama-imatrix: like an evaluation, plus its per-tensor statistics (under 1 % of the model)."""
    return evaluation_memory_mb(model_bytes, context, shape) + math.ceil(model_bytes / MB / 100)


def quantize_memory_mb(model_bytes: int) -> int:
    """Memory for llama-quantize: the base model mapped in, the output written, F32 work buffers.

    Twice the base model covers the input and an output of at most the same size, both of
    which count against a Slurm job's memory limit while they sit in the page cache.
    """
    return 2 * math.ceil(model_bytes / MB) + PROCESS_OVERHEAD_MB


def base_model_memory_mb(source_bytes: int, dequantize: bool) -> int:
    """Memory for `quant-eval base-model`: a link or copy, or a dequantization to F16.

    GGUFWriter holds every tensor until it writes the file, so dequantizing keeps the
    whole F16 model in memory: about 4x a 4-bit source, plus the source mapped in.
    """
    # NOTE: sources below 4 bits per weight (Q2_K, Q3_K) grow more than 4x and may
    # outgrow this request; raise it with --set-resources base_model:mem_mb=...
    if not dequantize:
        return PROCESS_OVERHEAD_MB
    return 5 * math.ceil(source_bytes / MB) + PROCESS_OVERHEAD_MB


def _minutes(seconds: float) -> int:
    return RUNTIME_OVERHEAD_MINUTES + math.ceil(RUNTIME_SAFETY_FACTOR * seconds / 60)


def _seconds_per_token(model_bytes: int, gpu: bool) -> float:
    return model_bytes / (GPU_GENERATION_BYTES_PER_SECOND if gpu else GENERATION_BYTES_PER_SECOND)


def evaluation_runtime_minutes(model_bytes: int, items: int, prompt_tokens: int, generated_tokens: int,
                               gpu: bool = False) -> int:
    """Runtime for one evaluation run over `items` items of up to `prompt_tokens` prompt tokens.

    Each generated token reads the whole model; prompt tokens cost a PROMPT_SPEEDUP-th of that.
    """
    tokens = items * (generated_tokens + prompt_tokens / PROMPT_SPEEDUP)
    return _minutes(tokens * _seconds_per_token(model_bytes, gpu))


def imatrix_runtime_minutes(model_bytes: int, context: int, chunks: int, gpu: bool = False) -> int:
    """Runtime for llama-imatrix over `chunks` chunks of `context` tokens (prompt processing only)."""
    return _minutes(context * chunks * _seconds_per_token(model_bytes, gpu) / PROMPT_SPEEDUP)


def quantize_runtime_minutes(model_bytes: int) -> int:
    return _minutes(model_bytes / QUANTIZE_BYTES_PER_SECOND)


def count_lines(path: Path | str) -> int:
    """Number of lines of a JSONL file, 0 if it does not exist yet."""
    try:
        with Path(path).open("rb") as handle:
            return sum(1 for _ in handle)
    except FileNotFoundError:
        return 0
