"""The llama-cpp-python backend against log-probabilities computed directly from logits."""

from __future__ import annotations

import numpy as np
import pytest
from llama_cpp import Llama
from lm_eval.api.instance import Instance

from quant_eval.evaluation.backend import KV_CACHE_TYPES, LlamaCppLM, log_softmax

PAIRS = [
    ("Question: What is two plus two?\nAnswer:", " four"),
    ("Question: What is two plus two?\nAnswer:", " five hundred and six"),
    ("The capital of France is", " Paris."),
    ("Question: What is two plus two?\nAnswer: ", "4"),  # trailing space moves to the continuation
]


def loglikelihood_request(context: str, continuation: str, doc_id: int = 0) -> Instance:
    return Instance("loglikelihood", doc={}, arguments=(context, continuation), idx=0,
                    metadata=("test", doc_id, 1))


def generation_request(context: str, gen_kwargs: dict, doc_id: int) -> Instance:
    return Instance("generate_until", doc={}, arguments=(context, gen_kwargs), idx=0,
                    metadata=("test", doc_id, 1))


def reference_llama(model_path) -> Llama:
    """Load the model as the backend does by default, with an F32 KV cache."""
    kv_type = KV_CACHE_TYPES["f32"]
    return Llama(model_path=str(model_path), n_ctx=512, logits_all=True, type_k=kv_type, type_v=kv_type,
                 verbose=False)


def reference_loglikelihood(model_path, context: str, continuation: str) -> tuple[float, bool]:
    """Score a continuation with a fresh model and no cache: one forward pass over all tokens."""
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces:
        context, continuation = context[:-n_spaces], context[-n_spaces:] + continuation
    llama = reference_llama(model_path)
    whole = llama.tokenize((context + continuation).encode(), add_bos=True)
    n_context = len(llama.tokenize(context.encode(), add_bos=True))
    llama.eval(whole)
    total, greedy = 0.0, True
    for position in range(n_context, len(whole)):
        log_probs = log_softmax(np.array(llama.scores[position - 1]))
        total += log_probs[whole[position]]
        greedy = greedy and int(np.argmax(log_probs)) == whole[position]
    return total, greedy


@pytest.fixture(scope="module")
def backend(tiny_model):
    return LlamaCppLM(tiny_model, context=512, threads=1, seed=7)


def test_log_softmax_sums_to_one():
    probabilities = np.exp(log_softmax(np.array([1.0, 2.0, 3.0, -40.0])))
    assert probabilities.sum() == pytest.approx(1.0, abs=1e-12)
    assert probabilities[2] == pytest.approx(np.exp(3) / (np.exp(1) + np.exp(2) + np.exp(3) + np.exp(-40)))


def test_loglikelihood_matches_direct_computation(backend, tiny_model):
    results = backend.loglikelihood([loglikelihood_request(c, x) for c, x in PAIRS])
    for (context, continuation), (value, greedy) in zip(PAIRS, results):
        expected, expected_greedy = reference_loglikelihood(tiny_model, context, continuation)
        assert value == pytest.approx(expected, abs=1e-4), (context, continuation)
        assert greedy == expected_greedy


def test_loglikelihood_independent_of_order(backend):
    """The reused prefix cache must never leak one request's state into the next."""
    forward = backend.loglikelihood([loglikelihood_request(c, x) for c, x in PAIRS])
    backward = backend.loglikelihood([loglikelihood_request(c, x) for c, x in reversed(PAIRS)])
    for (value, _), (reversed_value, _) in zip(forward, reversed(backward)):
        assert value == pytest.approx(reversed_value, abs=1e-5)


def test_loglikelihood_is_negative_sum(backend):
    (value, _), = backend.loglikelihood([loglikelihood_request("Hello", " world, and more words")])
    (first, _), = backend.loglikelihood([loglikelihood_request("Hello", " world,")])
    (rest, _), = backend.loglikelihood([loglikelihood_request("Hello world,", " and more words")])
    assert value < 0
    assert value == pytest.approx(first + rest, abs=1e-4)


def test_rolling_loglikelihood_matches_token_sum(backend, tiny_model):
    text = "One two three four five six seven eight nine ten."
    (value,) = backend.loglikelihood_rolling([Instance("loglikelihood_rolling", {}, (text,), 0, ("test", 0, 1))])
    llama = reference_llama(tiny_model)
    tokens = [llama.token_bos()] + llama.tokenize(text.encode(), add_bos=False)
    llama.eval(tokens)
    expected = sum(log_softmax(np.array(llama.scores[i - 1]))[tokens[i]] for i in range(1, len(tokens)))
    assert value == pytest.approx(expected, abs=1e-4)


def test_greedy_generation_is_deterministic(backend):
    gen_kwargs = {"until": ["\n\n"], "do_sample": False, "max_gen_toks": 12}
    first = backend.generate_until([generation_request("Q: Count to five.\nA:", gen_kwargs, doc_id=0)])
    second = backend.generate_until([generation_request("Q: Count to five.\nA:", gen_kwargs, doc_id=3)])
    assert first == second


def test_sampling_seeded_per_item(backend):
    gen_kwargs = {"until": [], "do_sample": True, "temperature": 1.0, "max_gen_toks": 16}
    prompt = "Q: Name some colors.\nA:"
    items = [generation_request(prompt, gen_kwargs, doc_id=i) for i in range(4)]
    forward = backend.generate_until(items)
    backward = backend.generate_until(list(reversed(items)))
    assert forward == list(reversed(backward))
    assert len(set(forward)) > 1


def test_generation_stops_at_stop_string(backend):
    gen_kwargs = {"until": ["e"], "do_sample": True, "temperature": 1.0, "max_gen_toks": 64}
    outputs = backend.generate_until([generation_request("Say:", gen_kwargs, doc_id=i) for i in range(5)])
    for output in outputs:
        assert "e" not in output
