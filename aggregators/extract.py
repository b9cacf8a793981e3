"""Finding the answer in a model's text, and normalising it so equal answers compare equal."""

from __future__ import annotations

import re
from fractions import Fraction

from agentfab.messages import Task

FORMATS = ("letter", "number", "short", "text")

_MARKER = re.compile(r"\b(?:final\s+answer|answer)\b\s*(?:is|:|=|-)?\s*:?\s*(.+)", re.IGNORECASE)
# The same with the separator required, searched overlapping (see _marker_tails).
_STRICT_MARKER = re.compile(r"\b(?:final\s+answer|answer)\b\s*(?:is|:|=|-)\s*:?\s*(.+)", re.I)
_NUMBER = re.compile(r"[-+]?\d[\d,]*(?:\.\d+)?(?:/\d+)?|[-+]?\.\d+")
_ARTICLE = re.compile(r"^(?:the|a|an)\s+", re.IGNORECASE)
# After "Answer:" a letter may be followed by anything ("B, because ..."), bracketed or
# quoted ("[B]", "'C'") or called an option ("option (D)"); at the start of a line it must
# stand alone or be marked as an option ("C. Rome", "(B)"), so that "I think..." or
# "A good guess..." are not read as options I and A.
_OPTION_WORD = r"(?:(?i:option|choice)\s*)?"
_LETTER_AFTER_MARKER = re.compile(
    rf"^{_OPTION_WORD}[(\['\"]?\s*([A-Z])\s*[)\]'\"]?(?:[.,:;!?]|\s|$)"
)
# A lower-case letter after a marker counts only alone or in brackets ("answer: b.",
# "answer: (c) Rome"): "the answer is a guess" names no option.
_LOWER_LETTER_AFTER_MARKER = re.compile(
    rf"^{_OPTION_WORD}(?:\(([a-z])\)|[\['\"]?([a-z])[)\]'\"]?[.!?]?$)"
)
_LETTER_LINE = re.compile(r"^\(?([A-Z])(?:[.):]|\s*$)")
_LETTER_ALONE = re.compile(r"^\(?([A-Z])\)?[.:]?$")
# Models trained on maths wrap answers in LaTeX: "$\boxed{C}$".
_BOXED = re.compile(r"\$*\\boxed\{([^{}]*)\}\$*")


def answer_format_for(task: Task, requested: str = "auto") -> str:
    """`auto` means letters for multiple choice, short answers otherwise."""
    if requested != "auto":
        return requested
    return "letter" if task.choices else "short"


def extract_answer(text: str, fmt: str, task: Task | None = None) -> str | None:
    """The normalised answer in `text`, or None when there is none."""
    text = _strip_markup(text)
    if not text:
        return None
    if fmt == "letter":
        return _letter(text, task.choices if task else None)
    if fmt == "number":
        return _number(text)
    if fmt == "short":
        return _short(text)
    return normalise_text(text) or None


def normalise_text(text: str) -> str:
    """Lower case, no surrounding punctuation or quotes, single spaces, no leading article."""
    text = " ".join(text.lower().split())
    text = text.strip(" \t.,;:!?\"'`()[]")
    return _ARTICLE.sub("", text)


def _strip_markup(text: str) -> str:
    text = _BOXED.sub(r"\1", text)
    return text.replace("**", "").replace("__", "").strip()


def _after_marker(text: str) -> str | None:
    matches = list(_MARKER.finditer(text))
    return matches[-1].group(1).strip() if matches else None


def _letter(text: str, choices: list[str] | None) -> str | None:
    letters = [chr(ord("A") + i) for i in range(len(choices) if choices else 10)]
    marked = _after_marker(text)
    for tail in [*_marker_tails(text), *([marked] if marked else [])]:
        letter = _marked_letter(tail)
        if letter in letters:
            return letter
    letter = _letter_line(text, letters)
    if letter:
        return letter
    return _choice_named(text, choices, letters) if choices else None


def _marker_tails(text: str) -> list[str]:
    """What follows each "answer is" / "answer:", last first.

    Overlapping, because one marker's tail may hold another: a reply that revises itself
    ("Answer: B. Actually, the answer is C") or restates ("## Answer\nThe answer is C")
    means its last one.
    """
    tails: list[str] = []
    pos = 0
    while found := _STRICT_MARKER.search(text, pos):
        tails.append(found.group(1).strip())
        pos = found.start() + 1
    return tails[::-1]


def _marked_letter(marked: str) -> str | None:
    found = _LETTER_AFTER_MARKER.match(marked) or _LOWER_LETTER_AFTER_MARKER.match(marked)
    return next((g.upper() for g in found.groups() if g), None) if found else None


def _letter_line(text: str, letters: list[str]) -> str | None:
    """The letter of a line that is only a letter, else of option-marked lines if they agree.

    A reply that repeats every option ("A) Paris\nB) London ...") marks several letters
    and so names none.
    """
    alone: set[str] = set()
    marked: set[str] = set()
    for line in text.splitlines():
        found = _LETTER_LINE.match(line.strip())
        if found and found.group(1) in letters:
            is_alone = _LETTER_ALONE.match(line.strip())
            (alone if is_alone else marked).add(found.group(1))
    named = alone or marked
    return named.pop() if len(named) == 1 else None


def _choice_named(text: str, choices: list[str], letters: list[str]) -> str | None:
    """The letter of the one option whose text appears in the answer, if exactly one does."""
    said = normalise_text(_after_marker(text) or text)
    named = [
        letter for letter, c in zip(letters, choices, strict=False) if normalise_text(c) in said
    ]
    return named[0] if len(named) == 1 else None


def _number(text: str) -> str | None:
    marked = _after_marker(text)
    found = _NUMBER.findall(marked) if marked else []
    if not found:
        found = _NUMBER.findall(text)[-1:]
    return _canonical_number(found[0]) if found else None


def _canonical_number(raw: str) -> str | None:
    try:
        value = Fraction(raw.replace(",", ""))
    except (ValueError, ZeroDivisionError):
        return None
    if value.denominator == 1:
        return str(value.numerator)
    return f"{float(value):.6g}"


def _short(text: str) -> str | None:
    marked = _after_marker(text)
    line = marked if marked else next(ln for ln in text.splitlines() if ln.strip())
    line = line.splitlines()[0] if line else line
    # A sentence after the answer ("Paris. It is the capital...") is not the answer.
    line = re.split(r"(?<=[a-z0-9])\.\s", line, maxsplit=1)[0]
    answer = normalise_text(line)
    return answer[:100] or None
