"""What a reply says: its answer, normalised so equal answers compare equal, and how sure it is.

The orchestrator reads every agent's reply here; aggregators read their judges' and
writers' replies here too. Nothing here calls a model or decides between agents.

One rule for every format: a reply's answer is its last explicit commitment — "Answer: C",
"the correct option is C", "C is correct", "I'd choose C", "\\boxed{42}" — leaving out the
negated ones ("the answer is not D"). Where a reply commits explicitly to nothing, a weaker
form may still name its answer: a line that is only an option's letter, the one option whose
text it states, a result ("= 19"), a sentence that restates the question ("The capital of
France is Paris"). Otherwise there is no answer, and `find_answer` says why: never a guess.

A confidence is the model's own statement ("Confidence: 0.8", "80%", "4/5") or the
geometric-mean probability of the tokens of its answer (`logprob_confidence`).

The rules are measured against a labelled corpus of real and typical replies
(benchmarks/data/extraction_corpus.jsonl, benchmarks/extraction.py).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

from agentfab.llm import TokenLogprob
from agentfab.messages import Task

FORMATS = ("letter", "number", "short", "text")


@dataclass(frozen=True)
class Extraction:
    """An answer, or the reason there is none."""

    answer: str | None
    reason: str | None = None
    """Why no answer was read (None when there is one)."""


def answer_format_for(task: Task, requested: str = "auto") -> str:
    """`auto` means letters for multiple choice, short answers otherwise."""
    if requested != "auto":
        return requested
    return "letter" if task.choices else "short"


def extract_answer(text: str, fmt: str, task: Task | None = None) -> str | None:
    """The normalised answer in `text`, or None when there is none."""
    return find_answer(text, fmt, task).answer


def find_answer(text: str, fmt: str, task: Task | None = None) -> Extraction:
    """The normalised answer in `text`, or why there is none."""
    text = _clean(text)
    if not text:
        return Extraction(None, "empty reply")
    if fmt == "letter":
        return _letter(text, task.choices if task else None)
    if fmt == "number":
        return _number(text)
    if fmt == "short":
        return _short(text, task.prompt if task else "")
    answer = normalise_text(text)
    return Extraction(answer) if answer else Extraction(None, "empty reply")


def normalise_text(text: str) -> str:
    """Lower case, no surrounding punctuation or quotes, single spaces, no leading article."""
    text = " ".join(text.lower().split())
    text = text.strip(" \t.,;:!?\"'`()[]*")
    text = _SYMBOLS.sub("", text)  # emoji and bullets around an answer
    return _ARTICLE.sub("", text)


# ---- cleaning: markup that hides the answer ------------------------------------------------

_ARTICLE = re.compile(r"^(?:the|a|an)\s+", re.IGNORECASE)
_SYMBOLS = re.compile(r"^[^\w\s(+\-$€£.]+\s*|\s*[^\w\s).%°$€£]+$")
_BOXED = re.compile(r"\\boxed\s*\{((?:[^{}]|\{[^{}]*\})*)\}")
_LATEX_WRAP = re.compile(r"\\(?:text|textbf|mathrm|mathbf|mbox)\s*\{([^{}]*)\}")
_FRAC = re.compile(r"\\[dt]?frac\s*\{([^{}]*)\}\s*\{([^{}]*)\}")
_ANSWER_TAG = re.compile(r"<answer>\s*(.*?)\s*</answer>", re.IGNORECASE | re.DOTALL)
_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u2212": "-"})


def _clean(text: str) -> str:
    """Plain text: LaTeX and markdown taken off, a boxed or tagged answer marked as one."""
    text = text.translate(_QUOTES)
    text = _ANSWER_TAG.sub(r"\nAnswer: \1\n", text)
    text = _FRAC.sub(r"\1/\2", text)
    text = _LATEX_WRAP.sub(r"\1", text)
    text = _BOXED.sub(lambda m: f" Answer: {m.group(1)} ", text)
    text = text.replace("{,}", ",").replace("\\times", "×").replace("\\cdot", "·")
    text = re.sub(r"\\[()\[\]]|\$", " ", text)
    text = text.replace("**", "").replace("__", "")
    text = re.sub(r"(?m)^\s*#+\s*", "", text)
    return re.sub(r"[ \t]+", " ", text).strip()


# ---- commitments shared by every format --------------------------------------------------

# "the (final|correct) answer is", "answer:", "my choice:", "the right option would be".
_FORWARD = re.compile(
    r"\b(?:(?:final|correct|right|best|true|my|the|your|appropriate)\s+)*"
    r"(?P<word>answer|option|choice|selection)\b"
    r"(?P<sep>\s*(?:is|would\s+be|should\s+be|must\s+be|will\s+be|=|:|-|\u2014|\u2013)(?!\w)\s*:?"
    r"|\s+(?:of\s+)?(?=(?:option|letter|choice)\b)|(?=\s*[(\[\"']?[A-Z](?![\w'])))",
    re.IGNORECASE,
)
# After a marker: hedges and an option word before the answer itself.
_HEDGE = re.compile(
    r"(?:(?:indeed|clearly|probably|likely|definitely|therefore|thus|then|just|simply|actually|"
    r"most\s+likely|i\s+(?:believe|think|guess|would\s+say)|it(?:'s|\s+is|\s+must\s+be)|that)"
    r"\s*,?\s+)*",
    re.IGNORECASE,
)
# "... is correct", "... is the correct answer", "..., which is the answer".
_VERDICT = re.compile(
    r"\s*,?\s*(?:which|that|this|it)?\s*\b(?:is|are|seems|appears\s+to\s+be|would\s+be|must\s+be)"
    r"\s+(?:(?:the|my)\s+)?(?:(?:correct|right|best|true)\b(?:\s+(?:answer|option|choice|one)\b)?"
    r"|(?:final\s+)?answer\b)",
    re.IGNORECASE,
)
_NEGATION = re.compile(r"\b(?:not|no|never|isn't|wasn't|aren't|cannot|can't)\b|n't\b", re.I)
_SENTENCE_END = re.compile(r"(?<=[.!?;])\s+|\n+")


def _sentence_tail(text: str, start: int) -> str:
    """From `start` to the end of its sentence (a period inside "4.5" does not end one)."""
    rest = text[start:].lstrip(" :\t")
    if rest.startswith("\n"):  # "Answer:\nB": the answer is on the next line
        rest = rest.lstrip()
    return _SENTENCE_END.split(rest, maxsplit=1)[0].strip()


def _clause_before(text: str, end: int) -> str:
    """From the start of the sentence holding `end` up to `end`."""
    head = text[:end]
    cuts = [m.end() for m in _SENTENCE_END.finditer(head)]
    return head[cuts[-1] if cuts else 0 :].strip()


def _forward_tails(text: str) -> list[tuple[int, str]]:
    """(position, what follows) for each "answer is"/"answer:" marker that is not negated.

    A marker needs a separator ("option is", "choice:"), except "answer" right before a
    letter ("Answer B."), so "option A is wrong" states no answer.
    """
    tails = []
    for found in _FORWARD.finditer(text):
        word, sep = found.group("word").lower(), found.group("sep")
        if word != "answer" and not sep.strip() and not re.match(r"\s+(?:of\s+)?\w", sep):
            continue
        tail = _sentence_tail(text, found.end())
        if _NEGATION.match(tail) or not tail:
            continue
        tails.append((found.start(), tail))
    return tails


def _verdict_clauses(text: str) -> list[tuple[int, str]]:
    """(position, what comes before) for each "... is the correct answer" not negated."""
    clauses = []
    for found in _VERDICT.finditer(text):
        clause = _clause_before(text, found.start())
        if clause and not re.search(r"\b(?:no|not)\s*$", clause, re.I):
            clauses.append((found.start(), clause))
    return clauses


# ---- letters -------------------------------------------------------------------------------

_OPTION_WORD = r"(?:(?:option|choice|letter)\s*:?\s*)?"
_LETTER_AT = re.compile(
    rf"{_OPTION_WORD}[(\[\"']?\s*(?P<l>[A-Za-z])\s*(?P<close>[)\]\"'])?(?P<after>[^\n]{{0,24}})",
    re.IGNORECASE,
)
# A or I followed by one of these is still the option ("A is correct", "I, because").
_CONNECTIVES = {
    "is", "was", "would", "seems", "appears", "and", "or", "because", "since", "as", "which",
    "must", "should", "looks", "sounds", "for", "with", "to", "in", "being",
}  # fmt: skip
_LETTER_MARK = re.compile(
    r"(?<![\w'])(?P<opt>(?:option|choice|letter)\s+)?[(\[]?(?P<l>[A-Z])(?:[)\]]|(?=[.:,]?\s|[.:,]?$))"
)
_LIST_JOIN = re.compile(r"[A-Z][)\]]?\s*(?:,|\band\b|\bor\b|&|/)\s*$")
_VERBS = re.compile(
    r"\b(?:choose|chose|pick|picked|select|selected|go(?:ing)?\s+with|corresponds?\s+to|"
    r"the\s+letter|(?:is|that's|it's)\s+(?=option|choice))\s+",
    re.IGNORECASE,
)
_LONE_OPTION = re.compile(
    r"(?:^|(?<=[.!?])\s|\n)\s*(?:option|choice)\s*[(\[]?([A-Z])[)\]]?\s*[.!]?\s*(?=$|\n)", re.I
)
_LINE_LETTER = re.compile(r"^\s*[(\[]?([A-Z])\s*(?:[).:\]]|$)")


def _letter(text: str, choices: list[str] | None) -> Extraction:
    letters = [chr(ord("A") + i) for i in range(len(choices) if choices else 10)]
    committed = _letter_commitments(text, letters, choices)
    if committed:
        return Extraction(max(committed)[1])
    line = _letter_lines(text, letters)
    if line is not None:
        return line
    if choices:
        named = _options_named(_without_negated(text), choices, results_only=True)
        if len(named) == 1:
            return Extraction(letters[named[0]])
        if named:
            return Extraction(None, "names several options")
    return Extraction(None, "no option chosen")


def _letter_commitments(
    text: str, letters: list[str], choices: list[str] | None
) -> list[tuple[int, str]]:
    """(position, letter) of every explicit choice in the reply."""
    found: list[tuple[int, str | None]] = []
    # What follows "the answer is", and what precedes "... is correct": a letter, else the
    # one option whose text the span states.
    readers = ((_forward_tails, _letter_after_marker), (_verdict_clauses, _letter_before_verdict))
    for spans, read in readers:
        for at, span in spans(text):
            letter = read(span)
            if letter is None and choices:
                letter = _one_option(span, choices, letters)
            found.append((at, letter))
    for verb in _VERBS.finditer(text):
        found.append((verb.start(), _letter_after_marker(text[verb.end() :])))
    found += [(m.start(), m.group(1).upper()) for m in _LONE_OPTION.finditer(text)]
    return [(at, letter) for at, letter in found if letter is not None and letter in letters]


def _letter_after_marker(tail: str) -> str | None:
    """The letter a marker's tail starts with, past hedges ("I believe it's B")."""
    for start in sorted({0, _HEDGE.match(tail).end()}, reverse=True):  # type: ignore[union-attr]
        found = _LETTER_AT.match(tail, start)
        if found and _is_option_letter(found):
            return found.group("l").upper()
    return None


