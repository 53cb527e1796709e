"""Two-number addition, answered in one short completion and scored by exact match."""

import re

# Scores are 0 or 1; "graded" allows any real number.
SCORE_KIND = "binary"
# Generation settings; the config keys `max_tokens` and `temperature` override them.
MAX_TOKENS = 8
STOP = ["\n"]

EXAMPLES = "Q: What is 2 plus 3?\nA: 5\n\nQ: What is 10 plus 4?\nA: 14\n\n"


def prompt(item: dict) -> str:
    """Return the text the model continues: two worked examples, then the item's question."""
    return f"{EXAMPLES}Q: What is {item['a']} plus {item['b']}?\nA:"


def score(item: dict, completion: str) -> float:
    """Return 1.0 when the first number of the completion is the sum, else 0.0."""
    match = re.search(r"-?\d+", completion)
    return 1.0 if match and int(match.group()) == item["a"] + item["b"] else 0.0
