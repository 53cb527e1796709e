"""Hugging Face model directories: conversion with llama.cpp's converter, checked against transformers.

The test model is a random-weight LlamaForCausalLM written with transformers. Its
tokenizer is rebuilt offline from the embedded SmolLM2 GGUF (vocabulary, merges and the
pre-tokenizer of SmolLM's tokenizer.json), which llama.cpp's converter recognizes. The
weights are drawn large enough that per-token log-probabilities spread over several
nats, so a tokenization or position error shows up far above the 1e-3 nats tolerance.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from gguf import GGUFReader, GGUFValueType, GGUFWriter, LlamaFileType
from gguf.quants import dequantize
from lm_eval.api.instance import Instance
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from conftest import EMBEDDED_SOURCE, REPO
from quant_eval.base_model import prepare_base_model, resolve_source
from quant_eval.config import check_input_files
from quant_eval.errors import ConfigError, InvalidModelError, ToolError
from quant_eval.evaluation.backend import LlamaCppLM
from quant_eval.gguf_files import file_type_name, open_gguf
from quant_eval import hf_conversion
from quant_eval.hf_conversion import convert_model_dir, model_files
from quant_eval.llama_tools import CONVERTER_VARIABLE, find_converter

TOLERANCE_NATS = 1e-3
CONTROL_TOKEN_TYPE = 3  # gguf.TokenType.CONTROL

PAIRS = [
    ("Question: What is two plus two?\nAnswer:", " four"),
    ("Question: What is 12 times 34?\nAnswer: ", "408"),  # trailing space moves to the continuation
    ("The café on the corner", " sells croissants, tea and 日本のお茶."),  # multi-byte characters
    ("def add(a, b):\n", "    return a + b\n\n\n"),  # runs of spaces and newlines
    ("", "Hello world, again"),  # empty context: scored after the BOS token alone
]


def write_tokenizer(directory: Path) -> PreTrainedTokenizerFast:
    """Save a byte-level BPE tokenizer with SmolLM2's vocabulary, merges and chat template."""
    reader = GGUFReader(resolve_source(EMBEDDED_SOURCE))
    tokens = reader.get_field("tokenizer.ggml.tokens").contents()
    token_types = reader.get_field("tokenizer.ggml.token_type").contents()
    merges = [tuple(merge.split(" ")) for merge in reader.get_field("tokenizer.ggml.merges").contents()]

    tokenizer = Tokenizer(models.BPE(vocab={token: i for i, token in enumerate(tokens)}, merges=merges))
    # SmolLM's pre-tokenizer: each digit apart, then GPT-2's byte-level split.
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens([
        AddedToken(token, special=True, normalized=False)
        for token, token_type in zip(tokens, token_types) if token_type == CONTROL_TOKEN_TYPE
    ])

    wrapped = PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<|im_start|>",
                                      eos_token="<|im_end|>", unk_token="<|endoftext|>", pad_token="<|im_end|>")
    wrapped.chat_template = reader.get_field("tokenizer.chat_template").contents()
    wrapped.save_pretrained(directory)
    return wrapped


def write_tiny_hf_llama(directory: Path) -> Path:
    """Save a random-weight F32 LlamaForCausalLM with the SmolLM2 tokenizer as safetensors."""
    tokenizer = write_tokenizer(directory)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=256, intermediate_size=512, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048, rms_norm_eps=1e-5,
        rope_theta=10000.0, tie_word_embeddings=False, initializer_range=0.2,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).to(torch.float32)
    with torch.no_grad():
        # Norm weights start at 1; random ones also catch a norm tensor mapped to the wrong layer.
        for name, parameter in model.named_parameters():
            if name.endswith("norm.weight"):
                parameter.copy_(1 + 0.2 * torch.randn_like(parameter))
    model.save_pretrained(directory, safe_serialization=True)
    return directory