def _is_option_letter(found: re.Match[str]) -> bool:
    """Whether a matched letter is an option, not a word ("a guess", "I think")."""
    letter, after = found.group("l"), found.group("after")
    if after[:1].isalnum() or after[:1] == "'":
        return False  # part of a word: "Athin", "I'm"
    word = re.match(r"\s+([a-z]+)", after)
    if letter.islower():  # lower case only alone or bracketed: "answer: b.", "(c)"
        return bool(found.group("close")) or not after.strip(" .!?")
    if letter in "AI" and word and not found.group("close"):
        return word.group(1) in _CONNECTIVES  # "A is correct", not "A good guess"
    return True


def _letter_before_verdict(clause: str) -> str | None:
    """The letter nearest the verdict in "B) Venus is the correct answer", unless it ends a
    list ("D and C are correct")."""
    marks = [m for m in _LETTER_MARK.finditer(clause) if _is_mark(clause, m)]
    if not marks:
        return None
    last = marks[-1]
    before = clause[: last.start()]
    if _LIST_JOIN.search(before) or re.search(r"\b(?:no|not)\s*$", before, re.I):
        return None
    return last.group("l")


def _is_mark(clause: str, mark: re.Match[str]) -> bool:
    if mark.group("l") not in "AI" or mark.group("opt"):
        return True
    after = clause[mark.end() :]
    word = re.match(r"\s+([a-z]+)", after)
    return not word or word.group(1) in _CONNECTIVES or clause[mark.end() - 1] in ")]"


