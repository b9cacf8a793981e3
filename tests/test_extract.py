"""Answer extraction and normalisation."""

from __future__ import annotations

import pytest

from agentfab import Task
from agentfab.answers import answer_format_for, extract_answer

MC = Task(prompt="q", choices=["Paris", "London", "Rome", "Berlin"])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Answer: B", "B"),
        ("The answer is (C).", "C"),
        ("**Answer: D**", "D"),
        ("A) Paris, because...", "A"),
        ("I think it is B", None),  # "I" is a word here, not option I
        ("A good guess would be London", "B"),  # not option A: the option named is London
        ("I answered this before. Rome", "C"),  # "answered" is no answer marker
        ("B", "B"),
        ("(c)", None),  # lower-case letters are words, not options
        ("Let me think.\nC. Rome\nbecause", "C"),
        ("Final answer: London", "B"),  # the option's text names exactly one option
        ("Paris or London?", None),  # two options named: no answer
        ("Answer: E", None),  # not one of the four options
        ("", None),
    ],
)
def test_letters(text: str, expected: str | None) -> None:
    assert extract_answer(text, "letter", MC) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Answer: 42", "42"),
        ("12 + 7 = 19", "19"),
        ("The total is 1,234 apples", "1234"),
        ("Answer: 3/4", "0.75"),
        ("Answer: 12.0", "12"),
        ("answer = -5, not 7", "-5"),
        ("no digits here", None),
    ],
)
def test_numbers(text: str, expected: str | None) -> None:
    assert extract_answer(text, "number") == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Answer: Paris", "paris"),
        ("Answer: The Eiffel Tower.", "eiffel tower"),
        ("Paris. It is the capital of France.", "paris"),
        ("  **Jupiter**  ", "jupiter"),
        ("The answer is: Mount Everest!", "mount everest"),
    ],
)
def test_short_answers(text: str, expected: str) -> None:
    assert extract_answer(text, "short") == expected


def test_auto_format_follows_the_task() -> None:
    assert answer_format_for(MC) == "letter"
    assert answer_format_for(Task(prompt="q")) == "short"
    assert answer_format_for(MC, "number") == "number"