def transformers_pair(tokenizer, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """Tokenize a pair with transformers, moving trailing spaces of the context to the continuation."""
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces:
        context, continuation = context[:-n_spaces], context[-n_spaces:] + continuation
    if context == "":
        return [tokenizer.bos_token_id], tokenizer.encode(continuation)
    context_ids = tokenizer.encode(context)
    whole = tokenizer.encode(context + continuation)
    assert whole[: len(context_ids)] == context_ids, "the test pair's tokens merge across the boundary"
    return context_ids, whole[len(context_ids):]


def transformers_log_probs(model, tokens: list[int]) -> np.ndarray:
    """Return the log-probabilities of the next token at every position, in float64."""
    with torch.no_grad():
        logits = model(torch.tensor([tokens])).logits[0]
    return torch.log_softmax(logits.double(), dim=-1).numpy()


@pytest.fixture(scope="module")
def hf_model_dir(tmp_path_factory) -> Path:
    return write_tiny_hf_llama(tmp_path_factory.mktemp("hf") / "tiny-llama")


@pytest.fixture(scope="module")
def converted(hf_model_dir, tmp_path_factory) -> tuple[Path, dict]:
    output_dir = tmp_path_factory.mktemp("converted")
    info = prepare_base_model(str(hf_model_dir), False, output_dir / "base.gguf", output_dir / "base.json",
                              convert_type="f32")
    return output_dir / "base.gguf", info


@pytest.fixture(scope="module")
def reference(hf_model_dir):
    tokenizer = AutoTokenizer.from_pretrained(hf_model_dir)
    model = LlamaForCausalLM.from_pretrained(hf_model_dir, dtype=torch.float32).eval()
    return tokenizer, model


@pytest.fixture(scope="module")
def backend(converted) -> LlamaCppLM:
    return LlamaCppLM(converted[0], context=512, threads=2)


def test_conversion_writes_f32_base(converted):
    path, info = converted
    assert file_type_name(open_gguf(path)) == "F32"
    assert info["base_type"] == "F32"
    assert info["grid_limited"] is False
    assert info["conversion"]["architecture"] == "LlamaForCausalLM"
    assert info["conversion"]["dtype"] == "float32"
    assert json.loads(path.with_suffix(".json").read_text()) == info
    assert sorted(p.name for p in path.parent.iterdir()) == ["base.gguf", "base.json"]


def test_conversion_keeps_tokenizer_and_chat_template(converted, reference):
    tokenizer, _ = reference
    reader = GGUFReader(converted[0])
    assert reader.get_field("tokenizer.chat_template").contents() == tokenizer.chat_template
    assert reader.get_field("tokenizer.ggml.pre").contents() == "smollm"
    tokens = reader.get_field("tokenizer.ggml.tokens").contents()
    assert tokens == tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    assert reader.get_field("tokenizer.ggml.bos_token_id").contents() == tokenizer.bos_token_id
    assert reader.get_field("tokenizer.ggml.eos_token_id").contents() == tokenizer.eos_token_id


@pytest.mark.parametrize("text", [context + continuation for context, continuation in PAIRS])
def test_tokenization_matches_transformers(backend, reference, text):
    tokenizer, _ = reference
    assert backend.tokenize(text, add_bos=True) == tokenizer.encode(text)


@pytest.mark.parametrize("context, continuation", PAIRS)
def test_token_log_probs_match_transformers(backend, reference, context, continuation):
    tokenizer, model = reference
    context_ids, continuation_ids = transformers_pair(tokenizer, context, continuation)

    score = backend.score_pair(context, continuation)
    assert score.context_tokens == context_ids
    assert score.continuation_tokens == continuation_ids

    log_probs = transformers_log_probs(model, context_ids + continuation_ids)
    expected = [log_probs[len(context_ids) - 1 + i, token] for i, token in enumerate(continuation_ids)]
    difference = np.abs(np.array(score.log_probs) - np.array(expected))
    assert difference.max() < TOLERANCE_NATS, (context, continuation, difference.max())


def test_loglikelihood_matches_transformers_sum(backend, reference):
    tokenizer, model = reference
    requests = [Instance("loglikelihood", doc={}, arguments=pair, idx=0, metadata=("test", i, 1))
                for i, pair in enumerate(PAIRS)]
    for (context, continuation), (value, _) in zip(PAIRS, backend.loglikelihood(requests)):
        context_ids, continuation_ids = transformers_pair(tokenizer, context, continuation)
        log_probs = transformers_log_probs(model, context_ids + continuation_ids)
        expected = sum(log_probs[len(context_ids) - 1 + i, t] for i, t in enumerate(continuation_ids))
        assert value == pytest.approx(expected, abs=TOLERANCE_NATS * len(continuation_ids))


def test_comparison_detects_position_shift(backend, reference):
    """Reading each token's log-probability one position late must miss by far more than the tolerance."""
    tokenizer, model = reference
    all_log_probs = []
    for context, continuation in PAIRS:
        context_ids, continuation_ids = transformers_pair(tokenizer, context, continuation)
        log_probs = transformers_log_probs(model, context_ids + continuation_ids)
        shifted = [log_probs[len(context_ids) + i, token] for i, token in enumerate(continuation_ids)]
        score = backend.score_pair(context, continuation)
        assert np.abs(np.array(score.log_probs) - np.array(shifted)).max() > 100 * TOLERANCE_NATS
        all_log_probs.extend(score.log_probs)
    assert np.std(all_log_probs) > 1.0  # nats: the scores are far from uniform


def test_cli_converts_to_f16_by_default(hf_model_dir, tmp_path):
    environment = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    result = subprocess.run(
        [sys.executable, "-m", "quant_eval", "base-model", "--source", str(hf_model_dir),
         "--output", str(tmp_path / "m.gguf"), "--info", str(tmp_path / "m.json"),
         "--audit", str(tmp_path / "m.audit.json")],
        capture_output=True, text=True, env=environment, check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert file_type_name(open_gguf(tmp_path / "m.gguf")) == "F16"
    info = json.loads((tmp_path / "m.json").read_text())
    assert info["conversion"]["convert_type"] == "f16"
    assert "Hugging Face LlamaForCausalLM" in info["source_type"]


def test_model_files_lists_tracked_inputs(hf_model_dir):
    names = [path.name for path in model_files(hf_model_dir)]
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                 "chat_template.jinja"):
        assert name in names


def linked_copy(source: Path, target: Path, skip: tuple[str, ...] = ()) -> Path:
    """Mirror a model directory with symbolic links, leaving out the files named in `skip`."""
    target.mkdir()
    for path in source.iterdir():
        if path.name not in skip:
            (target / path.name).symlink_to(path)
    return target


@pytest.mark.parametrize("skip, message", [
    (("config.json",), "has no config.json"),
    (("model.safetensors",), "has no weight files"),
    (("tokenizer.json",), "has no tokenizer files"),
])
def test_incomplete_directory_rejected(hf_model_dir, tmp_path, skip, message):
    broken = linked_copy(hf_model_dir, tmp_path / "broken", skip)
    with pytest.raises(InvalidModelError, match=message) as caught:
        convert_model_dir(broken, tmp_path / "out.gguf")
    assert str(broken) in str(caught.value)
    assert not (tmp_path / "out.gguf").exists()


def test_unsupported_architecture_rejected(hf_model_dir, tmp_path):
    broken = linked_copy(hf_model_dir, tmp_path / "unknown-arch", ("config.json",))
    config = json.loads((hf_model_dir / "config.json").read_text())
    config["architectures"] = ["NoSuchModelForCausalLM"]
    (broken / "config.json").write_text(json.dumps(config))
    output_dir = tmp_path / "out"

    with pytest.raises(InvalidModelError) as caught:
        convert_model_dir(broken, output_dir / "out.gguf")
    message = str(caught.value)
    assert "NoSuchModelForCausalLM" in message
    assert "not supported" in message
    assert str(broken) in message
    assert list(output_dir.iterdir()) == []  # neither the GGUF nor a temporary file is left


def test_start_up_check_names_config_key(hf_model_dir, tmp_path):
    broken = linked_copy(hf_model_dir, tmp_path / "no-weights", ("model.safetensors",))
    with pytest.raises(ConfigError, match=r"has no weight files.*'models\.tiny\.source'"):
        check_input_files({"models": {"tiny": {"source": str(broken)}}})
    check_input_files({"models": {"tiny": {"source": str(hf_model_dir), "convert_type": "bf16"}}})


def test_convert_type_on_gguf_source_rejected(tiny_model):
    with pytest.raises(ConfigError, match=r"'models\.tiny\.convert_type' applies to a Hugging Face model directory"):
        check_input_files({"models": {"tiny": {"source": str(tiny_model), "convert_type": "f32"}}})


def test_missing_converter_package_names_extra(monkeypatch, hf_model_dir, tmp_path):
    monkeypatch.setattr(hf_conversion, "CONVERTER_PACKAGES", ("torch", "no_such_package_for_quant_eval"))
    with pytest.raises(ToolError, match=r"needs no_such_package_for_quant_eval.*`make setup`.*`hf` extra"):
        check_input_files({"models": {"tiny": {"source": str(hf_model_dir)}}})
    with pytest.raises(ToolError, match="no_such_package_for_quant_eval"):
        convert_model_dir(hf_model_dir, tmp_path / "out.gguf")
    assert not (tmp_path / "out.gguf").exists()


def test_missing_converter_names_setup(monkeypatch, tmp_path):
    monkeypatch.delenv(CONVERTER_VARIABLE, raising=False)
    monkeypatch.setattr(sys, "prefix", str(tmp_path))
    with pytest.raises(ToolError, match="run `make setup`"):
        find_converter()
    monkeypatch.setenv(CONVERTER_VARIABLE, str(tmp_path / "missing.py"))
    with pytest.raises(ToolError, match="not a file"):
        find_converter()


def unpermute_rope_rows(weight: np.ndarray, n_heads: int) -> np.ndarray:
    """Undo the row order llama.cpp's converter gives attn_q/attn_k, which pairs rotary halves per head."""
    head_rows = weight.shape[0] // n_heads
    return weight.reshape(n_heads, head_rows // 2, 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def smollm2_in_transformers(reader: GGUFReader, weights: dict[str, np.ndarray]) -> LlamaForCausalLM:
    """Build SmolLM2-135M in transformers from the GGUF's hyperparameters and dequantized weights."""
    def field(name: str):
        return reader.get_field(name).contents()

    n_layers, n_heads, n_kv_heads = field("llama.block_count"), field("llama.attention.head_count"), \
        field("llama.attention.head_count_kv")
    config = LlamaConfig(
        vocab_size=len(field("tokenizer.ggml.tokens")), hidden_size=field("llama.embedding_length"),
        intermediate_size=field("llama.feed_forward_length"), num_hidden_layers=n_layers,
        num_attention_heads=n_heads, num_key_value_heads=n_kv_heads,
        max_position_embeddings=field("llama.context_length"),
        rms_norm_eps=field("llama.attention.layer_norm_rms_epsilon"), rope_theta=field("llama.rope.freq_base"),
        tie_word_embeddings="output.weight" not in weights,
    )
    state = {"model.embed_tokens.weight": weights["token_embd.weight"],
             "model.norm.weight": weights["output_norm.weight"]}
    for layer in range(n_layers):
        gguf_name, hf_name = f"blk.{layer}.", f"model.layers.{layer}."
        state[hf_name + "input_layernorm.weight"] = weights[gguf_name + "attn_norm.weight"]
        state[hf_name + "self_attn.q_proj.weight"] = unpermute_rope_rows(weights[gguf_name + "attn_q.weight"], n_heads)
        state[hf_name + "self_attn.k_proj.weight"] = unpermute_rope_rows(weights[gguf_name + "attn_k.weight"],
                                                                         n_kv_heads)
        state[hf_name + "self_attn.v_proj.weight"] = weights[gguf_name + "attn_v.weight"]
        state[hf_name + "self_attn.o_proj.weight"] = weights[gguf_name + "attn_output.weight"]
        state[hf_name + "post_attention_layernorm.weight"] = weights[gguf_name + "ffn_norm.weight"]
        state[hf_name + "mlp.gate_proj.weight"] = weights[gguf_name + "ffn_gate.weight"]
        state[hf_name + "mlp.up_proj.weight"] = weights[gguf_name + "ffn_up.weight"]
        state[hf_name + "mlp.down_proj.weight"] = weights[gguf_name + "ffn_down.weight"]

    model = LlamaForCausalLM(config).to(torch.float32).eval()
    result = model.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()},
                                   strict=False)
    assert result.unexpected_keys == []
    assert [key for key in result.missing_keys if key != "lm_head.weight"] == []
    model.tie_weights()
    return model