def _letter_lines(text: str, letters: list[str]) -> Extraction | None:
    """A line that starts with an option's letter ("C) Rome", "B."), if all such lines agree.

    A reply that repeats several options ("A) Paris\\nB) London ...") chooses none.
    """
    named: set[str] = set()
    for line in text.splitlines():
        found = _LINE_LETTER.match(line)
        if found and found.group(1) in letters:
            rest = line[found.end() :]
            if _is_article(found.group(1), line, rest):
                continue  # "A spider..." is an article
            named.add(found.group(1))
    if len(named) == 1:
        return Extraction(named.pop())
    return Extraction(None, "lists several options") if named else None


def _is_article(letter: str, line: str, rest: str) -> bool:
    return (
        letter in "AI"
        and bool(re.match(r"\s*[a-z]", rest))
        and ")" not in line[:3]
        and not line.lstrip("([").startswith(letter + ":")
    )


def _one_option(span: str, choices: list[str], letters: list[str]) -> str | None:
    named = _options_named(span, choices, results_only=False)
    return letters[named[0]] if len(named) == 1 else None


_DENIAL = re.compile(r"\b(?:wrong|incorrect|false)\b", re.IGNORECASE)
_PAREN = re.compile(r"\((?=[^()]*\s)[^()]*\)")


