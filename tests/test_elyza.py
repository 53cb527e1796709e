"""ELYZA-tasks-100: data reading, answers with the chat template, and the judge stage.

The data is read from the copy beside the checkout (../shared/data/elyza-tasks-100, or the
folder in QUANT_EVAL_SHARED_DIR); the project holds no copy. The judge runs on a real
OpenAI-compatible server, llama-cpp-python's, serving the tiny random-weight model on
loopback. A random-weight judge writes no score, which exercises retries and unparsed
verdicts; the parser is checked on hand-written judge texts.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import jinja2
import pytest

from quant_eval.benchmarks import get_benchmark, select_subset, unavailable_benchmarks
from quant_eval.cli import main
from quant_eval.comparison import build_comparison
from quant_eval.elyza.data import ATTRIBUTION, read_tasks, task_id
from quant_eval.elyza.generation import generate_answers
from quant_eval.elyza.judge import (
    PROMPT_VERSION,
    JudgeError,
    judge_answers,
    load_prompt,
    parse_score,
    render_prompt,
    verdict_record,
)
from quant_eval.elyza.chat import load_chat_model
from quant_eval.errors import ConfigError, InvalidDataError, InvalidModelError
from quant_eval.files import write_json
from quant_eval.reporting import write_analysis_report, write_methodology
from quant_eval.reporting.notes import benchmark_notes
from quant_eval.reporting.scorecard import scorecard_markdown
from quant_eval.reporting.sections import escape_markdown
from quant_eval.reporting.results import ResultIndex
from quant_eval.statistics import analyze

API_KEY = "sk-test-4f1c9d2e-not-a-real-key"
KEY_VARIABLE = "QUANT_EVAL_TEST_JUDGE_KEY"


def raw_records(path: Path, count: int) -> list[dict]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line, _ in zip(handle, range(count))]


# ----------------------------------------------------------------------- data

def test_read_tasks_renamed_fields(elyza_data):
    tasks = read_tasks(elyza_data)
    first = raw_records(elyza_data, 1)[0]
    assert len(tasks) == 100
    assert [t["id"] for t in tasks[:2]] == ["elyza-tasks-100-000", "elyza-tasks-100-001"]
    assert tasks[0]["input"] == first["input_text"]
    assert tasks[0]["output"] == first["output_text"]
    assert tasks[0]["eval_aspect"] == first["eval_aspect"]
    assert len({t["id"] for t in tasks}) == 100


def test_read_tasks_hub_field_names(elyza_data, tmp_path):
    records = raw_records(elyza_data, 3)
    hub = tmp_path / "hub.jsonl"
    hub.write_text("".join(
        json.dumps({"input": r["input_text"], "output": r["output_text"], "eval_aspect": r["eval_aspect"]},
                   ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    assert read_tasks(hub) == read_tasks(elyza_data)[:3]


@pytest.mark.parametrize("naming", [("input", "output"), ("input_text", "output_text")])
def test_read_tasks_csv(elyza_data, tmp_path, naming):
    records = raw_records(elyza_data, 3)
    path = tmp_path / "tasks.csv"
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([*naming, "eval_aspect"])
        for r in records:  # the texts hold newlines, which CSV quotes
            writer.writerow([r["input_text"], r["output_text"], r["eval_aspect"]])
    assert read_tasks(path) == read_tasks(elyza_data)[:3]


def test_missing_data_file_error(tmp_path):
    with pytest.raises(InvalidDataError, match=r"not found: .*missing\.jsonl \(config key benchmarks\.elyza_tasks_100\.data\)"):
        read_tasks(tmp_path / "missing.jsonl")


def test_wrong_fields_error(tmp_path):
    path = tmp_path / "other.jsonl"
    path.write_text(json.dumps({"question": "q", "answer": "a"}) + "\n", encoding="utf-8")
    with pytest.raises(InvalidDataError, match="has the fields answer, question; expected input/output/eval_aspect"):
        read_tasks(path)


def test_benchmark_data_cli_subset(elyza_data, tmp_path):
    test_file = tmp_path / "elyza.test.jsonl"
    status = main(["benchmark-data", "--benchmark", "elyza_tasks_100", "--limit", "4", "--seed", "7",
                   "--test-output", str(test_file), "--fewshot-output", str(tmp_path / "pool.jsonl"),
                   "--data", str(elyza_data)])
    items = [json.loads(line) for line in test_file.read_text(encoding="utf-8").splitlines()]
    expected = [task_id(i) for i in select_subset(100, 4, 7, "elyza_tasks_100")]
    assert status == 0
    assert [item["id"] for item in items] == expected
    assert (tmp_path / "pool.jsonl").read_text() == ""


def test_data_path_rejected_by_packaged_benchmark():
    with pytest.raises(ConfigError, match="gsm8k reads its items from a PyPI package"):
        get_benchmark("gsm8k").with_data(Path("x.jsonl"))


def elyza_config(**settings) -> dict:
    judge = {"name": "j", "backend": "llama_cpp", "model": "embedded:smollm2-135m-instruct"}
    return {"benchmarks": {"gsm8k": {}, "elyza_tasks_100": {"judge": judge, **settings}}}


def test_optional_without_data_not_run():
    reasons = unavailable_benchmarks(elyza_config(optional=True))
    assert list(reasons) == ["elyza_tasks_100"]
    assert "set benchmarks.elyza_tasks_100.data" in reasons["elyza_tasks_100"]


def test_optional_missing_file_not_run(tmp_path):
    reasons = unavailable_benchmarks(elyza_config(optional=True, data=str(tmp_path / "none.csv")))
    assert reasons == {"elyza_tasks_100": f"data file {tmp_path / 'none.csv'} not found "
                                          "(config key benchmarks.elyza_tasks_100.data)"}


def test_required_without_data_stops():
    with pytest.raises(ConfigError, match="benchmark elyza_tasks_100 cannot run: data not available"):
        unavailable_benchmarks(elyza_config())


def test_available_data_and_download_run(elyza_data):
    assert unavailable_benchmarks(elyza_config(data=str(elyza_data))) == {}
    assert unavailable_benchmarks(elyza_config(download=True)) == {}


# ----------------------------------------------------------------------- prompt and parser

@pytest.mark.parametrize("text, expected", [
    ("回答は要求を満たしている。\n評価: 4", 4),
    ("評価：５", 5),  # full-width colon and digit
    ("Score: 5/5", 5),
    ("Score: 4/10", None),  # another scale is not a 1-5 score
    ("よく書けているので3点です。", 3),
    ("5点満点中2点", 2),
    ("評価基準に沿っている。\n評価: 2", 2),
    ("Rating: 1", 1),
    ("3", 3),
    ("評価: 7", None),
    ("評価: 4.5", None),
    ("kitsscribed tablets Elimresearch agro", None),
    ("", None),
])
def test_parse_score_cases(text, expected):
    assert parse_score(text) == expected


def test_prompt_holds_every_field():
    item = {"input": "問題文A", "reference": "模範解答B", "eval_aspect": "- 基準C", "output": "回答 {{answer}} D"}
    prompt = render_prompt(load_prompt(PROMPT_VERSION), item)
    for text in ("問題文A", "模範解答B", "- 基準C", "回答 {{answer}} D", "評価: 数字"):
        assert text in prompt
    assert prompt.count("{{") == 1  # only the one inside the answer, left as written


# ----------------------------------------------------------------------- answers and judge

@pytest.fixture(scope="module")
def answers_file(elyza_data, tiny_model, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("elyza")
    test_file = folder / "elyza.test.jsonl"
    test_file.write_text("".join(json.dumps(t, ensure_ascii=False) + "\n" for t in read_tasks(elyza_data)[:2]),
                         encoding="utf-8")
    output = folder / "answers" / "run1.json"
    generate_answers(tiny_model, test_file, {"temperature": 0.7, "max_tokens": 24}, run=1, seed=5, context=2048,
                     threads=1, output=output, labels={"model": "tiny", "variant": "base"})
    return output


def test_answers_use_chat_template(answers_file, tiny_model, elyza_data):
    from llama_cpp import Llama

    answers = json.loads(answers_file.read_text(encoding="utf-8"))
    model = Llama(model_path=str(tiny_model), n_ctx=256, verbose=False, vocab_only=True)
    template = jinja2.Environment().from_string(model.metadata["tokenizer.chat_template"])
    tasks = read_tasks(elyza_data)
    assert answers["n_items"] == 2
    assert answers["seed"] == 5
    for item, task in zip(answers["items"], tasks):
        rendered = template.render(messages=[{"role": "user", "content": task["input"]}], add_generation_prompt=True)
        expected_tokens = model.tokenize(rendered.encode("utf-8"), add_bos=False, special=True)
        assert rendered.startswith("<|im_start|>")
        assert item["prompt_tokens"] == len(expected_tokens)
        assert item["reference"] == task["output"]
        assert 0 < item["completion_tokens"] <= 24
        assert item["output"]


def test_answer_independent_of_other_items(answers_file, tiny_model, tmp_path):
    first = json.loads(answers_file.read_text(encoding="utf-8"))
    item = first["items"][0]
    test_file = tmp_path / "one.jsonl"
    task = {"id": item["id"], "input": item["input"], "output": item["reference"], "eval_aspect": item["eval_aspect"]}
    test_file.write_text(json.dumps(task, ensure_ascii=False) + "\n", encoding="utf-8")
    again = generate_answers(tiny_model, test_file, first["settings"], run=1, seed=5, context=2048, threads=1,
                             output=tmp_path / "again.json", labels={})
    other_run = generate_answers(tiny_model, test_file, first["settings"], run=2, seed=5, context=2048, threads=1,
                                 output=tmp_path / "other.json", labels={})
    assert again["items"][0]["output"] == item["output"]  # sampled at temperature 0.7 with the item's own seed
    assert other_run["items"][0]["output"] != item["output"]


def test_model_without_chat_template_rejected(tiny_model_without_chat_template):
    with pytest.raises(InvalidModelError, match="no-template.gguf has no chat template"):
        load_chat_model(tiny_model_without_chat_template, context=256, threads=1, seed=0)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def judge_server(tiny_model, tmp_path_factory):
    """llama-cpp-python's OpenAI-compatible server on loopback, with the tiny model and an API key."""
    port = free_port()
    log = tmp_path_factory.mktemp("server") / "server.log"
    with log.open("w") as handle:
        process = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--model", str(tiny_model), "--host", "127.0.0.1",
             "--port", str(port), "--api_key", API_KEY, "--n_ctx", "4096", "--n_threads", "1"],
            stdout=handle, stderr=subprocess.STDOUT,
        )
    base_url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 90
    while True:
        try:
            urllib.request.urlopen(f"{base_url}/models", timeout=2)
            break
        except urllib.error.HTTPError:
            break  # 401 without the key: the server is up
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"llama_cpp.server did not start: {log.read_text()[-2000:]}")
            time.sleep(0.5)
    yield base_url
    process.terminate()
    process.wait(timeout=30)


