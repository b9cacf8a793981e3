"""Every aggregator on the same samples: short free-form questions, the embedded model.

For each question of benchmarks/data/short_answers.jsonl, five agents (SmolLM2-135M,
temperature 0.7) answer once; on those same five samples we score one sample, majority@5,
confidence weighting (token logprobs), Bradley-Terry (the agents judge each other's
answers, both orders), generative self-aggregation and oracle@5 (some sample was right).
First-to-ahead-by-2 draws its own samples, one agent, at most 5. Tokens count every call a
method needed: the five samples, plus the judges or the writer. Prints a table and a last
`RESULT` line. (This 135M model picks multiple-choice letters near chance, so free-form
answers are where aggregation can show an effect.)

    python benchmarks/aggregators.py [--limit 40] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import time
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
    "oracle@5",
]


def is_right(answer: str | None, aliases: Sequence[str]) -> bool:
    """An answer is right when it contains an accepted alias as whole words."""
    if not answer:
        return False
    said = normalise_text(answer)
    return any(re.search(rf"\b{re.escape(normalise_text(a))}\b", said) for a in aliases)


def tokens(messages: Sequence[Message]) -> int:
    return sum(m.usage.total_tokens for m in messages)


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
    return scores


def report(rows: list[dict[str, tuple[bool, int]]], seconds: float) -> None:
    n = len(rows)
    print(f"\n{n} questions, k={K} samples, {seconds:.0f}s\n")
    print("| method | accuracy | 95% interval | tokens per question |")
    print("| --- | --- | --- | --- |")
    figures = []
    for method in METHODS:
        right = sum(row[method][0] for row in rows)
        low, high = wilson(right, n)
        mean_tokens = sum(row[method][1] for row in rows) / max(n, 1)
        print(
            f"| {method} | {right}/{n} = {right / n:.1%} | {low:.0%}–{high:.0%} | "
            f"{mean_tokens:.0f} |"
        )
        key = method.replace("@", "_at_").replace("-", "_").replace(" ", "_")
        figures.append(f"{key}={right / n:.3f}")
        figures.append(f"{key}_tokens={mean_tokens:.0f}")
    print("RESULT " + " ".join(figures))


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