def _without_negated(text: str) -> str:
    """The reply without parenthetical remarks and without clauses that deny something."""
    text = _PAREN.sub(" ", text)
    parts = re.split(r"(?<=[.!?;])\s+|\n+|,\s*(?:but|not)\b", text)
    keep = [p for p in parts if not _NEGATION.search(p) and not _DENIAL.search(p)]
    return "\n".join(keep)


def _options_named(span: str, choices: list[str], *, results_only: bool) -> list[int]:
    """Indices of the options `span` names as whole words; a number-only option counts only
    as a result ("= 19", "is 8", a line of its own) when `results_only` (numbers appear in
    reasoning all the time), and an option found only inside a longer named one does not."""
    spans: dict[int, list[tuple[int, int]]] = {}
    lowered = span.lower()
    for i, choice in enumerate(choices):
        option = normalise_text(choice)
        if not option or (len(option) < 2 and not option.isdigit()):
            continue
        numeric = _as_number(option) is not None
        escaped = re.escape(option)
        pattern = _NUMBER_BOUNDS.format(escaped) if numeric else rf"(?<!\w){escaped}(?!\w)"
        if numeric and results_only:
            pattern = (
                rf"(?:(?:{_RESULT_WORDS}|\b(?:around|about|approximately)\s+)\s*{pattern}"
                rf"(?!\s*[-+*/×^])|^\s*{pattern}{_LINE_END})"
            )
        hits = [(m.start(), m.end()) for m in re.finditer(pattern, lowered, re.MULTILINE)]
        if hits:
            spans[i] = hits
    return [
        i
        for i, hits in spans.items()
        if not all(_inside_other(hit, i, spans) for hit in hits)
    ]


