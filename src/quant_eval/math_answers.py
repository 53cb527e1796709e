"""Final answers of competition math solutions: extraction, normalization, equivalence.

Follows the Minerva conventions (Lewkowycz et al., 2022, appendix D) that
lm-evaluation-harness 0.4.13 uses in its `minerva_math` tasks: a generated solution ends
with "Final Answer: The final answer is ANSWER. I hope it is correct.", a reference
solution marks its answer with the last `\\boxed{}`, and both are normalized before they
are compared. Normalized answers that differ as strings are compared with sympy when
both parse as LaTeX; otherwise the string comparison decides.
"""

from __future__ import annotations

import functools
import logging
import re
import signal
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import permutations
from typing import Any, Callable, Iterator

logger = logging.getLogger(__name__)

# How an answer was judged, recorded per item as `decided_by`.
IDENTICAL = "identical"  # the normalized strings are equal
SYMPY = "sympy"  # sympy parsed both answers and decided
STRING = "string"  # sympy could not parse one of them, so the differing strings score 0
NO_ANSWER = "no_answer"  # the generation has no final-answer sentence
DECISIONS = (IDENTICAL, SYMPY, STRING, NO_ANSWER)

SYMPY_TIMEOUT_S = 5.0  # CPU seconds for parsing and simplifying one pair of answers

_FINAL_ANSWER = re.compile(r"Final Answer: The final answer is(.*?)\. I hope it is correct\.", re.DOTALL)

# Unit and filler words dropped from answers, matched as whole words.
_UNIT_WORDS = (
    "square", "ways", "integers", "dollars", "mph", "inches", "ft", "feet", "hours", "minutes",
    "seconds", "km", "cm", "meters", "units", "sq", "points", "digits", "cents", "degrees",
    "pounds", "gm", "students", "edges", "meals", "multiples", "days", "years", "miles",
)
# LaTeX fragments that change the look, not the value, of an answer.
_LAYOUT_FRAGMENTS = (
    r"\left", r"\right", r"\quad", r"\qquad", r"\displaystyle",
    r"^\circ", r"^{\circ}", r"\circ", r"\%", "%", r"\$", "$", r"\ldots", r"\dots", r"\cdots", "{,}",
)
# Commands whose argument is the answer itself.
_UNWRAPPED_COMMANDS = ("boxed", "fbox", "text", "textbf", "textit", "mbox", "mathrm", "mathbf", "overline")


def find_braced(text: str, start: int) -> int | None:
    """Return the index just past the brace group opening at text[start], or None if unbalanced."""
    depth = 0
    for index in range(start, len(text)):
        if text[index] == "{":
            depth += 1
        elif text[index] == "}":
            depth -= 1
            if depth == 0:
                return index + 1
    return None


def last_boxed(text: str) -> str | None:
    """Return the content of the last `\\boxed{...}` (or `\\fbox{...}`), nested braces included."""
    starts = [match.start() for match in re.finditer(r"\\(?:boxed|fbox)\s*\{", text)]
    for start in reversed(starts):
        brace = text.index("{", start)
        end = find_braced(text, brace)
        if end is not None:
            return text[brace + 1:end - 1]
    # `\boxed 5` without braces takes the next token.
    match = None
    for match in re.finditer(r"\\boxed ([^\s$]+)", text):
        pass
    return match.group(1) if match else None


def extract_final_answer(generation: str) -> str | None:
    """Return the answer of a generated solution's first final-answer sentence, or None."""
    # A generation cut off right after the answer lacks the closing phrase; supply it.
    match = _FINAL_ANSWER.search(generation + ". I hope it is correct.")
    if match is None:
        return None
    return match.group(1).strip()


def _unwrap_command(text: str, command: str) -> str:
    """Replace every `\\command{X}` by X."""
    pattern = re.compile(r"\\" + command + r"\s*\{")
    while (match := pattern.search(text)) is not None:
        end = find_braced(text, match.end() - 1)
        if end is None:
            break
        text = text[:match.start()] + text[match.end():end - 1] + text[end:]
    return text


