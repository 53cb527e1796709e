"""Scoring the ELYZA-tasks-100 answers with a judge model, from 1 to 5 per answer.

The judge is an OpenAI-compatible chat endpoint or a local GGUF run by llama-cpp-python.
Every verdict keeps the judge's raw text. A verdict without a parseable score is asked
again, up to `attempts` times, and then recorded with `parsed: false` and `score: null`:
such items are left out of the mean and of the statistics (quant_eval.comparison), and
counted in the reports.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
import unicodedata
import urllib.error
import urllib.request
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

from ..errors import ConfigError, QuantEvalError
from ..evaluation.backend import request_seed
from ..files import write_json
from .chat import chat_completion, load_chat_model, template_sha256
from .generation import read_items

logger = logging.getLogger(__name__)

PROMPT_VERSION = "elyza_judge_v1"
JUDGE_KEY = "benchmarks.elyza_tasks_100.judge"
# Transport failures (connection refused, timeouts, HTTP 429 and 5xx) are retried this
# many times per request, with waits of 1, 2, 4 ... seconds, before the stage fails.
TRANSPORT_TRIES = 4


class JudgeError(QuantEvalError):
    """The judge endpoint or model failed to return a verdict."""


# ----------------------------------------------------------------------- prompt and parsing

def load_prompt(version: str = PROMPT_VERSION) -> str:
    """Return the judge prompt template of `version`, a file in the package's prompts folder."""
    path = resources.files("quant_eval").joinpath("prompts", f"{version}.txt")
    if not path.is_file():
        raise ConfigError(f"judge prompt {version!r} not found in quant_eval/prompts (key {JUDGE_KEY}.prompt_version)")
    return path.read_text(encoding="utf-8")


def render_prompt(template: str, item: dict[str, Any]) -> str:
    """Fill the template's {{question}}, {{reference}}, {{eval_aspect}} and {{answer}} fields."""
    values = {
        "question": item["input"],
        "reference": item["reference"],
        "eval_aspect": item["eval_aspect"],
        "answer": item["output"],
    }
    # One pass over the template, so that braces inside an answer are never substituted.
    return re.sub(r"\{\{(question|reference|eval_aspect|answer)\}\}", lambda m: values[m.group(1)], template)


# A score after a label ("評価: 4", "Score: 5/5"); a denominator other than 5 is rejected.
_LABELLED_SCORE = re.compile(
    r"(?:評価|評点|点数|スコア|score|rating)\s*[:=]?\s*([1-5])(?![0-9]|\.[0-9])(?:\s*/\s*([0-9]+))?",
    re.IGNORECASE,
)
_POINTS_SCORE = re.compile(r"(?<![0-9.])([1-5])\s*点")  # "3点"
_BARE_SCORE = re.compile(r"^\s*([1-5])\s*$")  # the whole text is the score


def parse_score(text: str) -> int | None:
    """Return the 1-5 score a judge's text gives, or None when it gives none.

    Full-width digits and colons are normalized first (NFKC). A labelled score wins over
    "N点", which wins over a bare digit; among several, the last one counts, because the
    prompt asks for the score on the last line.
    """
    text = unicodedata.normalize("NFKC", text or "")
    labelled = [m for m in _LABELLED_SCORE.finditer(text) if m.group(2) in (None, "5")]
    if labelled:
        return int(labelled[-1].group(1))
    points = list(_POINTS_SCORE.finditer(text))
    if points:
        return int(points[-1].group(1))
    bare = _BARE_SCORE.match(text)
    return int(bare.group(1)) if bare else None


# ----------------------------------------------------------------------- judges

class Judge(Protocol):
    # True when a repeated request returns the same text, so a retry cannot help.
    deterministic: bool

    def complete(self, prompt: str, seed: int) -> str:
        """Return the judge's text for one prompt."""


