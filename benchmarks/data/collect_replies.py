"""Collect real model replies for the extraction corpus (benchmarks/data/extraction_corpus.jsonl).

Asks the embedded model (or an OpenAI-compatible server with `--base-url`) the project's
multiple-choice suite, its short-answer questions and a few arithmetic questions, with the
prompts the orchestrator builds, and writes one JSON line per reply, unlabelled. A person then
labels each reply with what a careful grader takes as its answer (`expected`, or null where the
reply commits to nothing) before it joins the corpus.

    .venv/bin/python benchmarks/data/collect_replies.py --out /tmp/replies.jsonl
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from agentfab import Agent, Task
from agentfab.evals.suites import load_suite
from agentfab.llm import ChatRequest, LLMClient
from agentfab.openai_client import OpenAIClient
from agentfab.prompts import build_messages
from agentfab.serving.embedded import EmbeddedClient

SHORT_QUESTIONS = Path(__file__).with_name("short_answers.jsonl")
ARITHMETIC = [
    "What is 17 + 25?", "What is 9 times 8?", "What is 100 minus 37?", "What is 144 divided by 12?",
    "How many minutes are in two hours?", "What is half of 90?", "What is 3 squared?",
    "What is 15% of 200?", "How many days are in a leap year?", "What is 7 + 6?",
    "What is 1000 - 1?", "What is 0.5 + 0.25?", "How many sides does a hexagon have?",
    "What is 2 to the power of 10?", "What is 81 divided by 9?", "What is 13 times 3?",
    "How many seconds are in a minute?", "What is 250 + 750?", "What is one third of 27?",
    "What is 6 factorial?",
]  # fmt: skip


def _prompts(seed: int) -> list[tuple[str, Task]]:
    suite = load_suite("gpqa-project", seed=seed)
    prompts: list[tuple[str, Task]] = [("letter", item.task()) for item in suite.items]
    for line in SHORT_QUESTIONS.read_text().splitlines():
        record = json.loads(line)
        prompts.append(("short", Task(prompt=record["question"], id=record["id"])))
    prompts += [("number", Task(prompt=q, id=f"n{i:02d}")) for i, q in enumerate(ARITHMETIC)]
    return prompts


async def _ask(
    client: LLMClient, model: str, fmt: str, task: Task, samples: int, confidence: bool
) -> list[dict[str, Any]]:
    messages = build_messages(task, [], Agent(name="a"), fmt, ask_confidence=confidence)
    request = ChatRequest(messages=messages, model=model, temperature=0.9, max_tokens=48, n=samples)
    response = await client.chat(request)
    return [
        {
            "task": task.id,
            "format": fmt,
            "question": task.prompt,
            "choices": task.choices,
            "text": c.text,
            "asked_confidence": confidence,
        }
        for c in response.completions
    ]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--base-url", help="an OpenAI-compatible server (default: embedded)")
    parser.add_argument("--model", default="default")
    parser.add_argument("--samples", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--source", default="embedded")
    args = parser.parse_args()
    client: LLMClient = (
        OpenAIClient(args.base_url) if args.base_url else EmbeddedClient(seed=args.seed)
    )
    jobs = [
        _ask(client, args.model, fmt, task, args.samples, confidence=i % 3 == 0)
        for i, (fmt, task) in enumerate(_prompts(args.seed))
    ]
    try:
        replies = [r for batch in await asyncio.gather(*jobs) for r in batch]
    finally:
        await client.aclose()
    with args.out.open("w") as out:
        for reply in replies:
            out.write(json.dumps({"source": args.source, **reply}) + "\n")
    print(f"{len(replies)} replies -> {args.out}", file=sys.stderr)


if __name__ == "__main__":
    asyncio.run(main())