def normalize_answer(answer: str) -> str:
    """Normalize a final answer so that equal answers written differently compare equal as strings.

    Keeps the right-hand side of an equation, drops units, dollar and percent signs,
    degree marks and spacing commands, unwraps \\text{} and similar commands, spells
    \\dfrac and \\tfrac as \\frac, braces shorthand arguments (\\frac12, \\sqrt2) and
    removes thousands separators.
    """
    text = answer.strip()
    # As in Minerva's normalization: an answer with inline math keeps only its first $...$.
    math_span = re.search(r"(?<!\\)\$(.*?)(?<!\\)\$", text)
    if math_span:
        text = math_span.group(1)
    text = text.split("=")[-1]
    text = re.sub(r"\\[dt]frac", r"\\frac", text)
    for command in _UNWRAPPED_COMMANDS:
        text = _unwrap_command(text, command)
    text = re.sub(r"\\(?:text|mbox|mathrm)\s*(?=\w)", "", text)
    # Spacing commands, but not the second backslash of a "\\" line break.
    text = re.sub(r"(?<!\\)\\[!,;: ]", "", text)
    for fragment in _LAYOUT_FRAGMENTS:
        text = text.replace(fragment, "")
    for word in _UNIT_WORDS:
        text = re.sub(rf"(?<![\\A-Za-z]){word}(?![A-Za-z])(?:\^\{{?[23]\}}?)?", "", text)
    text = re.sub(r"^(?:an?|the)\s+", "", text.strip())

    text = re.sub(r"\s+", "", text)
    text = text.rstrip(".")
    text = re.sub(r"\\frac(\d)(\d)", r"\\frac{\1}{\2}", text)
    text = re.sub(r"\\frac\{([^{}]*)\}(\d)", r"\\frac{\1}{\2}", text)
    text = re.sub(r"\\frac(\d)\{", r"\\frac{\1}{", text)
    text = re.sub(r"\\sqrt(\d|[a-zA-Z](?![a-zA-Z]))", r"\\sqrt{\1}", text)
    if re.fullmatch(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?", text):
        text = text.replace(",", "")
    text = re.sub(r"(?<![\d}])\.(?=\d)", "0.", text)  # .25 -> 0.25, which parse_latex reads
    text = re.sub(r"^[A-Za-z]\\in", "", text)  # x\in[-2,7] -> [-2,7]
    text = _matrix_as_tuple(text)
    text = re.sub(r"_\{(\w+)\}", r"_\1", text)  # 52_{8} -> 52_8
    if re.fullmatch(r"-?\d+\.\d*?0+", text):
        # 2.50 and 2.5 are the same number; keep at least one digit after a point.
        text = text.rstrip("0").rstrip(".")
    return text


def _matrix_as_tuple(text: str) -> str:
    """Write a pmatrix or bmatrix as a tuple: a column vector as (a,b), a matrix as ((a,b),(c,d))."""
    match = re.fullmatch(r"\\begin\{([pb])matrix\}(.*)\\end\{\1matrix\}", text)
    if match is None:
        return text
    rows = [row.split("&") for row in match.group(2).split("\\\\")]
    if all(len(row) == 1 for row in rows):
        return "(" + ",".join(row[0] for row in rows) + ")"
    return "(" + ",".join("(" + ",".join(row) + ")" for row in rows) + ")"


@dataclass(frozen=True)
class Judgement:
    """Whether an answer matches the reference, and how that was decided (one of DECISIONS)."""

    correct: bool
    decided_by: str


def _split_top_level(text: str) -> list[str]:
    """Split at commas outside brackets and braces."""
    parts, depth, current = [], 0, []
    for char in text:
        if char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def _bracketed(text: str) -> tuple[str, list[str], str] | None:
    """Return (opening, elements, closing) for a tuple or interval such as (1,2] or \\{1,2\\}."""
    text = text.replace(r"\{", "{").replace(r"\}", "}")
    if len(text) < 2 or text[0] not in "([{" or text[-1] not in ")]}":
        return None
    inner = text[1:-1]
    depth = 0
    for char in inner:
        if char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        if depth < 0:
            return None  # "(1)+(2)": the outer brackets do not enclose the whole text
    elements = _split_top_level(inner)
    if len(elements) < 2:
        return None
    return text[0], elements, text[-1]


@contextmanager
def _cpu_time_limit(seconds: float) -> Iterator[None]:
    """Raise TimeoutError when the block uses more than `seconds` of CPU time (main thread only).

    CPU time rather than wall time, so that a busy machine does not change scores.
    """
    if threading.current_thread() is not threading.main_thread():
        # NOTE: signals reach only the main thread, so elsewhere sympy runs without a limit.
        yield
        return

    def _raise(signum: int, frame: object) -> None:
        raise TimeoutError(f"sympy used more than {seconds} s of CPU time")

    previous = signal.signal(signal.SIGPROF, _raise)
    signal.setitimer(signal.ITIMER_PROF, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.signal(signal.SIGPROF, previous)


@functools.cache
def _latex_parser() -> Callable[[str], Any]:
    """Return sympy's parse_latex, loaded and used once outside any time limit."""
    from sympy.parsing.latex import parse_latex

    # The first call loads the ANTLR grammar, which takes seconds.
    parse_latex("1")
    return parse_latex


def _parse_latex(text: str):  # returns a sympy expression
    import sympy

    parse_latex = _latex_parser()
    if re.search(r"(?<!\\)[A-Za-z]{2,}", re.sub(r"\\[A-Za-z]+", "", text)):
        # Words: parse_latex reads "Monday" as the product M*o*n*d*a*y, so two
        # different words with the same letters would compare equal.
        raise ValueError(f"{text!r} is text, not a formula")
    if "_" in text:
        # Subscripts: parse_latex reads the base-8 number 52_8 as a symbol, not a number.
        raise ValueError(f"{text!r} has a subscript")
    expression = parse_latex(text)
    if not isinstance(expression, sympy.Expr):
        raise ValueError(f"{text!r} is not an expression")  # an equation or inequality
    # parse_latex reads \pi as a plain symbol named pi.
    return expression.subs(sympy.Symbol("pi"), sympy.pi)


def _sympy_equal(first: str, second: str) -> bool | None:
    """Return whether two LaTeX expressions are equal, or None when sympy cannot tell."""
    import sympy

    _latex_parser()
    try:
        with _cpu_time_limit(SYMPY_TIMEOUT_S):
            difference = sympy.simplify(_parse_latex(first) - _parse_latex(second))
            if difference == 0:
                return True
            if difference.is_number:
                return bool(abs(complex(difference.evalf())) < 1e-9)
            return False
    except TimeoutError:
        logger.debug("sympy timed out comparing %r and %r", first, second)
        return None
    except Exception as error:  # noqa: BLE001 - parse_latex and simplify raise many types
        logger.debug("sympy cannot compare %r and %r: %s", first, second, error)
        return None


def _judge_normalized(answer: str, reference: str) -> Judgement:
    if answer == reference:
        return Judgement(True, IDENTICAL)

    if r"\cup" in answer or r"\cup" in reference:
        # Unions of intervals: the same intervals in the same order.
        answer_parts, reference_parts = answer.split(r"\cup"), reference.split(r"\cup")
        if len(answer_parts) == len(reference_parts):
            return _judge_sequence(list(zip(answer_parts, reference_parts)))
        return Judgement(False, STRING)

    answer_brackets, reference_brackets = _bracketed(answer), _bracketed(reference)
    if answer_brackets and reference_brackets:
        # Tuples and intervals: the same brackets and equal elements in order.
        (open_a, elements_a, close_a), (open_r, elements_r, close_r) = answer_brackets, reference_brackets
        if (open_a, close_a) != (open_r, close_r) or len(elements_a) != len(elements_r):
            return Judgement(False, SYMPY if _all_parse(elements_a + elements_r) else STRING)
        return _judge_sequence(list(zip(elements_a, elements_r)))

    answer_list, reference_list = _split_top_level(answer), _split_top_level(reference)
    if len(answer_list) > 1 or len(reference_list) > 1:
        # Lists of solutions, in any order.
        if len(answer_list) != len(reference_list):
            return Judgement(False, SYMPY if _all_parse(answer_list + reference_list) else STRING)
        if len(answer_list) > 6:
            return _judge_sequence(list(zip(answer_list, reference_list)))
        judgements = [_judge_sequence(list(zip(order, reference_list))) for order in permutations(answer_list)]
        correct = [judgement for judgement in judgements if judgement.correct]
        if correct:
            return correct[0]
        return Judgement(False, STRING if any(j.decided_by == STRING for j in judgements) else SYMPY)

    equal = _sympy_equal(answer, reference)
    if equal is None:
        return Judgement(False, STRING)
    return Judgement(equal, SYMPY)


def _all_parse(elements: list[str]) -> bool:
    return all(_sympy_equal(element, element) is not None for element in elements)


def _judge_sequence(pairs: list[tuple[str, str]]) -> Judgement:
    """Judge element pairs. All must match, and the pairs' weakest decision (STRING before SYMPY) is kept."""
    judgements = [_judge_normalized(answer, reference) for answer, reference in pairs]
    correct = all(judgement.correct for judgement in judgements)
    decisions = {judgement.decided_by for judgement in judgements}
    for decided_by in (STRING, SYMPY):
        if decided_by in decisions:
            return Judgement(correct, decided_by)
    return Judgement(correct, IDENTICAL)


def judge_answer(answer: str | None, reference: str) -> Judgement:
    """Judge an extracted final answer against the reference answer.

    None (no final-answer sentence) is wrong. Answers equal after normalization are
    right. Otherwise sympy compares them. When sympy cannot parse one of them, the
    answer is scored wrong, because its normalized string differs from the reference's.
    """
    if answer is None:
        return Judgement(False, NO_ANSWER)
    return _judge_normalized(normalize_answer(answer), normalize_answer(reference))