@dataclass
class OpenAIJudge:
    """A chat model behind an OpenAI-compatible endpoint (`POST {base_url}/chat/completions`)."""

    base_url: str
    model: str
    api_key: str | None
    temperature: float
    max_tokens: int
    timeout: float
    # Endpoints need not be deterministic even at temperature 0 (batching, seeds ignored).
    deterministic: bool = False

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        url = self.base_url.rstrip("/") + "/chat/completions"
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(url, data=json.dumps(body).encode("utf-8"), headers=headers, method="POST")
        for attempt in range(1, TRANSPORT_TRIES + 1):
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    return json.loads(response.read().decode("utf-8"))
            except urllib.error.HTTPError as error:
                retryable = error.code == 429 or error.code >= 500
                problem = f"HTTP {error.code} {error.reason}"
            except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
                retryable = True
                problem = f"{type(error).__name__}: {getattr(error, 'reason', error)}"
            except json.JSONDecodeError as error:
                retryable = False
                problem = f"the response is not JSON ({error})"
            if not retryable or attempt == TRANSPORT_TRIES:
                raise JudgeError(
                    f"judge endpoint {url} failed: {problem}; check {JUDGE_KEY}.base_url, .model and the "
                    "API key in the environment variable named by .api_key_env"
                )
            logger.warning("judge endpoint %s failed (%s); try %d of %d in %d s", url, problem, attempt + 1,
                           TRANSPORT_TRIES, 2 ** (attempt - 1))
            time.sleep(2 ** (attempt - 1))
        raise AssertionError("unreachable")

    def complete(self, prompt: str, seed: int) -> str:
        response = self._post({
            "model": self.model,
            "messages": [{"role": "user", "content": prompt}],
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "seed": seed,
        })
        try:
            return response["choices"][0]["message"]["content"] or ""
        except (KeyError, IndexError, TypeError) as error:
            raise JudgeError(f"judge endpoint {self.base_url} returned no choices[0].message.content") from error


class LlamaCppJudge:
    """A local GGUF judge run in this process by llama-cpp-python, with the GGUF's chat template."""

    def __init__(self, model_path: Path, context: int, threads: int, temperature: float, max_tokens: int) -> None:
        self.model = load_chat_model(model_path, context, threads, seed=0)
        self.temperature = temperature
        self.max_tokens = max_tokens
        # Greedy decoding of the same prompt gives the same text, whatever the seed.
        self.deterministic = temperature == 0

    def complete(self, prompt: str, seed: int) -> str:
        try:
            completion = chat_completion(self.model, prompt, self.max_tokens, self.temperature, seed)
        except ValueError as error:  # llama-cpp-python's error for a prompt longer than the context
            raise JudgeError(f"local judge failed: {error}; raise {JUDGE_KEY}.context") from error
        return completion["choices"][0]["message"]["content"] or ""


def judge_model_path(settings: dict[str, Any]) -> Path:
    """Return the GGUF file of a llama_cpp judge: a path, or embedded:NAME."""
    from ..base_model import resolve_source

    return resolve_source(settings["model"])


def judge_identity(settings: dict[str, Any]) -> dict[str, Any]:
    """Return what identifies a judge's verdicts: name, backend, model, prompt version and decoding.

    The API key is never part of it; only the name of its environment variable is configured.
    """
    version = settings.get("prompt_version", PROMPT_VERSION)
    identity = {
        "name": settings["name"],
        "backend": settings["backend"],
        "model": settings["model"],
        "prompt_version": version,
        "prompt_sha256": hashlib.sha256(load_prompt(version).encode("utf-8")).hexdigest(),
        "temperature": float(settings.get("temperature", 0.0)),
        "max_tokens": int(settings.get("max_tokens", 512)),
    }
    if settings["backend"] == "openai":
        identity["base_url"] = settings["base_url"]
    return identity


