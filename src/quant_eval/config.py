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
# llama-perplexity prints no KL divergence statistics over fewer scored tokens.
MIN_FIDELITY_TOKENS = 100


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

    fidelity = config.get("fidelity", {})
    if fidelity.get("enabled", True):
        context, chunks = fidelity.get("context", 512), fidelity.get("chunks", 20)
        scored = chunks * (context - 1 - context // 2)
        if scored < MIN_FIDELITY_TOKENS:
            raise ConfigError(
                f"config keys 'fidelity.context' ({context}) and 'fidelity.chunks' ({chunks}) score "
                f"{scored} tokens (chunks x (context - 1 - context/2)); percentiles and standard errors "
                f"need at least {MIN_FIDELITY_TOKENS}: raise either key"
            )


def check_input_files(config: dict[str, Any]) -> None:
    """Raise an error naming the config key if a model or calibration file does not exist.

    Checked at start-up so that a wrong path stops the workflow before any job runs.
    """
    from .base_model import resolve_source
    from .calibration import resolve_calibration_source

    for name, model in config["models"].items():
        path = resolve_source(model["source"])
        if not path.is_file():
            raise ConfigError(
                f"model file not found: {path} (config key 'models.{name}.source'); "
                "give the path of a GGUF file"
            )
    for entry in config.get("imatrix", {}).get("calibration", []):
        resolve_calibration_source(entry)
    fidelity = config.get("fidelity", {})
    if fidelity.get("enabled", True):
        from .fidelity import LAMBADA_SOURCE

        text = fidelity.get("text", LAMBADA_SOURCE)
        if text != LAMBADA_SOURCE and not Path(text).expanduser().is_file():
            raise ConfigError(
                f"fidelity text not found: {text} (config key 'fidelity.text'); "
                f"give the path of a UTF-8 text file or {LAMBADA_SOURCE!r}"
            )