def endpoint_judge(base_url: str, attempts: int = 2) -> dict:
    return {"name": "tiny-endpoint", "backend": "openai", "base_url": base_url, "model": "tiny",
            "api_key_env": KEY_VARIABLE, "temperature": 1.0, "max_tokens": 24, "attempts": attempts}


@pytest.fixture(scope="module")
def judged_run(answers_file, judge_server, tmp_path_factory):
    """The judge-answers stage run through the CLI, with its log captured in a file."""
    folder = tmp_path_factory.mktemp("judged")
    output = folder / "runs" / "run1.json"
    log = folder / "judge.log"
    handler = logging.FileHandler(log, encoding="utf-8")
    handler.setLevel(logging.DEBUG)
    root = logging.getLogger()
    root.addHandler(handler)
    previous_level = root.level
    root.setLevel(logging.DEBUG)
    os.environ[KEY_VARIABLE] = API_KEY
    try:
        status = main(["-v", "judge-answers", "--answers", str(answers_file),
                       "--judge", json.dumps(endpoint_judge(judge_server)), "--output", str(output)])
    finally:
        del os.environ[KEY_VARIABLE]
        root.removeHandler(handler)
        root.setLevel(previous_level)
        handler.close()
    assert status == 0, log.read_text()
    return output, log


