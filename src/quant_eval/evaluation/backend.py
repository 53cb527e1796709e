"""An lm-evaluation-harness model over llama-cpp-python, in the same process.

The harness's own `gguf` model talks to a llama.cpp server, and it has been reported to
return wrong log-likelihoods against current servers. This backend computes them from
the logits of the loaded model directly.
"""

from __future__ import annotations

import logging
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from lm_eval.api.instance import Instance
from lm_eval.api.model import LM
from lm_eval.utils import get_rolling_token_windows, make_disjoint_window

logger = logging.getLogger(__name__)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    logits = logits.astype(np.float64)
    shifted = logits - logits.max()
    return shifted - np.log(np.exp(shifted).sum())


def request_seed(run_seed: int, doc_id: int, repeat: int = 0) -> int:
    """Derive the sampling seed of one request, independent of the order requests run in."""
    return zlib.crc32(f"{run_seed}:{doc_id}:{repeat}".encode()) & 0x7FFFFFFF


# GGML type numbers of the KV cache types that llama-cpp-python's `type_k`/`type_v` take.
KV_CACHE_TYPES = {"f32": 0, "f16": 1}


@dataclass(frozen=True)
class PairScore:
    """The tokens of a context/continuation pair and each continuation token's log-probability."""

    context_tokens: list[int]
    continuation_tokens: list[int]
    log_probs: list[float]  # natural log, one per continuation token
    greedy: bool  # every continuation token is the most likely one at its position


