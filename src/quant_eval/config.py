"""Variants, benchmarks and checks derived from the workflow configuration.

The JSON schema in config/schema/ checks types and ranges. This module checks what a
schema cannot (names that must exist, keys that depend on each other), and it turns the
configuration into the list of variants the workflow builds.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import jsonschema
import yaml

from .errors import ConfigError

BASE_VARIANT = "base"
NO_IMATRIX_SUFFIX = "-no-imatrix"
# llama-perplexity prints no KL divergence statistics over fewer scored tokens.
MIN_FIDELITY_TOKENS = 100


# Recipe names become file names and Snakemake wildcard values.
VARIANT_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

# Tensor types set by each `protection` preset, as llama-quantize flags would set them.
# `high` keeps the output tensor, the token embeddings and every attention value tensor
# (name matching `attn_v`) at Q8_0. A recipe's own override keys win over its preset.
PROTECTION_PRESETS: dict[str, dict[str, Any]] = {
    "standard": {},
    "high": {
        "output_tensor_type": "Q8_0",
        "token_embedding_type": "Q8_0",
        "tensor_types": {"attn_v": "Q8_0"},
    },
}

# Base types whose tensors are already at 8 bits or more: protecting them at Q8_0 would
# lower their precision, so `protection: high` is rejected on them.
HIGH_PRECISION_TYPES = {"Q8_0", "F16", "BF16", "F32", "COPY"}


@dataclass(frozen=True)
class Variant:
    """One model file that is evaluated: the base model or a recipe quantized from it.

    The override fields hold the final per-tensor types, the protection preset already
    applied; `protection` is kept to name the preset in reports.
    """

    name: str
    quantization_type: str | None  # llama-quantize's name, e.g. "Q4_K_M"; None for the base
    imatrix: bool
    protection: str = "standard"
    output_tensor_type: str | None = None  # ggml type name, e.g. "Q8_0"
    token_embedding_type: str | None = None
    tensor_types: tuple[tuple[str, str], ...] = field(default=())  # (name pattern, ggml type)
    leave_output_tensor: bool = False
    calibration: str | None = None  # a key of imatrix.calibration_sets; None: imatrix.calibration

    @property
    def is_base(self) -> bool:
        return self.quantization_type is None

    def recipe(self) -> dict[str, Any]:
        """Return the recipe as JSON-ready data: everything that decides the quantized file."""
        return {
            "type": self.quantization_type,
            "imatrix": self.imatrix,
            "calibration": self.calibration,
            "protection": self.protection,
            "output_tensor_type": self.output_tensor_type,
            "token_embedding_type": self.token_embedding_type,
            "tensor_types": dict(self.tensor_types),
            "leave_output_tensor": self.leave_output_tensor,
        }

    def recipe_json(self) -> str:
        return json.dumps(self.recipe(), sort_keys=True)


def _short_form(type_name: str, imatrix: bool) -> dict[str, Any]:
    suffix = "" if imatrix else NO_IMATRIX_SUFFIX
    return {"name": type_name.lower() + suffix, "type": type_name, "imatrix": imatrix}


def recipe_entries(config: dict[str, Any]) -> list[dict[str, Any]]:
    """Return every recipe of the configuration as a mapping, short forms expanded.

    `quantizations` entries come first, in order, then the `without_imatrix` short forms.
    """
    entries = []
    for entry in config["quantizations"]:
        entries.append(_short_form(entry, imatrix=True) if isinstance(entry, str) else dict(entry))
    for type_name in config.get("without_imatrix", []):
        entries.append(_short_form(type_name, imatrix=False))
    return entries


def _variant_from_entry(entry: dict[str, Any]) -> Variant:
    protection = entry.get("protection", "standard")
    preset = PROTECTION_PRESETS.get(protection, {})
    tensor_types = {**preset.get("tensor_types", {}), **(entry.get("tensor_types") or {})}

    def override(key: str) -> str | None:
        value = entry.get(key, preset.get(key))
        return value.upper() if value else None

    leave_output_tensor = bool(entry.get("leave_output_tensor", False))
    return Variant(
        name=entry["name"],
        quantization_type=entry["type"].upper(),
        imatrix=bool(entry.get("imatrix", True)),
        protection=protection,
        # Leaving the output tensor as it is replaces any type the preset gives it.
        output_tensor_type=None if leave_output_tensor else override("output_tensor_type"),
        token_embedding_type=override("token_embedding_type"),
        tensor_types=tuple((pattern, kind.upper()) for pattern, kind in tensor_types.items()),
        leave_output_tensor=leave_output_tensor,
        calibration=entry.get("calibration"),
    )


def list_variants(config: dict[str, Any]) -> list[Variant]:
    """Return the base variant, then each recipe: `quantizations` first, then `without_imatrix`."""
    variants = [Variant(BASE_VARIANT, None, imatrix=False)]
    variants += [_variant_from_entry(entry) for entry in recipe_entries(config)]
    return variants


def imatrix_pairs(config: dict[str, Any]) -> list[tuple[str, str]]:
    """Return (with imatrix, without imatrix) variant names of recipes that differ only in the imatrix.

    The calibration corpus is ignored: a recipe without the imatrix has none, so every
    corpus of a recipe pairs with the same recipe quantized without the imatrix.
    """
    def key(variant: Variant) -> str:
        recipe = variant.recipe()
        del recipe["imatrix"], recipe["calibration"]
        return json.dumps(recipe, sort_keys=True)

    recipes = [v for v in list_variants(config) if not v.is_base]
    pairs = []
    for with_imatrix in (v for v in recipes if v.imatrix):
        for without_imatrix in (v for v in recipes if not v.imatrix):
            if key(with_imatrix) == key(without_imatrix):
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
    for name, settings in (config.get("benchmarks") or {}).items():
        # A user benchmark is any other name whose settings give its `kind`.
        if name not in known and not (isinstance(settings, dict) and "kind" in settings):
            raise ConfigError(
                f"unknown benchmark {name!r} in config key 'benchmarks'; "
                f"available benchmarks: {', '.join(known)}; a benchmark of your own needs "
                "'kind: lm_eval' or 'kind: python' (see docs/user-benchmarks.md)"
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


def _check_quantization_types(config: dict[str, Any], known_types: set[str]) -> None:
    for key in ("quantizations", "without_imatrix"):
        for entry in config.get(key, []):
            type_name = entry if isinstance(entry, str) else entry["type"]
            where = key if isinstance(entry, str) else f"{key}: {entry['name']}.type"
            if type_name.upper() not in known_types:
                raise ConfigError(
                    f"unknown quantization type {type_name!r} in config key {where!r}; "
                    f"llama-quantize knows: {', '.join(sorted(known_types))}"
                )


def _check_short_forms(config: dict[str, Any]) -> None:
    short_forms = [t for t in config["quantizations"] if isinstance(t, str)]
    # Checked before duplicates: the base variant always exists, so `base` would
    # otherwise be reported as a duplicate variant name.
    if BASE_VARIANT in (t.lower() for t in short_forms):
        raise ConfigError(f"'{BASE_VARIANT}' is reserved for the base model; remove it from 'quantizations'")
    for key, types in (("quantizations", short_forms), ("without_imatrix", config.get("without_imatrix", []))):
        upper = [t.upper() for t in types]
        duplicates = sorted({t for t in upper if upper.count(t) > 1})
        if duplicates:
            raise ConfigError(
                f"config key {key!r} lists {', '.join(duplicates)} more than once "
                "(type names are case-insensitive); list each type once"
            )


def _check_recipe(entry: dict[str, Any], calibration_sets: dict[str, Any]) -> None:
    """Raise ConfigError for a recipe mapping whose keys contradict each other."""
    where = f"config key 'quantizations: {entry['name']}'"
    if entry["name"].lower() == BASE_VARIANT:
        raise ConfigError(f"'{BASE_VARIANT}' is reserved for the base model; rename the recipe in 'quantizations'")
    if not VARIANT_NAME_PATTERN.match(entry["name"]):
        raise ConfigError(
            f"recipe name {entry['name']!r} in config key 'quantizations' is not usable as a file name; "
            "use letters, digits, '_', '.' and '-', starting with a letter or digit"
        )
    if entry.get("protection") == "high" and entry["type"].upper() in HIGH_PRECISION_TYPES:
        raise ConfigError(
            f"{where} asks for 'protection: high' on type {entry['type']!r}, whose tensors are already "
            "at 8 bits or more; use 'protection: standard' or a lower-precision type"
        )
    from gguf import GGMLQuantizationType

    overrides = [(key, entry.get(key)) for key in ("output_tensor_type", "token_embedding_type")]
    overrides += [(f"tensor_types: {pattern}", kind) for pattern, kind in (entry.get("tensor_types") or {}).items()]
    for key, kind in overrides:
        if kind is not None and kind.upper() not in GGMLQuantizationType.__members__:
            raise ConfigError(
                f"{where}, key {key!r}: unknown tensor type {kind!r}; use a ggml type such as "
                f"Q8_0, Q6_K, Q4_K, F16 (known: {', '.join(GGMLQuantizationType.__members__)})"
            )
    for pattern in entry.get("tensor_types") or {}:
        try:
            re.compile(pattern)
        except re.error as error:
            raise ConfigError(
                f"{where}, key 'tensor_types': {pattern!r} is not a valid regular expression ({error}); "
                "llama-quantize matches it against tensor names such as blk.0.attn_v.weight"
            ) from None
    if entry.get("leave_output_tensor") and entry.get("output_tensor_type"):
        raise ConfigError(
            f"{where} sets both 'leave_output_tensor' and 'output_tensor_type'; keep one of them"
        )
    calibration = entry.get("calibration")
    if calibration is not None:
        if not entry.get("imatrix", True):
            raise ConfigError(
                f"{where} names calibration set {calibration!r} but sets 'imatrix: false'; "
                "remove 'calibration' or set 'imatrix: true'"
            )
        if calibration not in calibration_sets:
            known = ", ".join(sorted(calibration_sets)) or "(none defined)"
            raise ConfigError(
                f"{where} names calibration set {calibration!r}, which 'imatrix.calibration_sets' "
                f"does not define; defined sets: {known}"
            )


def check_config(
    config: dict[str, Any],
    known_benchmarks: Iterable[str],
    known_quantization_types: Iterable[str] | None = None,
) -> None:
    """Raise ConfigError for values the JSON schema cannot check.

    `known_quantization_types` is the list printed by `llama-quantize --help`; the check
    of type names is skipped when it is None. Tensor type overrides are checked against
    the ggml types of the gguf package by the schema.
    """
    _check_benchmark_names(config, known_benchmarks)
    if known_quantization_types is not None:
        _check_quantization_types(config, {t.upper() for t in known_quantization_types})
    _check_short_forms(config)

    calibration_sets = config.get("imatrix", {}).get("calibration_sets", {})
    for entry in config["quantizations"]:
        if not isinstance(entry, str):
            _check_recipe(entry, calibration_sets)

    names = [v.name for v in list_variants(config)]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ConfigError(
            f"variant name {', '.join(map(repr, duplicates))} is used more than once in 'quantizations' "
            f"and 'without_imatrix' (a short form `q4_k_m` is named `q4_k_m`, and `without_imatrix: "
            f"[q4_k_m]` gives `q4_k_m{NO_IMATRIX_SUFFIX}`); give each recipe its own name"
        )

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
    """Raise an error naming the config key if a model, calibration or user benchmark file does not exist.

    Checked at start-up so that a wrong path stops the workflow before any job runs.
    """
    from .base_model import resolve_source
    from .benchmarks import get_benchmark, is_user_benchmark
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
    imatrix = config.get("imatrix", {})
    for entry in imatrix.get("calibration", []):
        resolve_calibration_source(entry)
    for name, entries in imatrix.get("calibration_sets", {}).items():
        for entry in entries:
            source = entry if isinstance(entry, str) else entry["source"]
            resolve_calibration_source(source, f"imatrix.calibration_sets.{name}")
    # Loading a user benchmark checks its files, its task definition or scorer module.
    for name, settings in config.get("benchmarks", {}).items():
        if is_user_benchmark(settings):
            get_benchmark(name, settings)
    fidelity = config.get("fidelity", {})
    if fidelity.get("enabled", True):
        from .fidelity import LAMBADA_SOURCE

        text = fidelity.get("text", LAMBADA_SOURCE)
        if text != LAMBADA_SOURCE and not Path(text).expanduser().is_file():
            raise ConfigError(
                f"fidelity text not found: {text} (config key 'fidelity.text'); "
                f"give the path of a UTF-8 text file or {LAMBADA_SOURCE!r}"
            )