def test_judge_unparsed_after_retries(judged_run):
    run = json.loads(judged_run[0].read_text(encoding="utf-8"))
    assert run["n_items"] == 2
    assert run["n_unparsed"] == 2
    assert run["mean_score"] is None
    for item in run["items"]:
        assert item["parsed"] is False
        assert item["score"] is None
        assert item["attempts"] == 2
        assert len(item["judge_outputs"]) == 2
        assert all(isinstance(text, str) and text for text in item["judge_outputs"])


def test_judge_identity_recorded(judged_run, judge_server):
    run = json.loads(judged_run[0].read_text(encoding="utf-8"))
    judge = run["judge"]
    assert judge["name"] == "tiny-endpoint"
    assert judge["backend"] == "openai"
    assert judge["base_url"] == judge_server
    assert judge["prompt_version"] == PROMPT_VERSION
    assert judge["attempts"] == 2
    assert run["model"] == "tiny"
    assert run["variant"] == "base"
    assert run["metric"] == "judge_score"


def test_api_key_never_written(judged_run, answers_file):
    output, log = judged_run
    assert "judge score n/a over 0 parsed verdicts, 2 unparsed" in log.read_text(encoding="utf-8")
    for path in (output, log, answers_file):
        assert API_KEY not in path.read_text(encoding="utf-8"), path