def build_judge(settings: dict[str, Any], threads: int) -> tuple[Judge, dict[str, Any]]:
    """Return the judge the settings describe and its identity."""
    identity = judge_identity(settings)
    temperature = identity["temperature"]
    max_tokens = identity["max_tokens"]
    if settings["backend"] == "openai":
        if not settings.get("base_url"):
            raise ConfigError(f"{JUDGE_KEY}.base_url is missing; give the endpoint, e.g. https://host/v1")
        api_key = None
        variable = settings.get("api_key_env")
        if variable:
            api_key = os.environ.get(variable)
            if not api_key:
                raise ConfigError(
                    f"environment variable {variable} (named by {JUDGE_KEY}.api_key_env) is not set; "
                    "export the judge endpoint's API key in it"
                )
        judge: Judge = OpenAIJudge(settings["base_url"], settings["model"], api_key, temperature, max_tokens,
                                   float(settings.get("timeout", 300)))
    elif settings["backend"] == "llama_cpp":
        path = judge_model_path(settings)
        judge = LlamaCppJudge(path, int(settings.get("context", 4096)), threads, temperature, max_tokens)
        identity["chat_template_sha256"] = template_sha256(judge.model)
    else:
        raise ConfigError(f"{JUDGE_KEY}.backend is {settings['backend']!r}; choose openai or llama_cpp")
    return judge, identity


# ----------------------------------------------------------------------- the judging stage

def judge_item(judge: Judge, prompt: str, attempts: int, seed: int) -> dict[str, Any]:
    """Ask the judge up to `attempts` times until its text contains a score; keep every text.

    A deterministic judge is asked once: a retry would return the same text.
    """
    texts = []
    score = None
    for attempt in range(1 if judge.deterministic else attempts):
        text = judge.complete(prompt, request_seed(seed, 0, attempt))
        texts.append(text)
        score = parse_score(text)
        if score is not None:
            break
    return {"score": score, "parsed": score is not None, "attempts": len(texts), "judge_outputs": texts}


def verdict_record(answers: dict[str, Any], items: list[dict[str, Any]], identity: dict[str, Any],
                   attempts: int) -> dict[str, Any]:
    """Return the per-run result file's content; unparsed items are excluded from `mean_score`."""
    scores = [item["score"] for item in items if item["parsed"]]
    labels = {key: answers[key] for key in ("model", "variant") if key in answers}
    return {
        **labels,
        "benchmark": answers["benchmark"],
        "task": "elyza_tasks_100",
        "metric": "judge_score",
        "filter": None,
        "run": answers["run"],
        "seed": answers["seed"],
        "settings": answers["settings"],
        "judge": {**identity, "attempts": attempts},
        "n_items": len(items),
        "n_parsed": len(scores),
        "n_unparsed": len(items) - len(scores),
        "mean_score": sum(scores) / len(scores) if scores else None,
        "items": items,
    }


def judge_answers(answers_file: Path, settings: dict[str, Any], threads: int, output: Path) -> dict[str, Any]:
    """Score every answer of `answers_file` with the configured judge and write the per-run result file."""
    answers = json.loads(Path(answers_file).read_text(encoding="utf-8"))
    attempts = int(settings.get("attempts", 3))
    judge, identity = build_judge(settings, threads)
    template = load_prompt(identity["prompt_version"])
    logger.info("judging %d answers of %s with %s (%s, %s)", len(answers["items"]), answers_file,
                identity["name"], identity["backend"], identity["model"])

    items = []
    for index, answer in enumerate(answers["items"]):
        prompt = render_prompt(template, answer)
        verdict = judge_item(judge, prompt, attempts, request_seed(answers["seed"], index))
        if not verdict["parsed"]:
            logger.warning("item %s: no score in %d judge outputs; recorded as unparsed", answer["id"],
                           verdict["attempts"])
        items.append({
            "id": answer["id"],
            "prompt": answer["input"],
            "gold": answer["reference"],
            "eval_aspect": answer["eval_aspect"],
            "output": answer["output"],
            **verdict,
        })
        logger.info("verdicts: %d of %d", index + 1, len(answers["items"]))

    record = verdict_record(answers, items, identity, attempts)
    write_json(record, output, indent=1)
    logger.info("elyza_tasks_100 run %d: judge score %s over %d parsed verdicts, %d unparsed; written to %s",
                record["run"], f"{record['mean_score']:.3f}" if record["mean_score"] is not None else "n/a",
                record["n_parsed"], record["n_unparsed"], output)
    return record
