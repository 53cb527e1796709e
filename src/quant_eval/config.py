"""Variants, benchmarks and checks derived from the workflow configuration.

The JSON schema in config/schema/ checks types and ranges. This module checks what a
schema cannot (names that must exist, keys that depend on each other), and it turns the
configuration into the list of variants the workflow builds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import jsonschema
import yaml

from .errors import ConfigError

BASE_VARIANT = "base"
NO_IMATRIX_SUFFIX = "-no-imatrix"


@dataclass(frozen=True)
class Variant:
    """One model file that is evaluated: the base model or a quantization of it."""

    name: str
    quantization_type: str | None  # llama-quantize's name, e.g. "Q4_K_M"; None for the base
    imatrix: bool

    @property
    def is_base(self) -> bool:
        return self.quantization_type is None


def list_variants(config: dict[str, Any]) -> list[Variant]:
    """Return the base variant, then each quantization with and without the imatrix."""
    variants = [Variant(BASE_VARIANT, None, imatrix=False)]
    for type_name in config["quantizations"]:
        variants.append(Variant(type_name.lower(), type_name.upper(), imatrix=True))
    for type_name in config.get("without_imatrix", []):
        variants.append(
            Variant(type_name.lower() + NO_IMATRIX_SUFFIX, type_name.upper(), imatrix=False)
        )
    return variants


def imatrix_pairs(config: dict[str, Any]) -> list[tuple[str, str]]:
    """Return (with imatrix, without imatrix) variant names of each type evaluated both ways.

    The two variants of a pair differ only in the imatrix flag, so their paired difference
    is the imatrix's effect on that type.
    """
    variants = [v for v in list_variants(config) if not v.is_base]
    pairs = []
    for with_imatrix in (v for v in variants if v.imatrix):
        for without_imatrix in variants:
            if not without_imatrix.imatrix and without_imatrix.quantization_type == with_imatrix.quantization_type:
                pairs.append((with_imatrix.name, without_imatrix.name))
    return pairs


def find_variant(config: dict[str, Any], name: str) -> Variant:
    for variant in list_variants(config):
        if variant.name == name:
            return variant
    known = ", ".join(v.name for v in list_variants(config))
    raise ConfigError(f"unknown variant {name!r}; the configuration defines: {known}")


def _check_benchmark_names(config: dict[str, Any], known_benchmarks: Iterable[str]) -> None:
    known = sorted(known_benchmarks)
    for name in config.get("benchmarks") or {}:
        if name not in known:
            raise ConfigError(
                f"unknown benchmark {name!r} in config key 'benchmarks'; "
                f"available benchmarks: {', '.join(known)}"
            )


def check_schema(config: dict[str, Any], schema_path: Path, known_benchmarks: Iterable[str]) -> None:
    """Raise ConfigError with one line naming the key, if the config breaks the JSON schema.

    Unknown benchmark names are reported first, with the list of available ones, because
    the schema alone would only say that a property is not allowed.
    """
    _check_benchmark_names(config, known_benchmarks)

    schema = yaml.safe_load(Path(schema_path).read_text())
    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(config))
    if error is not None:
        key = ".".join(str(part) for part in error.absolute_path) or "(top level)"
        raise ConfigError(
            f"invalid configuration at key {key!r}: {error.message}; "
            f"see the comments in config/config.yaml and the rules in {schema_path}"
        )


def check_config(
    config: dict[str, Any],
    known_benchmarks: Iterable[str],
    known_quantization_types: Iterable[str] | None = None,
) -> None:
    """Raise ConfigError for values the JSON schema cannot check.

    `known_quantization_types` is the list printed by `llama-quantize --help`; the check
    of type names is skipped when it is None.
    """
    _check_benchmark_names(config, known_benchmarks)

    if known_quantization_types is not None:
        known_types = {t.upper() for t in known_quantization_types}
        for key in ("quantizations", "without_imatrix"):
            for type_name in config.get(key, []):
                if type_name.upper() not in known_types:
                    raise ConfigError(
                        f"unknown quantization type {type_name!r} in config key {key!r}; "
                        f"llama-quantize knows: {', '.join(sorted(known_types))}"
                    )

    # Checked before duplicates: the base variant always exists, so `base` would
    # otherwise be reported as a duplicate variant name.
    if BASE_VARIANT in (t.lower() for t in config["quantizations"]):
        raise ConfigError(f"'{BASE_VARIANT}' is reserved for the base model; remove it from 'quantizations'")
    for key in ("quantizations", "without_imatrix"):
        types = [t.upper() for t in config.get(key, [])]
        duplicates = sorted({t for t in types if types.count(t) > 1})
        if duplicates:
            raise ConfigError(
                f"config key {key!r} lists {', '.join(duplicates)} more than once "
                "(type names are case-insensitive); list each type once"
            )

    names = [v.name for v in list_variants(config)]
    reference = config.get("reference", BASE_VARIANT)
    if reference not in names:
        raise ConfigError(
            f"config key 'reference' is {reference!r}, which is not a variant; "
            f"choose one of: {', '.join(names)}"
        )

    imatrix = config.get("imatrix", {})
    if imatrix.get("batch_size", 512) > imatrix.get("context", 512):
        raise ConfigError(
            f"config key 'imatrix.batch_size' ({imatrix['batch_size']}) is larger than "
            f"'imatrix.context' ({imatrix.get('context', 512)}); llama-imatrix needs "
            "batch_size <= context"
        )


def check_input_files(config: dict[str, Any]) -> None:
    """Raise an error naming the config key if a model or calibration file does not exist.

    Checked at start-up so that a wrong path stops the workflow before any job runs.
    """
    from .base_model import resolve_source
    from .calibration import resolve_calibration_source
    from .errors import InvalidModelError
    from .hf_conversion import check_converter_packages, check_model_dir
    from .llama_tools import find_converter

    for name, model in config["models"].items():
        path = resolve_source(model["source"])
        if path.is_dir():
            try:
                check_model_dir(path)
            except InvalidModelError as error:
                raise ConfigError(f"{error} (config key 'models.{name}.source')") from None
            find_converter()
            check_converter_packages()
            continue
        if not path.is_file():
            raise ConfigError(
                f"model file not found: {path} (config key 'models.{name}.source'); "
                "give the path of a GGUF file or of a Hugging Face model directory"
            )
        if "convert_type" in model:
            raise ConfigError(
                f"config key 'models.{name}.convert_type' applies to a Hugging Face model directory "
                f"only, and {path} is a file; remove the key"
            )
    for entry in config.get("imatrix", {}).get("calibration", []):
        resolve_calibration_source(entry)
