"""A suite of your own: a function that returns the records a .jsonl suite would hold.

    agentfab eval examples/star.yaml --suite examples.my_suite:arithmetic

Each record is `{question, choices, answer}` (answer: an index, a letter or the correct
option's text), GPQA's fields, or a HumanEval problem; agentfab checks them as it checks a
file's lines, shuffles the options with the run's seed and identifies the suite by the
hash of its records.
"""

from __future__ import annotations

from typing import Any


def arithmetic() -> list[dict[str, Any]]:
    """Sums a small model gets right most of the time."""
    records = []
    for a, b in [(2, 3), (4, 4), (7, 1), (6, 3), (5, 5)]:
        right = a + b
        options = [str(right), str(right + 1), str(right - 2), str(right + 3)]
        question = f"What is {a} + {b}?"
        records.append({"id": f"{a}+{b}", "question": question, "choices": options, "answer": 0})
    return records