def _inside_other(hit: tuple[int, int], own: int, spans: dict[int, list[tuple[int, int]]]) -> bool:
    return any(
        j != own and s <= hit[0] and hit[1] <= e and (e - s) > (hit[1] - hit[0])
        for j, others in spans.items()
        for s, e in others
    )


# ---- numbers -------------------------------------------------------------------------------

_NUMBER = re.compile(
    r"(?<![\w.])[-+]?(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?(?:e[-+]?\d+)?"
    r"(?:\s*[×x*]\s*10\s*\^\s*\{?[-+]?\d+\}?)?(?:\s*/\s*\d+(?![\d.]))?(?![\w])|(?<![\w.])[-+]?\.\d+",
    re.IGNORECASE,
)
_NUMBER_BOUNDS = r"(?<![\w.]){}(?![\w]|[.,/]\d)"
_RESULT_WORDS = (
    r"(?:=|≈|\bequals?\b|\bequal\s+to\b|\bdefined\s+as\b|\bis\b|\bare\b|\bresults?\s+in\b|\bgives\b"
    r"|\bcomes\s+to\b|\bmakes\b|\bat\b|:)\s*(?:(?:approximately|about|around|roughly|exactly|only)\s+)?(?:\$\s*)?"
)
_LINE_END = r"\s*[^\w\s]*\s*$"
_RESULT = re.compile(
    rf"{_RESULT_WORDS}(?P<n>{_NUMBER.pattern})|^\s*(?P<line>{_NUMBER.pattern}){_LINE_END}",
    re.IGNORECASE | re.MULTILINE,
)
_OPERATOR_NEXT = re.compile(
    r"\s*(?:[-+*/×÷^]|times\b|plus\b|minus\b|divided\b|multiplied\b|to\s+\d)", re.IGNORECASE
)
_SELF_REPORT = re.compile(r"confiden|\bsure\b|certain", re.IGNORECASE)


def _number(text: str) -> Extraction:
    tails = _forward_tails(text)
    for _, tail in reversed(tails):
        value = _result_in(tail, marked=True)
        if value is not None:
            return Extraction(value)
    if tails:
        return Extraction(None, "the marked answer holds no number")
    for sentence in reversed(_SENTENCE_END.split(_PAREN.sub(" ", text))):
        if _SELF_REPORT.search(sentence):
            continue  # "I'm 90% sure", "confidence is 7": not the answer
        value = _result_in(sentence, marked=False)
        if value is not None:
            return Extraction(value)
    return Extraction(None, "no number stated as a result")


def _result_in(span: str, *, marked: bool) -> str | None:
    """The last number `span` states as a result; after a marker also its first bare number
    ("Answer: 42"), but never an operand ("17 + 25")."""
    results = [m for m in _RESULT.finditer(span) if not _negated_before(span, m.start())]
    candidates = [
        (m.group("n") or m.group("line"), m.start())
        for m in results
        if m.group("line") or _not_operand(span, m.end("n"))
    ]
    if len(candidates) > 1 and _alternatives(span, candidates[-2], candidates[-1]):
        return None  # "x = 4 or x = -4" commits to neither
    if candidates:
        return _canonical_number(candidates[-1][0])
    if marked:
        bare = [
            m.group(0)
            for m in _NUMBER.finditer(span)
            if _not_operand(span, m.end()) and not _OPERATOR_BEFORE.search(span[: m.start()])
        ]
        return _canonical_number(bare[0]) if bare else None
    return None


