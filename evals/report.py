"""What an eval run says: the summary, `report.md`, its figures, and runs side by side.

Once a run ends its folder also holds `summary.json`, `report.md` and the figures, all
computed from `results.jsonl` alone (read by `records.py`), so an interrupted run can be
reported on too. Nothing here writes or changes a record.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from agentfab.cache import CacheStats
from agentfab.errors import ConfigError
from agentfab.evals.code import pass_at_k
from agentfab.evals.records import (
    RESULTS_FILE,
    Attempt,
    ItemRecord,
    Record,
    RunConfig,
    read_results,
    read_run,
    replace_text,
)
from agentfab.evals.stats import correlation_matrix, mean, wilson

__all__ = ["Noted", "Rate", "Summary", "compare_runs", "summarise", "write_report"]

SUMMARY_FILE = "summary.json"
REPORT_FILE = "report.md"


# ---- the summary ---------------------------------------------------------------------------


# BaseModel is named again so that linters know this as a pydantic model.
class _Part(Record, BaseModel):
    """A part of the summary: frozen, as every record a run writes."""


class Rate(_Part):
    """How often one configuration was right, and what it cost."""

    name: str
    label: str
    correct: float
    """Items right (with several samples per item: the sum of per-item pass@1)."""
    items: int
    accuracy: float | None
    """pass@1: the mean over items of the share of samples that were right."""
    low: float
    high: float
    """The Wilson 95% interval, over items."""
    tokens_per_item: float | None
    """Mean prompt + completion tokens per item and sample."""
    pass_at_k: dict[str, float] = {}
    """With several samples per item: the unbiased pass@k, e.g. {"pass@5": 0.4}."""


class Split(_Part):
    """The team's decisions with one vote pattern, e.g. "2+1": two agreed, one did not."""

    votes: str
    agreement: float | None
    """The share of the top answer."""
    entropy: float | None
    """Of the answers, in bits."""
    lines: int
    team_accuracy: float


class Noted(_Part):
    """A team decision whose note must be read with it (a tie, a small share, no answer)."""

    item: str
    sample: int
    answer: str | None
    note: str
    correct: bool


class Rerun(_Part):
    """An item whose Ray worker died under it: it ran again from the start on another."""

    item: str
    sample: int
    lost: list[str]
    """The workers that died holding it, in order."""
    worker: str | None
    """The worker that ran it to its end."""


class Summary(_Part):
    """`summary.json`."""

    run: RunConfig | None
    items: int
    lines: int
    samples: int
    """Samples per item (the fewest any item has)."""
    failed: int
    """Lines whose team run failed."""
    configurations: list[Rate]
    self_consistency_samples: float | None
    """Mean samples self-consistency drew per line."""
    agreement: list[Split]
    """How split the team's decisions were, most unanimous first."""
    mean_agreement: float | None
    mean_entropy: float | None
    correlation_agents: list[str]
    correlation_matrix: list[list[float | None]]
    """Pairwise phi of the agents' correctness over lines (1: they fail together)."""
    mean_correlation: float | None
    noted: list[Noted] = []
    """Team decisions that carry a note, in the order of the results."""
    workers: dict[str, int] = {}
    """Lines each Ray worker ran (empty when the run did not use Ray)."""
    nodes: dict[str, int] = {}
    """Lines each Ray node ran."""
    reruns: list[Rerun] = []
    """Lines run again because a Ray worker died while running them."""
    cache: CacheStats | None = None
    """The call cache's hits and misses over every line (None: no line used a cache)."""


def summarise(records: Sequence[ItemRecord], run: RunConfig | None = None) -> Summary:
    by_item = _by_item(records)
    samples = min((len(lines) for lines in by_item.values()), default=0)
    oracle, oracle_label = _oracle_names(records)
    labels = {
        "team": f"team ({run.team})" if run else "team",
        "single": "single agent, one sample",
        "self-consistency": "single agent, self-consistency at the team's tokens",
        "oracle": oracle_label,
    }
    rates = [
        _rate(key, oracle if key == "oracle" else key, label, by_item, samples)
        for key, label in labels.items()
    ]
    names, matrix, mean_phi = correlation_matrix(_agent_correctness(records))
    patterns = _agreement(records)
    details = [r.team.details for r in records]
    return Summary(
        run=run,
        items=len(by_item),
        lines=len(records),
        samples=samples,
        failed=sum(1 for r in records if r.error is not None),
        configurations=rates,
        self_consistency_samples=mean([r.self_consistency.samples for r in records]),
        agreement=patterns,
        mean_agreement=mean([d["agreement"] for d in details if d.get("agreement") is not None]),
        mean_entropy=mean([d["entropy"] for d in details if d.get("entropy") is not None]),
        correlation_agents=names,
        correlation_matrix=matrix,
        mean_correlation=mean_phi,
        workers=_count_by([r.worker for r in records]),
        nodes=_count_by([r.node for r in records]),
        cache=_cache_total(records),
        reruns=[
            Rerun(item=r.item, sample=r.sample, lost=list(r.lost), worker=r.worker)
            for r in records
            if r.lost
        ],
        noted=[
            Noted(
                item=r.item,
                sample=r.sample,
                answer=r.team.answer,
                note=r.team.note,
                correct=r.team.correct,
            )
            for r in records
            if r.team.note
        ],
    )


