"""MATH answer extraction, normalization and equivalence, on answers written for these tests."""

from __future__ import annotations

import pytest

from quant_eval.math_answers import (
    IDENTICAL,
    NO_ANSWER,
    STRING,
    SYMPY,
    extract_final_answer,
    judge_answer,
    last_boxed,
    normalize_answer,
)

# ----------------------------------------------------------------------- extraction


def test_final_answer_sentence_extracted():
    generation = (
        "Adding the two areas gives $12+9=21$.\n"
        "Final Answer: The final answer is $21$. I hope it is correct.\n\nProblem: next"
    )

    assert extract_final_answer(generation) == "$21$"


def test_final_answer_first_sentence_wins():
    generation = (
        "Final Answer: The final answer is $4$. I hope it is correct.\n"
        "Final Answer: The final answer is $5$. I hope it is correct."
    )

    assert extract_final_answer(generation) == "$4$"


def test_final_answer_cut_off_before_closing_phrase():
    # Generation stopped by the token limit right after the answer.
    assert extract_final_answer("So Final Answer: The final answer is $\\frac{7}{3}$") == "$\\frac{7}{3}$"


def test_final_answer_missing():
    assert extract_final_answer("The area is $\\boxed{21}$.") is None


def test_last_boxed_nested_braces():
    solution = "First $\\boxed{3}$, then the area is $\\boxed{\\frac{\\sqrt{3}}{4}x^{2}}$."

    assert last_boxed(solution) == "\\frac{\\sqrt{3}}{4}x^{2}"


def test_last_boxed_fbox_and_unbraced():
    assert last_boxed("so $\\fbox{(1,2)}$") == "(1,2)"
    assert last_boxed("the answer is $\\boxed 7$") == "7"


def test_last_boxed_absent_or_unbalanced():
    assert last_boxed("no box here") is None
    assert last_boxed("$\\boxed{\\frac{1}{2}$") is None


# ----------------------------------------------------------------------- normalization

@pytest.mark.parametrize(("answer", "expected"), [
    ("$x = 14$", "14"),
    ("$13.$ I hope it is correct.", "13"),
    ("$\\frac{3}{4}$ of the cake", "\\frac{3}{4}"),
    ("\\$4.50", "4.5"),
    ("\\text{ 6 inches}", "6"),
    ("12\\text{ cm}^2", "12"),
    ("35^\\circ", "35"),
    ("25\\%", "25"),
    ("\\dfrac{5}{8}", "\\frac{5}{8}"),
    ("\\tfrac38", "\\frac{3}{8}"),
    ("3\\sqrt5", "3\\sqrt{5}"),
    ("12,345", "12345"),
    ("\\left[ -1, 4 \\right)", "[-1,4)"),
    ("-.5", "-0.5"),
    ("x \\in [-2, 7]", "[-2,7]"),
    ("\\begin{pmatrix} 3 \\\\ -1 \\end{pmatrix}", "(3,-1)"),
    ("\\begin{pmatrix} 1 & 2 \\\\ 3 & 4 \\end{pmatrix}", "((1,2),(3,4))"),
    ("\\text{Thursday}", "Thursday"),
    ("\\textbf{(B)}", "(B)"),
])
def test_normalize_answer(answer, expected):
    assert normalize_answer(answer) == expected


def test_normalize_keeps_left_in_commands():
    # "ft" is a unit word, but not inside \left, which the layout rules remove first.
    assert normalize_answer("\\left(2,3\\right)") == "(2,3)"


def test_normalize_tuple_comma_kept():
    assert normalize_answer("(0,125)") == "(0,125)"


# ----------------------------------------------------------------------- equivalence

@pytest.mark.parametrize(("answer", "reference"), [
    ("\\frac{1}{2}", "0.5"),
    ("0.5", "\\dfrac12"),
    ("2\\sqrt{2}", "\\sqrt{8}"),
    ("\\frac{\\sqrt{3}}{3}", "\\frac{1}{\\sqrt{3}}"),
    ("(x+2)^2", "x^2+4x+4"),
    ("\\frac{\\pi}{4}", "\\pi/4"),
    ("\\left(5, \\frac{3}{2}\\right)", "(5, 1.5)"),
    ("[-2, \\frac{7}{2})", "[-2,3.5)"),
    ("(-\\infty, \\sqrt{4}]", "(-\\infty, 2]"),
    (".25", "\\frac14"),
    ("\\begin{pmatrix} 1/2 \\\\ -3 \\end{pmatrix}", "\\begin{pmatrix}0.5\\\\-3\\end{pmatrix}"),
    ("\\begin{bmatrix} 1 & 0 \\\\ 0 & 2/4 \\end{bmatrix}", "\\begin{bmatrix}1&0\\\\0&\\frac12\\end{bmatrix}"),
    ("(-\\infty, 1) \\cup (\\sqrt{9}, \\infty)", "(-\\infty,1)\\cup(3,\\infty)"),
])
def test_equivalent_forms_decided_by_sympy(answer, reference):
    judgement = judge_answer(answer, reference)

    assert judgement.correct
    assert judgement.decided_by == SYMPY


@pytest.mark.parametrize(("answer", "reference"), [
    ("\\$32", "32"),
    ("32 \\text{ dollars}", "32"),
    ("8\\text{ cm}", "8"),
    ("\\text{Thursday}", "Thursday"),
    ("\\dfrac{2}{9}", "\\frac29"),
    ("1,200", "1200"),
    ("x = -3", "-3"),
    ("341_{6}", "341_6"),
    ("-4, 7", "7, -4"),
])
def test_equivalent_forms_identical_after_normalization(answer, reference):
    judgement = judge_answer(answer, reference)

    assert judgement.correct
    assert judgement.decided_by == IDENTICAL


@pytest.mark.parametrize(("answer", "reference"), [
    ("\\frac{1}{3}", "0.33"),
    ("2\\sqrt{3}", "\\sqrt{8}"),
    ("-5", "5"),
    ("(2, 3)", "[2, 3)"),
    ("(3, 2)", "(2, 3)"),
    ("(1, 2, 3)", "(1, 2)"),
    ("x^2+1", "(x+1)^2"),
    ("1, 2", "1, 2, 3"),
    ("\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", "\\begin{pmatrix} 2 \\\\ 1 \\end{pmatrix}"),
    ("(-\\infty, 1] \\cup (3, \\infty)", "(-\\infty,1)\\cup(3,\\infty)"),
])
def test_wrong_answers_score_zero_by_sympy(answer, reference):
    judgement = judge_answer(answer, reference)

    assert not judgement.correct
    assert judgement.decided_by == SYMPY


@pytest.mark.parametrize(("answer", "reference"), [
    ("\\text{Tuesday}", "Thursday"),
    # Anagrams: sympy would read both as the same product of single-letter symbols.
    ("\\text{Mira}", "\\text{Rima}"),
    ("x \\le 3", "x < 3"),
    ("61_8", "52_8"),
    ("52_8+1", "52_{8}"),
    ("(-\\infty, 1) \\cup (3, \\infty)", "(-\\infty, 1)"),
])
def test_unparsable_answers_fall_back_to_strings(answer, reference):
    judgement = judge_answer(answer, reference)

    assert not judgement.correct
    assert judgement.decided_by == STRING


def test_unparsable_identical_answers_are_correct():
    judgement = judge_answer("x \\le 3", "x\\le3")

    assert judgement.correct
    assert judgement.decided_by == IDENTICAL


def test_missing_answer_scores_zero():
    judgement = judge_answer(None, "7")

    assert not judgement.correct
    assert judgement.decided_by == NO_ANSWER