def _alternatives(span: str, first: tuple[str, int], last: tuple[str, int]) -> bool:
    joined = re.search(r"\bor\b", span[first[1] : last[1]])
    return bool(joined) and _canonical_number(first[0]) != _canonical_number(last[0])


_OPERATOR_BEFORE = re.compile(r"(?:[-+*/×÷^]|times|plus|minus|by)\s*$")


def _not_operand(span: str, end: int) -> bool:
    return not _OPERATOR_NEXT.match(span, end)


def _negated_before(span: str, start: int) -> bool:
    return bool(re.search(r"\b(?:not|n't)\s*(?:just\s+)?$", span[:start + 8][: start + 4], re.I))


def _as_number(raw: str) -> Fraction | None:
    raw = raw.replace(",", "").replace(" ", "")
    scale = re.match(r"(.+?)[×x*]10\^\{?([-+]?\d+)\}?$", raw, re.IGNORECASE)
    try:
        if scale:
            return Fraction(scale.group(1)) * Fraction(10) ** int(scale.group(2))
        return Fraction(raw)
    except (ValueError, ZeroDivisionError):
        return None


def _canonical_number(raw: str) -> str | None:
    """Exact: an integer, a terminating decimal, or else a reduced fraction, so distinct
    values never merge (1234567.25 is not 1234567.5)."""
    value = _as_number(raw.lstrip("+"))
    if value is None:
        return None
    if value.denominator == 1:
        return str(value.numerator)
    denominator = value.denominator
    for prime in (2, 5):
        while denominator % prime == 0:
            denominator //= prime
    if denominator != 1:
        return f"{value.numerator}/{value.denominator}"
    digits = 0
    while (value * 10**digits).denominator != 1:
        digits += 1
    return f"{float(value):.{digits}f}" if digits < 15 else _exact_decimal(value, digits)


