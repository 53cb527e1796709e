"""Answer extraction and scoring through the harness's task definitions, on items written here.

A scripted model returns hand-written outputs, so each expected score below follows from
reading the output and the gold answer; the last tests run the real backend.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from lm_eval.api.model import LM

from quant_eval.benchmarks import write_jsonl
from quant_eval.evaluation.runner import evaluate, run_task


class ScriptedLM(LM):
    """Returns fixed generations and log-likelihoods, keyed by a text the request contains."""

    def __init__(self, generations: dict[str, str] | None = None,
                 loglikelihoods: dict[str, float] | None = None) -> None:
        super().__init__()
        self.generations = generations or {}
        self.loglikelihoods = loglikelihoods or {}

    def generate_until(self, requests, disable_tqdm=False):
        outputs = []
        for request in requests:
            context = request.args[0]
            last_question = context.rsplit("Q: ", 1)[-1]
            outputs.append(next(text for key, text in self.generations.items() if key in last_question))
        return outputs

    def loglikelihood(self, requests, disable_tqdm=False):
        return [(self.loglikelihoods[request.args[1]], False) for request in requests]

    def loglikelihood_rolling(self, requests, disable_tqdm=False):
        raise NotImplementedError


GSM8K_ITEMS = [
    {"id": "apples", "question": "Tom has 3 apples and buys 4 more. How many apples does he have?",
     "answer": "He has 3 + 4 = <<3+4=7>>7 apples.\n#### 7"},
    {"id": "salary", "question": "A clerk earns 100 dollars a day for 12 days. What does she earn?",
     "answer": "She earns 100 * 12 = <<100*12=1200>>1200 dollars.\n#### 1200"},
    {"id": "coins", "question": "Ann has 20 coins and gives away 8. How many coins are left?",
     "answer": "20 - 8 = <<20-8=12>>12\n#### 12"},
    {"id": "pens", "question": "A box holds 6 pens. How many pens are in 5 boxes?",
     "answer": "6 * 5 = <<6*5=30>>30\n#### 30"},
]

GSM8K_OUTPUTS = {
    "apples": " Tom starts with 3 apples. He buys 4 more. 3 + 4 = 7. The answer is 7.",
    "clerk": " 100 * 12 = 1,200. The answer is $1,200.",  # thousands separator and dollar sign
    "coins": " 20 - 8 = 12, so she has 12 coins, then 13.",  # the last number is scored: wrong
    "pens": " I do not know.",  # no number at all: wrong
}


def write_gsm8k_data(folder: Path) -> dict[str, str]:
    test = folder / "gsm8k.test.jsonl"
    fewshot = folder / "gsm8k.fewshot.jsonl"
    write_jsonl(GSM8K_ITEMS, test)
    write_jsonl([], fewshot)
    return {"test": str(test), "fewshot": str(fewshot)}


def test_gsm8k_scores_hand_checked_items(tmp_path):
    items = run_task(ScriptedLM(generations=GSM8K_OUTPUTS), "gsm8k", {"temperature": 0.0},
                     write_gsm8k_data(tmp_path), seed=1)
    by_id = {item["id"]: item for item in items}
    assert [item["id"] for item in items] == ["apples", "salary", "coins", "pens"]
    assert by_id["apples"]["score"] == 1.0
    assert by_id["apples"]["extracted_answer"] == "7."
    assert by_id["salary"]["score"] == 1.0
    assert by_id["coins"]["score"] == 0.0
    assert by_id["coins"]["extracted_answer"] == "13."
    assert by_id["pens"]["score"] == 0.0
    assert by_id["apples"]["gold"] == "7"


def test_gsm8k_prompt_is_eight_shot_chain_of_thought(tmp_path):
    items = run_task(ScriptedLM(generations=GSM8K_OUTPUTS), "gsm8k", {"temperature": 0.0},
                     write_gsm8k_data(tmp_path), seed=1)
    prompt = items[0]["prompt"]
    assert prompt.count("Q: ") == 9
    assert prompt.count("The answer is") == 8
    assert prompt.endswith("Q: Tom has 3 apples and buys 4 more. How many apples does he have?\nA:")
    assert items[0]["output"] == GSM8K_OUTPUTS["apples"]


POOL = [
    {"id": f"pool-{i}", "question": f"Pool question number {i}?",
     "choices": {"text": [f"answer {i}", "other"], "label": ["A", "B"]}, "answerKey": "A"}
    for i in range(10)
]

ARC_ITEM = {
    "id": "magnet", "question": "Which material does a magnet attract?",
    "choices": {"text": ["wood", "an iron nail"], "label": ["A", "B"]}, "answerKey": "B",
}


def test_arc_acc_and_acc_norm_differ(tmp_path):
    # " wood" is 5 characters at -2.0 (-0.4 per character); " an iron nail" is 13 at
    # -2.6 (-0.2 per character): acc picks A, acc_norm picks B, and B is right.
    test, fewshot = tmp_path / "arc.test.jsonl", tmp_path / "arc.fewshot.jsonl"
    write_jsonl([ARC_ITEM], test)
    write_jsonl(POOL, fewshot)
    model = ScriptedLM(loglikelihoods={" wood": -2.0, " an iron nail": -2.6})
    (item,) = run_task(model, "arc_challenge", {"num_fewshot": 0}, {"test": str(test), "fewshot": str(fewshot)}, seed=1)
    assert item["prompt"] == "Question: Which material does a magnet attract?\nAnswer:"
    assert item["choices"] == [" wood", " an iron nail"]
    assert item["loglikelihoods"] == [-2.0, -2.6]
    assert item["gold"] == 1
    assert item["acc"] == 0.0
    assert item["acc_norm"] == 1.0
    assert item["score"] == 1.0
    assert item["prediction_acc"] == 0
    assert item["prediction_acc_norm"] == 1


def test_arc_fewshot_examples_come_from_pool(tmp_path):
    test, fewshot = tmp_path / "arc.test.jsonl", tmp_path / "arc.fewshot.jsonl"
    write_jsonl([ARC_ITEM], test)
    write_jsonl(POOL, fewshot)
    model = ScriptedLM(loglikelihoods={" wood": -2.0, " an iron nail": -2.6})
    data = {"test": str(test), "fewshot": str(fewshot)}
    first = run_task(model, "arc_challenge", {"num_fewshot": 3}, data, seed=1)[0]["prompt"]
    again = run_task(model, "arc_challenge", {"num_fewshot": 3}, data, seed=1)[0]["prompt"]
    other = run_task(model, "arc_challenge", {"num_fewshot": 3}, data, seed=2)[0]["prompt"]
    assert first.count("Pool question number") == 3
    assert first == again
    assert first != other
    assert first.endswith("Question: Which material does a magnet attract?\nAnswer:")


def test_evaluate_writes_run_file(tiny_model, tmp_path):
    data = write_gsm8k_data(tmp_path)
    output = tmp_path / "run2.json"
    evaluate(tiny_model, "gsm8k", {"temperature": 0.8, "max_tokens": 8}, Path(data["test"]),
             Path(data["fewshot"]), run=2, seed=100, context=2048, threads=1, output=output,
             labels={"model": "tiny", "variant": "base"})
    record = json.loads(output.read_text())
    assert record["model"] == "tiny"
    assert record["run"] == 2
    assert record["seed"] == 101
    assert record["n_items"] == 4
    assert [item["id"] for item in record["items"]] == ["apples", "salary", "coins", "pens"]
    for item in record["items"]:
        assert set(item) >= {"id", "prompt", "output", "extracted_answer", "gold", "score"}
    assert record["mean_score"] == pytest.approx(sum(i["score"] for i in record["items"]) / 4)
    assert not output.with_name("run2.json.tmp").exists()


def test_evaluate_runs_are_reproducible(tiny_model, tmp_path):
    data = write_gsm8k_data(tmp_path)
    outputs = []
    for name in ("a.json", "b.json"):
        evaluate(tiny_model, "gsm8k", {"temperature": 0.8, "max_tokens": 8}, Path(data["test"]),
                 Path(data["fewshot"]), run=1, seed=5, context=2048, threads=1,
                 output=tmp_path / name, labels={})
        outputs.append([item["output"] for item in json.loads((tmp_path / name).read_text())["items"]])
    assert outputs[0] == outputs[1]