def _by_item(records: Iterable[ItemRecord]) -> dict[str, list[ItemRecord]]:
    grouped: dict[str, list[ItemRecord]] = {}
    for record in records:
        grouped.setdefault(record.item, []).append(record)
    return grouped


_PICK: dict[str, Callable[[ItemRecord], Attempt]] = {
    "team": lambda r: r.team,
    "single": lambda r: r.single,
    "self-consistency": lambda r: r.self_consistency,
    "oracle": lambda r: Attempt(correct=r.oracle, usage=r.team.usage),
}


def _oracle_names(records: Sequence[ItemRecord]) -> tuple[str, str]:
    """The oracle's name and label: oracle@k with k the answers it looked at per line, a
    range when lines differ (some agents failed, a run stopped early)."""
    ks = [_oracle_k(r) for r in records]
    low, high = min(ks, default=0), max(ks, default=0)
    if low == high:
        return f"oracle@{high}", f"oracle@{high} (some agent right)"
    name = f"oracle@{low}–{high}"
    return name, f"{name} (some agent right; {sum(ks) / len(ks):.1f} answers per line)"


def _oracle_k(record: ItemRecord) -> int:
    if record.oracle_k is not None:
        return record.oracle_k
    last = max((a.round for a in record.agents), default=0)
    return sum(1 for a in record.agents if a.round == last and a.error is None)


def _rate(
    key: str, name: str, label: str, by_item: Mapping[str, list[ItemRecord]], samples: int
) -> Rate:
    pick = _PICK[key]
    per_item = [[pick(r).correct for r in lines] for lines in by_item.values()]
    shares = [sum(right) / len(right) for right in per_item]
    correct = sum(shares)
    low, high = wilson(correct, len(shares))
    tokens = [pick(r).usage.total_tokens for lines in by_item.values() for r in lines]
    pass_k = {}
    if samples > 1 and key != "oracle":  # oracle@k already is a best-of
        for k in sorted({1, samples}):
            estimates = [pass_at_k(len(right), sum(right), k) for right in per_item]
            pass_k[f"pass@{k}"] = sum(estimates) / len(estimates)
    return Rate(
        name=name,
        label=label,
        correct=correct,
        items=len(shares),
        accuracy=mean(shares),
        low=low,
        high=high,
        tokens_per_item=mean(tokens),
        pass_at_k=pass_k,
    )


def _agent_correctness(records: Iterable[ItemRecord]) -> dict[str, dict[str, bool]]:
    """Agent -> line -> whether its last answer on that line was right."""
    correct: dict[str, dict[str, bool]] = {}
    for record in records:
        case = f"{record.item}#{record.sample}"
        for attempt in record.agents:  # in run order: a later round overwrites an earlier
            correct.setdefault(attempt.name, {})[case] = attempt.correct
    return correct


def _agreement(records: Iterable[ItemRecord]) -> list[Split]:
    """Lines grouped by the decision's vote pattern, most unanimous first."""
    groups: dict[str, list[ItemRecord]] = {}
    for record in records:
        pattern = _pattern(record)
        if pattern is not None:
            groups.setdefault(pattern, []).append(record)
    splits = [
        Split(
            votes=pattern,
            agreement=members[0].team.details.get("agreement"),
            entropy=members[0].team.details.get("entropy"),
            lines=len(members),
            team_accuracy=sum(r.team.correct for r in members) / len(members),
        )
        for pattern, members in groups.items()
    ]
    return sorted(splits, key=lambda split: (-(split.agreement or 0.0), split.entropy or 0.0))


