"""The MATH benchmark: its offline data, its harness task, and a run on the tiny model.

Counts are those of the published splits: the MATH test set has 5000 problems in seven
subjects (Hendrycks et al., 2021), MATH-500 is a 500-problem subset of it (Lightman et
al., 2023). The task tests use problems and outputs written for these tests.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from lm_eval.api.model import LM

from quant_eval.benchmarks import MATH, MATH_SUBJECTS, effective_runs, write_jsonl
from quant_eval.errors import InvalidDataError
from quant_eval.evaluation.runner import evaluate, run_task

FULL_SUBJECT_COUNTS = {
    "Algebra": 1187,
    "Counting & Probability": 474,
    "Geometry": 479,
    "Intermediate Algebra": 903,
    "Number Theory": 540,
    "Prealgebra": 871,
    "Precalculus": 546,
}
LEVELS = {f"Level {n}" for n in range(1, 6)}


@pytest.fixture(scope="module")
def full_items() -> list[dict]:
    return MATH().load_items()


@pytest.fixture(scope="module")
def math500_items(full_items) -> list[dict]:
    return MATH().load_math500(full_items)


# ----------------------------------------------------------------------- data

def test_full_item_count(full_items):
    assert len(full_items) == 5000


def test_full_subject_counts(full_items):
    assert Counter(item["subject"] for item in full_items) == FULL_SUBJECT_COUNTS


def test_full_levels(full_items):
    assert {item["level"] for item in full_items} == LEVELS


def test_full_ids_unique(full_items):
    assert len({item["id"] for item in full_items}) == 5000


def test_every_item_has_answer(full_items):
    assert all(item["answer"] for item in full_items)
    assert not any(item["few_shot"] for item in full_items)


def test_math500_item_count(math500_items):
    assert len(math500_items) == 500
    assert len({item["id"] for item in math500_items}) == 500


def test_math500_subjects_and_levels(math500_items):
    assert {item["subject"] for item in math500_items} == set(MATH_SUBJECTS.values())
    assert {item["level"] for item in math500_items} == LEVELS


def test_math500_items_are_test_items(full_items, math500_items):
    by_id = {item["id"]: item for item in full_items}

    for item in math500_items:
        assert by_id[item["id"]] == item


def test_math500_answer_from_boxed(math500_items):
    # The package's `answer` field of this item reads "\le(3,\frac{\pi}{2}\right)".
    (item,) = [i for i in math500_items if i["problem"].startswith("Convert the point $(0,3)$")]

    assert item["answer"] == "\\left( 3, \\frac{\\pi}{2} \\right)"


def test_boxed_answer_with_nested_braces(full_items):
    nested = [item for item in full_items if "\\frac{" in item["answer"] and "\\sqrt{" in item["answer"]]

    assert len(nested) > 10
    for item in nested:
        assert f"\\boxed{{{item['answer']}}}" in item["solution"]
        assert item["answer"].count("{") == item["answer"].count("}")


def test_fewshot_pool_is_four_minerva_exemplars():
    pool = MATH().load_fewshot_pool()

    assert len(pool) == 4
    assert all(exemplar["few_shot"] for exemplar in pool)
    for exemplar in pool:
        assert "Final Answer: The final answer is" in exemplar["solution"]
        assert exemplar["solution"].endswith("I hope it is correct.")
    assert [exemplar["answer"] for exemplar in pool] == ["[2,5)", "24", "16", "-\\frac{2}{3}"]


def test_prepare_math500_subset(tmp_path, math500_items):
    test, fewshot = tmp_path / "math.test.jsonl", tmp_path / "math.fewshot.jsonl"
    count = MATH().prepare(20, 1234, test, fewshot, {"subset": "math500"})
    written = [json.loads(line) for line in test.read_text().splitlines()]

    assert count == 20
    assert {item["id"] for item in written} <= {item["id"] for item in math500_items}
    assert len(fewshot.read_text().splitlines()) == 4


def test_prepare_default_subset_is_math500(tmp_path):
    MATH().prepare(None, 1, tmp_path / "test.jsonl", tmp_path / "fewshot.jsonl")

    assert len((tmp_path / "test.jsonl").read_text().splitlines()) == 500


def test_prepare_full_subset(tmp_path):
    count = MATH().prepare(None, 1, tmp_path / "test.jsonl", tmp_path / "fewshot.jsonl", {"subset": "full"})

    assert count == 5000


def test_prepare_unknown_subset_writes_nothing(tmp_path):
    with pytest.raises(InvalidDataError) as caught:
        MATH().prepare(10, 1, tmp_path / "test.jsonl", tmp_path / "fewshot.jsonl", {"subset": "math5000"})

    assert "benchmarks.math.subset" in str(caught.value)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("settings", "runs", "expected"), [
    ({"temperature": 0}, 5, 1),
    ({}, 5, 1),
    ({"temperature": 0.6}, 5, 5),
])
def test_math_effective_runs(settings, runs, expected):
    assert effective_runs("math", settings, runs) == expected


# ----------------------------------------------------------------------- harness task

class ScriptedMathLM(LM):
    """Returns a fixed generation per problem, keyed by a text of the request's last problem."""

    def __init__(self, generations: dict[str, str]) -> None:
        super().__init__()
        self.generations = generations
        self.requests: list = []

    def generate_until(self, requests, disable_tqdm=False):
        self.requests += requests
        outputs = []
        for request in requests:
            last_problem = request.args[0].rsplit("Problem:\n", 1)[-1]
            outputs.append(next(text for key, text in self.generations.items() if key in last_problem))
        return outputs

    def loglikelihood(self, requests, disable_tqdm=False):
        raise NotImplementedError

    def loglikelihood_rolling(self, requests, disable_tqdm=False):
        raise NotImplementedError


