"""How often answer extraction agrees with a careful grader, per format, source and style.

The corpus (benchmarks/data/extraction_corpus.jsonl) holds real replies of the embedded model
and of a vLLM server on the project's suites, and replies in the styles larger models write,
each labelled with the answer a careful grader takes from it (or null: it commits to nothing;
a list: any of these forms). Where `math-verify` is installed, its parser is measured on the
number replies too, as the alternative for numbers and LaTeX.

    .venv/bin/python benchmarks/extraction.py
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from agentfab import Task
from agentfab.answers import extract_answer

CORPUS = Path(__file__).parent / "data" / "extraction_corpus.jsonl"


def load_corpus(path: Path = CORPUS) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def agrees(record: dict[str, Any], answer: str | None) -> bool:
    expected = record["expected"]
    return answer in (expected if isinstance(expected, list) else [expected])


def extracted(record: dict[str, Any]) -> str | None:
    task = Task(prompt=record["question"] or "?", choices=record["choices"])
    return extract_answer(record["text"], record["format"], task)


def _table(title: str, hits: Counter[str], totals: Counter[str]) -> None:
    print(f"\n{title:<24} agree / n      rate")
    for key in sorted(totals):
        print(f"{key:<24} {hits[key]:>5} / {totals[key]:<5} {hits[key] / totals[key]:>6.1%}")


def _math_verify_rate(records: list[dict[str, Any]]) -> tuple[int, int, int] | None:
    """(math-verify agrees, agentfab agrees, n) on the number replies, if it is installed."""
    try:
        from math_verify import parse
    except ImportError:
        return None
    from agentfab.answers import _canonical_number

    theirs = ours = 0
    numbers = [r for r in records if r["format"] == "number"]
    for record in numbers:
        parsed = parse(record["text"])
        value = next((str(p) for p in parsed if not isinstance(p, str)), None)
        answer = _canonical_number(value) if value is not None else None
        theirs += agrees(record, answer)
        ours += agrees(record, extracted(record))
    return theirs, ours, len(numbers)


def main() -> None:
    records = load_corpus()
    by: dict[str, tuple[Counter[str], Counter[str]]] = {
        k: (Counter(), Counter()) for k in ("format", "source", "style")
    }
    misses = []
    for record in records:
        answer = extracted(record)
        ok = agrees(record, answer)
        for key, (hits, totals) in by.items():
            value = record[key] if key != "style" else f"{record['format']}/{record['style']}"
            totals[value] += 1
            hits[value] += ok
        if not ok:
            misses.append((record, answer))
    for key, (hits, totals) in by.items():
        _table(f"by {key}", hits, totals)
    print(f"\n{len(misses)} disagreements:")
    for record, answer in misses:
        print(f"  {record['id']} {record['format']:<6} expected {record['expected']!r:<22.22} "
              f"got {answer!r:<22.22} {record['text'][:60]!r}")
    mv = _math_verify_rate(records)
    if mv:
        print(f"\nnumbers: math-verify agrees {mv[0]}/{mv[2]}, agentfab {mv[1]}/{mv[2]}")
    hits, totals = by["format"]
    rates = " ".join(f"{f}={hits[f] / totals[f]:.3f}" for f in sorted(totals))
    agreement = sum(hits.values()) / sum(totals.values())
    print(f"RESULT extraction_agreement={agreement:.3f} n={len(records)} {rates}")


if __name__ == "__main__":
    main()
