"""build_comparison: score kinds, item groups and MATH's answer-judgement counts, on run files written here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from quant_eval.comparison import build_comparison
from quant_eval.errors import InvalidDataError

CONFIG = {
    "models": {"tiny": {"source": "tiny.gguf"}},
    "quantizations": ["q8_0"],
    "without_imatrix": [],
    "benchmarks": {"gsm8k": {}, "math": {}},
}


def write(path: Path, record: dict) -> Path:
    path.write_text(json.dumps(record), encoding="utf-8")
    return path


def run_file(folder: Path, variant: str, benchmark: str, run: int, items: list[dict]) -> Path:
    record = {"model": "tiny", "variant": variant, "benchmark": benchmark, "run": run,
              "n_items": len(items), "items": items}
    return write(folder / f"{variant}-{benchmark}-{run}.json", record)


def math_items(decided_by: list[str], levels: tuple[str, str] = ("Level 1", "Level 4")) -> list[dict]:
    return [
        {"id": "m1", "score": float(decided_by[0] in ("identical", "sympy")), "decided_by": decided_by[0],
         "groups": {"subject": "Algebra", "level": levels[0]}},
        {"id": "m2", "score": 0.0, "decided_by": decided_by[1],
         "groups": {"subject": "Geometry", "level": levels[1]}},
    ]


def inputs(folder: Path) -> tuple[dict, dict]:
    base_infos = {"tiny": write(folder / "info.json", {"source": "tiny.gguf", "base_type": "F16",
                                                       "grid_limited": False, "note": ""})}
    audit = {"file_size_bytes": 1, "n_parameters": 1, "bits_per_weight": 16.0, "tensor_types": {},
             "fallback_tensors": []}
    audits = {("tiny", variant): write(folder / f"{variant}.audit.json", audit) for variant in ("base", "q8_0")}
    return base_infos, audits


@pytest.fixture
def comparison(tmp_path) -> dict:
    runs = [
        run_file(tmp_path, "base", "gsm8k", 1, [{"id": "g1", "score": 1.0}]),
        run_file(tmp_path, "base", "math", 1, math_items(["sympy", "string"])),
        run_file(tmp_path, "q8_0", "gsm8k", 1, [{"id": "g1", "score": 0.0}]),
        run_file(tmp_path, "q8_0", "math", 1, math_items(["identical", "no_answer"])),
        run_file(tmp_path, "q8_0", "math", 2, math_items(["string", "string"])),
    ]
    return build_comparison(CONFIG, *inputs(tmp_path), runs)


def test_score_kind_copied_from_benchmark(comparison):
    assert comparison["benchmarks"]["gsm8k"]["score_kind"] == "binary"
    assert comparison["benchmarks"]["math"]["score_kind"] == "binary"


def test_item_groups_collected(comparison):
    assert comparison["benchmarks"]["math"]["item_groups"] == {
        "subject": {"m1": "Algebra", "m2": "Geometry"},
        "level": {"m1": "Level 1", "m2": "Level 4"},
    }


def test_item_groups_empty_without_groups(comparison):
    assert comparison["benchmarks"]["gsm8k"]["item_groups"] == {}


def test_decided_by_counted_per_variant(comparison):
    assert comparison["benchmarks"]["math"]["decided_by"] == {
        "tiny": {
            "base": {"sympy": 1, "string": 1},
            "q8_0": {"identical": 1, "no_answer": 1, "string": 2},
        }
    }
    assert "decided_by" not in comparison["benchmarks"]["gsm8k"]


def test_scores_ordered_by_run(comparison):
    assert comparison["scores"]["tiny"]["q8_0"]["math"] == {"m1": [1.0, 0.0], "m2": [0.0, 0.0]}


def test_conflicting_groups_rejected(tmp_path):
    runs = [
        run_file(tmp_path, "base", "math", 1, math_items(["sympy", "sympy"])),
        run_file(tmp_path, "q8_0", "math", 1, math_items(["sympy", "sympy"], levels=("Level 2", "Level 4"))),
    ]

    with pytest.raises(InvalidDataError) as caught:
        build_comparison({**CONFIG, "benchmarks": {"math": {}}}, *inputs(tmp_path), runs)

    assert "item m1 has level 'Level 2'" in str(caught.value)
    assert "'Level 1'" in str(caught.value)