def math_item(item_id: str, problem: str, boxed: str, subject: str, level: str) -> dict:
    solution = f"Working it out gives $\\boxed{{{boxed}}}$."
    return {"id": item_id, "problem": problem, "solution": solution, "answer": boxed,
            "subject": subject, "level": level, "few_shot": False}


MATH_ITEMS = [
    math_item("garden", "A garden is 6 meters by 4 meters. What is its area?", "24", "Prealgebra", "Level 1"),
    math_item("half", "What is $3/6$ in lowest terms?", "\\frac{1}{2}", "Prealgebra", "Level 1"),
    math_item("roots", "Solve $x^2-2x-15=0$.", "-3, 5", "Algebra", "Level 2"),
    math_item("weekday", "Day 1 is a Monday. Which weekday is day 5?", "\\text{Friday}", "Number Theory", "Level 2"),
    math_item("ramble", "How many primes are below 10?", "4", "Number Theory", "Level 1"),
    math_item("interval", "Solve $-1 < x \\le 5/2$ as an interval.", "\\left(-1, \\dfrac{5}{2}\\right]",
              "Algebra", "Level 3"),
]

FINAL = "\nFinal Answer: The final answer is {}. I hope it is correct."
MATH_OUTPUTS = {
    "garden": " The area is $6\\cdot 4=24$." + FINAL.format("$24$ square meters"),  # units: 1
    "3/6": " Dividing by 3 gives one half." + FINAL.format("$0.5$"),  # decimal for a fraction: 1
    "x^2-2x-15": " It factors as $(x-5)(x+3)$." + FINAL.format("$5, -3$"),  # roots in another order: 1
    "weekday": " Four days later." + FINAL.format("Saturday"),  # wrong text answer: 0
    "primes": " The primes are 2, 3, 5 and 7, so there are four",  # no final answer: 0
    "interval": " So $x$ lies in" + FINAL.format("$(-1, 2.5]$"),  # 1
}


def write_math_data(folder: Path) -> dict[str, str]:
    test, fewshot = folder / "math.test.jsonl", folder / "math.fewshot.jsonl"
    write_jsonl(MATH_ITEMS, test)
    write_jsonl(MATH().load_fewshot_pool(), fewshot)
    return {"test": str(test), "fewshot": str(fewshot)}