def test_wrong_api_key_fails_clearly(answers_file, judge_server, tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_VARIABLE, "sk-wrong-key-0000")
    with pytest.raises(JudgeError, match=r"HTTP 401 .*api_key_env") as error:
        judge_answers(answers_file, endpoint_judge(judge_server), threads=1, output=tmp_path / "run1.json")
    assert "sk-wrong-key-0000" not in str(error.value)
    assert not (tmp_path / "run1.json").exists()


def test_unset_key_variable_fails(answers_file, judge_server, tmp_path, monkeypatch):
    monkeypatch.delenv(KEY_VARIABLE, raising=False)
    with pytest.raises(ConfigError, match=f"environment variable {KEY_VARIABLE} .* is not set"):
        judge_answers(answers_file, endpoint_judge(judge_server), threads=1, output=tmp_path / "run1.json")


def test_greedy_local_judge_asked_once(answers_file, tiny_model, tmp_path):
    settings = {"name": "tiny-local", "backend": "llama_cpp", "model": str(tiny_model), "temperature": 0.0,
                "max_tokens": 8, "attempts": 3}
    run = judge_answers(answers_file, settings, threads=1, output=tmp_path / "run1.json")
    assert [item["attempts"] for item in run["items"]] == [1, 1]
    assert run["n_unparsed"] == 2


def test_local_gguf_judge(answers_file, tiny_model, tmp_path):
    settings = {"name": "tiny-local", "backend": "llama_cpp", "model": str(tiny_model), "temperature": 0.8,
                "max_tokens": 16, "attempts": 3, "context": 4096}
    run = judge_answers(answers_file, settings, threads=1, output=tmp_path / "run1.json")
    assert run["judge"]["backend"] == "llama_cpp"
    assert len(run["judge"]["chat_template_sha256"]) == 64
    assert [item["attempts"] for item in run["items"]] == [3, 3]
    assert all(len(set(item["judge_outputs"])) > 1 for item in run["items"])  # each attempt has its own seed