def _exact_decimal(value: Fraction, digits: int) -> str:
    scaled = abs(value.numerator * 10**digits // value.denominator)
    sign = "-" if value < 0 else ""
    whole, frac = divmod(scaled, 10**digits)
    return f"{sign}{whole}.{frac:0{digits}d}".rstrip("0")


# ---- short answers -------------------------------------------------------------------------

_STOP = {
    "the", "a", "an", "of", "in", "on", "at", "to", "is", "are", "was", "were", "be", "what",
    "which", "who", "whom", "how", "many", "much", "does", "do", "did", "it", "its", "this",
    "that", "for", "by", "and", "or", "as", "called", "known", "there", "from", "with", "s",
    "i", "you", "your", "my", "our", "their", "they", "he", "she", "we", "have", "has",
}  # fmt: skip
_COPULA = re.compile(
    r"\s+(?:(?:is|are|was|were)\s+(?:called|known\s+as|named)|is|are|was|were|would\s+be"
    r"|(?:appears|seems)\s+to\s+be)\s+|:\s+",
    re.IGNORECASE,
)
_PASSIVE = re.compile(
    r"^(?:(?:indeed|actually|usually|generally|simply|just|called|named)\s+)*"
    r"(?:(?:\w+ed|written|made|known|drawn|built|sung|done|given)\s+(?:by|as)\s+"
    r"|considered\s+(?:to\s+be\s+)?)?",
    re.IGNORECASE,
)
_TRAILER = re.compile(
    r"\s*(?:,|;|:|\(|\s-\s|\s\u2014|\bwhich\b|\bwho\b|\bwhere\b|\bbut\b|\band\s+(?:has|is|it)\b)"
)
_REFUSAL = re.compile(
    r"\b(?:i\s+(?:do\s+not|don't|cannot|can't|am\s+not\s+able|am\s+unable)"
    r"|i'm\s+(?:not\s+sure|unable|sorry)|sorry|no\s+idea|not\s+sure)\b",
    re.IGNORECASE,
)


_INTERJECTION = re.compile(
    r"^(?:absolutely|certainly|sure|alright|all\s+right|okay|ok|cheers|hello|hi|hey|great|well"
    r"|hmm+|bonjour|of\s+course|indeed)\b",
    re.IGNORECASE,
)


def _short(text: str, question: str) -> Extraction:
    tails = [t for _, t in _forward_tails(text) if not _VERDICT_WORD.match(t)]
    if tails:
        return _short_span(tails[-1])
    verdicts = _verdict_clauses(text)
    if verdicts:
        return _short_span(verdicts[-1][1])
    sentences = [_SURE_THAT.sub("", s.strip()) for s in _SENTENCE_END.split(text) if s.strip()]
    asked = _content_words(question)
    restated = [r for r in (_restated(s, asked) for s in sentences) if r]
    if restated:  # a reply that revises itself means its last statement; "It is ..." only
        named = [a for a, by_pronoun in restated if not by_pronoun]  # when nothing else is
        return Extraction(named[-1] if named else restated[-1][0])
    for sentence in sentences:
        answer = _new_words(sentence, asked)
        if answer:
            return Extraction(answer)
    plain = [s for s in sentences if _could_be_answer(s)]
    if not plain:
        return Extraction(None, "no short answer stated")
    if _REFUSAL.search(plain[0]):
        return Extraction(None, "the reply declines to answer")
    if len(plain[0].split()) > 8:
        return Extraction(None, "no short answer stated")
    return _short_span(plain[0])


# "I'm 98% confident that the capital is Tokyo": the statement after "that" is the answer.
_SURE_THAT = re.compile(r"^(?:i'm|i\s+am)\b[^,]*?\b(?:confident|sure|certain)\s+that\s+", re.I)
_VERDICT_WORD = re.compile(r"(?:correct|right|wrong|incorrect|true|false)\b", re.IGNORECASE)


def _could_be_answer(sentence: str) -> bool:
    """Not a question, an exclamation, a lead-in ("This week is:"), an interjection or the
    model reporting its confidence."""
    return not (
        sentence.endswith(("?", "!", ":"))
        or _INTERJECTION.match(sentence)
        or _SELF_REPORT.search(sentence)
    )


def _short_span(span: str) -> Extraction:
    span = _TRAILER.split(span, maxsplit=1)[0]
    answer = normalise_text(_PASSIVE.sub("", span.strip()))[:100]
    return Extraction(answer) if answer else Extraction(None, "the marked answer is empty")


def _restated(sentence: str, asked: set[str]) -> tuple[str, bool] | None:
    """The other side of a sentence that restates the question: "The capital of France is
    Paris" or "Paris is the capital of France" give "paris"."""
    found = _COPULA.search(sentence)
    if found is None or not asked or _SELF_REPORT.search(sentence):
        return None
    left = sentence[: found.start()]
    right = _TRAILER.split(sentence[found.end() :], maxsplit=1)[0]
    there = re.search(r"\bthere$", left, re.IGNORECASE)  # "there is only 15"
    if there or (_covers(left, asked) and not _covers(right, asked)):
        answer = right
    elif _covers(right, asked) and not _covers(left, asked) and _content_words(left):
        answer = left.split(",")[-1]
    else:
        return None
    answer = normalise_text(_PASSIVE.sub("", answer.strip()))[:100]
    return (answer, not _content_words(left)) if answer else None


def _new_words(sentence: str, asked: set[str]) -> str | None:
    """In a sentence that repeats the question's words around a verb ("Bees make honey",
    "William Shakespeare wrote Hamlet"), the first run of words the question lacks."""
    if not asked or _SELF_REPORT.search(sentence) or _NEGATION.search(sentence):
        return None
    words = re.findall(r"[\w'-]+(?:\.\d+)*", _TRAILER.split(sentence, maxsplit=1)[0])
    keys = [w.lower().replace("'s", "")[:5] for w in words]
    if sum(1 for k in set(keys) if k in asked) < max(1, len(asked) / 2):
        return None
    run: list[str] = []
    for word, key in zip(words, keys, strict=True):
        if key in asked:
            if run:
                break
        elif run or key not in _STOP:
            run.append(word)
    while run and run[-1].lower() in _STOP:
        run.pop()
    return normalise_text(" ".join(run)) if 0 < len(run) <= 6 else None


def _covers(side: str, asked: set[str]) -> bool:
    """Whether `side` holds half the question's words, or is a pronoun standing for it."""
    words = _content_words(side)
    if not words:
        return bool(re.search(r"\b(?:it|this|that|they)\b", side, re.I))
    shared = sum(1 for w in words if w in asked)
    return shared >= 1 and shared / len(asked) >= 0.5


def _content_words(text: str) -> set[str]:
    words = re.findall(r"[a-z0-9]+", text.lower().replace("'s", ""))
    return {w[:5] for w in words if w not in _STOP}


# ---- confidences ------------------------------------------------------------------------

# "Confidence: 0.8", "confidence level is 80%", "Confidence: 4/5", "5 out of 5"; the number
# must end there ("I'm confident 3 options are wrong" states no confidence).
_SCALE = r"(?P<pct>\s*%|\s*percent\b)?(?:\s*(?:/|out\s+of)\s*(?P<of>\d+(?:\.\d+)?))?"
_STATED = re.compile(
    r"confiden(?:ce|t)\s*(?:level|score)?\s*(?:is|:|=|-|of|at)?\s*\(?\s*"
    rf"(?P<v>\d+(?:\.\d+)?){_SCALE}(?!\s*[a-z]|\d)",
    re.IGNORECASE,
)
# "I am 70% confident", "90% sure".
_STATED_BEFORE = re.compile(
    r"(?<![\d.])(?P<v>\d+(?:\.\d+)?)(?P<pct>\s*%|\s*percent\b)(?P<of>)\s*(?:confident|sure|certain)",
    re.IGNORECASE,
)
_WORDS = {"very high": 0.95, "high": 0.85, "medium": 0.6, "moderate": 0.6, "low": 0.3}
_STATED_WORD = re.compile(
    r"confiden(?:ce|t)\s*(?:level)?\s*(?:is|:|=|-)?\s*(very high|high|medium|moderate|low)",
    re.IGNORECASE,
)
_MARKER = re.compile(r"answer\s*(?:is|:)", re.IGNORECASE)


def stated_confidence(text: str) -> float | None:
    """The last confidence the text states, in [0, 1]: `0.8`, `80%`, `8/10`, `4/5`, `high`.

    A bare number is read on the scale it fits: up to 1 as is, up to 10 as tenths, up to
    100 as a percentage.
    """
    found = [*_STATED.finditer(text), *_STATED_BEFORE.finditer(text)]
    numbers = sorted(found, key=lambda m: m.start())
    if numbers:
        return _on_unit_scale(numbers[-1])
    words = list(_STATED_WORD.finditer(text))
    return _WORDS[words[-1].group(1).lower()] if words else None


def _on_unit_scale(found: re.Match[str]) -> float | None:
    value = float(found.group("v"))
    if found.group("of"):
        scale = float(found.group("of"))
        return min(value / scale, 1.0) if scale > 0 else None
    if found.group("pct") or value > 10:
        value /= 100
    elif value > 1:
        value /= 10
    return min(max(value, 0.0), 1.0)


def logprob_confidence(text: str, logprobs: Sequence[TokenLogprob]) -> float | None:
    """Geometric-mean token probability of the answer part of `text` (after `Answer:`),
    or of the whole text when it marks no answer."""
    if not logprobs:
        return None
    offsets, position = [], 0
    for token in logprobs:
        offsets.append(position)
        position += len(token.token)
    marks = list(_MARKER.finditer(text))
    start = marks[-1].end() if marks else 0
    chosen = [t.logprob for t, at in zip(logprobs, offsets, strict=True) if at >= start]
    chosen = chosen or [t.logprob for t in logprobs]
    return math.exp(sum(chosen) / len(chosen))