def test_backend_matches_transformers_on_smollm2(tmp_path):
    """The real SmolLM2-135M, its Q4_1 weights dequantized to F32, scored by both sides at growing context lengths."""
    reader = GGUFReader(resolve_source(EMBEDDED_SOURCE))
    weights = {}
    for tensor in reader.tensors:
        shape = tuple(int(d) for d in reversed(tensor.shape))
        data = np.asarray(tensor.data) if tensor.tensor_type.name == "F32" else dequantize(tensor.data,
                                                                                           tensor.tensor_type)
        weights[tensor.name] = data.astype(np.float32).reshape(shape)
    model_path = tmp_path / "smollm2-f32.gguf"
    writer = GGUFWriter(model_path, "llama")
    for field in reader.fields.values():
        if field.name.startswith("GGUF.") or field.name in ("general.architecture", "general.file_type"):
            continue
        value_type = field.types[0]
        sub_type = field.types[-1] if value_type == GGUFValueType.ARRAY else None
        writer.add_key_value(field.name, field.contents(), value_type, sub_type=sub_type)
    writer.add_file_type(LlamaFileType.ALL_F32)
    for name, data in weights.items():
        writer.add_tensor(name, data)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()

    model = smollm2_in_transformers(reader, weights)
    tokenizer = write_tokenizer(tmp_path / "tokenizer")
    backend = LlamaCppLM(model_path, context=512, threads=2)
    for repeats in (0, 5, 40):
        context = "The quick brown fox jumps over the lazy dog. " * repeats + "Question: what jumps?\nAnswer:"
        context_ids, continuation_ids = transformers_pair(tokenizer, context, " the fox")
        score = backend.score_pair(context, " the fox")
        assert score.context_tokens == context_ids
        assert score.continuation_tokens == continuation_ids

        log_probs = transformers_log_probs(model, context_ids + continuation_ids)
        expected = [log_probs[len(context_ids) - 1 + i, token] for i, token in enumerate(continuation_ids)]
        difference = np.abs(np.array(score.log_probs) - np.array(expected))
        assert difference.max() < TOLERANCE_NATS, (repeats, difference.max())
