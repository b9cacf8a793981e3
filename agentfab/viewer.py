"""`agentfab view`: a trace or an eval run as one self-contained HTML page.

The page needs no server and no network: the team is drawn by matplotlib (the layout of
`agentfab graph`) as inline SVG, the report's figures likewise, and the data is one JSON
block that the page's script (`viewer.html`, beside this file) turns into the item list,
each item's messages and decisions, and the timeline of its calls. Reading only: nothing
here runs a model or changes the files it reads.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from agentfab.drawing import ShapeNode, TeamShape, pyplot, svg_of, to_svg
from agentfab.errors import ConfigError
from agentfab.messages import Message

PAGE_FILE = "view.html"
DATA_MARK = "/*DATA*/null"
GRAPH_MARK = "<!--GRAPH-->"


def view(source: Path, out: Path | None = None) -> Path:
    """Write the page for `source` (a trace file or an eval run's folder); its path."""
    if not source.exists():
        raise ConfigError(f"{source}: no such trace file or run folder")
    data, shape = eval_data(source) if source.is_dir() else trace_data(source)
    if out is None:
        out = source / PAGE_FILE if source.is_dir() else source.with_suffix(".html")
    _write(out, page(data, shape))
    return out


def page(data: dict[str, Any], shape: TeamShape) -> str:
    template = resources.files("agentfab").joinpath("viewer.html").read_text(encoding="utf-8")
    payload = {**data, "nodes": [n.model_dump() for n in shape.nodes], "edges": shape.edges}
    # In a <script> block only `</` can end it early; JSON allows `<\/` for it.
    text = json.dumps(_finite(payload), ensure_ascii=False).replace("</", "<\\/")
    # Cut once at each mark (the graph's comes first): what is put in is never searched again,
    # so a reply quoting a mark stays text.
    head, rest = template.split(GRAPH_MARK, 1)
    middle, tail = rest.split(DATA_MARK, 1)
    return head + to_svg(shape) + middle + text + tail


def _finite(value: Any) -> Any:
    """`value` with NaN and infinities as null: the page's JSON.parse knows no others."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _write(out: Path, text: str) -> None:
    # Written beside, then moved: an old page is never left half-replaced.
    partial = out.with_name(out.name + ".partial")
    try:
        partial.write_text(text, encoding="utf-8")
        os.replace(partial, out)
    except OSError as error:
        partial.unlink(missing_ok=True)
        raise ConfigError(f"--out {out}: cannot write ({error.strerror})") from None


# A trace: one run, one item.


def trace_data(path: Path) -> tuple[dict[str, Any], TeamShape]:
    from agentfab.trace import read_trace

    trace = read_trace(path)
    if not trace.messages and trace.result is None:
        raise ConfigError(f"{path}: an empty trace (no message, no result)")
    shape = trace.team or shape_from_messages(trace.messages)
    result = trace.result or {}
    task = result.get("task") or {}
    item = {
        "id": task.get("id", "task"),
        "question": task.get("prompt", ""),
        "choices": task.get("choices"),
        "reference": None,
        "answer": result.get("answer"),
        "correct": None,
        "note": _output_note(trace.messages) if result else "the run did not finish",
        "error": None if result.get("complete", True) else "stopped early (budget or quorum)",
        "messages": [_message(m) for m in trace.messages],
    }
    usage = result.get("usage") or {}
    totals = {
        "tokens": usage.get("prompt_tokens", 0) + usage.get("completion_tokens", 0),
        "calls": usage.get("calls", 0),
        "wall_s": result.get("wall_s"),
        "cache": result.get("cache"),
    }
    title = f"{shape.name}: {path.name}"
    return {"kind": "trace", "title": title, "items": [item], "totals": totals}, shape


def _output_note(messages: Sequence[Message]) -> str | None:
    return messages[-1].note if messages else None


def _card(
    m: Any,
    sender: str,
    kind: str,
    *,
    server: str | None = None,
    correct: bool | None = None,
    check: str | None = None,
    prompts: Sequence[Any] = (),
) -> dict[str, Any]:
    """What the page shows of one message: a trace's `Message`, or an eval record's
    `AgentAttempt` or `Decision` (they share these fields; the rest is passed in)."""
    return {
        "id": m.id,
        "sender": sender,
        "kind": kind,
        "round": m.round,
        "text": m.text,
        "answer": m.answer,
        "confidence": m.confidence,
        "inputs": m.inputs,
        "started": m.started,
        "latency_s": m.latency_s,
        "prompt_tokens": m.usage.prompt_tokens,
        "completion_tokens": m.usage.completion_tokens,
        "calls": m.usage.calls,
        "server": server,
        "error": m.error,
        "note": m.note,
        "correct": correct,
        "check": check,
        "details": {k: v for k, v in m.details.items() if k != "prompts"},
        "prompts": list(prompts),
    }


def _message(m: Message) -> dict[str, Any]:
    prompts = m.details.get("prompts") or []
    return _card(m, m.sender, m.kind, server=m.server, prompts=prompts)


def shape_from_messages(messages: Iterable[Message]) -> TeamShape:
    """A team's graph as its messages show it, for a trace that does not carry it: who
    read whom within a round (reading a peer's previous round is not an edge)."""
    by_id = {m.id: m for m in messages}
    nodes: dict[str, ShapeNode] = {}
    edges: set[tuple[str, str]] = set()
    for m in by_id.values():
        detail = m.model or ("aggregate" if m.kind == "aggregate" else "agent")
        kind: Literal["agent", "aggregate"] = "aggregate" if m.kind == "aggregate" else "agent"
        nodes.setdefault(m.sender, ShapeNode(name=m.sender, kind=kind, detail=detail))
        for read in m.inputs:
            source = by_id.get(read)
            if source is not None and source.round == m.round and source.sender != m.sender:
                edges.add((source.sender, m.sender))
    if not nodes:
        raise ConfigError("the trace has no message and no team line: nothing to draw")
    last = list(by_id.values())[-1].sender
    return TeamShape(name="team", nodes=list(nodes.values()), edges=sorted(edges), output=last)


# An eval run: every item, its baselines, the report.


def eval_data(folder: Path) -> tuple[dict[str, Any], TeamShape]:
    from agentfab.evals.records import RESULTS_FILE, read_results, read_run
    from agentfab.evals.report import summarise

    run = read_run(folder)
    records = read_results(folder / RESULTS_FILE).records
    if not records:
        raise ConfigError(f"{folder}: no results yet in {RESULTS_FILE}")
    summary = summarise(records, run)
    shape = run.shape or shape_from_records(records)
    items = [_eval_item(r) for r in records]
    tokens = sum(r.team.usage.total_tokens for r in records)
    calls = sum(r.team.usage.calls for r in records)
    cache = summary.cache.model_dump() if summary.cache else None
    data = {
        "kind": "eval",
        "title": f"{run.pipeline_name} on {run.suite}: {summary.items} items",
        "items": items,
        "totals": {"tokens": tokens, "calls": calls, "wall_s": None, "cache": cache},
        "report": {
            "team": run.team,
            "rates": [r.model_dump() for r in summary.configurations],
            "agreement": [s.model_dump() for s in summary.agreement],
            "figures": _figures(summary, records),
        },
    }
    return data, shape


def _eval_item(r: Any) -> dict[str, Any]:
    agents = [
        _card(
            a,
            a.name,
            "agent",
            server=a.server,
            correct=a.correct,
            check=a.check,
            prompts=[c.messages for c in a.prompts],
        )
        for a in r.agents
    ]
    decisions = [
        _card(
            d,
            d.name,
            "aggregate",
            correct=(d.answer == r.reference) if r.kind == "choice" and d.answer else None,
            prompts=[c.messages for c in r.team.prompts if c.by == d.id],
        )
        for d in r.decisions
    ]
    return {
        "id": r.item if r.sample == 0 else f"{r.item} #{r.sample}",
        "question": r.question,
        "choices": r.choices,
        "reference": r.reference,
        "answer": r.team.answer,
        "correct": r.team.correct,
        "check": r.team.check,
        "note": r.team.note,
        "error": r.error,
        "details": r.team.details,
        "single": {"answer": r.single.answer, "correct": r.single.correct},
        "self_consistency": {
            "answer": r.self_consistency.answer,
            "correct": r.self_consistency.correct,
        },
        "oracle": r.oracle,
        "tokens": r.team.usage.total_tokens,
        "wall_s": r.wall_s,
        "worker": r.worker,
        "messages": sorted(agents + decisions, key=lambda m: (m["round"], m["started"] or 0)),
    }


def shape_from_records(records: Sequence[Any]) -> TeamShape:
    """The team of a run from before run.json recorded it, as its first record shows it."""
    first = records[0]
    messages = [
        Message(id=a.id, sender=a.name, round=a.round, inputs=a.inputs, model=None)
        for a in first.agents
    ] + [
        Message(id=d.id, sender=d.name, kind="aggregate", round=d.round, inputs=d.inputs)
        for d in first.decisions
    ]
    return shape_from_messages(messages)


def _figures(summary: Any, records: Sequence[Any]) -> list[str]:
    from agentfab.evals.report import DRAWN

    plt = pyplot()
    figures = (draw(plt, summary, records) for _, draw in DRAWN)
    return [svg_of(f, bbox_inches="tight") for f in figures if f is not None]