@pytest.fixture(scope="module")
def scripted_run(tmp_path_factory) -> tuple[list[dict], ScriptedMathLM]:
    model = ScriptedMathLM(MATH_OUTPUTS)
    items = run_task(model, "math", {"temperature": 0, "max_tokens": 300},
                     write_math_data(tmp_path_factory.mktemp("math")), seed=1)
    return items, model


def test_task_scores_hand_checked_items(scripted_run):
    by_id = {item["id"]: item for item in scripted_run[0]}

    assert [item["id"] for item in scripted_run[0]] == [item["id"] for item in MATH_ITEMS]
    assert by_id["garden"]["score"] == 1.0
    assert by_id["half"]["score"] == 1.0
    assert by_id["roots"]["score"] == 1.0
    assert by_id["weekday"]["score"] == 0.0
    assert by_id["ramble"]["score"] == 0.0
    assert by_id["interval"]["score"] == 1.0


def test_task_records_how_answers_were_judged(scripted_run):
    by_id = {item["id"]: item for item in scripted_run[0]}

    assert by_id["garden"]["decided_by"] == "identical"
    assert by_id["half"]["decided_by"] == "sympy"
    assert by_id["roots"]["decided_by"] == "identical"
    assert by_id["weekday"]["decided_by"] == "string"
    assert by_id["ramble"]["decided_by"] == "no_answer"
    assert by_id["interval"]["decided_by"] == "sympy"


def test_task_records_answers_and_groups(scripted_run):
    by_id = {item["id"]: item for item in scripted_run[0]}

    assert by_id["half"]["extracted_answer"] == "$0.5$"
    assert by_id["ramble"]["extracted_answer"] is None
    assert by_id["half"]["gold"] == "\\frac{1}{2}"
    assert by_id["interval"]["groups"] == {"subject": "Algebra", "level": "Level 3"}
    assert by_id["half"]["output"] == MATH_OUTPUTS["3/6"]


def test_task_prompt_is_minerva_four_shot(scripted_run):
    prompt = scripted_run[0][0]["prompt"]

    assert prompt.startswith("Problem:\nFind the domain of the expression")
    assert prompt.count("Problem:\n") == 5
    assert prompt.count("Final Answer: The final answer is") == 4
    assert "\n\nSolution: The expressions inside each square root" in prompt
    assert prompt.endswith("Problem:\nA garden is 6 meters by 4 meters. What is its area?\n\nSolution:")


def test_task_generation_settings(scripted_run):
    gen_kwargs = scripted_run[1].requests[0].args[1]

    assert "Problem:" in gen_kwargs["until"]
    assert gen_kwargs["max_gen_toks"] == 300
    assert gen_kwargs["do_sample"] is False


# ----------------------------------------------------------------------- real backend

def test_evaluate_tiny_model_writes_run_file(tiny_model, tmp_path):
    data = write_math_data(tmp_path)
    write_jsonl(MATH_ITEMS[:2], Path(data["test"]))
    output = tmp_path / "run1.json"

    evaluate(tiny_model, "math", {"temperature": 0, "max_tokens": 8}, Path(data["test"]), Path(data["fewshot"]),
             run=1, seed=7, context=2048, threads=1, output=output, labels={"model": "tiny", "variant": "base"})
    record = json.loads(output.read_text())

    assert record["benchmark"] == "math"
    assert record["metric"] == "exact_match"
    assert record["n_items"] == 2
    assert [item["id"] for item in record["items"]] == ["garden", "half"]
    for item, source in zip(record["items"], MATH_ITEMS):
        assert item["groups"] == {"subject": source["subject"], "level": source["level"]}
        assert item["decided_by"] in {"identical", "sympy", "string", "no_answer"}
        assert item["score"] in (0.0, 1.0)
        assert item["prompt"].count("Problem:\n") == 5
    # A random-weight model never writes the final-answer sentence in 8 tokens.
    assert [item["decided_by"] for item in record["items"]] == ["no_answer", "no_answer"]
    assert record["mean_score"] == 0.0