# ----------------------------------------------------------------------- comparison and reports

def hand_verdicts(answers: dict, scores: list[int | None]) -> list[dict]:
    return [
        {"id": a["id"], "prompt": a["input"], "gold": a["reference"], "eval_aspect": a["eval_aspect"],
         "output": a["output"], "score": s, "parsed": s is not None, "attempts": 1 if s else 3,
         "judge_outputs": [f"評価: {s}" if s else "わかりません"]}
        for a, s in zip(answers["items"], scores)
    ]


def test_compare_reads_judged_runs(judged_run, answers_file, tmp_path):
    endpoint_run = json.loads(judged_run[0].read_text(encoding="utf-8"))
    answers = json.loads(answers_file.read_text(encoding="utf-8"))
    identity = {key: value for key, value in endpoint_run["judge"].items() if key != "attempts"}
    runs = []
    for variant, scores in (("base", [4, 2]), ("q8_0", [3, None])):
        record = verdict_record({**answers, "variant": variant}, hand_verdicts(answers, scores), identity, 2)
        runs.append(tmp_path / f"{variant}.json")
        write_json(record, runs[-1])
    info = tmp_path / "info.json"
    write_json({"source": "tiny", "base_type": "F16", "grid_limited": False, "note": "random weights"}, info)
    audit = tmp_path / "audit.json"
    write_json({"file_size_bytes": 1, "n_parameters": 1, "bits_per_weight": 16.0, "tensor_types": {},
                "fallback_tensors": []}, audit)
    config = {"models": {"tiny": {}}, "quantizations": ["q8_0"], "reference": "base",
              "benchmarks": {"elyza_tasks_100": {}, "gsm8k": {}}}

    comparison = build_comparison(config, {"tiny": info}, {("tiny", "base"): audit, ("tiny", "q8_0"): audit},
                                  runs, not_run={"gsm8k": "hand-written reason"})
    benchmark = comparison["benchmarks"]["elyza_tasks_100"]
    assert list(comparison["benchmarks"]) == ["elyza_tasks_100"]
    assert comparison["not_run"] == {"gsm8k": "hand-written reason"}
    assert benchmark["score_kind"] == "graded"
    assert benchmark["unparsed"] == {"tiny": {"q8_0": 1}}
    assert benchmark["judge"]["prompt_version"] == PROMPT_VERSION
    assert comparison["scores"]["tiny"]["base"]["elyza_tasks_100"] == {"elyza-tasks-100-000": [4], "elyza-tasks-100-001": [2]}
    assert comparison["scores"]["tiny"]["q8_0"]["elyza_tasks_100"] == {"elyza-tasks-100-000": [3]}

    analysis = analyze(comparison)
    means = {r["variant"]: r["mean"] for r in analysis["results"]}
    assert means == {"base": pytest.approx(3.0), "q8_0": pytest.approx(3.0)}

    notes = "\n".join(benchmark_notes(ResultIndex.build(comparison, analysis)))
    assert "`gsm8k` was not run: hand-written reason." in notes
    assert "`tiny`/`q8_0` 1" in notes
    assert "ELYZA-tasks-100 by ELYZA, Inc., licensed under CC BY-SA 4.0" in notes
    assert "CC BY-SA 4.0" in ATTRIBUTION

    config.update(runs=1, seed=3, benchmarks={"elyza_tasks_100": {"limit": 2, "temperature": 0.0}},
                  imatrix={"calibration": ["a.txt"], "context": 64, "chunks": 1, "batch_size": 64})
    write_analysis_report(config, comparison, analysis, tmp_path / "report.md")
    write_methodology(config, comparison, analysis, tmp_path / "methodology.md")
    report = (tmp_path / "report.md").read_text(encoding="utf-8")
    methodology = (tmp_path / "methodology.md").read_text(encoding="utf-8")
    assert "| `base` | 3.000 [" in report
    assert "`gsm8k` was not run: hand-written reason." in report
    assert "ELYZA-tasks-100 by ELYZA, Inc., licensed under CC BY-SA 4.0" in report
    assert "Metric: `judge_score` (graded), the judge model's score from 1 to 5" in methodology
    assert "ELYZA-tasks-100 by ELYZA, Inc., licensed under CC BY-SA 4.0" in methodology
    scorecard = scorecard_markdown(config, ResultIndex.build(comparison, analysis), "charts")
    assert "`gsm8k` was not run: hand-written reason." in scorecard
    assert "ELYZA-tasks-100 by ELYZA, Inc., licensed under CC BY-SA 4.0" in scorecard