def _pattern(record: ItemRecord) -> str | None:
    """ "2+1": two voters agreed and one did not; agents of the last round with no usable
    answer are counted apart."""
    votes = record.team.details.get("votes")
    if not isinstance(votes, dict) or not votes:
        return None
    counts = sorted((int(n) for n in votes.values()), reverse=True)
    pattern = "+".join(map(str, counts))
    last = max((a.round for a in record.agents), default=0)
    silent = sum(1 for a in record.agents if a.round == last) - sum(counts)
    if silent > 0:
        pattern += f", {silent} no answer"
    # A decision that chose no answer agreed on nothing (its agreement is None), whatever
    # the votes were.
    undecided = "agreement" in record.team.details and record.team.details["agreement"] is None
    return f"{pattern}, undecided" if undecided else pattern


# ---- writing the report --------------------------------------------------------------------


def write_report(folder: Path) -> Summary:
    """Summarise `folder`'s results into summary.json, report.md and the figures."""
    run = read_run(folder)
    loaded = read_results(folder / RESULTS_FILE)
    if not loaded.records:
        raise ConfigError(f"{folder}: no results yet in {RESULTS_FILE}")
    summary = summarise(loaded.records, run)
    _write_text(folder / SUMMARY_FILE, summary.model_dump_json(indent=2) + "\n")
    figures = _plot(folder, summary, loaded.records)
    _write_text(folder / REPORT_FILE, markdown(summary, figures))
    return summary


def _write_text(path: Path, text: str) -> None:
    try:
        replace_text(path, text)
    except OSError as error:
        raise ConfigError(f"{path}: cannot write ({error.strerror})") from None


