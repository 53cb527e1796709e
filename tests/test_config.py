"""Configuration: the variant list, the checks beyond the schema, and the schema itself.

Quantization type names are checked against the list the installed llama-quantize
prints, so these tests need the llama.cpp tools (make setup).
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from quant_eval.benchmarks import BENCHMARKS
from quant_eval.config import (
    Variant,
    check_config,
    check_input_files,
    check_schema,
    find_variant,
    list_variants,
)
from quant_eval.errors import ConfigError, QuantEvalError
from quant_eval.llama_tools import quantization_types

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "config" / "schema" / "config.schema.yaml"
SHIPPED_CONFIG = REPO / "config" / "config.yaml"

VALID_CONFIG = {
    "models": {"tiny": {"source": "tiny.gguf"}},
    "quantizations": ["bf16", "q8_0", "Q4_K_M"],
    "without_imatrix": ["q4_k_m"],
    "reference": "base",
    "imatrix": {"context": 512, "chunks": 4, "batch_size": 256},
    "benchmarks": {"gsm8k": {"limit": 20}, "arc_challenge": {"limit": 100}},
    "runs": 5,
    "seed": 1234,
}


def make_config(**changes) -> dict:
    """Return a deep copy of VALID_CONFIG with top-level keys replaced."""
    config = copy.deepcopy(VALID_CONFIG)
    config.update(copy.deepcopy(changes))
    return config


def check_with_real_types(config: dict) -> None:
    check_config(config, BENCHMARKS, quantization_types())


def rejection_message(config: dict) -> str:
    with pytest.raises(ConfigError) as caught:
        check_with_real_types(config)
    return str(caught.value)


# ----------------------------------------------------------------------- list_variants

def test_list_variants_order_and_names():
    names = [v.name for v in list_variants(make_config())]

    assert names == ["base", "bf16", "q8_0", "q4_k_m", "q4_k_m-no-imatrix"]


def test_list_variants_types_upper_case():
    types = [v.quantization_type for v in list_variants(make_config())]

    assert types == [None, "BF16", "Q8_0", "Q4_K_M", "Q4_K_M"]


def test_list_variants_imatrix_flags():
    flags = [v.imatrix for v in list_variants(make_config())]

    assert flags == [False, True, True, True, False]


def test_list_variants_only_first_is_base():
    bases = [v.is_base for v in list_variants(make_config())]

    assert bases == [True, False, False, False, False]


def test_list_variants_without_imatrix_missing():
    config = make_config()
    del config["without_imatrix"]

    assert list_variants(config) == [
        Variant("base", None, imatrix=False),
        Variant("bf16", "BF16", imatrix=True),
        Variant("q8_0", "Q8_0", imatrix=True),
        Variant("q4_k_m", "Q4_K_M", imatrix=True),
    ]


def test_find_variant_returns_match():
    variant = find_variant(make_config(), "q4_k_m-no-imatrix")

    assert variant == Variant("q4_k_m-no-imatrix", "Q4_K_M", imatrix=False)


def test_find_variant_unknown_lists_known():
    with pytest.raises(ConfigError) as caught:
        find_variant(make_config(), "q5_k_m")
    message = str(caught.value)

    assert "'q5_k_m'" in message
    assert "base, bf16, q8_0, q4_k_m, q4_k_m-no-imatrix" in message


# ----------------------------------------------------------------------- check_config

def test_check_config_accepts_valid():
    check_with_real_types(make_config())


def test_check_config_accepts_shipped_config():
    config = yaml.safe_load(SHIPPED_CONFIG.read_text())
    validate(config, schema=str(SCHEMA))

    check_with_real_types(config)


def test_check_config_unknown_benchmark():
    message = rejection_message(make_config(benchmarks={"gsm8k": {}, "mmlu": {}}))

    assert "unknown benchmark 'mmlu'" in message
    assert "config key 'benchmarks'" in message
    assert "available benchmarks: arc_challenge, elyza_tasks_100, gsm8k" in message


def test_check_config_unknown_type():
    message = rejection_message(make_config(quantizations=["q8_0", "q4_k_x"]))

    assert "unknown quantization type 'q4_k_x'" in message
    assert "config key 'quantizations'" in message
    assert "Q4_K_M" in message


def test_check_config_unknown_type_without_imatrix():
    message = rejection_message(make_config(without_imatrix=["q3_k_q"]))

    assert "unknown quantization type 'q3_k_q'" in message
    assert "config key 'without_imatrix'" in message


def test_check_config_type_case_insensitive():
    check_with_real_types(make_config(quantizations=["Q8_0", "q4_k_m", "Bf16"]))


def test_check_config_reference_not_variant():
    message = rejection_message(make_config(reference="q5_k_m"))

    assert "config key 'reference' is 'q5_k_m'" in message
    assert "choose one of: base, bf16, q8_0, q4_k_m, q4_k_m-no-imatrix" in message


def test_check_config_reference_quantized_variant():
    check_with_real_types(make_config(reference="q4_k_m-no-imatrix"))


def test_check_config_reference_missing_means_base():
    config = make_config()
    del config["reference"]

    check_with_real_types(config)


def test_check_config_batch_size_above_context():
    message = rejection_message(make_config(imatrix={"context": 256, "batch_size": 512}))

    assert "'imatrix.batch_size' (512)" in message
    assert "'imatrix.context' (256)" in message
    assert "batch_size <= context" in message


def test_check_config_batch_size_equal_context():
    check_with_real_types(make_config(imatrix={"context": 256, "batch_size": 256}))


def test_check_config_batch_size_above_default_context():
    message = rejection_message(make_config(imatrix={"batch_size": 1024}))

    assert "'imatrix.batch_size' (1024)" in message
    assert "'imatrix.context' (512)" in message


def test_check_config_duplicate_types():
    message = rejection_message(make_config(quantizations=["Q8_0", "q8_0"]))

    assert "'quantizations'" in message
    assert "Q8_0" in message
    assert "case-insensitive" in message
    assert "list each type once" in message


def test_check_config_duplicate_without_imatrix():
    message = rejection_message(make_config(without_imatrix=["q4_k_m", "Q4_K_M"]))

    assert "'without_imatrix'" in message
    assert "'quantizations'" not in message
    assert "Q4_K_M" in message


def test_check_config_base_reserved():
    with pytest.raises(ConfigError) as caught:
        check_config(make_config(quantizations=["q8_0", "base"]), BENCHMARKS)
    message = str(caught.value)

    assert "'base' is reserved for the base model" in message
    assert "remove it from 'quantizations'" in message


def test_check_config_base_rejected_with_types():
    message = rejection_message(make_config(quantizations=["q8_0", "BASE"]))

    assert "'quantizations'" in message


def test_check_config_skips_types_when_none():
    check_config(make_config(quantizations=["not_a_type"]), BENCHMARKS, None)


# ----------------------------------------------------------------------- schema

def test_schema_rejects_string_runs():
    config = make_config(runs="five")

    with pytest.raises(WorkflowError) as caught:
        validate(config, schema=str(SCHEMA))

    assert "'five' is not of type 'integer'" in str(caught.value)


def test_schema_rejects_unknown_key():
    config = make_config(quantisations=["q8_0"])

    with pytest.raises(WorkflowError) as caught:
        validate(config, schema=str(SCHEMA))

    assert "quantisations" in str(caught.value)


def test_schema_rejects_zero_runs():
    with pytest.raises(WorkflowError):
        validate(make_config(runs=0), schema=str(SCHEMA))


def test_schema_rejects_lowercase_dash_type():
    with pytest.raises(WorkflowError):
        validate(make_config(quantizations=["q4-k-m"]), schema=str(SCHEMA))


def test_schema_fills_defaults():
    config = {
        "models": {"tiny": {"source": "tiny.gguf"}},
        "quantizations": ["q8_0"],
        "benchmarks": {"gsm8k": {}},
        "runs": 3,
        "seed": 7,
    }

    validate(config, schema=str(SCHEMA))

    assert config["without_imatrix"] == []
    assert config["reference"] == "base"
    assert config["models"]["tiny"]["dequantize"] is False
    assert config["imatrix"]["context"] == 512
    assert config["imatrix"]["chunks"] == 32
    assert config["imatrix"]["batch_size"] == 512
    assert config["imatrix"]["gpu"] is False
    assert config["imatrix"]["calibration"][0] == "dataset-build:eng/eng.txt"
    assert config["benchmarks"]["gsm8k"] == {"limit": None, "temperature": 0.6, "max_tokens": 256}
    assert config["evaluation"] == {"context": 2048, "threads": 2, "gpu": False}
    assert config["statistics"] == {"confidence_level": 0.95, "power": 0.8}


def test_schema_keeps_only_chosen_benchmarks():
    config = make_config(benchmarks={"gsm8k": {"limit": 10}})

    validate(config, schema=str(SCHEMA))

    assert list(config["benchmarks"]) == ["gsm8k"]


def test_schema_keeps_given_values():
    config = make_config()

    validate(config, schema=str(SCHEMA))

    assert config["imatrix"]["batch_size"] == 256
    assert config["benchmarks"]["gsm8k"]["limit"] == 20
    assert config["runs"] == 5


def test_schema_fills_math_defaults():
    config = make_config(benchmarks={"math": {}})

    validate(config, schema=str(SCHEMA))

    assert config["benchmarks"]["math"] == {"limit": None, "subset": "math500", "temperature": 0, "max_tokens": 384}


def test_schema_accepts_math_full_subset():
    config = make_config(benchmarks={"math": {"subset": "full", "limit": 50, "temperature": 0.6}})

    validate(config, schema=str(SCHEMA))
    check_with_real_types(config)

    assert config["benchmarks"]["math"]["subset"] == "full"


def test_schema_rejects_unknown_math_subset():
    config = make_config(benchmarks={"math": {"subset": "math5000"}})

    with pytest.raises(ConfigError, match=r"key 'benchmarks.math.subset'"):
        check_schema(config, SCHEMA, BENCHMARKS)


def test_schema_rejects_zero_math_max_tokens():
    config = make_config(benchmarks={"math": {"max_tokens": 0}})

    with pytest.raises(ConfigError, match=r"key 'benchmarks.math.max_tokens'"):
        check_schema(config, SCHEMA, BENCHMARKS)


def test_shipped_config_runs_math_greedy():
    settings = yaml.safe_load(SHIPPED_CONFIG.read_text())["benchmarks"]["math"]

    assert settings["subset"] == "math500"
    assert settings["temperature"] == 0
    assert settings["limit"] == 10
    assert settings["max_tokens"] == 256


# ----------------------------------------------------------------------- start-up checks

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "config" / "schema" / "config.schema.yaml"


def test_schema_error_is_one_line():
    config = {"quantizations": ["q8_0"], "benchmarks": {"gsm8k": {}}, "runs": 1, "seed": 0}
    with pytest.raises(ConfigError) as error:
        check_schema(config, SCHEMA_PATH, BENCHMARKS)
    message = str(error.value)
    assert "'models' is a required property" in message
    assert "\n" not in message


def test_schema_error_names_nested_key():
    config = {"models": {"m": {"source": "x.gguf"}}, "quantizations": ["q8_0"],
              "benchmarks": {"gsm8k": {"limit": 0}}, "runs": 1, "seed": 0}
    with pytest.raises(ConfigError, match=r"key 'benchmarks.gsm8k.limit'"):
        check_schema(config, SCHEMA_PATH, BENCHMARKS)


def test_schema_unknown_benchmark_listed_first():
    config = {"models": {}, "quantizations": [], "benchmarks": {"mmlu": {}}, "runs": 0, "seed": 0}
    with pytest.raises(ConfigError, match="unknown benchmark 'mmlu'.*available benchmarks: arc_challenge, elyza_tasks_100, gsm8k"):
        check_schema(config, SCHEMA_PATH, BENCHMARKS)


def test_missing_model_file_named(tmp_path):
    config = {"models": {"mine": {"source": str(tmp_path / "absent.gguf")}}, "imatrix": {"calibration": []}}
    with pytest.raises(ConfigError, match=r"config key 'models.mine.source'"):
        check_input_files(config)


def test_missing_calibration_file_named(tmp_path):
    config = {"models": {}, "imatrix": {"calibration": [str(tmp_path / "absent.txt")]}}
    with pytest.raises(QuantEvalError, match=r"config key 'imatrix.calibration'"):
        check_input_files(config)
