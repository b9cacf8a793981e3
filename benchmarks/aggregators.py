"""Every aggregator on the same samples: short free-form questions, the embedded model.

For each question of benchmarks/data/short_answers.jsonl, five agents (SmolLM2-135M,
temperature 0.7) answer once; on those same five samples we score one sample, majority@5,
confidence weighting (token logprobs), Bradley-Terry (the agents judge each other's
answers, both orders), generative self-aggregation and oracle@5 (some sample was right).
First-to-ahead-by-2 draws its own samples, one agent, at most 5. Tokens count every call a
method needed: the five samples, plus the judges or the writer; tokens per correct answer
divide them by the questions answered right.

Early stops, paired against majority@5 on the same questions: "ahead-by-2 (same samples)"
reads the five samples in order and stops at the first that puts an answer 2 ahead (its
tokens: the samples read), and "quorum 3 of 5" runs the five agents again with the same
seeds, voting on the first three to answer and cancelling the rest. For each, the table
gives both accuracies, the questions only one got right, and the tokens saved. Prints the
tables and a last `RESULT` line. (This 135M model picks multiple-choice letters near
chance, so free-form answers are where aggregation can show an effect.)

    python benchmarks/aggregators.py [--limit 40] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agentfab import Agent, Message, Orchestrator, RunSettings, Task
from agentfab.aggregators import (
    AggregationContext,
    AheadByK,
    BradleyTerry,
    ConfidenceWeighted,
    Majority,
    SelfAggregate,
)
from agentfab.aggregators.ahead_by_k import lead
from agentfab.answers import normalise_text
from agentfab.evals.stats import wilson
from agentfab.llm import LLMClient
from agentfab.serving.embedded import EmbeddedClient
from agentfab.topologies import star

DATA = Path(__file__).parent / "data" / "short_answers.jsonl"
K = 5
METHODS = [
    "one sample",
    "majority@5",
    "confidence",
    "bradley-terry",
    "self-aggregate",
    "ahead-by-2",
    "ahead-by-2 (same samples)",
    "quorum 3 of 5",
    "oracle@5",
]
EARLY_STOPS = ["ahead-by-2 (same samples)", "quorum 3 of 5"]


def is_right(answer: str | None, aliases: Sequence[str]) -> bool:
    """An answer is right when it contains an accepted alias as whole words."""
    if not answer:
        return False
    said = normalise_text(answer)
    return any(re.search(rf"\b{re.escape(normalise_text(a))}\b", said) for a in aliases)


def tokens(messages: Sequence[Message]) -> int:
    return sum(m.usage.total_tokens for m in messages)


def ahead_on(samples: Sequence[Message], k: int) -> tuple[str | None, int]:
    """First-to-ahead-by-k replayed on samples in order: the leader, and the samples read."""
    counts: Counter[str] = Counter()
    for read, sample in enumerate(samples, start=1):
        if sample.answer is not None:
            counts[sample.answer] += 1
        leader, margin = lead(counts)
        if margin >= k:
            return leader, read
    return lead(counts)[0], len(samples)


async def one_question(
    client: LLMClient, item: dict[str, Any], seed: int
) -> dict[str, tuple[bool, int]]:
    task = Task(prompt=item["question"], id=item["id"])
    clients = {"default": client}
    settings = RunSettings(answer_format="short", seed=seed)
    workers = [Agent(name=f"w{i}", max_tokens=24, temperature=0.7) for i in range(K)]
    # The confidence aggregator asks for logprobs, so the samples carry them for everyone.
    run = await Orchestrator(clients, settings).run(
        star(workers, ConfidenceWeighted("logprob")), task
    )
    samples = [m for m in run.messages if m.kind == "agent"]
    spent = tokens(samples)
    ctx = AggregationContext(node="hub", clients=clients, answer_format="short", seed=seed)
    decided = {
        "majority@5": await Majority().aggregate(task, samples, ctx),
        "confidence": run.messages[-1],
        "bradley-terry": await BradleyTerry().aggregate(task, samples, ctx),
        "self-aggregate": await SelfAggregate(max_tokens=24).aggregate(task, samples, ctx),
    }
    aliases = item["answers"]
    scores = {
        name: (is_right(m.answer, aliases), spent + m.usage.total_tokens)
        for name, m in decided.items()
    }
    scores["one sample"] = (is_right(samples[0].answer, aliases), tokens(samples[:1]))
    scores["oracle@5"] = (any(is_right(m.answer, aliases) for m in samples), spent)
    ahead_team = star([workers[0]], AheadByK(k=2, max_samples=K, batch=K))
    ahead = await Orchestrator(clients, settings).run(ahead_team, task)
    scores["ahead-by-2"] = (is_right(ahead.answer, aliases), ahead.usage.total_tokens)
    leader, read = ahead_on(samples, 2)
    scores["ahead-by-2 (same samples)"] = (is_right(leader, aliases), tokens(samples[:read]))
    quorum = await Orchestrator(clients, settings).run(star(workers, Majority(), quorum=3), task)
    scores["quorum 3 of 5"] = (is_right(quorum.answer, aliases), quorum.usage.total_tokens)
    return scores


def report(rows: list[dict[str, tuple[bool, int]]], seconds: float) -> None:
    n = len(rows)
    print(f"\n{n} questions, k={K} samples, {seconds:.0f}s\n")
    print("| method | accuracy | 95% interval | tokens per question | tokens per correct |")
    print("| --- | --- | --- | --- | --- |")
    figures = []
    for method in METHODS:
        right = sum(row[method][0] for row in rows)
        low, high = wilson(right, n)
        spent = sum(row[method][1] for row in rows)
        per_right = f"{spent / right:.0f}" if right else "none right"
        print(
            f"| {method} | {right}/{n} = {right / n:.1%} | {low:.0%}–{high:.0%} | "
            f"{spent / max(n, 1):.0f} | {per_right} |"
        )
        key = re.sub(r"\W+", "_", method.replace("@", "_at_")).strip("_")
        figures.append(f"{key}={right / n:.3f}")
        figures.append(f"{key}_tokens={spent / max(n, 1):.0f}")
    print(
        "\n| early stop, vs majority@5 | accuracy | majority@5 | only it right | only "
        "majority right | tokens saved |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    for method in EARLY_STOPS:
        print(paired_row(rows, method, "majority@5"))
    print("RESULT " + " ".join(figures))


def paired_row(rows: list[dict[str, tuple[bool, int]]], method: str, against: str) -> str:
    """Both methods on the same questions: accuracies, the discordant pairs, tokens saved."""
    n = max(len(rows), 1)
    right = sum(row[method][0] for row in rows)
    base = sum(row[against][0] for row in rows)
    only_it = sum(row[method][0] and not row[against][0] for row in rows)
    only_base = sum(row[against][0] and not row[method][0] for row in rows)
    spent, base_spent = (sum(row[m][1] for row in rows) for m in (method, against))
    saved = 1 - spent / base_spent if base_spent else 0.0
    return (
        f"| {method} | {right / n:.1%} | {base / n:.1%} | {only_it} | {only_base} | {saved:.0%} |"
    )


async def main(limit: int, concurrency: int, seed: int) -> None:
    items = [json.loads(line) for line in DATA.read_text().splitlines()][:limit]
    client = EmbeddedClient(seed=seed)
    await client.load()
    gate = asyncio.Semaphore(concurrency)  # questions in flight; their calls batch together
    done = 0
    started = time.perf_counter()

    async def scored(item: dict[str, Any]) -> dict[str, tuple[bool, int]]:
        nonlocal done
        async with gate:
            result = await one_question(client, item, seed)
        done += 1
        print(
            f"  {done}/{len(items)} {item['id']} ({time.perf_counter() - started:.0f}s)", flush=True
        )
        return result

    try:
        rows = await asyncio.gather(*(scored(item) for item in items))
    finally:
        await client.aclose()
    report(list(rows), time.perf_counter() - started)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=40)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    asyncio.run(main(args.limit, args.concurrency, args.seed))