def write_verdicts(answers: dict, folder: Path, runs: dict[int, list[int | None]]) -> list[Path]:
    identity = {"name": "hand", "backend": "openai", "model": "m", "prompt_version": PROMPT_VERSION}
    paths = []
    for run, scores in runs.items():
        paths.append(folder / f"run{run}.json")
        write_json(verdict_record({**answers, "run": run}, hand_verdicts(answers, scores), identity, 3), paths[-1])
    return paths


def test_compare_drops_items_unparsed_in_a_run(answers_file, tmp_path):
    answers = json.loads(answers_file.read_text(encoding="utf-8"))
    runs = write_verdicts(answers, tmp_path, {1: [5, 2], 2: [4, None]})
    config = {"models": {}, "quantizations": ["q8_0"], "benchmarks": {"elyza_tasks_100": {}}}
    comparison = build_comparison(config, {}, {}, runs)
    assert comparison["scores"]["tiny"]["base"]["elyza_tasks_100"] == {"elyza-tasks-100-000": [5, 4]}
    assert comparison["benchmarks"]["elyza_tasks_100"]["unparsed"] == {"tiny": {"base": 1}}


def test_compare_judge_without_scores_reported(answers_file, tmp_path):
    answers = json.loads(answers_file.read_text(encoding="utf-8"))
    runs = write_verdicts(answers, tmp_path, {1: [None, None]})
    other = write_verdicts({**answers, "variant": "q8_0"}, tmp_path / "q8_0", {1: [3, 4]})
    config = {"models": {}, "quantizations": ["q8_0"], "benchmarks": {"elyza_tasks_100": {}}}
    comparison = build_comparison(config, {}, {}, runs + other)
    reason = comparison["not_scored"]["elyza_tasks_100"]
    assert reason.startswith("the judge 'hand' gave no parseable score to any answer of tiny/base (2 unparsed")
    assert comparison["benchmarks"] == {}
    assert comparison["scores"] == {"tiny": {"base": {}, "q8_0": {}}}
    notes = benchmark_notes(ResultIndex.build(comparison, analyze(comparison)))
    assert notes[0] == f"- `elyza_tasks_100` has no scores: {escape_markdown(reason)}."
    assert "CC BY-SA 4.0" in notes[1]


def test_compare_rejects_mixed_judges(answers_file, tmp_path):
    answers = json.loads(answers_file.read_text(encoding="utf-8"))
    runs = []
    for index, name in enumerate(("judge-a", "judge-b")):
        identity = {"name": name, "backend": "openai", "model": name, "prompt_version": PROMPT_VERSION}
        record = verdict_record({**answers, "run": index + 1}, hand_verdicts(answers, [4, 4]), identity, 1)
        runs.append(tmp_path / f"run{index + 1}.json")
        write_json(record, runs[-1])
    config = {"models": {}, "quantizations": ["q8_0"], "benchmarks": {"elyza_tasks_100": {}}}
    with pytest.raises(InvalidDataError, match="was judged by 'judge-b'.*delete the stale run files"):
        build_comparison(config, {}, {}, runs)
