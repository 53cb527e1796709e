"""Benchmarks defined by users in the configuration, outside this package.

Two kinds exist (docs/user-benchmarks.md):

- `kind: lm_eval`: a folder of lm-evaluation-harness task definitions (`include_path`)
  and the task to run from it. The task's data source is redirected to the JSONL file
  `data`, as for the built-in benchmarks.
- `kind: python`: a Python file (`module`) with `prompt(item) -> str` and
  `score(item, completion) -> float`. The model generates one completion per item and
  the module scores it.

Relative paths are read from the working directory of the workflow.
"""

from __future__ import annotations

import importlib.util
import logging
import math
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

from .benchmarks import Benchmark, _read_jsonl
from .errors import ConfigError, InvalidDataError

logger = logging.getLogger(__name__)

SCORE_KINDS = ("binary", "graded")


def _config_path(name: str, settings: dict[str, Any], key: str, folder: bool = False) -> Path:
    path = Path(settings[key]).expanduser()
    exists = path.is_dir() if folder else path.is_file()
    if not exists:
        kind = "folder" if folder else "file"
        raise ConfigError(
            f"{kind} not found: {path} (config key 'benchmarks.{name}.{key}'); relative paths are read "
            "from the workflow's working directory"
        )
    return path


def _load_items(name: str, path: Path) -> list[dict[str, Any]]:
    items = list(_read_jsonl(path))
    for line, item in enumerate(items, start=1):
        if not isinstance(item, dict) or "id" not in item:
            raise InvalidDataError(f"{path}: item {line} has no 'id' (benchmark {name}); give every item a unique id")
        item["id"] = str(item["id"])
    if not items:
        raise InvalidDataError(f"{path} holds no items (benchmark {name})")
    return items


class UserBenchmark(Benchmark):
    """Items from the configured JSONL file; subclasses decide how they are run and scored."""

    def __init__(self, name: str, settings: dict[str, Any]) -> None:
        self.name = name
        self.settings = settings

    @property
    def description(self) -> str:
        return ""

    def load_items(self) -> list[dict[str, Any]]:
        return _load_items(self.name, _config_path(self.name, self.settings, "data"))

    def source_files(self) -> list[Path]:
        """Return the files that define the benchmark: its data and its code."""
        return [_config_path(self.name, self.settings, "data")]


# ----------------------------------------------------------------------- lm_eval kind

def find_task_definition(include_path: Path, task: str) -> Path:
    """Return the YAML file under `include_path` whose `task:` is `task`."""
    candidates = []
    for path in sorted(include_path.rglob("*.yaml")):
        # Task YAMLs may contain `!function` tags; only the plain `task:` key matters here.
        loader = type("TaskLoader", (yaml.SafeLoader,), {})
        loader.add_multi_constructor("!", lambda loader, suffix, node: None)
        try:
            content = yaml.load(path.read_text(encoding="utf-8"), Loader=loader)
        except yaml.YAMLError as error:
            raise InvalidDataError(f"task definition {path} is not valid YAML: {error}") from error
        if isinstance(content, dict):
            candidates.append(content.get("task"))
            if content.get("task") == task:
                return path
    raise ConfigError(
        f"no task definition with 'task: {task}' in {include_path}; tasks found there: "
        f"{', '.join(str(c) for c in candidates if c) or '(none)'}"
    )


class LmEvalBenchmark(UserBenchmark):
    """A task of the user's own lm-evaluation-harness task definitions."""

    def __init__(self, name: str, settings: dict[str, Any]) -> None:
        super().__init__(name, settings)
        self.include_path = _config_path(name, settings, "include_path", folder=True)
        self.task = settings["task"]
        self.definition_path = find_task_definition(self.include_path, self.task)
        definition = self._definition()
        metrics = [entry["metric"] for entry in definition.get("metric_list") or [] if "metric" in entry]
        self.metric = settings.get("metric") or (metrics[0] if metrics else "")
        if not self.metric:
            raise ConfigError(
                f"task {self.task} ({self.definition_path}) has no metric_list; set "
                f"'benchmarks.{name}.metric' to the per-item metric to score"
            )
        filters = [entry["name"] for entry in definition.get("filter_list") or []]
        self.filter = settings.get("filter") or (filters[0] if filters else None)
        self.output_type = definition.get("output_type", "generate_until")
        self.generation = definition.get("generation_kwargs") or {}
        self.score_kind = settings.get("score_kind", "binary")

    def _definition(self) -> dict[str, Any]:
        from lm_eval.tasks._yaml_loader import load_yaml

        return load_yaml(self.definition_path, resolve_func=True)

    @property
    def description(self) -> str:
        return f"lm-evaluation-harness task {self.task} from {self.definition_path}"

    def task_yaml(self) -> Path:
        return self.definition_path

    def load_fewshot_pool(self) -> list[dict[str, Any]]:
        if "fewshot_data" not in self.settings:
            return []
        return _load_items(self.name, _config_path(self.name, self.settings, "fewshot_data"))

    def runs_vary(self, settings: dict[str, Any]) -> bool:
        if "runs_vary" in settings:
            return bool(settings["runs_vary"])
        sampled = self.output_type == "generate_until" and bool(self.generation.get("do_sample"))
        return sampled or settings.get("num_fewshot", 0) > 0

    def task_overrides(self, settings: dict[str, Any], data_files: dict[str, str]) -> dict[str, Any]:
        files = {"test": data_files["test"]}
        has_fewshot = "fewshot_data" in settings
        if has_fewshot:
            files["validation"] = data_files["fewshot"]
        overrides = super().task_overrides(settings, files)
        overrides.update(
            training_split=None,
            validation_split="validation" if has_fewshot else None,
            fewshot_split="validation" if has_fewshot else None,
        )
        if "num_fewshot" in settings:
            overrides["num_fewshot"] = int(settings["num_fewshot"])
        return overrides

    def source_files(self) -> list[Path]:
        files = super().source_files()
        files += sorted(p for p in self.include_path.rglob("*") if p.is_file() and p.suffix in (".yaml", ".py"))
        if "fewshot_data" in self.settings:
            files.append(_config_path(self.name, self.settings, "fewshot_data"))
        return files


