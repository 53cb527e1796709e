"""Recipes: parsing and checks, the llama-quantize flags they give, and the tensor audit of the result.

The quantization tests run the real llama-quantize on a tiny random-weight model that has
its own output tensor, so every override has a tensor to act on.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from snakemake.utils import validate

from conftest import write_tiny_llama
from quant_eval.benchmarks import BENCHMARKS
from quant_eval.calibration import build_calibration_mix
from quant_eval.config import (
    PROTECTION_PRESETS,
    Variant,
    check_config,
    check_schema,
    find_variant,
    imatrix_pairs,
    list_variants,
)
from quant_eval.errors import ConfigError, InvalidDataError
from quant_eval.gguf_files import open_gguf
from quant_eval.imatrix import count_mix_tokens
from quant_eval.llama_tools import quantization_types
from quant_eval.quantize import override_arguments, quantize_model

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "config" / "schema" / "config.schema.yaml"

HIGH = {"name": "q4_k_m-high", "type": "q4_k_m", "protection": "high"}
BASE_CONFIG = {
    "models": {"tiny": {"source": "tiny.gguf"}},
    "quantizations": ["q8_0", "q4_k_m", HIGH],
    "without_imatrix": ["q4_k_m"],
    "imatrix": {"calibration_sets": {"math_heavy": [{"source": "dataset-build:coding/math/math.txt", "weight": 3},
                                                    "dataset-build:eng/eng.txt"]}},
    "benchmarks": {"gsm8k": {}},
    "runs": 1,
    "seed": 1,
}


def make_config(*recipes, **changes) -> dict:
    config = copy.deepcopy(BASE_CONFIG)
    config["quantizations"] = config["quantizations"] + list(copy.deepcopy(recipes))
    config.update(copy.deepcopy(changes))
    return config


def rejection(config: dict) -> str:
    with pytest.raises(ConfigError) as caught:
        check_config(config, BENCHMARKS, quantization_types())
    return str(caught.value)


def tensor_types(path: Path) -> dict[str, str]:
    return {t.name: t.tensor_type.name for t in open_gguf(path).tensors}


# ----------------------------------------------------------------------- parsing

def test_short_forms_keep_names():
    names = [v.name for v in list_variants(make_config())]

    assert names == ["base", "q8_0", "q4_k_m", "q4_k_m-high", "q4_k_m-no-imatrix"]


def test_short_form_is_plain_recipe():
    assert find_variant(make_config(), "q4_k_m") == Variant("q4_k_m", "Q4_K_M", imatrix=True)


def test_protection_high_resolved():
    variant = find_variant(make_config(), "q4_k_m-high")

    assert variant.protection == "high"
    assert variant.output_tensor_type == "Q8_0"
    assert variant.token_embedding_type == "Q8_0"
    assert variant.tensor_types == (("attn_v", "Q8_0"),)
    assert variant.imatrix is True


def test_explicit_override_wins_over_preset():
    recipe = {"name": "mix", "type": "Q4_0", "protection": "high", "token_embedding_type": "q6_k",
              "tensor_types": {"attn_v": "f16", "ffn_down": "q5_0"}}
    variant = find_variant(make_config(recipe), "mix")

    assert variant.output_tensor_type == "Q8_0"
    assert variant.token_embedding_type == "Q6_K"
    assert dict(variant.tensor_types) == {"attn_v": "F16", "ffn_down": "Q5_0"}


def test_leave_output_tensor_replaces_preset_type():
    recipe = {"name": "kept", "type": "q4_k_m", "protection": "high", "leave_output_tensor": True}
    variant = find_variant(make_config(recipe), "kept")

    assert variant.output_tensor_type is None
    assert variant.leave_output_tensor is True
    assert override_arguments(variant.recipe()) == [
        "--token-embedding-type", "q8_0", "--tensor-type", "attn_v=q8_0", "--leave-output-tensor"]


def test_override_flags_of_recipe():
    arguments = override_arguments(find_variant(make_config(), "q4_k_m-high").recipe())

    assert arguments == ["--output-tensor-type", "q8_0", "--token-embedding-type", "q8_0",
                         "--tensor-type", "attn_v=q8_0"]
    assert override_arguments(find_variant(make_config(), "q4_k_m").recipe()) == []


def test_recipe_json_differs_per_override():
    plain = find_variant(make_config(), "q4_k_m").recipe_json()
    high = find_variant(make_config(), "q4_k_m-high").recipe_json()

    assert plain != high
    assert json.loads(high)["tensor_types"] == {"attn_v": "Q8_0"}


def test_imatrix_pairs_short_forms():
    assert imatrix_pairs(make_config()) == [("q4_k_m", "q4_k_m-no-imatrix")]


def test_imatrix_pairs_recipes_and_corpora():
    config = make_config(
        {"name": "high-plain", "type": "q4_k_m", "protection": "high", "imatrix": False},
        {"name": "q4_k_m-math", "type": "q4_k_m", "calibration": "math_heavy"},
    )

    assert imatrix_pairs(config) == [
        ("q4_k_m", "q4_k_m-no-imatrix"),
        ("q4_k_m-high", "high-plain"),
        ("q4_k_m-math", "q4_k_m-no-imatrix"),
    ]


def test_calibration_set_recorded():
    variant = find_variant(make_config({"name": "m", "type": "q4_0", "calibration": "math_heavy"}), "m")

    assert variant.calibration == "math_heavy"
    assert variant.recipe()["calibration"] == "math_heavy"


# ----------------------------------------------------------------------- checks

def test_valid_recipes_accepted():
    config = make_config({"name": "m", "type": "q4_0", "calibration": "math_heavy",
                          "tensor_types": {r"blk\.[01]\.ffn_down": "q8_0"}})
    check_schema(config, SCHEMA, BENCHMARKS)
    validate(config, schema=str(SCHEMA), set_default=True)

    check_config(config, BENCHMARKS, quantization_types())


def test_schema_rejects_unknown_recipe_key():
    config = make_config({"name": "m", "type": "q4_0", "protect": "high"})

    with pytest.raises(ConfigError, match="quantizations"):
        check_schema(config, SCHEMA, BENCHMARKS)


def test_schema_rejects_unknown_protection():
    config = make_config({"name": "m", "type": "q4_0", "protection": "maximum"})

    with pytest.raises(ConfigError, match="quantizations"):
        check_schema(config, SCHEMA, BENCHMARKS)


def test_duplicate_recipe_name_rejected():
    message = rejection(make_config({"name": "q4_k_m", "type": "q4_0"}))

    assert "'q4_k_m'" in message
    assert "more than once" in message


def test_recipe_named_base_rejected():
    message = rejection(make_config({"name": "Base", "type": "q4_0"}))

    assert "reserved for the base model" in message


def test_unknown_recipe_type_rejected():
    message = rejection(make_config({"name": "x", "type": "q4_k_z"}))

    assert "unknown quantization type 'q4_k_z'" in message
    assert "quantizations: x.type" in message


def test_unknown_override_type_rejected():
    message = rejection(make_config({"name": "x", "type": "q4_0", "tensor_types": {"attn_v": "q9_9"}}))

    assert "'tensor_types: attn_v'" in message
    assert "unknown tensor type 'q9_9'" in message


def test_invalid_pattern_rejected():
    message = rejection(make_config({"name": "x", "type": "q4_0", "tensor_types": {"attn_v[": "q8_0"}}))

    assert "not a valid regular expression" in message


def test_high_protection_on_q8_0_rejected():
    message = rejection(make_config({"name": "x", "type": "q8_0", "protection": "high"}))

    assert "'protection: high'" in message
    assert "8 bits or more" in message


def test_leave_output_with_output_type_rejected():
    message = rejection(make_config({"name": "x", "type": "q4_0", "leave_output_tensor": True,
                                     "output_tensor_type": "q8_0"}))

    assert "keep one of them" in message


def test_unknown_calibration_set_rejected():
    message = rejection(make_config({"name": "x", "type": "q4_0", "calibration": "physics"}))

    assert "'physics'" in message
    assert "defined sets: math_heavy" in message


def test_calibration_without_imatrix_rejected():
    message = rejection(make_config({"name": "x", "type": "q4_0", "calibration": "math_heavy", "imatrix": False}))

    assert "'imatrix: false'" in message


# ----------------------------------------------------------------------- quantization

@pytest.fixture(scope="module")
def untied_model(tmp_path_factory) -> Path:
    """A tiny F16 llama with an output tensor of its own (not tied to the token embeddings)."""
    return write_tiny_llama(tmp_path_factory.mktemp("models") / "tiny-untied.gguf", output_tensor=True)


def test_overrides_applied_in_audit(untied_model, tmp_path):
    recipe = find_variant(make_config({"name": "o", "type": "q4_k_m", "output_tensor_type": "q8_0",
                                       "token_embedding_type": "q8_0", "tensor_types": {"ffn_down": "q5_0"}}),
                          "o").recipe()
    audit = quantize_model(untied_model, "Q4_K_M", tmp_path / "o.gguf", tmp_path / "o.json", None, threads=2,
                           recipe=recipe)
    types = tensor_types(tmp_path / "o.gguf")

    assert types["output.weight"] == "Q8_0"
    assert types["token_embd.weight"] == "Q8_0"
    assert types["blk.0.ffn_down.weight"] == "Q5_0"
    assert types["blk.1.ffn_down.weight"] == "Q5_0"
    assert types["blk.0.attn_q.weight"] == "Q4_K"
    assert [check["flag"] for check in audit["overrides"]] == [
        "--output-tensor-type", "--token-embedding-type", "--tensor-type"]
    assert all(check["applied"] for check in audit["overrides"])
    assert audit["overrides"][2]["tensors"] == {"blk.0.ffn_down.weight": "Q5_0", "blk.1.ffn_down.weight": "Q5_0"}
    assert audit["recipe"]["output_tensor_type"] == "Q8_0"
    assert json.loads((tmp_path / "o.json").read_text())["overrides"] == audit["overrides"]


def test_protection_high_tensors(untied_model, tmp_path):
    variant = find_variant(make_config(), "q4_k_m-high")
    audit = quantize_model(untied_model, "Q4_K_M", tmp_path / "h.gguf", tmp_path / "h.json", None, threads=2,
                           recipe=variant.recipe())
    types = tensor_types(tmp_path / "h.gguf")
    preset = PROTECTION_PRESETS["high"]

    assert types["output.weight"] == preset["output_tensor_type"] == "Q8_0"
    assert types["token_embd.weight"] == preset["token_embedding_type"] == "Q8_0"
    assert {types[f"blk.{i}.attn_v.weight"] for i in (0, 1)} == {"Q8_0"}
    assert types["blk.0.attn_k.weight"] != "Q8_0"
    assert all(check["applied"] for check in audit["overrides"])
    assert audit["fallback_tensors"] == []


def test_plain_q4_k_m_differs_from_high(untied_model, tmp_path):
    quantize_model(untied_model, "Q4_K_M", tmp_path / "p.gguf", tmp_path / "p.json", None, threads=2)
    types = tensor_types(tmp_path / "p.gguf")

    # Without overrides Q4_K_M keeps output at Q6_K and the token embeddings at Q4_K.
    assert types["output.weight"] == "Q6_K"
    assert types["token_embd.weight"] == "Q4_K"


def test_leave_output_tensor_keeps_f16(untied_model, tmp_path):
    recipe = find_variant(make_config({"name": "l", "type": "q4_0", "leave_output_tensor": True}), "l").recipe()
    audit = quantize_model(untied_model, "Q4_0", tmp_path / "l.gguf", tmp_path / "l.json", None, threads=2,
                           recipe=recipe)

    assert tensor_types(tmp_path / "l.gguf")["output.weight"] == "F16"
    assert audit["overrides"][0]["flag"] == "--leave-output-tensor"
    assert audit["overrides"][0]["applied"] is True


def test_override_matching_nothing_flagged(tiny_model, tmp_path):
    """The shared tiny model ties its output to the token embeddings: no output.weight exists."""
    recipe = find_variant(make_config({"name": "t", "type": "q4_0", "output_tensor_type": "q8_0"}), "t").recipe()
    audit = quantize_model(tiny_model, "Q4_0", tmp_path / "t.gguf", tmp_path / "t.json", None, threads=2,
                           recipe=recipe)

    assert audit["overrides"][0]["tensors"] == {}
    assert audit["overrides"][0]["applied"] is False


def test_override_not_counted_as_fallback(tiny_model_odd_rows, tmp_path):
    """Rows of 320 values take Q8_0 (block 32) but not Q4_K (block 256): the override is no fallback."""
    recipe = find_variant(make_config({"name": "f", "type": "q4_k_m", "tensor_types": {"attn_q": "q8_0"}}),
                          "f").recipe()
    audit = quantize_model(tiny_model_odd_rows, "Q4_K_M", tmp_path / "f.gguf", tmp_path / "f.json", None,
                           threads=2, recipe=recipe)
    flagged = {entry["name"] for entry in audit["fallback_tensors"]}

    assert audit["overrides"][0]["applied"] is True
    assert "blk.0.attn_q.weight" not in flagged
    assert "blk.0.attn_k.weight" in flagged


# ----------------------------------------------------------------------- calibration sets

def test_calibration_mix_shares(tmp_path):
    entries = [{"source": "dataset-build:coding/math/math.txt", "weight": 3}, "dataset-build:eng/eng.txt"]
    record = build_calibration_mix(entries, tmp_path / "mix.txt", tmp_path / "mix.json", "math_heavy")
    text = (tmp_path / "mix.txt").read_text(encoding="utf-8")
    math, english = record["sources"]

    assert math["target_share"] == pytest.approx(0.75)
    assert math["share"] == pytest.approx(0.75, abs=0.02)
    assert english["share"] == pytest.approx(0.25, abs=0.02)
    assert math["n_characters"] + english["n_characters"] == record["n_characters"]
    # The first tenth of the text already holds the shares (llama-imatrix reads only a prefix).
    prefix = [s for s in record["segments"] if s[2] < len(text) / 10]
    math_prefix = sum(end - start for index, start, end in prefix if index == 0)
    all_prefix = sum(end - start for _, start, end in prefix)
    assert math_prefix / all_prefix == pytest.approx(0.75, abs=0.05)
    # Every segment is a paragraph of its source.
    sources = [open_source(e) for e in ("coding/math/math.txt", "eng/eng.txt")]
    for index, start, end in record["segments"][:20]:
        assert text[start:end] in sources[index]


def open_source(relative: str) -> str:
    from quant_eval.calibration import resolve_calibration_source

    return resolve_calibration_source("dataset-build:" + relative).read_text(encoding="utf-8")


def test_calibration_mix_missing_source(tmp_path):
    with pytest.raises(InvalidDataError, match="imatrix.calibration_sets.broken"):
        build_calibration_mix([str(tmp_path / "absent.txt")], tmp_path / "m.txt", tmp_path / "m.json", "broken")
    assert not (tmp_path / "m.txt").exists()


def test_mix_token_counts(tiny_model, tmp_path):
    entries = [{"source": "dataset-build:coding/math/math.txt", "weight": 3}, "dataset-build:eng/eng.txt"]
    build_calibration_mix(entries, tmp_path / "mix.txt", tmp_path / "mix.json", "math_heavy")
    report = count_mix_tokens(tiny_model, tmp_path / "mix.txt", tmp_path / "mix.json", context=128, chunks=4)
    math, english = report["sources"]

    assert report["tokens_read"] == 512
    assert math["n_tokens_read"] + english["n_tokens_read"] == 512
    assert math["n_tokens"] + english["n_tokens"] == report["tokens_total"]
    assert math["n_tokens"] > english["n_tokens"] > 0
    assert math["token_share_read"] > 0.5


# ----------------------------------------------------------------------- report

def test_imatrix_effect_follows_recipes():
    from quant_eval.statistics import analyze

    config = make_config({"name": "high-plain", "type": "q4_k_m", "protection": "high", "imatrix": False})
    names = [v.name for v in list_variants(config)]
    variants = [{"model": "tiny", "variant": name, "quantization_type": "Q4_K_M"} for name in names]
    scores = {name: {"arc_challenge": {f"item-{i}": [float(i % 2)] for i in range(6)}} for name in names}
    scores["high-plain"]["arc_challenge"]["item-0"] = [1.0]
    comparison = {"reference": "base", "models": {"tiny": {}}, "variants": variants, "scores": {"tiny": scores},
                  "benchmarks": {"arc_challenge": {"metric": "acc_norm", "n_items": 6, "runs": 1,
                                                   "score_kind": "binary"}}}

    analysis = analyze(comparison, imatrix_pairs=imatrix_pairs(config))
    pairs = [(entry["with_imatrix"], entry["without_imatrix"]) for entry in analysis["imatrix_effect"]]

    assert pairs == [("q4_k_m", "q4_k_m-no-imatrix"), ("q4_k_m-high", "high-plain")]
    # Item 0 is correct only without the imatrix in the recipe pair: one of six items lost.
    assert analysis["imatrix_effect"][1]["paired"]["mean_difference"] == pytest.approx(-1 / 6)
