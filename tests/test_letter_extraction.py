"""Letters from realistic multiple-choice replies (the forms small and large models write)."""

from __future__ import annotations

import pytest

from agentfab import Task, extract_answer

MC = Task(prompt="Capital of Italy?", choices=["Paris", "London", "Rome", "Berlin"])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # an explicit marker
        ("Answer: B", "B"),
        ("ANSWER: D", "D"),
        ("The answer is (C).", "C"),
        ("The correct answer is B.", "B"),
        ("The answer is D!", "D"),
        ("My answer: C", "C"),
        ("Answer - D", "D"),
        ("Answer: (A)", "A"),
        ("Answer: [B]", "B"),
        ("Answer: 'C'", "C"),
        ("Answer: C. Rome", "C"),
        ("The answer is: B) London", "B"),
        ("Answer: Option C", "C"),
        ("The answer is option (B).", "B"),
        ("Answer:\nB", "B"),
        # markup
        ("**D**", "D"),
        ("**Answer:** B", "B"),
        ("Final Answer: **C**", "C"),
        ("The final answer is $\\boxed{B}$", "B"),
        ("\\boxed{C}", "C"),
        # lower case after a marker, with trailing punctuation
        ("answer: c", "C"),
        ("Answer: b.", "B"),
        ("the answer is c)", "C"),
        ("answer: (d)", "D"),
        ("answer is b", "B"),
        # a letter on its own line, or an option with its text
        ("B) Paris", "B"),  # the letter, not the text, is the choice
        ("(B) London", "B"),
        ("B.", "B"),
        ("Let me think.\nC. Rome\nbecause it is the capital.", "C"),
        # something after the answer
        ("Answer: C\nConfidence: 0.8", "C"),
        ("Answer: B\nExplanation: A is wrong since Paris is in France.", "B"),
        ("Answer: D, because the others are not in Italy", "D"),
        # reasoning that names other letters first
        (
            "Option A is wrong, Paris is in France. Option B is London, also wrong. So the answer is C.",
            "C",
        ),
        ("Let me think step by step. A is Paris, which is wrong. The answer is B, London.", "B"),
        # a reply that restates or revises itself means its last answer
        ("## Answer\nThe answer is C", "C"),
        ("Answer: The answer is C", "C"),
        ("Answer: B. Actually, the answer is C.", "C"),
        ("Answer: C, because the answer is not A", "C"),
        # the option's text instead of its letter
        ("Answer: Rome", "C"),
        ("It must be Rome.", "C"),
        # no answer
        ("A) Paris\nB) London\nC) Rome\nD) Berlin", None),  # repeating every option picks none
        ("I don't know.", None),
        ("Hmm, hard to say without more context.", None),
        ("Answer: E", None),  # not one of the four
        ("the answer is a guess at best", None),  # "a" is a word here
        ("b", None),  # a lone lower-case letter, no marker
        # Without a marker a lower-case letter is read as a word, as in test_extract's
        # "I think it is B": the extractor prefers no answer to a wrong one.
        ("I think it's b", None),
        ("", None),
    ],
)
def test_letter_from_reply(text: str, expected: str | None) -> None:
    assert extract_answer(text, "letter", MC) == expected


def test_letters_without_the_choices() -> None:
    assert extract_answer("The answer is (C).", "letter") == "C"
    assert extract_answer("A) Paris\nB) London", "letter") is None
