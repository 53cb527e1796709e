"""Shared fixtures: a tiny random-weight llama GGUF written with the gguf package.

The tiny model borrows the real tokenizer of the embedded SmolLM2 model, so llama.cpp
loads and tokenizes with it like any model; its weights are random, so its scores only
serve to check the machinery, never as results.

The ELYZA-tasks-100 tests read the data from ../shared beside the checkout (or the folder
in QUANT_EVAL_SHARED_DIR), because the project itself holds no copy of it.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from gguf import GGMLQuantizationType, GGUFReader, GGUFValueType, GGUFWriter, LlamaFileType

from quant_eval.base_model import resolve_source

REPO = Path(__file__).resolve().parents[1]
EMBEDDED_SOURCE = "embedded:smollm2-135m-instruct"
SHARED = Path(os.environ.get("QUANT_EVAL_SHARED_DIR", REPO.parent / "shared"))
ELYZA_DATA = SHARED / "data" / "elyza-tasks-100" / "dataset.jsonl"


def write_tiny_llama(path: Path, hidden: int = 256, ffn: int = 512, layers: int = 2,
                     dtype: type = np.float16, seed: int = 0, chat_template: bool = True,
                     output_tensor: bool = False) -> Path:
    """Write a random-weight llama GGUF with the embedded model's tokenizer (and its chat template).

    Without `output_tensor` the output layer reuses the token embeddings (tied), as in SmolLM2.
    """
    tokenizer = GGUFReader(resolve_source(EMBEDDED_SOURCE))
    rng = np.random.default_rng(seed)
    heads, kv_heads = 4, 2
    head_dim = hidden // heads
    vocab = len(tokenizer.get_field("tokenizer.ggml.tokens").contents())

    writer = GGUFWriter(path, "llama")
    writer.add_name("tiny-random-llama")
    writer.add_block_count(layers)
    writer.add_context_length(2048)
    writer.add_embedding_length(hidden)
    writer.add_feed_forward_length(ffn)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(vocab)
    writer.add_file_type(LlamaFileType.MOSTLY_F16 if dtype == np.float16 else LlamaFileType.ALL_F32)
    for field in tokenizer.fields.values():
        if field.name == "tokenizer.chat_template" and not chat_template:
            continue
        if field.name.startswith("tokenizer."):
            value_type = field.types[0]
            sub_type = field.types[-1] if value_type == GGUFValueType.ARRAY else None
            writer.add_key_value(field.name, field.contents(), value_type, sub_type=sub_type)

    def weight(rows: int, cols: int) -> np.ndarray:
        return (rng.standard_normal((rows, cols)) * 0.05).astype(dtype)

    writer.add_tensor("token_embd.weight", weight(vocab, hidden))
    writer.add_tensor("output_norm.weight", np.ones(hidden, dtype=np.float32))
    if output_tensor:
        writer.add_tensor("output.weight", weight(vocab, hidden))
    for layer in range(layers):
        prefix = f"blk.{layer}."
        writer.add_tensor(prefix + "attn_norm.weight", np.ones(hidden, dtype=np.float32))
        writer.add_tensor(prefix + "attn_q.weight", weight(hidden, hidden))
        writer.add_tensor(prefix + "attn_k.weight", weight(kv_heads * head_dim, hidden))
        writer.add_tensor(prefix + "attn_v.weight", weight(kv_heads * head_dim, hidden))
        writer.add_tensor(prefix + "attn_output.weight", weight(hidden, hidden))
        writer.add_tensor(prefix + "ffn_norm.weight", np.ones(hidden, dtype=np.float32))
        writer.add_tensor(prefix + "ffn_gate.weight", weight(ffn, hidden))
        writer.add_tensor(prefix + "ffn_up.weight", weight(ffn, hidden))
        writer.add_tensor(prefix + "ffn_down.weight", weight(hidden, ffn))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A tiny F16 llama whose row sizes are all multiples of 256."""
    return write_tiny_llama(tmp_path_factory.mktemp("models") / "tiny-f16.gguf")


@pytest.fixture(scope="session")
def tiny_model_odd_rows(tmp_path_factory) -> Path:
    """A tiny F16 llama with hidden size 320, not a multiple of the K-quant block size 256."""
    return write_tiny_llama(tmp_path_factory.mktemp("models") / "tiny-odd-f16.gguf", hidden=320, ffn=512)


@pytest.fixture(scope="session")
def tiny_model_without_chat_template(tmp_path_factory) -> Path:
    """The tiny F16 llama without `tokenizer.chat_template`, like many base-model GGUFs."""
    return write_tiny_llama(tmp_path_factory.mktemp("models") / "no-template.gguf", chat_template=False)


@pytest.fixture(scope="session")
def elyza_data() -> Path:
    """The ELYZA-tasks-100 test split as JSONL, fields input_text/output_text/eval_aspect."""
    if not ELYZA_DATA.is_file():
        pytest.fail(f"{ELYZA_DATA} not found: put the ELYZA-tasks-100 copy in ../shared beside the "
                    "checkout, or set QUANT_EVAL_SHARED_DIR to the folder that holds data/")
    return ELYZA_DATA