def _count_by(names: Sequence[str | None]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for name in names:
        if name is not None:
            counts[name] = counts.get(name, 0) + 1
    return dict(sorted(counts.items()))


def markdown(summary: Summary, figures: Sequence[str] | str) -> str:
    """report.md: `figures` are the image files written, or why there are none."""
    parts = [_heading(summary), rate_table(summary)]
    if cached := cache_line(summary):
        parts.append(cached[0].upper() + cached[1:] + ".")
    if summary.samples > 1:
        parts.append(
            "pass@1 is the mean over items of the share of samples right; the intervals "
            "are over items."
        )
    if isinstance(figures, str):
        parts.append(f"_{figures}_")
    else:
        parts.append(" ".join(f"![{Path(f).stem}]({f})" for f in figures[:2]))
    parts += [
        _agreement_section(summary, figures),
        _noted_section(summary),
        _correlation_section(summary),
        _where_section(summary),
    ]
    return "\n\n".join(p for p in parts if p) + "\n"


def _heading(summary: Summary) -> str:
    run = summary.run
    title = f"# {run.pipeline_name} on {run.suite}" if run else "# Eval report"
    lines = [title, ""]
    count = f"{summary.items} items × {summary.samples} sample{'s' * (summary.samples != 1)}"
    if run:
        lines.append(
            f"{count}, seed {run.seed}; pipeline `{run.pipeline}` "
            f"(sha256 {run.pipeline_sha256[:12]}), started {run.started}, agentfab {run.agentfab}."
        )
    else:
        lines.append(f"{count}.")
    if summary.failed:
        lines.append(f"{summary.failed} team runs failed and count as wrong.")
    if summary.self_consistency_samples is not None:
        lines.append(
            f"Self-consistency drew {summary.self_consistency_samples:.1f} samples per item on "
            "average, as many as came closest to the team's tokens on that item."
        )
    return "\n".join(lines)


def rate_table(summary: Summary) -> str:
    ks = sorted({k for rate in summary.configurations for k in rate.pass_at_k}, key=_k_order)
    header = ["configuration", "correct", "accuracy", "95% interval (Wilson)", "tokens per item"]
    rows = [
        [
            rate.label,
            f"{_count(rate.correct)}/{rate.items}",
            _percent(rate.accuracy),
            f"{rate.low:.0%}–{rate.high:.0%}",
            "n/a" if rate.tokens_per_item is None else f"{rate.tokens_per_item:.0f}",
            *(_percent(rate.pass_at_k.get(k)) for k in ks),
        ]
        for rate in summary.configurations
    ]
    return _table([*header, *ks], rows)


def _k_order(name: str) -> int:
    return int(name.removeprefix("pass@"))


def _count(value: float) -> str:
    return str(round(value)) if math.isclose(value, round(value)) else f"{value:.2f}"


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _agreement_section(summary: Summary, figures: Sequence[str] | str) -> str:
    if not summary.agreement:
        return ""
    rows = [
        [
            split.votes,
            _number(split.agreement),
            _number(split.entropy),
            str(split.lines),
            _percent(split.team_accuracy),
        ]
        for split in summary.agreement
    ]
    table = _table(["votes", "agreement", "entropy (bits)", "items", "team accuracy"], rows)
    text = (
        f"## Agreement\n\nHow the team's decisions were split (mean agreement "
        f"{_number(summary.mean_agreement)}, mean entropy {_number(summary.mean_entropy)} bits):"
        f"\n\n{table}"
    )
    if not isinstance(figures, str) and "agreement.png" in figures:
        text += "\n\n![agreement](agreement.png)"
    return text


def _noted_section(summary: Summary) -> str:
    """Every decision that was a tie, carried by a small share, or had no answer."""
    if not summary.noted:
        return ""
    rows = [
        [
            n.item + (f" #{n.sample}" if summary.samples > 1 else ""),
            _shown(n.answer),
            n.note,
            "yes" if n.correct else "no",
        ]
        for n in summary.noted
    ]
    table = _table(["item", "team answer", "how it was decided", "right"], rows)
    return (
        f"## Decisions to read with care\n\n{len(summary.noted)} of the {summary.lines} team "
        f"decisions were not clear: ties broken by agent order, answers carried by less than "
        f"half the votes, or no answer.\n\n{table}"
    )


def _cache_total(records: Sequence[ItemRecord]) -> CacheStats | None:
    used = [r.cache for r in records if r.cache is not None]
    return sum(used, CacheStats()) if used else None


def cache_line(summary: Summary) -> str:
    """What the call cache saved, in a line ("" without a cache)."""
    if summary.cache is None:
        return ""
    hits, misses = summary.cache.hits, summary.cache.misses
    return f"call cache: {hits} of {hits + misses} calls answered from it, {misses} sent"


def where_ran(summary: Summary) -> str:
    """Where a Ray run's lines ran and what was re-run, in a line ("" without Ray)."""
    if not summary.workers:
        return ""
    nodes = len(summary.nodes)
    text = (
        f"ran on {len(summary.workers)} Ray workers over {nodes} node{'s' * (nodes != 1)} "
        f"({', '.join(f'{w}: {n}' for w, n in summary.workers.items())})"
    )
    if summary.reruns:
        lost = sorted({w for r in summary.reruns for w in r.lost})
        text += (
            f"; {len(summary.reruns)} line{'s' * (len(summary.reruns) != 1)} re-run after "
            f"{', '.join(lost)} died (their tokens are those of the run that finished)"
        )
    return text


def _where_section(summary: Summary) -> str:
    line = where_ran(summary)
    if not line:
        return ""
    rows = [[r.item + f" #{r.sample}", ", ".join(r.lost), r.worker or ""] for r in summary.reruns]
    table = f"\n\n{_table(['item', 'lost with', 'finished on'], rows)}" if rows else ""
    return f"## Where it ran\n\n{line[0].upper() + line[1:]}.{table}"


def _shown(answer: str | None) -> str:
    """An answer in a table cell: one line, short (a program is cut)."""
    if answer is None:
        return "none"
    line = " ".join(answer.split()).replace("|", "\\|")
    return line if len(line) <= 40 else line[:39] + "…"


def _correlation_section(summary: Summary) -> str:
    names = summary.correlation_agents
    if len(names) < 2:
        return ""
    rows = [
        [name, *(_number(v) for v in row)]
        for name, row in zip(names, summary.correlation_matrix, strict=True)
    ]
    return (
        "## Correlation of errors between agents\n\n"
        f"Mean pairwise phi {_number(summary.mean_correlation)} (1: the agents fail on the "
        "same items, 0: independently; n/a where an agent was always right or always "
        "wrong).\n\n" + _table(["", *names], rows)
    )


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


# ---- figures -------------------------------------------------------------------------------


def _plot(folder: Path, summary: Summary, records: Sequence[ItemRecord]) -> list[str] | str:
    """The figures written, or why there are none."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "figures need matplotlib: pip install 'agentfab[plot]'"
    written = []
    for name, draw in DRAWN:
        figure = draw(plt, summary, records)
        if figure is None:
            continue
        try:
            figure.savefig(folder / name, dpi=120, bbox_inches="tight")
        except OSError as error:
            raise ConfigError(f"{folder / name}: cannot write ({error.strerror})") from None
        finally:
            plt.close(figure)
        written.append(name)
    return written


def _errors(rates: Sequence[Rate]) -> list[list[float]]:
    values = [r.accuracy or 0.0 for r in rates]
    return [
        [v - r.low for v, r in zip(values, rates, strict=True)],
        [r.high - v for v, r in zip(values, rates, strict=True)],
    ]


def _accuracy_figure(plt: Any, summary: Summary, records: Sequence[ItemRecord]) -> Any:
    rates = summary.configurations
    figure, axes = plt.subplots(figsize=(6.5, 3.6))
    positions = range(len(rates))
    axes.errorbar(
        positions,
        [r.accuracy or 0.0 for r in rates],
        yerr=_errors(rates),
        fmt="o",
        capsize=6,
    )
    axes.set_xticks(list(positions), [r.name for r in rates])
    axes.set_ylim(-0.02, 1.02)
    axes.set_ylabel("accuracy (pass@1)")
    axes.set_title(f"{_title(summary)}: accuracy with 95% intervals (n={summary.items})")
    axes.grid(axis="y", alpha=0.3)
    return figure


def _tokens_figure(plt: Any, summary: Summary, records: Sequence[ItemRecord]) -> Any:
    rates = [r for r in summary.configurations if r.tokens_per_item is not None]
    figure, axes = plt.subplots(figsize=(6.5, 3.6))
    for rate, low, high in zip(rates, *_errors(rates), strict=True):
        axes.errorbar(
            [rate.tokens_per_item],
            [rate.accuracy or 0.0],
            yerr=[[low], [high]],
            fmt="o",
            capsize=5,
            label=rate.name,
        )
    spread = [r.tokens_per_item or 1.0 for r in rates]
    if max(spread) > 10 * min(spread):
        axes.set_xscale("log")
    axes.set_ylim(-0.02, 1.02)
    axes.set_xlabel("tokens per item (prompt + completion)")
    axes.set_ylabel("accuracy (pass@1)")
    axes.set_title(f"{_title(summary)}: accuracy against tokens")
    axes.legend(fontsize="small")
    axes.grid(alpha=0.3)
    return figure


def _agreement_figure(plt: Any, summary: Summary, records: Sequence[ItemRecord]) -> Any:
    splits = summary.agreement
    if not splits:
        return None
    right = [round(s.lines * s.team_accuracy) for s in splits]
    wrong = [s.lines - k for s, k in zip(splits, right, strict=True)]
    labels = [f"{s.votes}\n({_number(s.agreement)})" for s in splits]
    figure, axes = plt.subplots(figsize=(6.5, 3.6))
    axes.bar(labels, right, label="team right")
    axes.bar(labels, wrong, bottom=right, label="team wrong")
    axes.set_xlabel("vote pattern (agreement)")
    axes.set_ylabel("items")
    axes.yaxis.get_major_locator().set_params(integer=True)
    axes.set_title(f"{_title(summary)}: how split the team was")
    axes.legend(fontsize="small")
    return figure


def _title(summary: Summary) -> str:
    return f"{summary.run.pipeline_name} on {summary.run.suite}" if summary.run else "eval"


# ---- several runs side by side -------------------------------------------------------------


def compare_runs(folders: Sequence[Path]) -> str:
    """A Markdown table with one row per run, summarised from each run's results."""
    rows = []
    for folder in folders:
        if not folder.is_dir():
            raise ConfigError(f"{folder}: no such run folder")
        run = read_run(folder)
        loaded = read_results(folder / RESULTS_FILE)
        if not loaded.records:
            raise ConfigError(f"{folder}: no results in {RESULTS_FILE}")
        rows.append(_run_row(folder, summarise(loaded.records, run)))
    header = [
        "run",
        "pipeline",
        "suite",
        "items",
        "team",
        "single",
        "self-consistency",
        "oracle",
        "team tokens/item",
        "SC tokens/item",
    ]
    return _table(header, rows) + "\n"


def _run_row(folder: Path, summary: Summary) -> list[str]:
    team, single, sc, oracle = summary.configurations
    run = summary.run
    assert run is not None
    return [
        folder.name,
        run.pipeline_name,
        run.suite,
        f"{summary.items}" + (f"×{summary.samples}" if summary.samples > 1 else ""),
        *(_cell(rate) for rate in (team, single, sc, oracle)),
        f"{team.tokens_per_item or 0:.0f}",
        f"{sc.tokens_per_item or 0:.0f}",
    ]


def _cell(rate: Rate) -> str:
    return f"{_percent(rate.accuracy)} ({rate.low:.0%}–{rate.high:.0%})"


DRAWN = (
    ("accuracy.png", _accuracy_figure),
    ("tokens.png", _tokens_figure),
    ("agreement.png", _agreement_figure),
)
FIGURES = tuple(name for name, _ in DRAWN)
"""The report's figures: each `draw(plt, summary, records)` gives a matplotlib figure or
None when the run has nothing to show in it."""