# ----------------------------------------------------------------------- python kind

def load_scorer_module(name: str, path: Path) -> ModuleType:
    """Import a scorer file and check that it has the documented interface."""
    spec = importlib.util.spec_from_file_location(f"quant_eval_user_benchmark_{name}", path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"cannot import {path} (config key 'benchmarks.{name}.module'); give a .py file")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for function in ("prompt", "score"):
        if not callable(getattr(module, function, None)):
            raise ConfigError(
                f"{path} (benchmark {name}) has no function {function}(); a scorer module defines "
                "prompt(item) -> str and score(item, completion) -> float (docs/user-benchmarks.md)"
            )
    score_kind = getattr(module, "SCORE_KIND", "binary")
    if score_kind not in SCORE_KINDS:
        raise ConfigError(f"{path}: SCORE_KIND is {score_kind!r}; use one of {', '.join(SCORE_KINDS)}")
    return module


class PythonBenchmark(UserBenchmark):
    """Generation with the evaluated model, scored by the user's Python module."""

    filter = None

    def __init__(self, name: str, settings: dict[str, Any]) -> None:
        super().__init__(name, settings)
        self.module_path = _config_path(name, settings, "module")
        self.module = load_scorer_module(name, self.module_path)
        self.task = name
        self.metric = getattr(self.module, "METRIC", "score")
        self.score_kind = getattr(self.module, "SCORE_KIND", "binary")

    @property
    def description(self) -> str:
        doc = (self.module.__doc__ or "").strip()
        return doc.splitlines()[0] if doc else f"scored by {self.module_path}"

    def temperature(self) -> float:
        return float(self.settings.get("temperature", getattr(self.module, "TEMPERATURE", 0.0)))

    def runs_vary(self, settings: dict[str, Any]) -> bool:
        if "runs_vary" in settings:
            return bool(settings["runs_vary"])
        return float(settings.get("temperature", getattr(self.module, "TEMPERATURE", 0.0))) > 0

    def source_files(self) -> list[Path]:
        return super().source_files() + [self.module_path]

    def run_items(self, model: Any, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Generate one completion per item with `model` (an lm-eval LM) and score it."""
        from lm_eval.api.instance import Instance

        generation = {
            "until": list(getattr(self.module, "STOP", [])),
            "do_sample": self.temperature() > 0,
            "temperature": self.temperature(),
            "max_gen_toks": int(self.settings.get("max_tokens", getattr(self.module, "MAX_TOKENS", 256))),
        }
        prompts = [str(self.module.prompt(item)) for item in items]
        requests = [
            Instance(request_type="generate_until", doc=item, arguments=(prompt, dict(generation)), idx=0,
                     metadata=(self.name, index, 1))
            for index, (item, prompt) in enumerate(zip(items, prompts))
        ]
        completions = model.generate_until(requests)

        records = []
        for item, prompt, completion in zip(items, prompts, completions):
            score = float(self.module.score(item, completion))
            if not math.isfinite(score) or (self.score_kind == "binary" and score not in (0.0, 1.0)):
                raise InvalidDataError(
                    f"{self.module_path}: score() returned {score} for item {item['id']}; a "
                    f"{self.score_kind} benchmark needs {'0 or 1' if self.score_kind == 'binary' else 'a finite number'}"
                )
            records.append({"id": item["id"], "prompt": prompt, "output": completion, "score": score})
        return records


USER_KINDS = {"lm_eval": LmEvalBenchmark, "python": PythonBenchmark}


def user_benchmark(name: str, settings: dict[str, Any]) -> UserBenchmark:
    kind = settings.get("kind")
    if kind not in USER_KINDS:
        raise ConfigError(
            f"config key 'benchmarks.{name}.kind' is {kind!r}; use one of {', '.join(USER_KINDS)}"
        )
    return USER_KINDS[kind](name, settings)
