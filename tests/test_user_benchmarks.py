"""User benchmarks: configuration checks, loading, and scoring with a scripted model.

The scripted model returns hand-written completions and log-likelihoods, so each
expected score follows from reading the completion and the item.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_evaluation import ScriptedLM

from quant_eval.benchmarks import BENCHMARKS, benchmark_source_files, effective_runs, get_benchmark
from quant_eval.config import check_input_files, check_schema
from quant_eval.errors import ConfigError, InvalidDataError
from quant_eval.evaluation.runner import run_task

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "config" / "schema" / "config.schema.yaml"
EXAMPLE = REPO / "examples" / "user_benchmark"

ADDITION = {"kind": "python", "module": str(EXAMPLE / "scorer.py"), "data": str(EXAMPLE / "addition.jsonl")}
OPPOSITES = {"kind": "lm_eval", "include_path": str(EXAMPLE / "tasks"), "task": "opposites",
             "data": str(EXAMPLE / "opposites.jsonl"), "metric": "acc_norm"}


def config_with(benchmarks: dict) -> dict:
    return {"models": {"tiny": {"source": "tiny.gguf"}}, "quantizations": ["q8_0"], "benchmarks": benchmarks,
            "runs": 2, "seed": 1}


def test_schema_accepts_both_kinds():
    check_schema(config_with({"addition": ADDITION, "opposites": OPPOSITES, "gsm8k": {}}), SCHEMA, BENCHMARKS)


def test_name_without_kind_rejected():
    with pytest.raises(ConfigError) as caught:
        check_schema(config_with({"addition": {"data": "a.jsonl"}}), SCHEMA, BENCHMARKS)

    assert "unknown benchmark 'addition'" in str(caught.value)
    assert "'kind: python'" in str(caught.value)


def test_schema_rejects_mixed_kind_keys():
    with pytest.raises(ConfigError, match="benchmarks.addition"):
        check_schema(config_with({"addition": {**ADDITION, "task": "opposites"}}), SCHEMA, BENCHMARKS)


def test_missing_module_named(tmp_path):
    settings = {**ADDITION, "module": str(tmp_path / "absent.py")}

    with pytest.raises(ConfigError) as caught:
        check_input_files({"models": {}, "benchmarks": {"addition": settings}})
    assert "benchmarks.addition.module" in str(caught.value)


def test_module_without_score_rejected(tmp_path):
    module = tmp_path / "scorer.py"
    module.write_text("def prompt(item):\n    return 'x'\n")

    with pytest.raises(ConfigError, match=r"no function score\(\)"):
        get_benchmark("b", {**ADDITION, "module": str(module)})


def test_unknown_score_kind_rejected(tmp_path):
    module = tmp_path / "scorer.py"
    module.write_text("SCORE_KIND = 'ordinal'\ndef prompt(item):\n    return ''\ndef score(item, c):\n    return 0\n")

    with pytest.raises(ConfigError, match="SCORE_KIND is 'ordinal'"):
        get_benchmark("b", {**ADDITION, "module": str(module)})


def test_unknown_task_lists_found():
    with pytest.raises(ConfigError) as caught:
        get_benchmark("o", {**OPPOSITES, "task": "synonyms"})

    assert "no task definition with 'task: synonyms'" in str(caught.value)
    assert "tasks found there: opposites" in str(caught.value)


def test_items_need_ids(tmp_path):
    data = tmp_path / "items.jsonl"
    data.write_text('{"a": 1, "b": 2}\n')
    benchmark = get_benchmark("addition", {**ADDITION, "data": str(data)})

    with pytest.raises(InvalidDataError, match="has no 'id'"):
        benchmark.prepare(None, 1, tmp_path / "test.jsonl", tmp_path / "fewshot.jsonl")
    assert not (tmp_path / "test.jsonl").exists()


def test_example_metadata():
    addition = get_benchmark("addition", ADDITION)
    opposites = get_benchmark("opposites", OPPOSITES)

    assert addition.metric == "score"
    assert addition.score_kind == "binary"
    assert addition.description.startswith("Two-number addition")
    assert opposites.metric == "acc_norm"
    assert opposites.task == "opposites"


def test_runs_vary_defaults():
    assert effective_runs("addition", ADDITION, 5) == 1
    assert effective_runs("addition", {**ADDITION, "temperature": 0.7}, 5) == 5
    assert effective_runs("opposites", OPPOSITES, 5) == 1
    assert effective_runs("opposites", {**OPPOSITES, "runs_vary": True}, 5) == 5


def test_source_files_listed():
    files = benchmark_source_files("opposites", OPPOSITES)

    assert files == [OPPOSITES["data"], str(EXAMPLE / "tasks" / "opposites.yaml")]
    assert benchmark_source_files("gsm8k", {"limit": 3}) == []


def test_python_scorer_scores(tmp_path):
    benchmark = get_benchmark("addition", ADDITION)
    items = [{"id": "x", "a": 3, "b": 4}, {"id": "y", "a": 20, "b": 7}, {"id": "z", "a": 1, "b": 1}]
    model = ScriptedLM(generations={"3 plus 4": " 7", "20 plus 7": " 26 or 27", "1 plus 1": " two"})
    records = benchmark.run_items(model, items)

    assert [r["score"] for r in records] == [1.0, 0.0, 0.0]
    assert records[1]["output"] == " 26 or 27"
    assert records[0]["prompt"].endswith("Q: What is 3 plus 4?\nA:")


def test_binary_score_half_rejected(tmp_path):
    module = tmp_path / "scorer.py"
    module.write_text("def prompt(item):\n    return 'Q: x'\ndef score(item, completion):\n    return 0.5\n")
    benchmark = get_benchmark("b", {**ADDITION, "module": str(module)})

    with pytest.raises(InvalidDataError, match="needs 0 or 1"):
        benchmark.run_items(ScriptedLM(generations={"x": "y"}), [{"id": "1"}])


def test_lm_eval_task_scores(tmp_path):
    """acc_norm picks the highest log-likelihood per character; two of three items get it right."""
    items = [json.loads(line) for line in (EXAMPLE / "opposites.jsonl").read_text().splitlines()][:3]
    test = tmp_path / "test.jsonl"
    test.write_text("".join(json.dumps(item) + "\n" for item in items))
    # Item 0 (hot): cold is right. Item 1 (up): left wins over down. Item 2 (day): night is right.
    loglikelihoods = {" cold": -1.0, " tall": -9.0, " loud": -9.0, " green": -9.0,
                      " left": -1.0, " down": -9.0, " blue": -9.0, " fast": -9.0,
                      " chair": -9.0, " seven": -9.0, " night": -1.0, " warm": -9.0}
    records = run_task(ScriptedLM(loglikelihoods=loglikelihoods), "opposites", OPPOSITES,
                       {"test": str(test), "fewshot": str(test)}, seed=1)

    assert [r["id"] for r in records] == ["opp-00", "opp-01", "opp-02"]
    assert [r["score"] for r in records] == [1.0, 0.0, 1.0]
    assert records[1]["output"] == " left"
    assert records[0]["prompt"] == "The opposite of hot is"