class LlamaCppLM(LM):
    """Log-likelihoods and generations from a GGUF model loaded with llama-cpp-python.

    Sampling at temperature > 0 is seeded per request from `seed` and the item's doc_id,
    so a run is reproducible whatever order the harness sends requests in.

    The KV cache is F32 by default, unlike llama.cpp's F16 default. Against transformers
    on the same F32 weights (tests/test_hf_conversion.py), an F16 cache moved per-token
    log-likelihoods by up to 0.014 nats on a random-weight llama and 0.0085 nats on
    SmolLM2-135M, and an F32 cache by at most 4e-5.
    """

    def __init__(self, model_path: Path, context: int = 2048, threads: int = 2, seed: int = 0,
                 batch_size: int = 512, gpu_layers: int = 0, kv_cache_type: str = "f32") -> None:
        super().__init__()
        if kv_cache_type not in KV_CACHE_TYPES:
            raise ValueError(f"kv_cache_type must be one of {', '.join(KV_CACHE_TYPES)}, not {kv_cache_type!r}")
        self.model_path = Path(model_path)
        self.context = context
        self.threads = threads
        self.seed = seed
        self.batch_size = batch_size
        # Layers offloaded to a GPU; -1 offloads all. A CPU-only build ignores it.
        self.gpu_layers = gpu_layers
        self.kv_cache_type = kv_cache_type
        self._models: dict[bool, Any] = {}

    def _model(self, logits_all: bool) -> Any:
        # Log-likelihoods need the logits of every position, generation only the last;
        # keeping all of them costs n_ctx x n_vocab floats and a slower decode.
        if logits_all not in self._models:
            from llama_cpp import Llama

            self._models.clear()
            self._models[logits_all] = Llama(
                model_path=str(self.model_path), n_ctx=self.context, n_batch=self.batch_size,
                n_threads=self.threads, n_threads_batch=self.threads, logits_all=logits_all,
                seed=self.seed, n_gpu_layers=self.gpu_layers, type_k=KV_CACHE_TYPES[self.kv_cache_type],
                type_v=KV_CACHE_TYPES[self.kv_cache_type], verbose=False,
            )
        return self._models[logits_all]

    def tokenize(self, text: str, add_bos: bool) -> list[int]:
        # Both model instances share one vocabulary, so whichever is loaded will do.
        model = next(iter(self._models.values())) if self._models else self._model(logits_all=True)
        return model.tokenize(text.encode("utf-8"), add_bos=add_bos, special=False)

    # ----------------------------------------------------------------- log-likelihood

    def _encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        # Trailing spaces of the context belong to the continuation's first token in most
        # BPE vocabularies. Tokenizing the joined text and splitting after the context's
        # tokens keeps the continuation tokens as the model would see them.
        n_spaces = len(context) - len(context.rstrip())
        if n_spaces:
            continuation = context[-n_spaces:] + continuation
            context = context[:-n_spaces]
        whole = self.tokenize(context + continuation, add_bos=True)
        context_tokens = self.tokenize(context, add_bos=True)
        if whole[: len(context_tokens)] != context_tokens:
            # The merge crossed the boundary; fall back to separate tokenization.
            return context_tokens, self.tokenize(continuation, add_bos=False)
        return context_tokens, whole[len(context_tokens):]

    def _score_tokens(self, context_tokens: list[int], continuation_tokens: list[int]) -> tuple[float, bool]:
        log_probs, greedy = self._token_log_probs(context_tokens, continuation_tokens)
        return float(sum(log_probs)), greedy

    def _token_log_probs(self, context_tokens: list[int],
                         continuation_tokens: list[int]) -> tuple[list[float], bool]:
        model = self._model(logits_all=True)
        tokens = context_tokens + continuation_tokens
        if not continuation_tokens:
            return [], True
        if len(tokens) > self.context:
            # Keep the end: the continuation and as much context as fits.
            tokens = tokens[-self.context:]
        first_scored = len(tokens) - len(continuation_tokens)

        # Reuse the evaluated prefix shared with the previous request (the same question
        # with another answer choice); at least the last token is evaluated again.
        cached = model.input_ids[: model.n_tokens].tolist()
        prefix = 0
        limit = min(len(cached), len(tokens) - 1, max(first_scored - 1, 0))
        while prefix < limit and cached[prefix] == tokens[prefix]:
            prefix += 1
        model.n_tokens = prefix
        model.eval(tokens[prefix:])

        values = []
        greedy = True
        for offset, token in enumerate(continuation_tokens):
            position = first_scored - 1 + offset
            log_probs = log_softmax(model.scores[position])
            values.append(float(log_probs[token]))
            greedy = greedy and int(np.argmax(log_probs)) == token
        return values, greedy

    def score_pair(self, context: str, continuation: str) -> PairScore:
        """Tokenize a context/continuation pair as `loglikelihood` does and score each continuation token."""
        if context == "":
            context_tokens = [self._model(True).token_bos()]
            continuation_tokens = self.tokenize(continuation, add_bos=False)
        else:
            context_tokens, continuation_tokens = self._encode_pair(context, continuation)
        log_probs, greedy = self._token_log_probs(context_tokens, continuation_tokens)
        return PairScore(context_tokens, continuation_tokens, log_probs, greedy)

    def loglikelihood(self, requests: list[Instance], disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        results = []
        for index, request in enumerate(requests):
            score = self.score_pair(*request.args)
            results.append((float(sum(score.log_probs)), score.greedy))
            if (index + 1) % 200 == 0:
                logger.info("log-likelihood requests: %d of %d", index + 1, len(requests))
        return results

    def loglikelihood_rolling(self, requests: list[Instance], disable_tqdm: bool = False) -> list[float]:
        """Return the log-likelihood of whole texts, scored in disjoint windows of the context size."""
        results = []
        bos = self._model(logits_all=True).token_bos()
        for request in requests:
            (text,) = request.args
            windows = map(
                make_disjoint_window,
                get_rolling_token_windows(
                    token_list=self.tokenize(text, add_bos=False), prefix_token=bos,
                    max_seq_len=self.context, context_len=1,
                ),
            )
            results.append(sum(self._score_tokens(list(c), list(t))[0] for c, t in windows))
        return results

    # ----------------------------------------------------------------- generation

    def generate_until(self, requests: list[Instance], disable_tqdm: bool = False) -> list[str]:
        model = self._model(logits_all=False)
        outputs = []
        seen: dict[int, int] = {}  # requests per doc_id so far: repeats get their own seed
        for index, request in enumerate(requests):
            context, gen_kwargs = request.args
            repeat = seen[request.doc_id] = seen.get(request.doc_id, -1) + 1
            until = gen_kwargs.get("until") or []
            if isinstance(until, str):
                until = [until]
            temperature = float(gen_kwargs.get("temperature", 0.0))
            if not gen_kwargs.get("do_sample", temperature > 0):
                temperature = 0.0
            max_tokens = int(gen_kwargs.get("max_gen_toks", 256))

            # A prompt longer than the context loses its start, as in the harness's own models.
            prompt_tokens = self.tokenize(context, add_bos=True)
            max_prompt = self.context - max_tokens
            if len(prompt_tokens) > max_prompt:
                prompt_tokens = prompt_tokens[-max_prompt:]
            completion = model.create_completion(
                prompt=prompt_tokens,
                max_tokens=max_tokens,
                temperature=temperature,
                # Plain temperature sampling: no top-k, top-p or min-p truncation.
                top_k=0, top_p=1.0, min_p=0.0, repeat_penalty=1.0,
                stop=until or None,
                seed=request_seed(self.seed, request.doc_id, repeat),
            )
            outputs.append(completion["choices"][0]["text"])
            if (index + 1) % 10 == 0:
                logger.info("generations: %d of %d", index + 1, len(requests))
        return outputs
